//! `travelrec evaluate`: a public data set, a split protocol, every recipe
//! and baseline trained on the same split, one table of metrics.

pub mod datasets;
mod implicit;
mod trajectory;

pub use datasets::{DATASETS, EvalDataset, LoadError, load};
pub use implicit::ImplicitBaseline;

use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;
use travelrec_engine::metrics::{MetricAccumulator, MetricSet};
use travelrec_engine::split::{Holdout, Split, split};
use travelrec_engine::tuning::{evaluate_model, rank_test_users};
use travelrec_engine::{
    Blend, CollaborativeKind, Feature, Hyperparameters, Recipe, TrainingData, distance_km, top_k, train_fixed, train_with,
};

/// How test interactions are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// Per user, a random 25 % of their items (seen items not recommended) —
    /// the MovieLens 100K benchmark protocol.
    Stratified7525,
    /// Each user's newest interaction, over the whole catalogue.
    LeaveLastOut,
    /// Each user's last trip (after a pause of more than two days), ranked
    /// from the history before it and the context of its first moment.
    NextTrip,
    /// Flickr: leave one trajectory out; given its start, end and length,
    /// recommend the POIs in between (F1 on the POI set).
    Trajectory,
}

impl Protocol {
    pub fn parse(value: &str) -> Option<Protocol> {
        match value {
            "stratified-75-25" => Some(Protocol::Stratified7525),
            "leave-last-out" => Some(Protocol::LeaveLastOut),
            "next-trip" => Some(Protocol::NextTrip),
            "trajectory" => Some(Protocol::Trajectory),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Stratified7525 => "stratified-75-25",
            Protocol::LeaveLastOut => "leave-last-out",
            Protocol::NextTrip => "next-trip",
            Protocol::Trajectory => "trajectory",
        }
    }

    fn holdout(self) -> Holdout {
        match self {
            Protocol::Stratified7525 => Holdout::RandomFraction { test_fraction: 0.25 },
            Protocol::NextTrip => Holdout::NextTrip,
            _ => Holdout::LastItem,
        }
    }

    /// The validation split carved from the training part: the same kind of
    /// holdout, smaller, so that the validation model sees nearly as much
    /// data. Newest interactions are validated as a served model is trained
    /// (with the arrivals among them: [`Holdout::LastItemOrArrival`]).
    fn validation(self) -> Holdout {
        match self {
            Protocol::Stratified7525 => Holdout::RandomFraction { test_fraction: 0.1 },
            Protocol::NextTrip => Holdout::NextTrip,
            _ => Holdout::LastItemOrArrival,
        }
    }
}

#[derive(Debug, Clone)]
pub struct EvalConfig {
    pub protocol: Protocol,
    /// Split seeds; results are averaged over them.
    pub seeds: Vec<u64>,
    /// Also run travelrec with hyperparameter search.
    pub hpo: bool,
    /// Only evaluate this many test users (random, seeded); all when `None`.
    pub max_test_users: Option<usize>,
    pub implicit: Option<ImplicitBaseline>,
    /// travelrec's hyperparameters (the defaults unless overridden); each
    /// split's seed replaces `seed`.
    pub hyperparameters: Hyperparameters,
}

#[derive(Debug, Clone, Serialize)]
pub struct MethodResult {
    pub method: String,
    pub metrics: BTreeMap<String, f64>,
    pub train_seconds: f64,
    pub users: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub dataset: String,
    pub protocol: Protocol,
    pub users: usize,
    pub items: usize,
    pub interactions: usize,
    pub seeds: Vec<u64>,
    pub results: Vec<MethodResult>,
    /// travelrec with context against the same recipe without it, user by
    /// user; absent where the protocol has no context.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_gain: Option<ContextGain>,
}

/// NDCG@10 of travelrec with context against the same recipe without it,
/// compared user by user (the same test users, the same held-out items) over
/// every seed's test users: the mean difference and its standard error, so
/// that a gain can be told from the noise of a few hundred users.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContextGain {
    pub users: usize,
    pub with_context: f64,
    pub without_context: f64,
    /// Mean of the per-user differences (with − without).
    pub difference: f64,
    /// Standard error of that mean: the differences' sample standard deviation over √users.
    pub standard_error: f64,
    /// Users ranked better, and worse, with context.
    pub better: usize,
    pub worse: usize,
}

