//! Partial top-k selection and the catalogue-wide softmax.

use crate::kernels::{exp_nonpositive, maximum, sum_by, summarise_finite};
use multiversion::multiversion;
use std::cmp::Ordering;

/// Scores looked at together: a block is skipped when its best cannot enter the top k.
const BLOCK: usize = 32;

/// Indices of the `k` largest finite scores, best first; ties go to the lower
/// index so results are deterministic. Items whose score is `-inf` (excluded)
/// are never returned.
///
/// A vectorised pass for each block's best score; the k-th best block maximum
/// is a first floor (each of those k blocks holds a score that high). The
/// blocks above it are then read best block first, and once twice `k` scores
/// are kept the floor rises to the k-th best of them, so reading stops at the
/// first block whose best is below it. Top scores that sit together (the
/// attractions near the traveller, neighbours in the catalogue's order) are
/// then read from a few blocks, not from every block that holds one good
/// score. The best `k` kept are selected in linear time (a heap of k pays a
/// logarithm per push and pop).
#[multiversion(targets("x86_64+avx2"))]
pub fn top_k(scores: &[f32], k: usize) -> Vec<u32> {
    if k == 0 {
        return Vec::new();
    }
    let maxima: Vec<f32> = scores.chunks(BLOCK).map(maximum).collect();
    let mut floor = if maxima.len() > k {
        let mut ordered = maxima.clone();
        *ordered.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a)).1
    } else {
        f32::NEG_INFINITY
    };
    // Best block first (a plain integer sort): the block's best in descending
    // total order, then its number.
    let mut blocks: Vec<u64> = maxima
        .iter()
        .enumerate()
        .filter(|&(_, &best)| best >= floor && best > f32::NEG_INFINITY)
        .map(|(block, &best)| (u64::from(!ascending_bits(best)) << 32) | block as u64)
        .collect();
    blocks.sort_unstable();
    let mut kept: Vec<Kept> = Vec::with_capacity(2 * k + BLOCK);
    for key in blocks {
        let block = (key & u64::from(u32::MAX)) as usize;
        // A block whose best equals the floor may still hold a tie at a lower index.
        if maxima[block] < floor {
            break;
        }
        let start = block * BLOCK;
        for (offset, &score) in scores[start..(start + BLOCK).min(scores.len())].iter().enumerate() {
            // NaN fails both tests and is never kept.
            if score >= floor && score > f32::NEG_INFINITY {
                kept.push(Kept { score, index: (start + offset) as u32 });
            }
        }
        if kept.len() >= 2 * k {
            kept.select_nth_unstable(k - 1);
            kept.truncate(k);
            floor = kept[k - 1].score;
        }
    }
    // Best first: a higher score, or the same score at a lower index.
    if kept.len() > k {
        kept.select_nth_unstable(k - 1);
        kept.truncate(k);
    }
    kept.sort_unstable();
    kept.into_iter().map(|k| k.index).collect()
}

/// The bits of `value` as an integer that orders as `f32::total_cmp` does.
fn ascending_bits(value: f32) -> u32 {
    let bits = value.to_bits();
    if bits >> 31 == 1 { !bits } else { bits | 1 << 31 }
}

/// A kept candidate, ordered best first: a higher score, or the same score
/// at a lower index.
#[derive(Debug, Clone, Copy)]
struct Kept {
    score: f32,
    index: u32,
}

impl Ord for Kept {
    fn cmp(&self, other: &Self) -> Ordering {
        other.score.total_cmp(&self.score).then(self.index.cmp(&other.index))
    }
}

impl PartialOrd for Kept {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Kept {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Kept {}

/// The catalogue-wide softmax of raw scores: scores are standardised (so the
/// model's scale does not matter), divided by `temperature` and passed
/// through a numerically stable softmax. Entries that are `-inf` (excluded
/// items) get probability 0. Computing it is one pass over the scores; the
/// probability of any one score is then O(1).
#[derive(Debug, Clone, Copy)]
pub struct Softmax {
    max: f32,
    /// 1 / (standard deviation × temperature).
    scale: f32,
    inverse_total: f32,
}

impl Softmax {
    /// `None` when no score is finite.
    pub fn over(scores: &[f32], temperature: f32) -> Option<Softmax> {
        let summary = summarise_finite(scores)?;
        let scale = 1.0 / (summary.std.max(1e-12) * temperature.max(1e-6));
        let max = summary.max;
        // Every argument is ≤ 0, so nothing overflows; -inf gives 0.
        let total = sum_by(scores, |s| exp_nonpositive((s - max) * scale));
        Some(Softmax { max, scale, inverse_total: (1.0 / total) as f32 })
    }

