//! Partial top-k selection and the catalogue-wide softmax.

/// Indices of the `k` largest finite scores, best first; ties go to the lower
/// index so results are deterministic. Items whose score is `-inf` (excluded)
/// are never returned.
pub fn top_k(scores: &[f32], k: usize) -> Vec<u32> {
    let mut candidates: Vec<u32> = (0..scores.len() as u32).filter(|&i| scores[i as usize] > f32::NEG_INFINITY).collect();
    let better = |a: &u32, b: &u32| scores[*b as usize].total_cmp(&scores[*a as usize]).then(a.cmp(b));
    if candidates.len() > k && k > 0 {
        candidates.select_nth_unstable_by(k - 1, better);
        candidates.truncate(k);
    }
    candidates.truncate(k);
    candidates.sort_unstable_by(better);
    candidates
}

/// Turns raw scores into probabilities over the whole catalogue: scores are
/// standardised (so the model's scale does not matter), divided by
/// `temperature` and passed through a numerically stable softmax. Entries that
/// are `-inf` (excluded items) get probability 0.
pub fn softmax_in_place(scores: &mut [f32], temperature: f32) {
    let finite = scores.iter().filter(|s| s.is_finite());
    let (count, sum) = finite.fold((0usize, 0f64), |(n, s), &x| (n + 1, s + x as f64));
    if count == 0 {
        return;
    }
    let mean = sum / count as f64;
    let variance = scores.iter().filter(|s| s.is_finite()).map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / count as f64;
    let scale = 1.0 / (variance.sqrt().max(1e-12) * temperature.max(1e-6) as f64);
    let max = scores.iter().filter(|s| s.is_finite()).fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    // Exponentials in f32 (every argument is ≤ 0, so nothing overflows), summed in f64.
    let scale = scale as f32;
    let mut total = 0f64;
    for s in scores.iter_mut() {
        let e = if s.is_finite() { ((*s - max) * scale).exp() } else { 0.0 };
        *s = e;
        total += e as f64;
    }
    let inverse = (1.0 / total) as f32;
    scores.iter_mut().for_each(|s| *s *= inverse);
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
    }

    proptest! {
        #[test]
        fn top_k_matches_a_full_sort(scores in proptest::collection::vec(-1000.0f32..1000.0, 0..300), k in 0usize..50) {
            let mut all: Vec<u32> = (0..scores.len() as u32).collect();
            all.sort_by(|a, b| scores[*b as usize].total_cmp(&scores[*a as usize]).then(a.cmp(b)));
            all.truncate(k);
            prop_assert_eq!(top_k(&scores, k), all);
        }
    }
}
