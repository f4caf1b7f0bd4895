//! The Flickr trajectory protocol (Chen, Ong, Xie, CIKM'16): leave one
//! trajectory out; given its start POI, end POI and length, recommend the
//! POIs in between; score F1 on the POIs, start and end included (as in the
//! paper's code), over trajectories of at least 3 POIs.
//!
//! travelrec ranks the candidate POIs by a blend of what other trips did
//! (POIs visited after the start, POIs visited before the end, POIs seen
//! with both), how popular a POI is, how small a detour it is between start
//! and end, and the traveller's own other trips. Counts always exclude the
//! query trip. The blend weights are learned by coordinate ascent on F1 with
//! 5-fold cross-fitting: a trip's weights are learned on the trips of the
//! other folds only, so no trip is scored with weights tuned on itself.

use crate::{EvalConfig, EvalDataset, MethodResult, Report, mean_and_standard_error};
use rayon::prelude::*;
use std::collections::{BTreeMap, HashSet};
use std::time::Instant;
use travelrec_engine::distance_km;

const FEATURES: usize = 10;
const FEATURE_NAMES: [&str; FEATURES] = [
    "after_start",
    "before_end",
    "on_path",
    "popularity",
    "small_detour",
    "user_category",
    "user_visited",
    "with_start",
    "with_end",
    "category_after_start",
];
/// Index of popularity, whose weight stays 1 (it fixes the scale).
const POPULARITY: usize = 3;
const FOLDS: usize = 5;

/// Co-visitation counts over a set of trips, kept so that one trip can be
/// taken out again.
#[derive(Clone)]
struct Counts {
    n: usize,
    /// Trips containing the POI.
    trips: Vec<f32>,
    /// `after[i * n + j]`: trips where `j` comes after `i`.
    after: Vec<f32>,
}

impl Counts {
    fn new(n: usize) -> Self {
        Self { n, trips: vec![0.0; n], after: vec![0.0; n * n] }
    }

    fn add(&mut self, trip: &[u32], sign: f32) {
        let distinct: HashSet<u32> = trip.iter().copied().collect();
        distinct.iter().for_each(|&p| self.trips[p as usize] += sign);
        for (a, &i) in trip.iter().enumerate() {
            for &j in &trip[a + 1..] {
                if i != j {
                    self.after[i as usize * self.n + j as usize] += sign;
                }
            }
        }
    }
}

/// One query: its trip, features for every candidate POI, and its fold.
struct Query {
    trip: Vec<u32>,
    candidates: Vec<u32>,
    /// `candidates.len() × FEATURES`.
    features: Vec<f32>,
    fold: usize,
}

/// Everything needed to describe any query: the counts over all trips and
/// the POIs' locations and categories.
struct Context<'a> {
    dataset: &'a EvalDataset,
    all: Counts,
    locations: Vec<Option<(f64, f64)>>,
    category: Vec<Option<&'a str>>,
    by_user: BTreeMap<u32, Vec<usize>>,
}

impl<'a> Context<'a> {
    fn new(dataset: &'a EvalDataset) -> Self {
        let data = &dataset.data;
        let n = data.items.len();
        let mut all = Counts::new(n);
        dataset.trajectories.iter().for_each(|t| all.add(&t.items, 1.0));
        let mut by_user: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (index, t) in dataset.trajectories.iter().enumerate() {
            by_user.entry(t.user).or_default().push(index);
        }
        Self {
            dataset,
            all,
            locations: (0..n).map(|i| data.meta(i as u32).and_then(|m| m.location)).collect(),
            category: (0..n).map(|i| data.meta(i as u32).and_then(|m| m.categories.first().map(String::as_str))).collect(),
            by_user,
        }
    }

