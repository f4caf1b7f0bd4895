//! EASE (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019):
//! a closed-form item-to-item model `B = I - P·diag(1/diag(P))` with
//! `P = (XᵀX + λI)⁻¹` and a zero diagonal. A user's scores are `x·B`, so new
//! events change the scores as soon as they change `x` — no retraining.
//!
//! `B` is dense, but most of its weights are near zero. For large catalogues
//! each row keeps only its strongest weights (by magnitude), which makes
//! scoring a user O(history × kept) instead of O(history × items), and the
//! model's memory O(items × kept) instead of O(items²).

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
    /// Weights kept per row: `items` when dense, fewer when pruned.
    row_len: usize,
    /// `items × row_len` weights, row-major.
    weights: Vec<f32>,
    /// When pruned, the item each weight points to (same layout as
    /// `weights`, ascending within a row); stored as a `u32` list, empty
    /// when dense.
    #[serde(with = "columns_as_u32")]
    columns: Columns,
    /// Per item `count^-damping`: inputs are scaled by it, so that very
    /// popular items do not dominate the co-occurrences.
    column_scale: Vec<f32>,
}

impl EaseModel {
    /// `out = Σ x_i · B[i, :]` over the profile's `(item, x_i)` pairs.
    pub fn score(&self, profile: &[(u32, f32)], out: &mut [f32]) {
        out.fill(0.0);
        for (at, &(item, x)) in profile.iter().enumerate() {
            if let Some(&(next, _)) = profile.get(at + 1) {
                self.prefetch_row(next);
            }
            let x = x * self.column_scale[item as usize];
            let row = self.row_range(item);
            let weights = &self.weights[row.clone()];
            match &self.columns {
                Columns::Dense => out.iter_mut().zip(weights).for_each(|(o, w)| *o += x * w),
                Columns::Narrow(columns) => scatter(columns[row].iter().map(|&c| c as usize), weights, x, out),
                Columns::Wide(columns) => scatter(columns[row].iter().map(|&c| c as usize), weights, x, out),
            }
        }
    }

    /// Asks the CPU to start loading `item`'s row while the current one is
    /// added: rows are spread over a model larger than the last-level cache.
    fn prefetch_row(&self, item: u32) {
        let row = self.row_range(item);
        // A dense row is read in order, which the CPU's own prefetcher
        // follows; prefetching all of it would push the scores out of L1.
        match &self.columns {
            Columns::Dense => return,
            Columns::Narrow(columns) => prefetch(&columns[row.clone()]),
            Columns::Wide(columns) => prefetch(&columns[row.clone()]),
        }
        prefetch(&self.weights[row]);
    }

    fn row_range(&self, item: u32) -> std::ops::Range<usize> {
        item as usize * self.row_len..(item as usize + 1) * self.row_len
    }

    /// The weight from `from` to `to` (0 where pruned away).
    pub fn weight(&self, from: u32, to: u32) -> f32 {
        let row = self.row_range(from);
        let found = match &self.columns {
            Columns::Dense => return self.weights[row.start + to as usize],
            Columns::Narrow(columns) => u16::try_from(to).map_or(Err(0), |to| columns[row.clone()].binary_search(&to)),
            Columns::Wide(columns) => columns[row.clone()].binary_search(&to),
        };
        found.map_or(0.0, |k| self.weights[row.start + k])
    }

    /// Weights kept per item (the catalogue size when not pruned).
    pub fn row_len(&self) -> usize {
        self.row_len
    }

    /// The same model with each row cut to its `keep` strongest weights (the
    /// model itself when it already keeps that few): what training with
    /// `neighbours = keep` gives, derived from a trained model — e.g. to
    /// measure how much of the exact top-k the pruned model keeps.
    pub fn pruned(&self, keep: usize) -> EaseModel {
        if keep == 0 || keep >= self.row_len {
            return self.clone();
        }
        let (weights, columns) = prune_rows(self.items, keep, |i, row| {
            for j in self.row_range(i as u32) {
                let column = self.columns.get(j).unwrap_or(j - i * self.row_len);
                row[column] = self.weights[j];
            }
        });
        EaseModel {
            items: self.items,
            row_len: keep,
            weights,
            columns: Columns::from_wide(columns),
            column_scale: self.column_scale.clone(),
        }
    }
}

