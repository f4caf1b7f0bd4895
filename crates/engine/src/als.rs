//! Implicit-feedback matrix factorisation by alternating least squares
//! (Hu, Koren, Volinsky 2008), each least-squares solve done with a few
//! conjugate-gradient steps (Takács et al. 2011), as the `implicit` library
//! does. Used for catalogues too large for EASE's items × items matrix.

use crate::kernels::{dot, dot_rows, dot_rows_bf16, to_bf16};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AlsParams {
    pub factors: usize,
    pub iterations: usize,
    pub regularization: f32,
    /// Confidence `c = 1 + alpha · weight`.
    pub alpha: f32,
    pub cg_steps: usize,
    pub seed: u64,
}

impl Default for AlsParams {
    fn default() -> Self {
        Self { factors: 64, iterations: 15, regularization: 0.05, alpha: 2.0, cg_steps: 3, seed: 42 }
    }
}

/// Item factors, row-major `items × factors`, plus what fold-in needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlsModel {
    pub factors: usize,
    pub item_factors: Vec<f32>,
    /// `YᵀY`, `factors × factors`.
    gram: Vec<f32>,
    params: AlsParams,
    /// The item factors as bfloat16, built on first use: what
    /// [`AlsModel::score_half_precision`] reads.
    #[serde(skip)]
    half_precision: std::sync::OnceLock<Vec<u16>>,
}

/// A sparse matrix as rows of `(column, value)`.
pub type SparseRows = Vec<Vec<(u32, f32)>>;

fn gram(factors: &[f32], k: usize) -> Vec<f32> {
    let mut g = vec![0f32; k * k];
    for row in factors.chunks_exact(k) {
        for i in 0..k {
            let ri = row[i];
            for j in 0..k {
                g[i * k + j] += ri * row[j];
            }
        }
    }
    g
}

/// Solves `(YᵀY + λI + Σ (c−1) y yᵀ) x = Σ c y` for one row by conjugate
/// gradient, starting from `x`.
fn solve_row(x: &mut [f32], entries: &[(u32, f32)], other: &[f32], gram: &[f32], params: &AlsParams, scratch: &mut [Vec<f32>; 3]) {
    let k = x.len();
    let [r, p, ap] = scratch;
    let apply = |v: &[f32], out: &mut [f32]| {
        for i in 0..k {
            out[i] = dot(&gram[i * k..(i + 1) * k], v) + params.regularization * v[i];
        }
        for &(col, weight) in entries {
            let y = &other[col as usize * k..(col as usize + 1) * k];
            let c_minus_1 = params.alpha * weight;
            let scale = c_minus_1 * dot(y, v);
            for i in 0..k {
                out[i] += scale * y[i];
            }
        }
    };
    // r = b − A x, with b = Σ c y.
    apply(x, ap);
    r.iter_mut().for_each(|v| *v = 0.0);
    for &(col, weight) in entries {
        let y = &other[col as usize * k..(col as usize + 1) * k];
        let c = 1.0 + params.alpha * weight;
        for i in 0..k {
            r[i] += c * y[i];
        }
    }
    for i in 0..k {
        r[i] -= ap[i];
    }
    p.copy_from_slice(r);
    let mut rs_old = dot(r, r);
    for _ in 0..params.cg_steps {
        if rs_old < 1e-10 {
            break;
        }
        apply(p, ap);
        let alpha = rs_old / dot(p, ap).max(1e-20);
        for i in 0..k {
            x[i] += alpha * p[i];
            r[i] -= alpha * ap[i];
        }
        let rs_new = dot(r, r);
        let beta = rs_new / rs_old;
        for i in 0..k {
            p[i] = r[i] + beta * p[i];
        }
        rs_old = rs_new;
    }
}

fn update(target: &mut [f32], rows: &SparseRows, other: &[f32], k: usize, params: &AlsParams) {
    let gram = gram(other, k);
    target.par_chunks_mut(k).zip(rows.par_iter()).for_each_init(
        || [vec![0f32; k], vec![0f32; k], vec![0f32; k]],
        |scratch, (x, entries)| solve_row(x, entries, other, &gram, params, scratch),
    );
}