    /// A query for `trip` (a trip, or a stretch of one) of the trajectory
    /// with `index`, whose counts and traveller features leave that whole
    /// trajectory out.
    fn query(&self, index: usize, trip: &[u32], fold: usize) -> Query {
        let n = self.all.n;
        let t = &self.dataset.trajectories[index];
        let mut counts = self.all.clone();
        counts.add(&t.items, -1.0);
        let (start, end) = (trip[0], *trip.last().expect("three POIs"));
        let own: Vec<u32> = self.by_user[&t.user]
            .iter()
            .filter(|&&o| o != index)
            .flat_map(|&o| self.dataset.trajectories[o].items.iter().copied())
            .collect();
        let mut own_categories: BTreeMap<&str, f32> = BTreeMap::new();
        own.iter().filter_map(|&p| self.category[p as usize]).for_each(|c| *own_categories.entry(c).or_insert(0.0) += 1.0);
        let location = |p: u32| self.locations[p as usize];
        let direct = match (location(start), location(end)) {
            (Some(a), Some(b)) => distance_km(a.0, a.1, b.0, b.1),
            _ => 0.0,
        };
        let max_trips = counts.trips.iter().fold(1f32, |m, &c| m.max(c));
        // Category-level "what comes after": generalises across POIs of a kind.
        let mut category_after: BTreeMap<(&str, &str), f32> = BTreeMap::new();
        let mut category_trips: BTreeMap<&str, f32> = BTreeMap::new();
        for a in 0..n {
            if let Some(from) = self.category[a] {
                *category_trips.entry(from).or_default() += counts.trips[a];
                for b in 0..n {
                    if let Some(to) = self.category[b] {
                        *category_after.entry((from, to)).or_default() += counts.after[a * n + b];
                    }
                }
            }
        }
        let candidates: Vec<u32> = (0..n as u32).filter(|&p| p != start && p != end).collect();
        let detours: Vec<f64> = candidates
            .iter()
            .map(|&p| match (location(start), location(p), location(end)) {
                (Some(a), Some(m), Some(b)) => distance_km(a.0, a.1, m.0, m.1) + distance_km(m.0, m.1, b.0, b.1) - direct,
                _ => f64::INFINITY,
            })
            .collect();
        let mut finite: Vec<f64> = detours.iter().copied().filter(|d| d.is_finite()).collect();
        finite.sort_by(f64::total_cmp);
        let scale = finite.get(finite.len() / 2).copied().unwrap_or(1.0).max(1e-3);
        let mut features = Vec::with_capacity(candidates.len() * FEATURES);
        for (k, &p) in candidates.iter().enumerate() {
            let after_start = counts.after[start as usize * n + p as usize] / counts.trips[start as usize].max(1.0);
            let before_end = counts.after[p as usize * n + end as usize] / counts.trips[end as usize].max(1.0);
            let together = |a: u32, b: u32| counts.after[a as usize * n + b as usize] + counts.after[b as usize * n + a as usize];
            let category_after_start = match (self.category[start as usize], self.category[p as usize]) {
                (Some(from), Some(to)) => {
                    category_after.get(&(from, to)).copied().unwrap_or(0.0) / category_trips.get(from).copied().unwrap_or(1.0).max(1.0)
                }
                _ => 0.0,
            };
            features.extend([
                after_start,
                before_end,
                (after_start * before_end).sqrt(),
                (1.0 + counts.trips[p as usize]).ln() / (1.0 + max_trips).ln(),
                (-detours[k] / scale).exp() as f32,
                self.category[p as usize].and_then(|c| own_categories.get(c)).map_or(0.0, |c| c / own.len().max(1) as f32),
                if own.contains(&p) { 1.0 } else { 0.0 },
                together(start, p) / counts.trips[start as usize].max(1.0),
                together(p, end) / counts.trips[end as usize].max(1.0),
                category_after_start,
            ]);
        }
        Query { trip: trip.to_vec(), candidates, features, fold }
    }
}

/// The evaluation queries (trips of at least 3 POIs), with folds.
fn build_queries(context: &Context) -> Vec<Query> {
    let long: Vec<usize> = (0..context.dataset.trajectories.len()).filter(|&i| context.dataset.trajectories[i].items.len() >= 3).collect();
    long.par_iter()
        .enumerate()
        .map(|(number, &index)| context.query(index, &context.dataset.trajectories[index].items, number % FOLDS))
        .collect()
}

/// Extra training queries: every stretch of at least 3 POIs of the long
/// trips (more examples make the learned weights steadier). They carry
/// their trip's fold, so a fold's weights never see its own trips.
fn training_queries(context: &Context, queries: &[Query]) -> Vec<Query> {
    let long: Vec<usize> = (0..context.dataset.trajectories.len()).filter(|&i| context.dataset.trajectories[i].items.len() >= 3).collect();
    long.par_iter()
        .zip(queries.par_iter())
        .flat_map_iter(|(&index, query)| {
            let items = &context.dataset.trajectories[index].items;
            let mut out = Vec::new();
            for from in 0..items.len() {
                for to in from + 3..=items.len() {
                    if to - from < items.len() {
                        out.push(context.query(index, &items[from..to], query.fold));
                    }
                }
            }
            out
        })
        .collect()
}

/// The recommended trip: start, the best `len − 2` candidates, end.
fn recommend(query: &Query, weights: &[f32; FEATURES]) -> Vec<u32> {
    let scores: Vec<f32> = query.features.chunks_exact(FEATURES).map(|f| f.iter().zip(weights).map(|(v, w)| v * w).sum()).collect();
    let middle = travelrec_engine::top_k(&scores, query.trip.len() - 2);
    let mut trip = vec![query.trip[0]];
    trip.extend(middle.iter().map(|&k| query.candidates[k as usize]));
    trip.push(*query.trip.last().expect("three POIs"));
    trip
}

/// F1 of the POIs of a recommended trip against the actual one.
pub fn f1(actual: &[u32], recommended: &[u32]) -> f64 {
    let actual_set: HashSet<u32> = actual.iter().copied().collect();
    let hits = recommended.iter().collect::<HashSet<_>>().into_iter().filter(|p| actual_set.contains(p)).count() as f64;
    if hits == 0.0 {
        return 0.0;
    }
    let (precision, recall) = (hits / recommended.len() as f64, hits / actual.len() as f64);
    2.0 * precision * recall / (precision + recall)
}