/// Trains on per-user `(item, weight)` rows over `n` items. `lambda` is in
/// the units of binary data (it is scaled by the mean diagonal of the Gram
/// matrix over the mean item count, so weighting the inputs does not change
/// how strong it is); `damping` scales each item's column by `count^-damping`.
/// With `neighbours > 0`, each row keeps only its `neighbours` strongest
/// weights when the catalogue has more items than that.
pub fn train(rows: &[Vec<(u32, f32)>], n: usize, lambda: f32, damping: f32, neighbours: usize, progress: Progress) -> EaseModel {
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
    // P is symmetric: row i of P is its column i, contiguous in memory.
    let dense_row = |i: usize, row: &mut [f32]| {
        let p = inverse.col_as_slice(i);
        for (j, w) in row.iter_mut().enumerate() {
            *w = if i == j { 0.0 } else { (-p[j] / diagonal[j]) as f32 };
        }
    };
    if neighbours == 0 || neighbours >= n {
        let mut weights = vec![0f32; n * n];
        weights.par_chunks_mut(n.max(1)).enumerate().for_each(|(i, row)| dense_row(i, row));
        return EaseModel { items: n, row_len: n, weights, columns: Columns::Dense, column_scale };
    }
    let (weights, columns) = prune_rows(n, neighbours, |i, row| dense_row(i, row));
    EaseModel { items: n, row_len: neighbours, weights, columns: Columns::from_wide(columns), column_scale }
}

/// Asks the CPU to bring the 64-byte lines of `values` into the cache (one
/// hint per 64 bytes from its start, and one for its last value: the slice
/// need not start on a line).
#[inline(always)]
fn prefetch<T>(values: &[T]) {
    #[cfg(not(target_arch = "x86_64"))]
    let _ = values;
    #[cfg(target_arch = "x86_64")]
    for value in values.iter().step_by((64 / std::mem::size_of::<T>()).max(1)).chain(values.last()) {
        // SAFETY: a prefetch is a hint: it reads nothing the program sees
        // and cannot fault; SSE is part of every x86-64 CPU.
        unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>((value as *const T).cast()) };
    }
}

/// `out[c] += x · w` over the `(c, w)` pairs of one pruned row.
#[inline(always)]
fn scatter(columns: impl Iterator<Item = usize>, weights: &[f32], x: f32, out: &mut [f32]) {
    for (c, w) in columns.zip(weights) {
        out[c] += x * w;
    }
}

/// Where a pruned model's weights point. Scoring reads one row per history
/// item from a model of `items × kept` weights (41 MB at 10,000 items and
/// 512 weights, more than a 32 MB last-level cache), so columns take two
/// bytes where the catalogue allows: a quarter fewer bytes per row.
#[derive(Debug, Clone, PartialEq)]
enum Columns {
    /// Every row holds every item, in order.
    Dense,
    /// Every column below 65,536 (so every catalogue up to that size).
    Narrow(Vec<u16>),
    Wide(Vec<u32>),
}

impl Columns {
    /// From the `u32` list: two bytes each when every column fits (empty: dense).
    fn from_wide(wide: Vec<u32>) -> Columns {
        match wide.iter().max() {
            None => Columns::Dense,
            Some(&largest) if largest <= u16::MAX as u32 => Columns::Narrow(wide.into_iter().map(|c| c as u16).collect()),
            Some(_) => Columns::Wide(wide),
        }
    }

    /// The item weight `j` points to (`None` when dense: its position in the row).
    fn get(&self, j: usize) -> Option<usize> {
        match self {
            Columns::Dense => None,
            Columns::Narrow(columns) => Some(columns[j] as usize),
            Columns::Wide(columns) => Some(columns[j] as usize),
        }
    }
}

