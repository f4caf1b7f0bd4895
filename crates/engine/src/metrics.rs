//! Offline ranking metrics, as the managed service reports them:
//! `coverage`, `mean_reciprocal_rank_at_25`, and NDCG, precision and recall
//! at 5, 10 and 25, with binary relevance (every held-out item is relevant).

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// The cut-offs reported.
pub const CUTOFFS: [usize; 3] = [5, 10, 25];

/// Metrics averaged over evaluated users, keyed as the managed service names them
/// (`normalized_discounted_cumulative_gain_at_10`, ...), plus `hit_rate_at_k`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricSet {
    pub users: usize,
    pub values: BTreeMap<String, f64>,
}

impl MetricSet {
    pub fn get(&self, name: &str) -> f64 {
        self.values.get(name).copied().unwrap_or(0.0)
    }

    pub fn ndcg(&self, k: usize) -> f64 {
        self.get(&format!("normalized_discounted_cumulative_gain_at_{k}"))
    }

    pub fn precision(&self, k: usize) -> f64 {
        self.get(&format!("precision_at_{k}"))
    }
}

/// Accumulates per-user results; [`MetricAccumulator::finish`] averages them.
#[derive(Debug, Clone)]
pub struct MetricAccumulator {
    catalogue: usize,
    users: usize,
    sums: BTreeMap<String, f64>,
    recommended: HashSet<u32>,
}

/// The log2 discount of a hit at `rank` (0 is the top).
pub(crate) fn discount(rank: usize) -> f64 {
    1.0 / ((rank + 2) as f64).log2()
}

/// `DCG@k` of a perfect list of `min(k, relevant)` hits.
pub(crate) fn ideal_dcg(relevant: usize, k: usize) -> f64 {
    (0..k.min(relevant)).map(discount).sum()
}

/// `DCG@k` of a ranked list against a relevant set, log2 discount.
pub fn dcg(ranked: &[u32], relevant: &HashSet<u32>, k: usize) -> f64 {
    ranked.iter().take(k).enumerate().filter(|(_, item)| relevant.contains(item)).map(|(rank, _)| discount(rank)).sum()
}

/// `NDCG@k`: DCG over the DCG of a perfect list of `min(k, |relevant|)` hits.
pub fn ndcg(ranked: &[u32], relevant: &HashSet<u32>, k: usize) -> f64 {
    let ideal = ideal_dcg(relevant.len(), k);
    if ideal == 0.0 { 0.0 } else { dcg(ranked, relevant, k) / ideal }
}

pub fn hits(ranked: &[u32], relevant: &HashSet<u32>, k: usize) -> usize {
    ranked.iter().take(k).filter(|item| relevant.contains(item)).count()
}

/// Reciprocal rank of the first relevant item within the top `k` (0 if none).
pub fn reciprocal_rank(ranked: &[u32], relevant: &HashSet<u32>, k: usize) -> f64 {
    ranked.iter().take(k).position(|item| relevant.contains(item)).map_or(0.0, |rank| 1.0 / (rank + 1) as f64)
}

impl MetricAccumulator {
    pub fn new(catalogue: usize) -> Self {
        Self { catalogue, users: 0, sums: BTreeMap::new(), recommended: HashSet::new() }
    }

    /// Adds one user's ranked recommendations (at least 25 long when the
    /// catalogue allows) against their held-out items.
    pub fn add(&mut self, ranked: &[u32], relevant: &HashSet<u32>) {
        if relevant.is_empty() {
            return;
        }
        self.users += 1;
        self.recommended.extend(ranked.iter().take(25));
        let mut add = |name: String, value: f64| *self.sums.entry(name).or_default() += value;
        for k in CUTOFFS {
            let h = hits(ranked, relevant, k) as f64;
            add(format!("normalized_discounted_cumulative_gain_at_{k}"), ndcg(ranked, relevant, k));
            add(format!("precision_at_{k}"), h / k as f64);
            add(format!("recall_at_{k}"), h / relevant.len() as f64);
            add(format!("hit_rate_at_{k}"), if h > 0.0 { 1.0 } else { 0.0 });
        }
        add("mean_reciprocal_rank_at_25".into(), reciprocal_rank(ranked, relevant, 25));
    }

    pub fn finish(self) -> MetricSet {
        let users = self.users.max(1) as f64;
        let mut values: BTreeMap<String, f64> = self.sums.into_iter().map(|(k, v)| (k, v / users)).collect();
        values.insert("coverage".into(), self.recommended.len() as f64 / self.catalogue.max(1) as f64);
        MetricSet { users: self.users, values }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[u32]) -> HashSet<u32> {
        items.iter().copied().collect()
    }

    #[test]
    fn ndcg_matches_hand_computed_cases() {
        // Relevant {1, 2}; ranked [1, 9, 2]: DCG@3 = 1/log2(2) + 1/log2(4) = 1.5;
        // ideal = 1 + 1/log2(3) = 1.6309; NDCG = 0.91972.
        let relevant = set(&[1, 2]);
        assert!((ndcg(&[1, 9, 2], &relevant, 3) - 1.5 / (1.0 + 1.0 / 3f64.log2())).abs() < 1e-12);
        assert!((ndcg(&[1, 9, 2], &relevant, 3) - 0.919_720).abs() < 1e-5);
        // A perfect list scores 1; no hit scores 0.
        assert_eq!(ndcg(&[2, 1, 7], &relevant, 3), 1.0);
        assert_eq!(ndcg(&[7, 8], &relevant, 2), 0.0);
        // One relevant item at rank 2: 1/log2(3).
        assert!((ndcg(&[5, 1], &set(&[1]), 10) - 1.0 / 3f64.log2()).abs() < 1e-12);
    }

    #[test]
    fn precision_recall_mrr_and_coverage() {
        let mut acc = MetricAccumulator::new(100);
        acc.add(&[1, 2, 3, 4, 5], &set(&[2, 5, 50]));
        acc.add(&[9, 8, 7, 6, 1], &set(&[1]));
        acc.add(&[1], &set(&[]));
        let m = acc.finish();
        assert_eq!(m.users, 2);
        // precision@5: (2/5 + 1/5) / 2 = 0.3; recall@5: (2/3 + 1) / 2.
        assert!((m.precision(5) - 0.3).abs() < 1e-12);
        assert!((m.get("recall_at_5") - (2.0 / 3.0 + 1.0) / 2.0).abs() < 1e-12);
        // MRR: (1/2 + 1/5) / 2.
        assert!((m.get("mean_reciprocal_rank_at_25") - 0.35).abs() < 1e-12);
        // 9 distinct items recommended out of 100.
        assert!((m.get("coverage") - 0.09).abs() < 1e-12);
        assert_eq!(m.get("hit_rate_at_5"), 1.0);
    }
}