impl ContextGain {
    /// From each user's NDCG@10 with and without context (the same users in
    /// the same order); `None` for fewer than two users.
    pub fn paired(with: &[f64], without: &[f64]) -> Option<Self> {
        let users = with.len();
        if users < 2 || users != without.len() {
            return None;
        }
        let differences: Vec<f64> = with.iter().zip(without).map(|(a, b)| a - b).collect();
        let (difference, standard_error) = mean_and_standard_error(&differences);
        Some(Self {
            users,
            with_context: mean_and_standard_error(with).0,
            without_context: mean_and_standard_error(without).0,
            difference,
            standard_error,
            better: differences.iter().filter(|&&d| d > 1e-12).count(),
            worse: differences.iter().filter(|&&d| d < -1e-12).count(),
        })
    }

    /// The difference in standard errors: beyond about ±2, unlikely to be noise.
    pub fn z(&self) -> f64 {
        if self.standard_error > 0.0 { self.difference / self.standard_error } else { 0.0 }
    }

    /// One line: users, difference ± SE, z, relative gain, users better and worse.
    pub fn describe(&self) -> String {
        format!(
            "context, user by user ({} users): NDCG@10 {:+.4} ± {:.4} (1 SE, z {:+.1}), {:+.1} % over travelrec-no-context; better for {}, worse for {}",
            self.users,
            self.difference,
            self.standard_error,
            self.z(),
            100.0 * self.difference / self.without_context.max(1e-12),
            self.better,
            self.worse
        )
    }
}

/// The mean of `values` and its standard error (their sample standard
/// deviation over √n): how far a mean over a few hundred users or trips may
/// be from the method's figure on others like them.
fn mean_and_standard_error(values: &[f64]) -> (f64, f64) {
    let n = values.len();
    if n == 0 {
        return (0.0, 0.0);
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return (mean, 0.0);
    }
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    (mean, (variance / n as f64).sqrt())
}

/// The methods compared on every split, in table order.
const METHODS: &[&str] = &[
    "travelrec",
    "travelrec-hpo",
    "travelrec-no-context",
    "ease",
    "item-knn",
    "markov",
    "popular-nearby",
    "popularity",
    "implicit-als",
    "implicit-bpr",
];

pub fn evaluate(dataset: &EvalDataset, config: &EvalConfig, log: &dyn Fn(&str)) -> Report {
    if config.protocol == Protocol::Trajectory {
        return trajectory::evaluate(dataset, config, log);
    }
    let mut sums: BTreeMap<&str, (Vec<MetricSet>, f64, Option<String>)> = BTreeMap::new();
    // Each user's NDCG@10 with and without context, over the seeds where both ran.
    let (mut with_context, mut without_context) = (Vec::new(), Vec::new());
    let mut seeds_run = Vec::new();
    for &seed in &config.seeds {
        let world = match dataset.for_seed(seed) {
            Ok(world) => world,
            Err(e) => {
                log(&format!("seed {seed}: skipped, its generated world could not be made: {e}"));
                continue;
            }
        };
        let data = &world.data;
        seeds_run.push(seed);
        let split = split(data, config.protocol.holdout(), config.max_test_users, seed);
        match world.generator_seed {
            Some(generator) => log(&format!("seed {seed}: generated world {generator}, {} test users", split.test.len())),
            None => log(&format!("seed {seed}: {} test users", split.test.len())),
        }
        let mut ndcg_by_user: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        for &method in METHODS {
            if method == "travelrec-hpo" && !config.hpo {
                continue;
            }
            let located = data.item_meta.iter().any(|m| m.location.is_some());
            let contextual = config.protocol != Protocol::Stratified7525;
            if (method == "popular-nearby" && !located) || (method == "travelrec-no-context" && !contextual) {
                continue;
            }
            let started = Instant::now();
            let outcome = run_method(method, &split, config, seed, log);
            let seconds = started.elapsed().as_secs_f64();
            let entry = sums.entry(method).or_insert_with(|| (Vec::new(), 0.0, None));
            match outcome {
                Ok(Evaluated { metrics, ndcg_at_10_by_user }) => {
                    log(&format!("  {method:14} NDCG@10 {:.4}  P@10 {:.4}  ({seconds:.1}s)", metrics.ndcg(10), metrics.precision(10)));
                    entry.0.push(metrics);
                    entry.1 += seconds;
                    if let Some(by_user) = ndcg_at_10_by_user {
                        ndcg_by_user.insert(method, by_user);
                    }
                }
                Err(note) => {
                    log(&format!("  {method:14} unavailable: {note}"));
                    entry.2 = Some(note);
                }
            }
        }
        if let (Some(with), Some(without)) = (ndcg_by_user.remove("travelrec"), ndcg_by_user.remove("travelrec-no-context")) {
            // Each seed's own, beside the pooled one in the report (a generated seed is a world of its own).
            if let (true, Some(gain)) = (config.seeds.len() > 1, ContextGain::paired(&with, &without)) {
                log(&format!("  {}", gain.describe()));
            }
            with_context.extend(with);
            without_context.extend(without);
        }
    }
    let results = METHODS
        .iter()
        .filter_map(|m| sums.remove(m).map(|r| (m, r)))
        .map(|(method, (runs, seconds, note))| {
            let mut metrics = BTreeMap::new();
            for run in &runs {
                for (k, v) in &run.values {
                    *metrics.entry(k.clone()).or_insert(0.0) += v / runs.len() as f64;
                }
            }
            MethodResult {
                method: method.to_string(),
                metrics,
                train_seconds: if runs.is_empty() { 0.0 } else { seconds / runs.len() as f64 },
                users: runs.first().map_or(0, |r| r.users),
                note: if runs.is_empty() { note } else { None },
            }
        })
        .collect();
    let context_gain = ContextGain::paired(&with_context, &without_context);
    // The counts are the loaded data set's (for generated data, the first world's).
    let data = &dataset.data;
    Report {
        dataset: dataset.name.clone(),
        protocol: config.protocol,
        users: data.users.len(),
        items: data.items.len(),
        interactions: data.events.len(),
        seeds: seeds_run,
        results,
        context_gain,
    }
}

