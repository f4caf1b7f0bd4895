//! The serving path (`Model::query`: reused buffers, partial top-k, cached
//! positions) returns what the naive path returns: every item scored, the
//! whole catalogue sorted.

use proptest::prelude::*;
use travelrec_engine::{Blend, Candidate, Context, Feature, Hyperparameters, ItemMeta, Query, Recipe, TrainingDataBuilder, train_fixed};

fn naive_top(model: &travelrec_engine::Model, user: &str, context: &Context, k: usize) -> Vec<u32> {
    let mut scores = vec![0f32; model.items.len()];
    model.raw_scores(model.histories.get(user), &[], context, &mut scores);
    let mut order: Vec<u32> = (0..scores.len() as u32).collect();
    order.sort_by(|&a, &b| scores[b as usize].total_cmp(&scores[a as usize]).then(a.cmp(&b)));
    order.truncate(k);
    order
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn query_top_k_equals_the_naive_full_sort(
        seed in 0u64..1000,
        items in 5usize..60,
        k in 1usize..30,
        located in any::<bool>(),
        lat in -60.0f64..60.0,
    ) {
        let mut b = TrainingDataBuilder::new();
        for i in 0..items {
            let meta = ItemMeta {
                location: located.then(|| (lat + (i as f64 * 0.37 + seed as f64).sin() * 0.2, (i as f64 * 0.11).cos())),
                ..ItemMeta::default()
            };
            b.add_item_with_meta(&format!("i{i}"), meta);
        }
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let mut next = |m: usize| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 33) as usize) % m
        };
        for u in 0..40 {
            for t in 0..(3 + next(8)) {
                b.add_interaction(&format!("u{u}"), &format!("i{}", next(items)), (t * 600 + u * 86_400) as i64, "click", None);
            }
        }
        let data = b.build();
        let hp = Hyperparameters { exploration_weight: 0.0, ..Hyperparameters::default() };
        let blend = Blend::default().with(Feature::Sequence, 1.0).with(Feature::Proximity, 2.0).with(Feature::Nearby, 1.0).with(Feature::Repeat, -0.5);
        let model = train_fixed(&data, Recipe::UserPersonalization, &hp, blend, &|_, _| {}).unwrap();
        let context = Context { location: located.then_some((lat, 0.5)), ..Context::default() };
        for u in 0..40 {
            let user = format!("u{u}");
            let query = Query { history: model.histories.get(&user), k, context: context.clone(), ..Query::default() };
            let served: Vec<u32> = model.query(&query).into_iter().map(|r| match r.candidate {
                Candidate::Known(i) => i,
                Candidate::Extra(_) => unreachable!("no extras given"),
            }).collect();
            prop_assert_eq!(served, naive_top(&model, &user, &context, k), "user {}", user);
        }
    }
}
