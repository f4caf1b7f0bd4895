//! Whole-catalogue numeric loops, written so the compiler vectorises them.
//!
//! A query touches every item a few times (exponentials for nearness and the
//! softmax, a mean and a spread, the best k); at 10,000 items and more these
//! loops are most of its time. `f32::exp` is a library call per item and
//! `f64` reductions run one lane at a time, so these versions work in `f32`
//! lanes with branch-free arithmetic.
//!
//! The catalogue-wide passes are compiled twice: for the baseline x86-64
//! (SSE2, four lanes an instruction) and for AVX2 (eight), picked at run
//! time by CPU ([`multiversion`]). The lane structure is written out in the
//! code and Rust never fuses a multiply and an add, so both versions give
//! the same bits.

use multiversion::multiversion;

/// `eˣ` for `x ≤ 0`, within 2 ulp of `f32::exp` (0 below -87, where `eˣ`
/// leaves the normal range). Branch-free, so loops over it vectorise:
/// `eˣ = 2ᵏ · eʸ` with `k = round(x / ln 2)`, `y = x − k ln 2` in
/// `[−ln 2 / 2, ln 2 / 2]` (Cody–Waite: `ln 2` in two parts keeps `y`
/// exact), and `eʸ` by its Taylor polynomial to degree 7.
#[inline(always)]
pub fn exp_nonpositive(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5 · 2²³ rounds to an integer, which lands in the low mantissa bits.
    const ROUNDER: f32 = 12_582_912.0;
    let clamped = x.clamp(-87.0, 0.0);
    let shifted = clamped * LOG2_E + ROUNDER;
    let k = shifted - ROUNDER;
    let k_bits = shifted.to_bits() as i32 - ROUNDER.to_bits() as i32;
    let y = (clamped - k * LN2_HI) - k * LN2_LO;
    let p = 1.0 / 5040.0;
    let p = p * y + 1.0 / 720.0;
    let p = p * y + 1.0 / 120.0;
    let p = p * y + 1.0 / 24.0;
    let p = p * y + 1.0 / 6.0;
    let p = p * y + 0.5;
    let p = p * y + 1.0;
    let p = p * y + 1.0;
    let two_to_k = f32::from_bits(((k_bits + 127) << 23) as u32);
    let value = p * two_to_k;
    if x < -87.0 { 0.0 } else { value }
}

/// `a · b` in eight `f32` lanes (a plain iterator sum is one lane: floating
/// point addition is not reordered for the compiler's convenience).
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (a_chunks, b_chunks) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a_chunks.remainder().iter().zip(b_chunks.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for ((lane, x), y) in lanes.iter_mut().zip(x).zip(y) {
            *lane += x * y;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `out[r] = x · row r` over the rows of `rows` (each `x.len()` long).
#[multiversion(targets("x86_64+avx2"))]
pub fn dot_rows(x: &[f32], rows: &[f32], out: &mut [f32]) {
    for (o, row) in out.iter_mut().zip(rows.chunks_exact(x.len())) {
        *o = dot(x, row);
    }
}

/// As [`dot_rows`], with the rows in bfloat16 ([`dot_bf16`]).
#[multiversion(targets("x86_64+avx2"))]
pub fn dot_rows_bf16(x: &[f32], rows: &[u16], out: &mut [f32]) {
    for (o, row) in out.iter_mut().zip(rows.chunks_exact(x.len())) {
        *o = dot_bf16(x, row);
    }
}

/// `out[i] = table[index[i]]` (an index past the end reads the last entry):
/// with the bound written as a minimum rather than a check that may panic,
/// AVX2 does eight lookups an instruction.
#[multiversion(targets("x86_64+avx2"))]
pub fn gather(table: &[f32], index: &[u32], out: &mut [f32]) {
    let Some(last) = table.len().checked_sub(1) else {
        return out.fill(0.0);
    };
    for (o, &i) in out.iter_mut().zip(index) {
        *o = table[(i as usize).min(last)];
    }
}

/// `x` as bfloat16 (the high half of its bits, rounded to nearest even):
/// eight bits of precision, `f32`'s range, half the memory.
#[inline]
pub fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) as u16
}