/// Stored as the `u32` sequence it always was (empty when dense), so models
/// saved before columns narrowed still load.
mod columns_as_u32 {
    use super::Columns;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(columns: &Columns, serializer: S) -> Result<S::Ok, S::Error> {
        match columns {
            Columns::Dense => serializer.collect_seq(std::iter::empty::<u32>()),
            Columns::Narrow(narrow) => serializer.collect_seq(narrow.iter().map(|&c| c as u32)),
            Columns::Wide(wide) => serializer.collect_seq(wide),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Columns, D::Error> {
        Vec::<u32>::deserialize(deserializer).map(Columns::from_wide)
    }
}

/// Each of `n` rows (written by `fill_row` into a dense scratch row) reduced
/// to its `keep` strongest weights by magnitude, ascending by column.
fn prune_rows(n: usize, keep: usize, fill_row: impl Fn(usize, &mut [f32]) + Sync) -> (Vec<f32>, Vec<u32>) {
    let mut weights = vec![0f32; n * keep];
    let mut columns = vec![0u32; n * keep];
    weights.par_chunks_mut(keep).zip(columns.par_chunks_mut(keep)).enumerate().for_each_init(
        || (vec![0f32; n], vec![0u32; n]),
        |(row, order), (i, (kept_weights, kept_columns))| {
            row.fill(0.0);
            fill_row(i, row);
            order.iter_mut().enumerate().for_each(|(j, o)| *o = j as u32);
            let by_strength = |a: &u32, b: &u32| row[*b as usize].abs().total_cmp(&row[*a as usize].abs()).then(a.cmp(b));
            order.select_nth_unstable_by(keep - 1, by_strength);
            let strongest = &mut order[..keep];
            strongest.sort_unstable();
            for ((w, c), &j) in kept_weights.iter_mut().zip(kept_columns.iter_mut()).zip(strongest.iter()) {
                (*w, *c) = (row[j as usize], j);
            }
        },
    );
    (weights, columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TrainingData, TrainingDataBuilder};

    #[test]
    fn narrow_columns_are_stored_as_the_wide_ones_were() {
        let model = |columns: Columns| EaseModel {
            items: 4,
            row_len: 2,
            weights: vec![0.5, -0.25, 1.0, 2.0, 0.125, 0.75, -1.0, 3.0],
            columns,
            column_scale: vec![1.0, 0.5, 2.0, 1.0],
        };
        let wide = vec![1u32, 3, 0, 2, 1, 3, 0, 2];
        let narrow = model(Columns::from_wide(wide.clone()));
        assert_eq!(narrow.columns, Columns::Narrow(vec![1, 3, 0, 2, 1, 3, 0, 2]));
        let bytes = postcard::to_allocvec(&narrow).unwrap();
        assert_eq!(bytes, postcard::to_allocvec(&model(Columns::Wide(wide))).unwrap(), "the bytes of a u32 column list");
        let loaded: EaseModel = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(loaded.columns, narrow.columns);
        // Both score alike, and read the same weights.
        let (mut a, mut b) = (vec![0f32; 4], vec![0f32; 4]);
        narrow.score(&[(1, 1.0), (2, 0.5)], &mut a);
        model(Columns::Wide(vec![1, 3, 0, 2, 1, 3, 0, 2])).score(&[(1, 1.0), (2, 0.5)], &mut b);
        assert_eq!(a, b);
        // Item 1 (x 1 × scale 0.5) reaches items 0 and 2; item 2 (x 0.5 × scale 2) items 1 and 3.
        assert_eq!(a, vec![0.5 * 1.0, 0.125, 0.5 * 2.0, 0.75]);
        assert_eq!((narrow.weight(0, 3), narrow.weight(0, 2), narrow.weight(3, 70_000)), (-0.25, 0.0, 0.0));
        let dense = model(Columns::Dense);
        let loaded: EaseModel = postcard::from_bytes(&postcard::to_allocvec(&dense).unwrap()).unwrap();
        assert_eq!(loaded.columns, Columns::Dense);
    }

    fn fit(data: &TrainingData, weight: f32, lambda: f32) -> EaseModel {
        let (order, offsets) = data.by_user();
        let hp = crate::Hyperparameters { default_event_weight: weight, event_weights: Default::default(), ..Default::default() };
        let rows = crate::recipe::user_rows(data, &order, &offsets, &hp);
        train(&rows, data.items.len(), lambda, 0.0, 0, &crate::no_progress)
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

    #[test]
    fn pruned_rows_keep_exactly_the_strongest_weights_and_score_with_them() {
        // 30 items, users spread over overlapping windows of items.
        let rows: Vec<Vec<(u32, f32)>> =
            (0..200u32).map(|u| (0..6).map(|k| (((u * 7 + k * k * 3) % 30), 1.0 + (u % 3) as f32)).collect()).collect();
        let rows: Vec<Vec<(u32, f32)>> = rows
            .into_iter()
            .map(|mut r| {
                r.sort_by_key(|e| e.0);
                r.dedup_by_key(|e| e.0);
                r
            })
            .collect();
        let dense = train(&rows, 30, 1.0, 0.15, 0, &crate::no_progress);
        let pruned = train(&rows, 30, 1.0, 0.15, 5, &crate::no_progress);
        assert_eq!((dense.row_len(), pruned.row_len()), (30, 5));
        for i in 0..30u32 {
            let mut strengths: Vec<f32> = (0..30).map(|j| dense.weight(i, j).abs()).collect();
            strengths.sort_by(|a, b| b.total_cmp(a));
            let kept: Vec<u32> = (0..30).filter(|&j| pruned.weight(i, j) != 0.0).collect();
            assert_eq!(kept.len(), 5, "row {i}");
            for &j in &kept {
                assert_eq!(pruned.weight(i, j), dense.weight(i, j));
                assert!(dense.weight(i, j).abs() >= strengths[4], "row {i} kept a weak weight to {j}");
            }
        }
        let derived = dense.pruned(5);
        assert_eq!((derived.weights.clone(), derived.columns.clone()), (pruned.weights.clone(), pruned.columns.clone()));
        // Scores are the dense ones over the kept weights only.
        let profile = [(3u32, 1.0f32), (17, 0.5)];
        let mut got = vec![0f32; 30];
        pruned.score(&profile, &mut got);
        for (j, g) in got.iter().enumerate() {
            let expected: f32 = profile.iter().map(|&(i, x)| x * pruned.column_scale[i as usize] * pruned.weight(i, j as u32)).sum();
            assert!((g - expected).abs() < 1e-6, "item {j}: {g} vs {expected}");
        }
    }
}