/// What the weights are learned on: NDCG of the true middle POIs in the
/// candidates' ranking. It rewards near misses that F1 ignores, so it is a
/// steadier guide on a few hundred trips.
fn mean_ndcg(queries: &[&Query], weights: &[f32; FEATURES]) -> f64 {
    queries
        .iter()
        .map(|q| {
            let scores: Vec<f32> = q.features.chunks_exact(FEATURES).map(|f| f.iter().zip(weights).map(|(v, w)| v * w).sum()).collect();
            let ranked: Vec<u32> = travelrec_engine::top_k(&scores, scores.len()).into_iter().map(|k| q.candidates[k as usize]).collect();
            let middle: HashSet<u32> = q.trip[1..q.trip.len() - 1].iter().copied().collect();
            travelrec_engine::metrics::ndcg(&ranked, &middle, middle.len().max(1) + 2)
        })
        .sum::<f64>()
        / queries.len().max(1) as f64
}

const GRID: [f32; 8] = [0.0, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0];

/// Coordinate ascent on mean F1, popularity's weight fixed at 1 (the scale).
fn learn(queries: &[&Query]) -> [f32; FEATURES] {
    let mut weights = [0.0; FEATURES];
    weights[POPULARITY] = 1.0;
    let mut best = mean_ndcg(queries, &weights);
    for _round in 0..3 {
        let before = best;
        for f in (0..FEATURES).filter(|&f| f != POPULARITY) {
            for value in GRID {
                let mut trial = weights;
                trial[f] = value;
                let score = mean_ndcg(queries, &trial);
                if score > best + 1e-9 {
                    best = score;
                    weights = trial;
                }
            }
        }
        if best <= before {
            break;
        }
    }
    weights
}

pub fn evaluate(dataset: &EvalDataset, _config: &EvalConfig, log: &dyn Fn(&str)) -> Report {
    let started = Instant::now();
    let context = Context::new(dataset);
    let queries = build_queries(&context);
    let extra = training_queries(&context, &queries);
    log(&format!("{} trajectories with at least 3 POIs ({} more stretches for learning)", queries.len(), extra.len()));
    let mut results = Vec::new();
    let mut add = |method: &str, f1s: Vec<f64>, seconds: f64| {
        let (mean, standard_error) = mean_and_standard_error(&f1s);
        log(&format!("  {method:14} F1 {mean:.4} ± {standard_error:.4}"));
        results.push(MethodResult {
            method: method.to_string(),
            metrics: BTreeMap::from([("f1".to_string(), mean), ("f1_standard_error".to_string(), standard_error)]),
            train_seconds: seconds,
            users: f1s.len(),
            note: None,
        });
    };

    // travelrec: weights cross-fitted over folds.
    let per_fold: Vec<[f32; FEATURES]> = (0..FOLDS)
        .into_par_iter()
        .map(|fold| learn(&queries.iter().chain(&extra).filter(|q| q.fold != fold).collect::<Vec<_>>()))
        .collect();
    for (fold, weights) in per_fold.iter().enumerate() {
        let named: Vec<String> = FEATURE_NAMES.iter().zip(weights).filter(|(_, w)| **w != 0.0).map(|(n, w)| format!("{n} {w}")).collect();
        log(&format!("  fold {fold} weights: {}", named.join(", ")));
    }
    let f1s = queries.iter().map(|q| f1(&q.trip, &recommend(q, &per_fold[q.fold]))).collect();
    add("travelrec", f1s, started.elapsed().as_secs_f64());

    // Baselines on the same queries.
    let only = |f: usize| {
        let mut w = [0.0; FEATURES];
        w[f] = 1.0;
        w[POPULARITY] += 1e-3;
        w
    };
    for (name, weights) in [("popularity", only(POPULARITY)), ("markov", only(0)), ("markov-path", only(2))] {
        add(name, queries.iter().map(|q| f1(&q.trip, &recommend(q, &weights))).collect(), 0.0);
    }
    Report {
        dataset: dataset.name.clone(),
        protocol: crate::Protocol::Trajectory,
        users: dataset.data.users.len(),
        items: dataset.data.items.len(),
        interactions: dataset.data.events.len(),
        seeds: Vec::new(),
        results,
        context_gain: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f1_counts_start_and_end_as_in_the_paper() {
        // Actual 1-2-3-4, recommended 1-5-3-4 → 3 of 4 right both ways.
        assert!((f1(&[1, 2, 3, 4], &[1, 5, 3, 4]) - 0.75).abs() < 1e-12);
        assert_eq!(f1(&[1, 2, 3], &[1, 2, 3]), 1.0);
        // Only start and end right on a 3-POI trip.
        assert!((f1(&[1, 2, 3], &[1, 9, 3]) - 2.0 / 3.0).abs() < 1e-12);
    }
}