/// `a · b` where `b` is bfloat16 ([`to_bf16`]), in eight `f32` lanes.
/// Widening a bfloat16 is a shift, so a catalogue-wide pass reads half the
/// bytes of an `f32` one at nearly no extra arithmetic.
#[inline(always)]
pub fn dot_bf16(a: &[f32], b: &[u16]) -> f32 {
    let widen = |h: u16| f32::from_bits((h as u32) << 16);
    let mut lanes = [0f32; 8];
    let (a_chunks, b_chunks) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a_chunks.remainder().iter().zip(b_chunks.remainder()).map(|(x, &y)| x * widen(y)).sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for ((lane, x), &y) in lanes.iter_mut().zip(x).zip(y) {
            *lane += x * widen(y);
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// The largest of `values` that is not NaN (`-inf` when there is none), in
/// eight lanes: a scan can then skip a whole block that holds nothing above a bound.
#[inline(always)]
pub fn maximum(values: &[f32]) -> f32 {
    // NaN is never greater, so it is never picked.
    let pick = |best: f32, v: f32| if v > best { v } else { best };
    let lanes = fold_lanes(values, f32::NEG_INFINITY, pick);
    values.chunks_exact(8).remainder().iter().chain(&lanes).fold(f32::NEG_INFINITY, |best, &v| pick(best, v))
}

/// Count, mean, standard deviation (population) and largest value of some
/// values (see [`summarise_finite`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub count: usize,
    pub mean: f32,
    pub std: f32,
    pub max: f32,
}

/// The [`Summary`] of the finite entries of `values`; `None` when there are
/// none (excluded items, `-inf`, do not count). Eight `f32` lanes, a pass per
/// sum over each block of 1,024 (the block stays in the L1 cache), blocks
/// added in `f64`; values are taken relative to the
/// first finite one, so the spread does not drown in a large mean.
#[multiversion(targets("x86_64+avx2"))]
pub fn summarise_finite(values: &[f32]) -> Option<Summary> {
    let shift = *values.iter().find(|v| v.is_finite())?;
    // Most calls see no excluded item: lanes without a finiteness test per
    // value. An infinity or NaN anywhere makes the sums non-finite, and the
    // careful pass runs instead.
    let (count, sum, squares, max) = match sums_from::<false>(values, shift) {
        (count, sum, squares, max) if sum.is_finite() && squares.is_finite() && max.is_finite() => (count, sum, squares, max),
        _ => sums_from::<true>(values, shift),
    };
    let n = count as f64;
    let mean = sum / n;
    let variance = (squares / n - mean * mean).max(0.0);
    Some(Summary { count, mean: (shift as f64 + mean) as f32, std: variance.sqrt() as f32, max })
}

/// Count, sum and sum of squares of `value − shift`, and the largest value,
/// over `values`; with `SKIP_NON_FINITE`, infinities and NaN are left out
/// (a test per value), without it they are taken in. Inlined, so it is
/// compiled for the target of [`summarise_finite`]'s version.
#[inline(always)]
fn sums_from<const SKIP_NON_FINITE: bool>(values: &[f32], shift: f32) -> (usize, f64, f64, f32) {
    let (mut count, mut sum, mut squares) = (0usize, 0f64, 0f64);
    let mut max = f32::NEG_INFINITY;
    for block in values.chunks(1024) {
        let taken = |v: f32| !SKIP_NON_FINITE || v.is_finite();
        let d = |v: f32| if taken(v) { v - shift } else { 0.0 };
        // A pass per accumulator: each is then one eight-wide instruction
        // per chunk (in one loop, the compiler paired a lane's sum with its
        // square instead). The block is in the L1 cache after the first.
        let counts = fold_lanes(block, 0u32, |c, v| c + u32::from(taken(v)));
        let sums = fold_lanes(block, 0f32, |s, v| s + d(v));
        let squared = fold_lanes(block, 0f32, |s, v| s + d(v) * d(v));
        let maxima = fold_lanes(block, f32::NEG_INFINITY, |m, v| if v > m { v } else { m });
        for &v in block.chunks_exact(8).remainder().iter().filter(|&&v| taken(v)) {
            count += 1;
            sum += (v - shift) as f64;
            squares += ((v - shift) * (v - shift)) as f64;
            max = if v > max { v } else { max };
        }
        count += counts.iter().map(|&c| c as usize).sum::<usize>();
        sum += sums.iter().map(|&v| v as f64).sum::<f64>();
        squares += squared.iter().map(|&v| v as f64).sum::<f64>();
        max = maxima.iter().fold(max, |m, &v| if v > m { v } else { m });
    }
    (count, sum, squares, max)
}

/// Each lane's fold over the values at its position in every full chunk of
/// eight (the remainder is left to the caller).
#[inline(always)]
fn fold_lanes<T: Copy>(values: &[f32], init: T, step: impl Fn(T, f32) -> T) -> [T; 8] {
    let mut lanes = [init; 8];
    for chunk in values.chunks_exact(8) {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane = step(*lane, v);
        }
    }
    lanes
}

