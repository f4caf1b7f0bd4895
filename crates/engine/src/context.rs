//! Context: where the user is and when, and what is going on there — the
//! travel signals a collaborative model cannot see. Learned per item from the
//! data (when in the year and the day it is visited) or given (its seasons,
//! local events), and read at query time against the request's context.

use crate::TrainingData;
use serde::{Deserialize, Serialize};

/// What a request knows about the moment it recommends for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    /// Where the user is (WGS84 degrees).
    pub location: Option<(f64, f64)>,
    /// The moment (Unix seconds): its month, and which local events run.
    pub time: Option<i64>,
    /// The hour of day (UTC, 0–23), when known (a bare date has none).
    pub hour: Option<usize>,
    /// Local events running at `time`.
    pub events: Vec<ActiveEvent>,
}

/// A local event (festival, market, …) running at the moment asked about:
/// its host item and/or its place.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ActiveEvent {
    pub item: Option<u32>,
    pub location: Option<(f64, f64)>,
}

/// A local event with its dates (Unix seconds, `end` inclusive to the end of its last day).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalEvent {
    pub item: Option<u32>,
    pub location: Option<(f64, f64)>,
    pub start: i64,
    pub end: i64,
}

impl LocalEvent {
    pub fn active_at(&self, time: i64) -> bool {
        self.start <= time && time <= self.end
    }
}

/// The local events of `events` running at `time`.
pub fn active_events(events: &[LocalEvent], time: i64) -> Vec<ActiveEvent> {
    events.iter().filter(|e| e.active_at(time)).map(|e| ActiveEvent { item: e.item, location: e.location }).collect()
}

pub fn month_of(time: i64) -> usize {
    // Days since 1970-01-01 → civil month (Howard Hinnant's algorithm).
    let days = time.div_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    (if mp < 10 { mp + 2 } else { mp - 10 }) as usize
}

pub fn hour_of(time: i64) -> usize {
    time.rem_euclid(86_400) as usize / 3_600
}

/// When each item is visited, relative to when everything is: per item and
/// slot (month or hour), `ln(P(slot | item) / P(slot))`, smoothed towards 0
/// with a few pseudo-interactions and clamped to ±2. With a bandwidth, a
/// visit also counts towards the slots around its own (a circular Gaussian
/// kernel): a place photographed at 21:00 is likely a place for 20:00 and
/// 22:00 too, which a few hundred visits spread over 24 hours cannot show.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TimeProfile {
    slots: usize,
    lift: Vec<f32>,
}

/// Pseudo-interactions that pull a rarely seen item's profile towards "no preference".
const SMOOTHING: f32 = 10.0;

impl TimeProfile {
    /// `bandwidth` is the kernel's standard deviation in slots (0: each visit in its own slot only).
    pub(crate) fn learn(data: &TrainingData, slots: usize, slot_of: impl Fn(i64) -> usize, bandwidth: f32) -> Self {
        let n = data.items.len();
        let mut counts = vec![0f32; n * slots];
        let mut overall = vec![0f32; slots];
        // A visit counts once, however many events it left: a traveller who
        // took thirty photos of one place in July says once that it is
        // visited in July.
        let mut visits: Vec<(u32, u32, usize)> = data.events.iter().map(|e| (e.user, e.item, slot_of(e.timestamp))).collect();
        visits.sort_unstable();
        visits.dedup();
        let kernel = circular_kernel(slots, bandwidth);
        for (_, item, s) in visits {
            for &(offset, weight) in &kernel {
                let slot = (s as isize + offset).rem_euclid(slots as isize) as usize;
                counts[item as usize * slots + slot] += weight;
                overall[slot] += weight;
            }
        }
        let total: f32 = overall.iter().sum::<f32>().max(1.0);
        let share: Vec<f32> = overall.iter().map(|c| (c / total).max(1e-6)).collect();
        let mut lift = vec![0f32; n * slots];
        for item in 0..n {
            let row = &counts[item * slots..(item + 1) * slots];
            let item_total: f32 = row.iter().sum();
            for s in 0..slots {
                let p = (row[s] + SMOOTHING * share[s]) / (item_total + SMOOTHING);
                lift[item * slots + s] = (p / share[s]).ln().clamp(-2.0, 2.0);
            }
        }
        Self { slots, lift }
    }

    /// Every item's lift for `slot`, written to `out`.
    pub fn fill(&self, slot: usize, out: &mut [f32]) {
        if self.slots == 0 {
            return;
        }
        for (o, row) in out.iter_mut().zip(self.lift.chunks_exact(self.slots)) {
            *o = row[slot];
        }
    }
}