/// Trains on `user_rows` (per user, `(item, weight)`), with `items` columns.
pub fn train(user_rows: &SparseRows, items: usize, params: &AlsParams, progress: &(dyn Fn(f32) + Sync)) -> AlsModel {
    let k = params.factors;
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    let scale = 0.1 / (k as f32).sqrt();
    let mut user_factors: Vec<f32> = (0..user_rows.len() * k).map(|_| (rng.random::<f32>() - 0.5) * scale).collect();
    let mut item_factors: Vec<f32> = (0..items * k).map(|_| (rng.random::<f32>() - 0.5) * scale).collect();
    let mut item_rows: SparseRows = vec![Vec::new(); items];
    for (u, row) in user_rows.iter().enumerate() {
        for &(i, w) in row {
            item_rows[i as usize].push((u as u32, w));
        }
    }
    for iteration in 0..params.iterations {
        update(&mut user_factors, user_rows, &item_factors, k, params);
        update(&mut item_factors, &item_rows, &user_factors, k, params);
        progress((iteration + 1) as f32 / params.iterations as f32);
    }
    let gram = gram(&item_factors, k);
    AlsModel { factors: k, item_factors, gram, params: *params, half_precision: Default::default() }
}

impl AlsModel {
    /// The user vector for a profile, solved against the item factors (real-time fold-in).
    pub fn fold_in(&self, profile: &[(u32, f32)]) -> Vec<f32> {
        let k = self.factors;
        let mut x = vec![0f32; k];
        let mut scratch = [vec![0f32; k], vec![0f32; k], vec![0f32; k]];
        // From zero, conjugate gradient needs up to `k` steps to be exact.
        let params = AlsParams { cg_steps: k, ..self.params };
        solve_row(&mut x, profile, &self.item_factors, &self.gram, &params, &mut scratch);
        x
    }

    /// `out[i] = x · y_i` for every item.
    pub fn score(&self, profile: &[(u32, f32)], out: &mut [f32]) {
        dot_rows(&self.fold_in(profile), &self.item_factors, out);
    }

    /// As [`AlsModel::score`], with the item factors in bfloat16: half the
    /// memory read per call (0.68–0.88× the query time at 100,000 × 64
    /// factors in `bench serve`, by machine and run). The bfloat16 copy is made on the first call
    /// and kept beside the f32 factors, which folding in needs (half as much
    /// memory again). Each score is off by at most 2⁻⁹ of `Σ |xᵢ yᵢ|`;
    /// `travelrec bench serve` measures the recall of the exact top 25.
    pub fn score_half_precision(&self, profile: &[(u32, f32)], out: &mut [f32]) {
        let factors = self.half_precision.get_or_init(|| self.item_factors.iter().map(|&v| to_bf16(v)).collect());
        dot_rows_bf16(&self.fold_in(profile), factors, out);
    }

    pub fn item_vector(&self, item: u32) -> &[f32] {
        &self.item_factors[item as usize * self.factors..(item as usize + 1) * self.factors]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_two_clusters_and_folds_in_new_users() {
        // Users 0..50 like items 0..10, users 50..100 like items 10..20.
        let rows: SparseRows = (0..100)
            .map(|u| {
                let base = if u < 50 { 0 } else { 10 };
                (0..10).filter(|i| (u + i) % 3 != 0).map(|i| ((base + i) as u32, 1.0)).collect()
            })
            .collect();
        let model = train(&rows, 20, &AlsParams { factors: 8, iterations: 10, ..AlsParams::default() }, &|_| {});
        let mut scores = vec![0f32; 20];
        model.score(&[(12, 1.0), (15, 1.0)], &mut scores);
        let best = crate::top_k(&scores, 5);
        assert!(best.iter().all(|&i| (10..20).contains(&i)), "{best:?}");
        model.score(&[(3, 1.0)], &mut scores);
        let best = crate::top_k(&scores, 5);
        assert!(best.iter().all(|&i| i < 10), "{best:?}");

        // Half precision: every score within its bound of the exact one.
        let profile = [(3, 1.0), (12, 0.5)];
        let x = model.fold_in(&profile);
        let mut half = vec![0f32; 20];
        model.score(&profile, &mut scores);
        model.score_half_precision(&profile, &mut half);
        for item in 0..20u32 {
            let magnitude: f32 = x.iter().zip(model.item_vector(item)).map(|(a, b)| (a * b).abs()).sum();
            let (h, e) = (half[item as usize], scores[item as usize]);
            assert!((h - e).abs() <= magnitude / 256.0 + 1e-6, "item {item}: {h} vs {e}");
        }
    }
}
