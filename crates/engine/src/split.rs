//! Held-out splits of training data and the evaluation of a recommender on them.

use crate::metrics::{MetricAccumulator, MetricSet};
use crate::{TrainingData, TrainingEvent};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// How test items are held out of a user's interactions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Holdout {
    /// Each user's newest interaction (users with at least two interactions);
    /// ranking is over the whole catalogue, items seen before stay rankable.
    LastItem,
    /// A random share of each user's distinct items (the MovieLens
    /// "stratified" protocol); items seen in training are not recommended.
    RandomFraction { test_fraction: f64 },
    /// Every interaction newer than the newest `fraction` of time, per data
    /// set (the managed service's offline metrics): train on the past, test
    /// on what each user did in the held-out window.
    NewestFraction { fraction: f64 },
    /// Each user's last trip: the interactions from the last gap of more
    /// than [`TRIP_GAP_SECONDS`] after which the user was on the spot (the
    /// event's location near its item; an event without a location counts
    /// only for users who never report one) to the next such gap (what
    /// follows, browsing from home, is left out of training as well; users
    /// with an earlier trip). The context is
    /// the trip's first moment — where a traveller is when they arrive
    /// somewhere new, which their history alone does not say.
    NextTrip,
    /// Each user's newest interaction, as [`Holdout::LastItem`], except
    /// for users whose last trip (as [`Holdout::NextTrip`] finds it) began
    /// away from their history: more than [`MOVED_ON_KM`](crate::model::MOVED_ON_KM)
    /// from the last located item before it. For them, that whole trip. A
    /// served model is asked both "what next, here" and "what, now that I
    /// have arrived somewhere new"; validating on both kinds of request gives
    /// the arrivals a blend of their own where newest interactions alone
    /// would hold too few of them.
    LastItemOrArrival,
}

/// A pause this long between two interactions starts a new trip.
pub const TRIP_GAP_SECONDS: i64 = 2 * 86_400;

impl Holdout {
    /// Whether items a user had in training are excluded from their ranking.
    pub fn excludes_seen(self) -> bool {
        matches!(self, Holdout::RandomFraction { .. })
    }
}

#[derive(Debug, Clone)]
pub struct Split {
    pub train: TrainingData,
    /// (user, held-out items), one entry per evaluated user (two for an
    /// arrival under [`Holdout::LastItemOrArrival`]), in user order.
    pub test: Vec<(u32, HashSet<u32>)>,
    /// The context of each test entry: the moment and place of its first
    /// held-out interaction, and the local events then (none for random holdouts).
    pub contexts: Vec<crate::Context>,
    /// Held-out events each test entry is asked after, as a served model
    /// folds in events tracked since training (empty but for the newest
    /// interaction of an arrival, [`Holdout::LastItemOrArrival`]).
    pub recent: Vec<Vec<crate::HistoryEvent>>,
    pub holdout: Holdout,
}