    pub fn probability(&self, score: f32) -> f32 {
        if score.is_finite() { exp_nonpositive((score - self.max) * self.scale) * self.inverse_total } else { 0.0 }
    }
}

/// [`Softmax`] applied to every score in place.
pub fn softmax_in_place(scores: &mut [f32], temperature: f32) {
    if let Some(softmax) = Softmax::over(scores, temperature) {
        scores.iter_mut().for_each(|s| *s = softmax.probability(*s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn picks_the_largest_in_order() {
        assert_eq!(top_k(&[0.1, 0.9, 0.5, 0.7], 2), vec![1, 3]);
        assert_eq!(top_k(&[0.1, 0.9], 5), vec![1, 0]);
        assert_eq!(top_k(&[0.1, f32::NEG_INFINITY, 0.3], 3), vec![2, 0]);
        assert!(top_k(&[0.1, 0.2], 0).is_empty());
    }

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let mut s = vec![1.0, 3.0, 2.0, f32::NEG_INFINITY];
        softmax_in_place(&mut s, 1.0);
        assert!((s.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert!(s[1] > s[2] && s[2] > s[0]);
        assert_eq!(s[3], 0.0);
        let mut none = vec![f32::NEG_INFINITY; 3];
        softmax_in_place(&mut none, 1.0);
        assert!(none.iter().all(|s| *s == f32::NEG_INFINITY), "nothing to normalise is left alone");
    }

    #[test]
    fn softmax_matches_a_plain_f64_computation() {
        let scores: Vec<f32> = (0..5000).map(|i| ((i * 7919) % 1000) as f32 / 97.0 - 3.0).collect();
        let n = scores.len() as f64;
        let mean = scores.iter().map(|&v| v as f64).sum::<f64>() / n;
        let std = (scores.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
        let max = scores.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
        let exps: Vec<f64> = scores.iter().map(|&v| ((v as f64 - max) / (std * 2.0)).exp()).collect();
        let total: f64 = exps.iter().sum();
        let mut got = scores.clone();
        softmax_in_place(&mut got, 2.0);
        for (g, e) in got.iter().zip(&exps) {
            assert!((*g as f64 - e / total).abs() <= 1e-5 * e / total, "{g} vs {}", e / total);
        }
    }

    proptest! {
        #[test]
        fn top_k_matches_a_full_sort(scores in proptest::collection::vec(-1000.0f32..1000.0, 0..300), k in 0usize..50) {
            let mut all: Vec<u32> = (0..scores.len() as u32).collect();
            all.sort_by(|a, b| scores[*b as usize].total_cmp(&scores[*a as usize]).then(a.cmp(b)));
            all.truncate(k);
            prop_assert_eq!(top_k(&scores, k), all);
        }

        #[test]
        fn top_k_matches_a_full_sort_when_the_best_sit_together(
            base in proptest::collection::vec(prop_oneof![Just(f32::NEG_INFINITY), (0u8..4).prop_map(f32::from)], 100..1500),
            start in 0usize..1500,
            width in 1usize..200,
            k in 1usize..60,
        ) {
            // A run of high, often tied scores: the attractions near a traveller.
            let mut scores = base;
            let start = start.min(scores.len() - 1);
            let end = (start + width).min(scores.len());
            scores[start..end].iter_mut().enumerate().for_each(|(i, s)| *s = 10.0 + (i % 7) as f32);
            let mut all: Vec<u32> = (0..scores.len() as u32).filter(|&i| scores[i as usize] > f32::NEG_INFINITY).collect();
            all.sort_by(|a, b| scores[*b as usize].total_cmp(&scores[*a as usize]).then(a.cmp(b)));
            all.truncate(k);
            prop_assert_eq!(top_k(&scores, k), all);
        }

        #[test]
        fn top_k_keeps_ties_and_exclusions_deterministic(scores in proptest::collection::vec(prop_oneof![Just(f32::NEG_INFINITY), (0u8..5).prop_map(f32::from)], 0..200), k in 0usize..30) {
            let mut all: Vec<u32> = (0..scores.len() as u32).filter(|&i| scores[i as usize] > f32::NEG_INFINITY).collect();
            all.sort_by(|a, b| scores[*b as usize].total_cmp(&scores[*a as usize]).then(a.cmp(b)));
            all.truncate(k);
            prop_assert_eq!(top_k(&scores, k), all);
        }
    }
}
