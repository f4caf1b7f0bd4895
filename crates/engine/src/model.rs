//! A trained model: immutable once built, serialisable, and cheap to score.

use crate::ease::EaseModel;
use crate::topk::{softmax_in_place, top_k};
use crate::{Hyperparameters, IdIndex, Recipe, TrainingData};
use serde::{Deserialize, Serialize};

/// One event in a user's history, as the model scores it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HistoryEvent {
    pub item: u32,
    /// Index into [`Model::event_types`]; [`HistoryEvent::UNKNOWN_TYPE`] for a type
    /// the model has not seen (it gets the default weight).
    pub event_type: u16,
    pub timestamp: i64,
}

impl HistoryEvent {
    pub const UNKNOWN_TYPE: u16 = u16::MAX;
}

/// Every user's newest events at training time, in time order.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Histories {
    users: IdIndex,
    offsets: Vec<u32>,
    events: Vec<HistoryEvent>,
}

impl Histories {
    pub(crate) fn build(data: &TrainingData, order: &[u32], offsets: &[usize], max_history: usize) -> Self {
        let mut histories = Histories { users: data.users.clone(), offsets: Vec::with_capacity(data.users.len() + 1), events: Vec::new() };
        histories.offsets.push(0);
        for u in 0..data.users.len() {
            let (start, end) = (offsets[u], offsets[u + 1]);
            let start = start.max(end.saturating_sub(max_history));
            for &i in &order[start..end] {
                let e = &data.events[i as usize];
                histories.events.push(HistoryEvent { item: e.item, event_type: e.event_type, timestamp: e.timestamp });
            }
            histories.offsets.push(histories.events.len() as u32);
        }
        histories
    }

    /// The user's history at training time (empty for an unknown user).
    pub fn get(&self, user_id: &str) -> &[HistoryEvent] {
        match self.users.get(user_id) {
            Some(u) => &self.events[self.offsets[u as usize] as usize..self.offsets[u as usize + 1] as usize],
            None => &[],
        }
    }

    pub fn users(&self) -> usize {
        self.users.len()
    }
}

/// How a model turns a history into scores.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Scorer {
    Popularity,
    Ease(EaseModel),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingSummary {
    pub users: usize,
    pub items: usize,
    pub interactions: usize,
    /// Newest interaction time in the training data (Unix seconds).
    pub max_timestamp: i64,
    pub training_seconds: f64,
}