/// Splits `data` (indices are kept, so a model trained on `train` scores
/// `test` users directly). At most `max_test_users` users are evaluated,
/// chosen at random with `seed`; the others keep all their interactions.
pub fn split(data: &TrainingData, holdout: Holdout, max_test_users: Option<usize>, seed: u64) -> Split {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (order, offsets) = data.by_user();
    let users = data.users.len();
    let cutoff = match holdout {
        Holdout::NewestFraction { fraction } => {
            let mut times: Vec<i64> = data.events.iter().map(|e| e.timestamp).collect();
            times.sort_unstable();
            let index = ((times.len() as f64) * (1.0 - fraction)).floor() as usize;
            times.get(index.min(times.len().saturating_sub(1))).copied().unwrap_or(i64::MAX)
        }
        _ => i64::MAX,
    };
    let user_events = |u: usize| &order[offsets[u]..offsets[u + 1]];
    // What a holdout in time takes from each user, found once.
    let mut in_time: Vec<Option<Held>> = (0..users).map(|u| held_in_time(data, holdout, user_events(u), cutoff)).collect();
    let mut chosen: Vec<bool> = vec![true; users];
    if let Some(limit) = max_test_users.filter(|&l| l < users) {
        // Drawn among the users the holdout can evaluate (known up front for
        // holdouts in time): a limit of 2,000 means 2,000 test users, even
        // where few users have, say, an earlier trip.
        let mut candidates: Vec<usize> = (0..users).filter(|&u| in_time[u].as_ref().is_none_or(|held| !held.events.is_empty())).collect();
        if candidates.len() > limit {
            candidates.shuffle(&mut rng);
        }
        chosen = vec![false; users];
        candidates.into_iter().take(limit).for_each(|u| chosen[u] = true);
    }
    let mut is_test = vec![false; data.events.len()];
    let mut test = Vec::new();
    let mut contexts = Vec::new();
    let mut recent = Vec::new();
    for (u, &is_chosen) in chosen.iter().enumerate() {
        let events = user_events(u);
        if !is_chosen || events.len() < 2 {
            continue;
        }
        let held: Vec<u32> = match (in_time[u].take(), holdout) {
            (Some(Held { events, after }), _) => {
                // Neither asked about nor learned from: the future of what is.
                after.iter().for_each(|&i| is_test[i as usize] = true);
                events
            }
            (None, Holdout::RandomFraction { test_fraction }) => {
                let mut items: Vec<u32> = events.iter().map(|&i| data.events[i as usize].item).collect();
                items.sort_unstable();
                items.dedup();
                items.shuffle(&mut rng);
                let train_count = ((items.len() as f64) * (1.0 - test_fraction)).round() as usize;
                if train_count == 0 || train_count >= items.len() {
                    continue;
                }
                let held_items: HashSet<u32> = items[train_count..].iter().copied().collect();
                events.iter().copied().filter(|&i| held_items.contains(&data.events[i as usize].item)).collect()
            }
            (None, _) => unreachable!("only random holdouts are not in time"),
        };
        if held.is_empty() {
            continue;
        }
        held.iter().for_each(|&i| is_test[i as usize] = true);
        let context_at = |first: &TrainingEvent| match holdout {
            Holdout::RandomFraction { .. } => crate::Context::default(),
            _ => crate::Context {
                location: first.location.map(|(a, b)| (a as f64, b as f64)),
                time: Some(first.timestamp),
                hour: Some(crate::context::hour_of(first.timestamp)),
                events: crate::context::active_events(&data.local_events, first.timestamp),
            },
        };
        let items: HashSet<u32> = held.iter().map(|&i| data.events[i as usize].item).collect();
        contexts.push(context_at(&data.events[held[0] as usize]));
        test.push((u as u32, items));
        recent.push(Vec::new());
        if let (Holdout::LastItemOrArrival, [trip @ .., newest]) = (holdout, held.as_slice())
            && !trip.is_empty()
        {
            // An arrival: its newest interaction is asked too, after the
            // rest of the trip (held out of the model, so folded in).
            let newest = &data.events[*newest as usize];
            contexts.push(context_at(newest));
            test.push((u as u32, HashSet::from([newest.item])));
            recent.push(trip.iter().map(|&i| crate::HistoryEvent::from(&data.events[i as usize])).collect());
        }
    }
    let events: Vec<TrainingEvent> = data.events.iter().zip(&is_test).filter(|(_, t)| !**t).map(|(e, _)| *e).collect();
    let train = TrainingData {
        users: data.users.clone(),
        items: data.items.clone(),
        event_types: data.event_types.clone(),
        events,
        item_meta: data.item_meta.clone(),
        local_events: data.local_events.clone(),
    };
    Split { train, test, contexts, recent, holdout }
}

/// What a holdout in time takes from one user: the events asked about, and
/// the events after them (browsing from home once the trip was over), which
/// are left out of training too.
struct Held {
    events: Vec<u32>,
    after: Vec<u32>,
}

impl Held {
    fn only(events: Vec<u32>) -> Self {
        Held { events, after: Vec::new() }
    }

    fn trip(events: &[u32], trip: std::ops::Range<usize>) -> Self {
        Held { after: events[trip.end..].to_vec(), events: events[trip].to_vec() }
    }
}