/// One method's result on one split.
struct Evaluated {
    metrics: MetricSet,
    /// NDCG@10 of each test user with held-out items, in the split's order:
    /// kept for travelrec with and without context, to compare them user by user.
    ndcg_at_10_by_user: Option<Vec<f64>>,
}

impl From<MetricSet> for Evaluated {
    fn from(metrics: MetricSet) -> Self {
        Self { metrics, ndcg_at_10_by_user: None }
    }
}

/// The metrics of a trained model on the split, and each user's NDCG@10.
fn evaluate_by_user(model: &travelrec_engine::Model, split: &Split) -> Evaluated {
    let mut accumulator = MetricAccumulator::new(model.items.len());
    let mut by_user = Vec::new();
    for (ranked, (_, relevant)) in rank_test_users(model, split).iter().zip(&split.test) {
        // Users with nothing held out count in no metric.
        if !relevant.is_empty() {
            accumulator.add(ranked, relevant);
            by_user.push(travelrec_engine::metrics::ndcg(ranked, relevant, 10));
        }
    }
    Evaluated { metrics: accumulator.finish(), ndcg_at_10_by_user: Some(by_user) }
}

fn hyperparameters(config: &EvalConfig, seed: u64) -> Hyperparameters {
    Hyperparameters { seed, ..config.hyperparameters.clone() }
}

fn only_collaborative() -> Blend {
    Blend::zero().with(Feature::Collaborative, 1.0)
}

fn run_method(method: &str, split: &Split, config: &EvalConfig, seed: u64, log: &dyn Fn(&str)) -> Result<Evaluated, String> {
    let train = &split.train;
    let quiet = &travelrec_engine::no_progress;
    let error = |e: travelrec_engine::RecipeError| e.to_string();
    match method {
        "travelrec" | "travelrec-hpo" => {
            let hp = Hyperparameters { perform_hpo: method == "travelrec-hpo", ..hyperparameters(config, seed) };
            let model = train_with(train, Recipe::UserPersonalization, &hp, config.protocol.validation(), quiet).map_err(error)?;
            log_tuning(method, &model, log);
            Ok(evaluate_by_user(&model, split))
        }
        "ease" => {
            // Plain EASE: every interaction counts the same, whenever it happened.
            let hp = Hyperparameters {
                collaborative: CollaborativeKind::Ease,
                max_ease_items: usize::MAX,
                recency_half_life_days: 1e9,
                ..hyperparameters(config, seed)
            };
            let model = train_fixed(train, Recipe::UserPersonalization, &hp, only_collaborative(), quiet).map_err(error)?;
            Ok(evaluate_model(&model, split).into())
        }
        "item-knn" => {
            let hp = Hyperparameters { collaborative: CollaborativeKind::ItemKnn, ..hyperparameters(config, seed) };
            let model = train_fixed(train, Recipe::UserPersonalization, &hp, only_collaborative(), quiet).map_err(error)?;
            Ok(evaluate_model(&model, split).into())
        }
        "travelrec-no-context" => {
            // The same recipe with every context signal switched off (and its blend learned without them).
            let hp = Hyperparameters {
                use_location: false,
                use_season: false,
                use_time_of_day: false,
                use_local_events: false,
                new_outing_after_hours: 0.0,
                ..hyperparameters(config, seed)
            };
            let model = train_with(train, Recipe::UserPersonalization, &hp, config.protocol.validation(), quiet).map_err(error)?;
            log_tuning(method, &model, log);
            Ok(evaluate_by_user(&model, split))
        }
        "popular-nearby" => Ok(popular_nearby(split).into()),
        "popularity" => {
            let model = train_with(train, Recipe::PopularityCount, &hyperparameters(config, seed), config.protocol.validation(), quiet)
                .map_err(error)?;
            Ok(evaluate_model(&model, split).into())
        }
        "markov" => Ok(markov(split).into()),
        "implicit-als" | "implicit-bpr" => match &config.implicit {
            Some(baseline) => baseline.evaluate(method.trim_start_matches("implicit-"), split, seed).map(Evaluated::from),
            None => Err("disabled (--no-implicit)".into()),
        },
        other => Err(format!("unknown method {other}")),
    }
}

