//! Item-to-item models kept sparse: each item's strongest links only.
//!
//! - [`Transitions`]: what users go to next after an item (sequence awareness).
//! - [`Neighbours`]: items that share users with an item, by cosine
//!   similarity (similar-items, and the item-kNN baseline).

use crate::TrainingData;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Per item, its strongest links `(other item, weight)`, strongest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ItemLinks {
    rows: Vec<Vec<(u32, f32)>>,
}

impl ItemLinks {
    pub fn row(&self, item: u32) -> &[(u32, f32)] {
        self.rows.get(item as usize).map_or(&[], |r| r.as_slice())
    }

    /// `out[j] += Σ weight_i · link(i, j)` over `(i, weight_i)`.
    pub fn accumulate(&self, weighted_items: &[(u32, f32)], out: &mut [f32]) {
        for &(item, weight) in weighted_items {
            for &(other, link) in self.row(item) {
                out[other as usize] += weight * link;
            }
        }
    }

    /// As [`ItemLinks::accumulate`] into an `out` that is zero but at
    /// `touched`, recording in `touched` every item written (once each).
    pub fn accumulate_recording(&self, weighted_items: &[(u32, f32)], out: &mut [f32], touched: &mut Vec<u32>) {
        for &(item, weight) in weighted_items {
            for &(other, link) in self.row(item) {
                let value = &mut out[other as usize];
                if *value == 0.0 {
                    touched.push(other);
                }
                *value += weight * link;
            }
        }
        // A sum may come back to exactly zero and be recorded again.
        touched.sort_unstable();
        touched.dedup();
    }

    fn from_counts(counts: Vec<HashMap<u32, f32>>, keep: usize, normalise: impl Fn(u32, u32, f32) -> f32 + Sync) -> Self {
        let rows = counts
            .into_par_iter()
            .enumerate()
            .map(|(i, row)| {
                let mut links: Vec<(u32, f32)> =
                    row.into_iter().map(|(j, c)| (j, normalise(i as u32, j, c))).filter(|(_, w)| *w > 0.0).collect();
                links.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                links.truncate(keep);
                links
            })
            .collect();
        Self { rows }
    }
}

/// Transition probabilities `P(next = j | current = i)` from consecutive
/// distinct items in each user's timeline, when the step is at most
/// `max_gap_seconds` long; a step that skips one item counts half.
pub fn transitions(data: &TrainingData, order: &[u32], offsets: &[usize], max_gap_seconds: i64, keep: usize) -> ItemLinks {
    let mut counts: Vec<HashMap<u32, f32>> = vec![HashMap::new(); data.items.len()];
    for u in 0..data.users.len() {
        // The user's timeline with repeats of the same item collapsed.
        let mut timeline: Vec<(u32, i64)> = Vec::new();
        for &i in &order[offsets[u]..offsets[u + 1]] {
            let e = &data.events[i as usize];
            match timeline.last_mut() {
                Some(last) if last.0 == e.item => last.1 = e.timestamp,
                _ => timeline.push((e.item, e.timestamp)),
            }
        }
        for (step, weight) in [(1usize, 1.0f32), (2, 0.5)] {
            for pair in timeline.windows(step + 1) {
                let (from, to) = (pair[0], pair[step]);
                if from.0 != to.0 && to.1 - from.1 <= max_gap_seconds {
                    *counts[from.0 as usize].entry(to.0).or_default() += weight;
                }
            }
        }
    }
    let totals: Vec<f32> = counts.iter().map(|row| row.values().sum()).collect();
    ItemLinks::from_counts(counts, keep, |i, _, c| c / totals[i as usize].max(1e-9))
}

/// Cosine similarity of items over the sets of users who interacted with them.
pub fn neighbours(data: &TrainingData, order: &[u32], offsets: &[usize], keep: usize) -> ItemLinks {
    let users = data.users.len();
    let items = data.items.len();
    let mut user_items: Vec<Vec<u32>> = (0..users)
        .map(|u| {
            let mut v: Vec<u32> = order[offsets[u]..offsets[u + 1]].iter().map(|&i| data.events[i as usize].item).collect();
            v.sort_unstable();
            v.dedup();
            v
        })
        .collect();
    let mut item_users: Vec<Vec<u32>> = vec![Vec::new(); items];
    for (u, its) in user_items.iter().enumerate() {
        for &i in its {
            item_users[i as usize].push(u as u32);
        }
    }
    let degree: Vec<f32> = item_users.iter().map(|u| u.len() as f32).collect();
    let counts: Vec<HashMap<u32, f32>> = (0..items)
        .into_par_iter()
        .map(|i| {
            let mut row: HashMap<u32, f32> = HashMap::new();
            for &u in &item_users[i] {
                for &j in &user_items[u as usize] {
                    if j as usize != i {
                        *row.entry(j).or_default() += 1.0;
                    }
                }
            }
            row
        })
        .collect();
    user_items.clear();
    ItemLinks::from_counts(counts, keep, |i, j, c| c / (degree[i as usize] * degree[j as usize]).sqrt().max(1e-9))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TrainingDataBuilder;

    #[test]
    fn transitions_follow_the_usual_order() {
        let mut b = TrainingDataBuilder::new();
        for u in 0..20 {
            // Most go a → b → c; a few a → c.
            let path: &[&str] = if u < 16 { &["a", "b", "c"] } else { &["a", "c"] };
            for (t, item) in path.iter().enumerate() {
                b.add_interaction(&format!("u{u}"), item, t as i64 * 60, "view", None);
            }
        }
        let data = b.build();
        let (order, offsets) = data.by_user();
        let links = transitions(&data, &order, &offsets, 3600, 10);
        let id = |s: &str| data.items.get(s).unwrap();
        let from_a = links.row(id("a"));
        assert_eq!(from_a[0].0, id("b"));
        let total: f32 = from_a.iter().map(|l| l.1).sum();
        assert!((total - 1.0).abs() < 1e-5);
        // Nothing follows c.
        assert!(links.row(id("c")).is_empty());
        // A gap longer than the limit breaks the chain.
        let none = transitions(&data, &order, &offsets, 30, 10);
        assert!(none.row(id("a")).is_empty());
    }

    #[test]
    fn neighbours_are_cosine_similar_items() {
        let mut b = TrainingDataBuilder::new();
        for u in 0..10 {
            b.add_interaction(&format!("u{u}"), "x", 0, "view", None);
            b.add_interaction(&format!("u{u}"), if u < 8 { "y" } else { "z" }, 1, "view", None);
        }
        let data = b.build();
        let (order, offsets) = data.by_user();
        let links = neighbours(&data, &order, &offsets, 10);
        let id = |s: &str| data.items.get(s).unwrap();
        let row = links.row(id("x"));
        assert_eq!(row[0].0, id("y"));
        // cos(x, y) = 8 / sqrt(10 · 8).
        assert!((row[0].1 - 8.0 / 80f32.sqrt()).abs() < 1e-6);
    }
}