/// `Σ f(v)` over `values`: eight `f32` lanes within blocks of 1,024, so
/// rounding error stays that of a short sum, blocks added in `f64`.
#[multiversion(targets("x86_64+avx2"))]
pub(crate) fn sum_by(values: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    values
        .chunks(1024)
        .map(|block| {
            let lanes = fold_lanes(block, 0f32, |lane, v| lane + f(v));
            let tail: f32 = block.chunks_exact(8).remainder().iter().map(|&v| f(v)).sum();
            lanes.iter().map(|&l| l as f64).sum::<f64>() + tail as f64
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ulps(a: f32, b: f32) -> i64 {
        (a.to_bits() as i64 - b.to_bits() as i64).abs()
    }

    #[test]
    fn exp_matches_the_library_over_its_whole_range() {
        let mut worst = 0;
        let mut x = 0.0f32;
        while x > -87.0 {
            worst = worst.max(ulps(exp_nonpositive(x), x.exp()));
            x -= 0.000_37;
        }
        assert!(worst <= 2, "worst error {worst} ulp");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(-100.0), 0.0);
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
    }

    #[test]
    fn dot_of_a_known_case_with_a_tail() {
        let a: Vec<f32> = (1..=11).map(|v| v as f32).collect();
        let b = vec![2.0f32; 11];
        assert_eq!(dot(&a, &b), 132.0);
        assert_eq!(dot(&[], &[]), 0.0);
    }

    #[test]
    fn summary_of_a_known_case_skips_excluded_items() {
        let mut values = vec![2.0, 4.0, 4.0, f32::NEG_INFINITY, 4.0, 5.0, 5.0, 7.0, 9.0];
        assert_eq!(summarise_finite(&values), Some(Summary { count: 8, mean: 5.0, std: 2.0, max: 9.0 }));
        values.iter_mut().for_each(|v| *v = f32::NEG_INFINITY);
        assert_eq!(summarise_finite(&values), None);
        assert_eq!(summarise_finite(&[]), None);
    }

    #[test]
    fn bfloat16_rounds_to_nearest_and_dots_within_its_precision() {
        let widen = |h: u16| f32::from_bits((h as u32) << 16);
        assert_eq!(widen(to_bf16(1.0)), 1.0);
        assert_eq!(widen(to_bf16(-2.5)), -2.5);
        // 1 + 2⁻⁸ lies halfway between 1 and 1 + 2⁻⁷: to even, 1.
        assert_eq!(widen(to_bf16(1.0 + 1.0 / 256.0)), 1.0);
        assert_eq!(widen(to_bf16(1.0 + 3.0 / 512.0)), 1.0 + 1.0 / 128.0);
        assert!(widen(to_bf16(f32::NAN)).is_nan());
        assert_eq!(widen(to_bf16(f32::INFINITY)), f32::INFINITY);
        let a: Vec<f32> = (0..77).map(|i| ((i * 37 % 19) as f32 - 9.0) / 7.0).collect();
        let b: Vec<f32> = (0..77).map(|i| ((i * 53 % 23) as f32 - 11.0) / 3.0).collect();
        let half: Vec<u16> = b.iter().map(|&v| to_bf16(v)).collect();
        let exact = dot(&a, &b);
        let magnitude: f32 = a.iter().zip(&b).map(|(x, y)| (x * y).abs()).sum();
        // Each product is off by at most 2⁻⁹ of itself.
        assert!((dot_bf16(&a, &half) - exact).abs() <= magnitude / 512.0 + 1e-4, "{} vs {exact}", dot_bf16(&a, &half));
    }

    #[test]
    fn gather_looks_up_and_clamps_past_the_end() {
        let mut out = vec![9f32; 11];
        let index: Vec<u32> = (0..11).map(|i| (i * 5) % 13).collect();
        gather(&[0.5, 1.5, 2.5, 3.5], &index, &mut out);
        let expected: Vec<f32> = index.iter().map(|&i| [0.5, 1.5, 2.5, 3.5][(i as usize).min(3)]).collect();
        assert_eq!(out, expected);
        assert_eq!(&out[..3], &[0.5, 3.5, 3.5]);
        gather(&[], &index, &mut out);
        assert!(out.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn maximum_skips_nan_and_sees_the_tail() {
        let mut values: Vec<f32> = (0..19).map(|v| v as f32).collect();
        values[3] = f32::NAN;
        assert_eq!(maximum(&values), 18.0);
        values[18] = -5.0;
        assert_eq!(maximum(&values), 17.0);
        assert_eq!(maximum(&[f32::NAN]), f32::NEG_INFINITY);
        assert_eq!(maximum(&[]), f32::NEG_INFINITY);
    }

    proptest! {
        #[test]
        fn summary_matches_a_plain_f64_computation(
            values in proptest::collection::vec(prop_oneof![9 => -1e3f32..1e3, 1 => Just(f32::NEG_INFINITY)], 1..3000),
            offset in prop_oneof![Just(0f32), Just(1e4f32)],
        ) {
            let values: Vec<f32> = values.iter().map(|v| v + offset).collect();
            let finite: Vec<f64> = values.iter().filter(|v| v.is_finite()).map(|&v| v as f64).collect();
            let summary = summarise_finite(&values);
            if finite.is_empty() {
                prop_assert!(summary.is_none());
            } else {
                let s = summary.unwrap();
                let n = finite.len() as f64;
                let mean = finite.iter().sum::<f64>() / n;
                let std = (finite.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
                let max = finite.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
                prop_assert_eq!(s.count, finite.len());
                // f32 sums: exact to a few parts in a million of the values' size.
                let size = finite.iter().fold(1.0f64, |m, v| m.max(v.abs()));
                prop_assert!((s.mean as f64 - mean).abs() <= 1e-5 * size, "mean {} vs {}", s.mean, mean);
                prop_assert!((s.std as f64 - std).abs() <= 1e-3 * (1.0 + std), "std {} vs {}", s.std, std);
                prop_assert_eq!(s.max as f64, max);
            }
        }
    }
}