/// What tuning chose for a learned model, for the evaluation log.
fn log_tuning(method: &str, model: &travelrec_engine::Model, log: &dyn Fn(&str)) {
    if let Some(report) = &model.tuning {
        let chosen = &report.trials[report.chosen];
        log(&format!(
            "  {method:14} chose {:?} blend {:?} moved-on blend {:?} (validation NDCG@10 {:.4})",
            chosen.settings,
            chosen.blend.weights,
            chosen.moved_on_blend.map(|b| b.weights),
            chosen.ndcg_at_10
        ));
    }
}

/// First-order Markov baseline: the items that most often came right after
/// the user's last item in training, popularity breaking ties.
fn markov(split: &Split) -> MetricSet {
    let train: &TrainingData = &split.train;
    let n = train.items.len();
    let (order, offsets) = train.by_user();
    let mut counts: Vec<BTreeMap<u32, f32>> = vec![BTreeMap::new(); n];
    let mut popularity = vec![0f32; n];
    let mut last_item = vec![None; train.users.len()];
    for u in 0..train.users.len() {
        let items: Vec<u32> = order[offsets[u]..offsets[u + 1]].iter().map(|&i| train.events[i as usize].item).collect();
        for pair in items.windows(2) {
            if pair[0] != pair[1] {
                *counts[pair[0] as usize].entry(pair[1]).or_default() += 1.0;
            }
        }
        items.iter().for_each(|&i| popularity[i as usize] += 1.0);
        last_item[u] = items.last().copied();
    }
    let max_pop = popularity.iter().fold(1f32, |m, &p| m.max(p));
    let exclude_seen = split.holdout.excludes_seen();
    let mut accumulator = MetricAccumulator::new(n);
    for (user, relevant) in &split.test {
        let mut scores: Vec<f32> = popularity.iter().map(|p| 1e-3 * p / max_pop).collect();
        if let Some(last) = last_item[*user as usize] {
            for (&next, &c) in &counts[last as usize] {
                scores[next as usize] += c;
            }
        }
        if exclude_seen {
            for &i in &order[offsets[*user as usize]..offsets[*user as usize + 1]] {
                scores[train.events[i as usize].item as usize] = f32::NEG_INFINITY;
            }
        }
        accumulator.add(&top_k(&scores, 25), relevant);
    }
    accumulator.finish()
}

/// "Popular nearby": popularity × nearness to the user's last visited
/// place, `exp(-distance / median distance)`.
fn popular_nearby(split: &Split) -> MetricSet {
    let train: &TrainingData = &split.train;
    let n = train.items.len();
    let (order, offsets) = train.by_user();
    let mut popularity = vec![0f64; n];
    train.events.iter().for_each(|e| popularity[e.item as usize] += 1.0);
    let exclude_seen = split.holdout.excludes_seen();
    let mut accumulator = MetricAccumulator::new(n);
    for (user, relevant) in &split.test {
        let events = &order[offsets[*user as usize]..offsets[*user as usize + 1]];
        let last = events.last().and_then(|&i| train.meta(train.events[i as usize].item)).and_then(|m| m.location);
        let distances: Vec<Option<f64>> = (0..n)
            .map(|i| last.zip(train.meta(i as u32).and_then(|m| m.location)).map(|((a, b), (c, d))| distance_km(a, b, c, d)))
            .collect();
        let mut known: Vec<f64> = distances.iter().flatten().copied().collect();
        let scale = if known.is_empty() {
            1.0
        } else {
            let middle = known.len() / 2;
            known.select_nth_unstable_by(middle, f64::total_cmp).1.max(1e-6)
        };
        let mut scores: Vec<f32> =
            (0..n).map(|i| ((1.0 + popularity[i]).ln() * distances[i].map_or(0.01, |d| (-d / scale).exp())) as f32).collect();
        if exclude_seen {
            for &i in events {
                scores[train.events[i as usize].item as usize] = f32::NEG_INFINITY;
            }
        }
        accumulator.add(&top_k(&scores, 25), relevant);
    }
    accumulator.finish()
}

