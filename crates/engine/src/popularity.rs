use crate::TrainingData;

/// Number of interactions per item (all event types), the `popularity-count`
/// recipe's score and the fallback for users without history.
pub fn counts(data: &TrainingData) -> Vec<f32> {
    let mut counts = vec![0f32; data.items.len()];
    for e in &data.events {
        counts[e.item as usize] += 1.0;
    }
    counts
}

/// How much faster each item is being interacted with: interactions in the
/// last `window_days` before the newest event against the window before,
/// `(recent + 1) / (previous + 1) · ln(1 + recent)` so that a rise needs
/// some volume, scaled to 0..1.
pub fn trending(data: &TrainingData, window_days: f32) -> Vec<f32> {
    let newest = data.max_timestamp();
    let window = (window_days as f64 * 86_400.0) as i64;
    let mut recent = vec![0f32; data.items.len()];
    let mut previous = vec![0f32; data.items.len()];
    for e in &data.events {
        let age = newest - e.timestamp;
        if age < window {
            recent[e.item as usize] += 1.0;
        } else if age < 2 * window {
            previous[e.item as usize] += 1.0;
        }
    }
    let mut scores: Vec<f32> = recent.iter().zip(&previous).map(|(&r, &p)| (r + 1.0) / (p + 1.0) * r.ln_1p()).collect();
    let max = scores.iter().fold(0f32, |m, &s| m.max(s));
    if max > 0.0 {
        scores.iter_mut().for_each(|s| *s /= max);
    }
    scores
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TrainingDataBuilder;

    #[test]
    fn rising_items_trend_and_steady_ones_do_not() {
        let day = 86_400;
        let mut b = TrainingDataBuilder::new();
        // "steady": 10 a week in both windows; "rising": 2 then 12; "fading": 12 then 1.
        for (item, before, after) in [("steady", 10, 10), ("rising", 2, 12), ("fading", 12, 1)] {
            for k in 0..before {
                b.add_interaction(&format!("{item}-old-{k}"), item, 20 * day - 8 * day + k, "view", None);
            }
            for k in 0..after {
                b.add_interaction(&format!("{item}-new-{k}"), item, 20 * day - day + k, "view", None);
            }
        }
        let data = b.build();
        let t = trending(&data, 7.0);
        let id = |s: &str| data.items.get(s).unwrap() as usize;
        assert_eq!(t[id("rising")], 1.0);
        assert!(t[id("steady")] < t[id("rising")] && t[id("fading")] < t[id("steady")]);
    }
}