/// (slot offset, weight) of a Gaussian kernel of standard deviation
/// `bandwidth` slots, cut at three deviations and at half the circle (so
/// meant for bandwidths up to `slots / 6`), the weights summing to 1 (a
/// visit counts once in all). No bandwidth (0, or NaN) keeps the slot.
fn circular_kernel(slots: usize, bandwidth: f32) -> Vec<(isize, f32)> {
    if bandwidth.is_nan() || bandwidth <= 0.0 {
        return vec![(0, 1.0)];
    }
    let reach = ((3.0 * bandwidth).ceil() as isize).min((slots as isize - 1) / 2);
    let mut kernel: Vec<(isize, f32)> = (-reach..=reach).map(|d| (d, (-(d * d) as f32 / (2.0 * bandwidth * bandwidth)).exp())).collect();
    let total: f32 = kernel.iter().map(|(_, w)| w).sum();
    kernel.iter_mut().for_each(|(_, w)| *w /= total);
    kernel
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TrainingDataBuilder;

    #[test]
    fn months_and_hours_of_unix_times() {
        assert_eq!(month_of(0), 0); // 1970-01-01
        assert_eq!(month_of(1_784_000_000), 6); // 2026-07-14
        assert_eq!(month_of(1_796_000_000), 10); // 2026-11-30
        assert_eq!(hour_of(1_784_000_000), 3);
        assert_eq!(month_of(-86_400), 11); // 1969-12-31
    }

    #[test]
    fn items_visited_in_a_season_lift_in_that_season() {
        let july = 1_784_000_000;
        let january = 1_768_000_000;
        let mut b = TrainingDataBuilder::new();
        for u in 0..40 {
            b.add_interaction(&format!("u{u}"), "beach", july + u, "view", None);
            b.add_interaction(&format!("u{u}"), "museum", if u % 2 == 0 { july } else { january } + u, "view", None);
        }
        let data = b.build();
        let profile = TimeProfile::learn(&data, 12, month_of, 0.0);
        let mut july_lift = vec![0.0; 2];
        profile.fill(6, &mut july_lift);
        let mut january_lift = vec![0.0; 2];
        profile.fill(0, &mut january_lift);
        let (beach, museum) = (data.items.get("beach").unwrap() as usize, data.items.get("museum").unwrap() as usize);
        assert!(july_lift[beach] > july_lift[museum], "{july_lift:?}");
        assert!(january_lift[beach] < 0.0 && january_lift[museum] > 0.0, "{january_lift:?}");
    }

    #[test]
    fn a_bandwidth_spreads_visits_to_the_neighbouring_hours() {
        let day = 1_784_000_000 - 1_784_000_000 % 86_400;
        let mut b = TrainingDataBuilder::new();
        for u in 0..60 {
            // The bar is visited at 21:00; the museum is visited all day.
            b.add_interaction(&format!("u{u}"), "bar", day + 21 * 3_600 + u, "view", None);
            b.add_interaction(&format!("u{u}"), "museum", day + (u % 24) * 3_600, "view", None);
        }
        let data = b.build();
        let bar = data.items.get("bar").unwrap() as usize;
        let lift_at = |profile: &TimeProfile, hour: usize| {
            let mut out = vec![0.0; 2];
            profile.fill(hour, &mut out);
            out[bar]
        };
        let sharp = TimeProfile::learn(&data, 24, hour_of, 0.0);
        let smooth = TimeProfile::learn(&data, 24, hour_of, 1.0);
        // Sharp, 22:00 knows nothing of the bar; smoothed, it is its hour
        // too, though less than 21:00; and midday stays against it.
        assert!(lift_at(&sharp, 22) < 0.0, "{}", lift_at(&sharp, 22));
        assert!(
            lift_at(&smooth, 22) > 0.3 && lift_at(&smooth, 22) < lift_at(&smooth, 21),
            "{} {}",
            lift_at(&smooth, 22),
            lift_at(&smooth, 21)
        );
        assert!(lift_at(&smooth, 12) < 0.0);
        // Midnight is two hours from 22:00 across the day's end.
        assert!(lift_at(&TimeProfile::learn(&data, 24, hour_of, 2.0), 23) > lift_at(&smooth, 23));
    }

    #[test]
    fn a_kernel_counts_a_visit_once_in_all() {
        for bandwidth in [0.0, f32::NAN, 0.5, 1.2, 3.0, 20.0] {
            let kernel = circular_kernel(24, bandwidth);
            let total: f32 = kernel.iter().map(|(_, w)| w).sum();
            assert!((total - 1.0).abs() < 1e-5, "{bandwidth}: {total}");
            assert!(kernel.len() <= 23, "no slot counted twice around the circle");
        }
    }

    #[test]
    fn a_visit_counts_once_however_many_events_it_left() {
        let july = 1_784_000_000;
        let january = 1_768_000_000;
        let mut b = TrainingDataBuilder::new();
        // One traveller photographs the museum thirty times in July; thirty
        // others visit it once each in January. The park is visited by
        // twenty people in each month.
        for photo in 0..30 {
            b.add_interaction("keen", "museum", july + photo, "view", None);
            b.add_interaction(&format!("winter{photo}"), "museum", january + photo, "view", None);
        }
        for u in 0..20 {
            b.add_interaction(&format!("summer-park{u}"), "park", july + u, "view", None);
            b.add_interaction(&format!("winter-park{u}"), "park", january + u, "view", None);
        }
        let data = b.build();
        let profile = TimeProfile::learn(&data, 12, month_of, 0.0);
        let mut july_lift = vec![0.0; 2];
        profile.fill(6, &mut july_lift);
        let museum = data.items.get("museum").unwrap() as usize;
        // Counted by event, July would be as much the museum's month as January.
        assert!(july_lift[museum] < -0.1, "{july_lift:?}");
    }
}