impl Report {
    /// The recipe × metric table.
    pub fn table(&self) -> String {
        let columns = [
            ("NDCG@5", "normalized_discounted_cumulative_gain_at_5"),
            ("NDCG@10", "normalized_discounted_cumulative_gain_at_10"),
            ("NDCG@25", "normalized_discounted_cumulative_gain_at_25"),
            ("P@5", "precision_at_5"),
            ("P@10", "precision_at_10"),
            ("P@25", "precision_at_25"),
            ("R@10", "recall_at_10"),
            ("R@25", "recall_at_25"),
            ("HR@10", "hit_rate_at_10"),
            ("MRR@25", "mean_reciprocal_rank_at_25"),
            ("cover", "coverage"),
            ("F1", "f1"),
            ("F1 SE", "f1_standard_error"),
        ];
        let shown: Vec<&(&str, &str)> =
            columns.iter().filter(|(_, key)| self.results.iter().any(|r| r.metrics.contains_key(*key))).collect();
        let mut out = format!(
            "{} · {} · {} users, {} items, {} interactions · seeds {:?}\n",
            self.dataset,
            self.protocol.name(),
            self.users,
            self.items,
            self.interactions,
            self.seeds
        );
        out.push_str(&format!("{:<15}", "method"));
        for (label, _) in &shown {
            out.push_str(&format!("{label:>8}"));
        }
        out.push_str(&format!("{:>9}\n", "train s"));
        for r in &self.results {
            out.push_str(&format!("{:<15}", r.method));
            if let Some(note) = &r.note {
                out.push_str(&format!("unavailable: {note}\n"));
                continue;
            }
            for (_, key) in &shown {
                match r.metrics.get(*key) {
                    Some(v) => out.push_str(&format!("{v:>8.4}")),
                    None => out.push_str(&format!("{:>8}", "-")),
                }
            }
            out.push_str(&format!("{:>9.2}\n", r.train_seconds));
        }
        if let Some(gain) = &self.context_gain {
            out.push_str(&gain.describe());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_error_is_the_sample_deviation_over_the_root_of_n() {
        // 1, 2/3, 2/3, 1: mean 5/6, sample variance (4 × 1/36) / 3 = 1/27.
        let (mean, se) = mean_and_standard_error(&[1.0, 2.0 / 3.0, 2.0 / 3.0, 1.0]);
        assert!((mean - 5.0 / 6.0).abs() < 1e-12);
        assert!((se - (1.0f64 / 27.0 / 4.0).sqrt()).abs() < 1e-12);
        assert_eq!(mean_and_standard_error(&[0.5]), (0.5, 0.0));
        assert_eq!(mean_and_standard_error(&[]), (0.0, 0.0));
    }

    #[test]
    fn context_gain_pairs_users_and_gives_the_standard_error_of_the_mean_difference() {
        // Differences 0.5, 0, -0.5: mean 0, sample variance 0.25, SE √(0.25 / 3).
        let level = ContextGain::paired(&[1.0, 0.5, 0.0], &[0.5, 0.5, 0.5]).unwrap();
        assert_eq!((level.users, level.better, level.worse), (3, 1, 1));
        assert!(level.difference.abs() < 1e-12 && level.z().abs() < 1e-9);
        assert!((level.standard_error - (0.25f64 / 3.0).sqrt()).abs() < 1e-12);
        assert!((level.with_context - 0.5).abs() < 1e-12 && (level.without_context - 0.5).abs() < 1e-12);
        // Differences 0.2, 0.4, 0.3, 0.3: mean 0.3, sample variance 0.02 / 3.
        let gain = ContextGain::paired(&[0.6, 0.8, 0.5, 0.4], &[0.4, 0.4, 0.2, 0.1]).unwrap();
        assert!((gain.difference - 0.3).abs() < 1e-12);
        assert!((gain.standard_error - (0.02f64 / 3.0 / 4.0).sqrt()).abs() < 1e-12);
        assert!((gain.z() - 0.3 / (0.02f64 / 12.0).sqrt()).abs() < 1e-9);
        assert_eq!((gain.better, gain.worse), (4, 0));
        // Unpaired or too few users: nothing to say.
        assert_eq!(ContextGain::paired(&[1.0, 0.5], &[0.5]), None);
        assert_eq!(ContextGain::paired(&[1.0], &[0.5]), None);
    }
}