/// The events a holdout in time takes from one user's events (in time
/// order; none for users with fewer than two), or `None` for a random holdout.
fn held_in_time(data: &TrainingData, holdout: Holdout, events: &[u32], cutoff: i64) -> Option<Held> {
    if events.len() < 2 {
        return Some(Held::only(Vec::new()));
    }
    Some(match holdout {
        Holdout::LastItem => Held::only(vec![*events.last().expect("two events")]),
        Holdout::NextTrip => match last_trip(data, events) {
            Some(trip) => Held::trip(events, trip),
            None => Held::only(Vec::new()),
        },
        Holdout::LastItemOrArrival => match last_trip(data, events).filter(|trip| arrives_away(data, events, trip.start)) {
            Some(trip) => Held::trip(events, trip),
            None => Held::only(vec![*events.last().expect("two events")]),
        },
        Holdout::NewestFraction { .. } => {
            let held: Vec<u32> = events.iter().copied().filter(|&i| data.events[i as usize].timestamp >= cutoff).collect();
            // Users need some past to be evaluated.
            Held::only(if held.len() == events.len() { Vec::new() } else { held })
        }
        Holdout::RandomFraction { .. } => return None,
    })
}

/// A user's last trip, as positions in their events (time order): from the
/// last pause of more than [`TRIP_GAP_SECONDS`] after which they were on the
/// spot, to the next pause.
fn last_trip(data: &TrainingData, events: &[u32]) -> Option<std::ops::Range<usize>> {
    let time = |i: u32| data.events[i as usize].timestamp;
    let paused = |k: usize| time(events[k]) - time(events[k - 1]) > TRIP_GAP_SECONDS;
    let reports_location = ReportsLocation(events.iter().any(|&i| data.events[i as usize].location.is_some()));
    let start = (1..events.len()).rev().find(|&k| paused(k) && on_the_spot(data, events[k], reports_location))?;
    let end = (start + 1..events.len()).find(|&k| paused(k)).unwrap_or(events.len());
    Some(start..end)
}

/// Whether the event at `start` happened far from the last located item
/// before it: the user has moved on, as [`Model::moved_on`](crate::Model::moved_on)
/// judges a request placed there.
fn arrives_away(data: &TrainingData, events: &[u32], start: usize) -> bool {
    let Some((lat, lon)) = data.events[events[start] as usize].location else { return false };
    let last_place = events[..start].iter().rev().find_map(|&i| data.item_meta.get(data.events[i as usize].item as usize)?.location);
    last_place.is_some_and(|(item_lat, item_lon)| {
        crate::model::distance_km(lat as f64, lon as f64, item_lat, item_lon) > crate::model::MOVED_ON_KM
    })
}

/// Whether any of a user's events says where they were.
#[derive(Debug, Clone, Copy)]
struct ReportsLocation(bool);

/// Whether the user was at the place when the event happened: within
/// [`MOVED_ON_KM`](crate::model::MOVED_ON_KM) of the item. A session of
/// browsing from home before a trip is not an arrival, though a pause
/// precedes it too. An event without a location is taken to be on the spot
/// only for a user none of whose events has one (nothing tells them apart);
/// for a user whose phone reports where they are, it comes from a device
/// that does not, most often a desktop at home.
fn on_the_spot(data: &TrainingData, event: u32, reports_location: ReportsLocation) -> bool {
    let event = &data.events[event as usize];
    let place = data.item_meta.get(event.item as usize).and_then(|m| m.location);
    match (event.location, place) {
        (Some((lat, lon)), Some((item_lat, item_lon))) => {
            crate::model::distance_km(lat as f64, lon as f64, item_lat, item_lon) <= crate::model::MOVED_ON_KM
        }
        (None, _) => !reports_location.0,
        (Some(_), None) => true,
    }
}