/// An item and its probability under the catalogue-wide softmax.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoredItem {
    pub item: u32,
    pub score: f32,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("not a travelrec model snapshot (bad magic bytes)")]
    BadMagic,
    #[error("model snapshot format {found} is not supported by this build (expects {expected}); retrain the solution version")]
    UnsupportedVersion { found: u32, expected: u32 },
    #[error("model snapshot is corrupt: {0}")]
    Corrupt(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Model {
    pub format_version: u32,
    pub recipe: Recipe,
    pub hyperparameters: Hyperparameters,
    pub items: IdIndex,
    pub event_types: Vec<String>,
    /// Interaction count per item.
    pub popularity: Vec<f32>,
    pub scorer: Scorer,
    pub histories: Histories,
    pub summary: TrainingSummary,
}

const MAGIC: &[u8; 8] = b"TRECMDL\0";

impl Model {
    pub const FORMAT_VERSION: u32 = 1;

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&Self::FORMAT_VERSION.to_le_bytes());
        postcard::to_extend(self, bytes).expect("serialising to a Vec cannot fail")
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Model, ModelError> {
        if bytes.len() < 12 || &bytes[..8] != MAGIC {
            return Err(ModelError::BadMagic);
        }
        let found = u32::from_le_bytes(bytes[8..12].try_into().expect("four bytes"));
        if found != Self::FORMAT_VERSION {
            return Err(ModelError::UnsupportedVersion { found, expected: Self::FORMAT_VERSION });
        }
        postcard::from_bytes(&bytes[12..]).map_err(|e| ModelError::Corrupt(e.to_string()))
    }

    pub fn item_index(&self, item_id: &str) -> Option<u32> {
        self.items.get(item_id)
    }

    pub fn item_id(&self, item: u32) -> &str {
        self.items.id(item)
    }

    pub fn event_type_index(&self, event_type: &str) -> u16 {
        self.event_types.iter().position(|t| t == event_type).map_or(HistoryEvent::UNKNOWN_TYPE, |i| i as u16)
    }

    /// The `k` best items for a user whose history is `history` (training
    /// time) followed by `recent` (events that arrived since), with their
    /// probabilities under a softmax over the whole catalogue.
    pub fn recommend(&self, history: &[HistoryEvent], recent: &[HistoryEvent], k: usize) -> Vec<ScoredItem> {
        let mut scores = vec![0f32; self.items.len()];
        self.raw_scores(history, recent, &mut scores);
        softmax_in_place(&mut scores, self.hyperparameters.softmax_temperature);
        top_k(&scores, k).into_iter().map(|item| ScoredItem { item, score: scores[item as usize] }).collect()
    }

    /// Unnormalised scores for every item (higher is better).
    pub fn raw_scores(&self, history: &[HistoryEvent], recent: &[HistoryEvent], out: &mut [f32]) {
        let profile = self.profile(history, recent);
        let max_popularity = self.popularity.iter().fold(0f32, |m, &p| m.max(p));
        let popularity = |i: usize| (1.0 + self.popularity[i]).ln() / (1.0 + max_popularity).ln().max(1e-6);
        match &self.scorer {
            Scorer::Ease(ease) if !profile.is_empty() => {
                ease.score(&profile, out);
                // Popularity only breaks ties between items the history says
                // nothing about.
                for (i, s) in out.iter_mut().enumerate() {
                    *s += 1e-4 * popularity(i);
                }
            }
            _ => {
                for (i, s) in out.iter_mut().enumerate() {
                    *s = popularity(i);
                }
            }
        }
    }

    /// The user's weighted item profile: event-type weight × recency decay
    /// (relative to the user's newest event), summed per item, log-damped.
    fn profile(&self, history: &[HistoryEvent], recent: &[HistoryEvent]) -> Vec<(u32, f32)> {
        let hp = &self.hyperparameters;
        let keep = hp.max_history;
        let total = history.len() + recent.len();
        let skip = total.saturating_sub(keep);
        let events = history.iter().chain(recent).skip(skip);
        let newest = events.clone().map(|e| e.timestamp).max().unwrap_or(0);
        let half_life = hp.recency_half_life_days as f64 * 86_400.0;
        let mut weights: Vec<(u32, f32)> = Vec::with_capacity(keep.min(total));
        for e in events {
            if e.item as usize >= self.items.len() {
                continue;
            }
            let type_weight = match self.event_types.get(e.event_type as usize) {
                Some(name) => hp.event_weights.get(name).copied().unwrap_or(hp.default_event_weight),
                None => hp.default_event_weight,
            };
            let age = (newest - e.timestamp).max(0) as f64;
            let w = type_weight * (0.5f64).powf(age / half_life) as f32;
            match weights.iter_mut().find(|(item, _)| *item == e.item) {
                Some((_, total)) => *total += w,
                None => weights.push((e.item, w)),
            }
        }
        weights.retain(|(_, w)| *w > 0.0);
        weights.iter_mut().for_each(|(_, w)| *w = w.ln_1p());
        weights
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TrainingDataBuilder, train};

    /// Users who like museums and users who like beaches; "m*" and "b*" items.
    fn two_tastes() -> TrainingData {
        let mut builder = TrainingDataBuilder::new();
        for u in 0..60 {
            let prefix = if u % 2 == 0 { "m" } else { "b" };
            for k in 0..4 {
                let item = format!("{prefix}{}", (u + k) % 6);
                builder.add_interaction(&format!("u{u}"), &item, 1_000 + k as i64, if k == 3 { "book" } else { "view" }, None);
            }
        }
        // "m0" is the most popular item overall.
        for u in 100..130 {
            builder.add_interaction(&format!("u{u}"), "m0", 5, "view", None);
        }
        builder.add_item("brand-new");
        builder.build()
    }

    fn ids(model: &Model, items: &[ScoredItem]) -> Vec<String> {
        items.iter().map(|s| model.item_id(s.item).to_string()).collect()
    }

    #[test]
    fn a_new_event_changes_the_next_recommendations_without_retraining() {
        let data = two_tastes();
        let model = train(&data, Recipe::UserPersonalization, &Hyperparameters::default(), &crate::no_progress).unwrap();
        // A cold user gets popular items.
        let cold = model.recommend(&[], &[], 3);
        assert_eq!(model.item_id(cold[0].item), "m0");
        // After booking a beach, beaches lead.
        let beach = HistoryEvent { item: model.item_index("b2").unwrap(), event_type: model.event_type_index("book"), timestamp: 2_000 };
        let after = ids(&model, &model.recommend(&[], &[beach], 5));
        assert!(after.iter().take(4).all(|id| id.starts_with('b')), "{after:?}");
    }

    #[test]
    fn recent_events_outweigh_old_ones() {
        let data = two_tastes();
        let model = train(&data, Recipe::UserPersonalization, &Hyperparameters::default(), &crate::no_progress).unwrap();
        let event = |item: &str, days: i64| HistoryEvent {
            item: model.item_index(item).unwrap(),
            event_type: model.event_type_index("view"),
            timestamp: days * 86_400,
        };
        let history = [event("m1", 0), event("m2", 1), event("m3", 2)];
        let recent = [event("b1", 200)];
        let best = ids(&model, &model.recommend(&history, &recent, 3));
        assert!(best.iter().all(|id| id.starts_with('b')), "{best:?}");
    }

    #[test]
    fn scores_are_a_softmax_over_the_catalogue() {
        let data = two_tastes();
        let model = train(&data, Recipe::UserPersonalization, &Hyperparameters::default(), &crate::no_progress).unwrap();
        let all = model.recommend(model.histories.get("u1"), &[], model.items.len());
        assert_eq!(all.len(), model.items.len());
        let total: f32 = all.iter().map(|s| s.score).sum();
        assert!((total - 1.0).abs() < 1e-4, "{total}");
        assert!(all.windows(2).all(|w| w[0].score >= w[1].score));
    }

    #[test]
    fn popularity_count_ranks_by_interactions() {
        let data = two_tastes();
        let model = train(&data, Recipe::PopularityCount, &Hyperparameters::default(), &crate::no_progress).unwrap();
        let best = model.recommend(model.histories.get("u1"), &[], 1);
        assert_eq!(model.item_id(best[0].item), "m0");
    }

    #[test]
    fn snapshots_round_trip_and_reject_garbage() {
        let data = two_tastes();
        let model = train(&data, Recipe::UserPersonalization, &Hyperparameters::default(), &crate::no_progress).unwrap();
        let back = Model::from_bytes(&model.to_bytes()).unwrap();
        let history = model.histories.get("u3");
        assert!(!history.is_empty());
        assert_eq!(model.recommend(history, &[], 5), back.recommend(back.histories.get("u3"), &[], 5));
        assert!(matches!(Model::from_bytes(b"not a model"), Err(ModelError::BadMagic)));
        let mut truncated = model.to_bytes();
        truncated.truncate(truncated.len() / 2);
        assert!(matches!(Model::from_bytes(&truncated), Err(ModelError::Corrupt(_))));
    }
}
