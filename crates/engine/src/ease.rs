//! EASE (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019):
//! a closed-form item-to-item model `B = I - P·diag(1/diag(P))` with
//! `P = (XᵀX + λI)⁻¹` and a zero diagonal. A user's scores are `x·B`, so new
//! events change the scores as soon as they change `x` — no retraining.

use crate::Progress;
use faer::linalg::solvers::DenseSolveCore;
use faer::{MatRef, Side};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// The learned item-to-item weights, row-major: row `i` says how much an
/// interaction with item `i` raises every other item.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EaseModel {
    items: usize,
    weights: Vec<f32>,
    /// Per item `count^-damping`: inputs are scaled by it, so that very
    /// popular items do not dominate the co-occurrences.
    column_scale: Vec<f32>,
}

impl EaseModel {
    /// `out = Σ x_i · B[i, :]` over the profile's `(item, x_i)` pairs.
    pub fn score(&self, profile: &[(u32, f32)], out: &mut [f32]) {
        out.fill(0.0);
        for &(item, x) in profile {
            let x = x * self.column_scale[item as usize];
            let row = &self.weights[item as usize * self.items..(item as usize + 1) * self.items];
            for (o, w) in out.iter_mut().zip(row) {
                *o += x * w;
            }
        }
    }

    pub fn weight(&self, from: u32, to: u32) -> f32 {
        self.weights[from as usize * self.items + to as usize]
    }
}

/// Trains on per-user `(item, weight)` rows over `n` items. `lambda` is in
/// the units of binary data (it is scaled by the mean diagonal of the Gram
/// matrix over the mean item count, so weighting the inputs does not change
/// how strong it is); `damping` scales each item's column by `count^-damping`.
pub fn train(rows: &[Vec<(u32, f32)>], n: usize, lambda: f32, damping: f32, progress: Progress) -> EaseModel {
    let mut counts = vec![0f32; n];
    rows.iter().flatten().for_each(|&(i, _)| counts[i as usize] += 1.0);
    let column_scale: Vec<f32> = counts.iter().map(|&c| c.max(1.0).powf(-damping)).collect();
    let scaled: Vec<Vec<(u32, f32)>> =
        rows.iter().map(|row| row.iter().map(|&(i, x)| (i, x * column_scale[i as usize])).collect()).collect();
    let profiles = &scaled;
    // Gram matrix G = XᵀX + λI, column-major; each task owns a block of
    // columns (G is symmetric, so column j is row j) and scans every profile.
    progress(0.15, "computing item co-occurrence");
    let mut gram = vec![0f64; n * n];
    let block = n.div_ceil(rayon::current_num_threads() * 4).max(1);
    gram.par_chunks_mut(n * block).enumerate().for_each(|(b, columns)| {
        let (first, last) = (b * block, ((b + 1) * block).min(n));
        for profile in profiles {
            for &(j, xj) in profile.iter().filter(|(j, _)| (first..last).contains(&(*j as usize))) {
                let column = &mut columns[(j as usize - first) * n..(j as usize - first + 1) * n];
                for &(i, xi) in profile {
                    column[i as usize] += (xi * xj) as f64;
                }
            }
        }
    });
    let mean_diagonal = (0..n).map(|i| gram[i * n + i]).sum::<f64>() / n.max(1) as f64;
    let mean_count = counts.iter().map(|&c| c as f64).sum::<f64>() / n.max(1) as f64;
    let lambda = lambda as f64 * if mean_count > 0.0 { mean_diagonal / mean_count } else { 1.0 };
    for i in 0..n {
        gram[i * n + i] += lambda.max(1e-6);
    }

    progress(0.4, "inverting the regularised Gram matrix");
    let inverse = MatRef::from_column_major_slice(&gram, n, n)
        .llt(Side::Lower)
        .expect("XᵀX + λI with λ > 0 is symmetric positive definite")
        .inverse();
    drop(gram);

    progress(0.9, "deriving item-to-item weights");
    let diagonal: Vec<f64> = (0..n).map(|i| inverse[(i, i)]).collect();
    let mut weights = vec![0f32; n * n];
    weights.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
        // P is symmetric: row i of P is its column i, contiguous in memory.
        let p = inverse.col_as_slice(i);
        for (j, w) in row.iter_mut().enumerate() {
            *w = if i == j { 0.0 } else { (-p[j] / diagonal[j]) as f32 };
        }
    });
    EaseModel { items: n, weights, column_scale }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TrainingData, TrainingDataBuilder};

    fn fit(data: &TrainingData, weight: f32, lambda: f32) -> EaseModel {
        let (order, offsets) = data.by_user();
        let hp = crate::Hyperparameters { default_event_weight: weight, event_weights: Default::default(), ..Default::default() };
        let rows = crate::recipe::user_rows(data, &order, &offsets, &hp);
        train(&rows, data.items.len(), lambda, 0.0, &crate::no_progress)
    }

    /// Two clusters of items: {a, b, c} and {x, y, z}; users stay in one.
    fn clustered() -> TrainingData {
        let mut builder = TrainingDataBuilder::new();
        for u in 0..40 {
            let items = if u % 2 == 0 { ["a", "b", "c"] } else { ["x", "y", "z"] };
            for (k, item) in items.iter().enumerate() {
                if (u + k) % 5 != 0 {
                    builder.add_interaction(&format!("u{u}"), item, k as i64, "click", None);
                }
            }
        }
        builder.build()
    }

    #[test]
    fn learns_that_items_of_one_cluster_go_together() {
        let data = clustered();
        let model = fit(&data, 1.0, 1.0);
        let id = |s: &str| data.items.get(s).unwrap();
        assert_eq!(model.weight(id("a"), id("a")), 0.0);
        assert!(model.weight(id("a"), id("b")) > 0.1);
        assert!(model.weight(id("a"), id("b")) > model.weight(id("a"), id("y")) + 0.1);
        let mut out = vec![0.0; data.items.len()];
        model.score(&[(id("x"), 1.0)], &mut out);
        let best = crate::top_k(&out, 2);
        let mut best: Vec<&str> = best.iter().map(|&i| data.items.id(i)).collect();
        best.sort();
        assert_eq!(best, vec!["y", "z"]);
    }

    #[test]
    fn matches_a_direct_solution_on_a_tiny_case() {
        // X = [[1,1],[1,0]] → G = [[2,1],[1,1]] + λI with λ = 1 → [[3,1],[1,2]];
        // P = 1/5 [[2,-1],[-1,3]]; B[0][1] = -P[0][1]/P[1][1] = 1/3; B[1][0] = -P[1][0]/P[0][0] = 1/2.
        let mut builder = TrainingDataBuilder::new();
        builder.add_interaction("u1", "i0", 0, "t", None);
        builder.add_interaction("u1", "i1", 0, "t", None);
        builder.add_interaction("u2", "i0", 0, "t", None);
        let data = builder.build();
        // Event weight e - 1 makes ln(1 + w) = 1, so X is binary.
        let model = fit(&data, std::f32::consts::E - 1.0, 1.0);
        assert!((model.weight(0, 1) - 1.0 / 3.0).abs() < 1e-5, "{}", model.weight(0, 1));
        assert!((model.weight(1, 0) - 0.5).abs() < 1e-5, "{}", model.weight(1, 0));
    }
}