/// Ranks for every test user with `recommend(user, k, exclude_seen)` (run in
/// parallel) and averages the metrics.
pub fn evaluate(split: &Split, recommend: impl Fn(u32, usize, bool) -> Vec<u32> + Sync) -> MetricSet {
    let catalogue = split.train.items.len();
    let exclude = split.holdout.excludes_seen();
    let results: Vec<(Vec<u32>, &HashSet<u32>)> =
        split.test.par_iter().map(|(user, items)| (recommend(*user, 25, exclude), items)).collect();
    let mut accumulator = MetricAccumulator::new(catalogue);
    for (ranked, relevant) in results {
        accumulator.add(&ranked, relevant);
    }
    accumulator.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TrainingDataBuilder;

    fn data() -> TrainingData {
        let mut b = TrainingDataBuilder::new();
        for u in 0..10 {
            for t in 0..8 {
                b.add_interaction(&format!("u{u}"), &format!("i{}", (u + t) % 12), 100 * t as i64 + u as i64, "click", None);
            }
        }
        b.build()
    }

    #[test]
    fn last_item_holds_out_each_users_newest_interaction() {
        let d = data();
        let s = split(&d, Holdout::LastItem, None, 1);
        assert_eq!(s.test.len(), 10);
        assert_eq!(s.train.events.len(), 70);
        for (user, items) in &s.test {
            let newest = d.events.iter().filter(|e| e.user == *user).max_by_key(|e| e.timestamp).unwrap();
            assert_eq!(items, &HashSet::from([newest.item]));
        }
    }

    #[test]
    fn random_fraction_holds_out_a_quarter_of_distinct_items_and_is_seeded() {
        let d = data();
        let a = split(&d, Holdout::RandomFraction { test_fraction: 0.25 }, None, 7);
        let b = split(&d, Holdout::RandomFraction { test_fraction: 0.25 }, None, 7);
        assert_eq!(a.test, b.test);
        assert!(a.test.iter().all(|(_, items)| items.len() == 2), "8 items → 6 train, 2 test");
        for (user, items) in &a.test {
            assert!(!a.train.events.iter().any(|e| e.user == *user && items.contains(&e.item)));
        }
        let c = split(&d, Holdout::RandomFraction { test_fraction: 0.25 }, None, 8);
        assert_ne!(a.test, c.test);
    }

    #[test]
    fn next_trip_starts_where_the_user_is_not_at_home_browsing() {
        // A trip in the city at (0, 0); browsing from home (10, 10) a week
        // later; the next trip, in the city, three days after that.
        let mut b = TrainingDataBuilder::new();
        for i in 0..4 {
            let meta = crate::ItemMeta { location: Some((0.0, 0.001 * i as f64)), ..Default::default() };
            b.add_item_with_meta(&format!("i{i}"), meta);
        }
        let day = 86_400;
        let on_the_spot = Some((0.0, 0.0));
        b.add_located_interaction("u", "i0", 0, "view", None, on_the_spot);
        b.add_located_interaction("u", "i1", 3_600, "view", None, on_the_spot);
        b.add_located_interaction("u", "i2", 7 * day, "view", None, Some((10.0, 10.0)));
        b.add_located_interaction("u", "i3", 10 * day, "view", None, on_the_spot);
        b.add_located_interaction("u", "i0", 10 * day + 3_600, "view", None, on_the_spot);
        let d = b.build();
        let s = split(&d, Holdout::NextTrip, None, 1);
        assert_eq!(s.test, vec![(0, HashSet::from([3, 0]))]);
        assert_eq!(s.contexts[0].time, Some(10 * day));

        // Browsing from home is held out with the trip it precedes when it
        // is the only pause: a trip starts on the spot.
        let mut b = TrainingDataBuilder::new();
        for i in 0..3 {
            let meta = crate::ItemMeta { location: Some((0.0, 0.001 * i as f64)), ..Default::default() };
            b.add_item_with_meta(&format!("i{i}"), meta);
        }
        b.add_located_interaction("u", "i0", 0, "view", None, on_the_spot);
        b.add_located_interaction("u", "i1", 7 * day, "view", None, Some((10.0, 10.0)));
        b.add_located_interaction("u", "i2", 7 * day + 3_600, "view", None, Some((10.0, 10.0)));
        let s = split(&b.build(), Holdout::NextTrip, None, 1);
        assert!(s.test.is_empty(), "{:?}", s.test);
    }

    #[test]
    fn browsing_from_a_device_that_reports_no_location_is_no_trip_for_a_user_whose_phone_does() {
        // A trip on the spot, then a week later a desktop session (no
        // location) of the same places: the last trip is still the first.
        let events = |located: bool| {
            let mut b = TrainingDataBuilder::new();
            for i in 0..3 {
                let meta = crate::ItemMeta { location: Some((0.0, 0.001 * i as f64)), ..Default::default() };
                b.add_item_with_meta(&format!("i{i}"), meta);
            }
            let day = 86_400;
            let here = located.then_some((0.0, 0.0));
            b.add_located_interaction("u", "i0", 0, "view", None, here);
            b.add_located_interaction("u", "i1", 3 * day, "view", None, here);
            b.add_located_interaction("u", "i2", 10 * day, "view", None, None);
            split(&b.build(), Holdout::NextTrip, None, 1)
        };
        // The trip is asked about; the browsing after it is left out of training too.
        let s = events(true);
        assert_eq!(s.test, vec![(0, HashSet::from([1]))]);
        assert_eq!(s.train.events.iter().map(|e| e.item).collect::<Vec<_>>(), vec![0]);
        // Where none of the user's events says where they were, nothing
        // tells the desktop session apart: the pause before it starts the last trip.
        let s = events(false);
        assert_eq!(s.test, vec![(0, HashSet::from([2]))]);
        assert_eq!(s.train.events.len(), 2);
    }

    #[test]
    fn an_arrival_is_asked_at_its_start_and_for_its_newest_interaction() {
        // "away" visits the city at (0, 0), then arrives in one at (10, 0);
        // "home" takes both trips in the city at (0, 0).
        let mut b = TrainingDataBuilder::new();
        for (city, latitude) in [("a", 0.0), ("b", 10.0)] {
            for i in 0..3 {
                let meta = crate::ItemMeta { location: Some((latitude, 0.001 * i as f64)), ..Default::default() };
                b.add_item_with_meta(&format!("{city}{i}"), meta);
            }
        }
        let day = 86_400;
        for (user, second) in [("away", "b"), ("home", "a")] {
            let at = |city: &str| Some((if city == "b" { 10.0 } else { 0.0 }, 0.0));
            b.add_located_interaction(user, "a0", 0, "view", None, at("a"));
            b.add_located_interaction(user, "a1", 3_600, "view", None, at("a"));
            for (step, item) in ["0", "1", "2"].into_iter().enumerate() {
                let t = 7 * day + step as i64 * 3_600;
                b.add_located_interaction(user, &format!("{second}{item}"), t, "click", None, at(second));
            }
        }
        let d = b.build();
        let s = split(&d, Holdout::LastItemOrArrival, None, 1);
        let index = |id: &str| d.items.get(id).unwrap();
        let (away, home) = (d.users.get("away").unwrap(), d.users.get("home").unwrap());
        assert_eq!(
            s.test,
            vec![
                (away, HashSet::from([index("b0"), index("b1"), index("b2")])),
                (away, HashSet::from([index("b2")])),
                (home, HashSet::from([index("a2")])),
            ]
        );
        // The arrival from its first moment; its newest interaction after
        // the rest of the trip, folded in as a served model would.
        assert_eq!(s.contexts[0].time, Some(7 * day));
        assert_eq!(s.contexts[1].time, Some(7 * day + 2 * 3_600));
        assert!(s.recent[0].is_empty() && s.recent[2].is_empty());
        assert_eq!(s.recent[1].iter().map(|e| e.item).collect::<Vec<_>>(), vec![index("b0"), index("b1")]);
        // The trip is out of training; "home" loses only its newest event.
        assert_eq!(s.train.events.iter().filter(|e| e.user == away).count(), 2);
        assert_eq!(s.train.events.iter().filter(|e| e.user == home).count(), 4);
    }

    #[test]
    fn a_limit_on_test_users_draws_among_those_the_holdout_can_evaluate() {
        // Ten users with a history, ten with a single interaction (nothing to hold out).
        let mut b = TrainingDataBuilder::new();
        for u in 0..20 {
            let interactions = if u % 2 == 0 { 4 } else { 1 };
            for t in 0..interactions {
                b.add_interaction(&format!("u{u}"), &format!("i{t}"), 100 * t as i64, "click", None);
            }
        }
        let d = b.build();
        for seed in 0..5 {
            let s = split(&d, Holdout::LastItem, Some(6), seed);
            assert_eq!(s.test.len(), 6, "seed {seed}");
        }
    }

    #[test]
    fn newest_fraction_cuts_by_time_and_limits_users() {
        let d = data();
        let s = split(&d, Holdout::NewestFraction { fraction: 0.25 }, Some(4), 3);
        assert_eq!(s.test.len(), 4);
        let cutoff = s.train.events.iter().filter(|e| s.test.iter().any(|(u, _)| *u == e.user)).map(|e| e.timestamp).max().unwrap();
        assert!(cutoff < 600, "{cutoff}");
    }
}
