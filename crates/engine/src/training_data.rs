use crate::IdIndex;
use serde::{Deserialize, Serialize};

/// What is known about an item besides its interactions: where it is, what
/// kind of place it is, when it is in season and when it appeared.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ItemMeta {
    /// WGS84 degrees.
    pub location: Option<(f64, f64)>,
    /// Genres or categories (a multi-valued GENRE becomes several).
    pub categories: Vec<String>,
    pub city: Option<String>,
    /// Months in season as bits 0 (January) to 11; 0 means unknown (all year).
    pub season_months: u16,
    /// Unix seconds the item appeared, if known.
    pub created: Option<i64>,
}

/// One interaction with ids replaced by dense indices.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainingEvent {
    pub user: u32,
    pub item: u32,
    pub event_type: u16,
    pub timestamp: i64,
    /// `EVENT_VALUE`, when the data carries one (e.g. a rating).
    pub value: Option<f32>,
    /// Where the user was (`LOCATION`), when the event says.
    pub location: Option<(f32, f32)>,
}

/// Everything a recipe trains on: the interactions plus the full item
/// catalogue (items without interactions are part of it, so they can be
/// served through the cold-start path).
#[derive(Debug, Clone, Default)]
pub struct TrainingData {
    pub users: IdIndex,
    pub items: IdIndex,
    pub event_types: IdIndex,
    pub events: Vec<TrainingEvent>,
    /// Per item index; may be shorter than `items` (missing entries are unknown).
    pub item_meta: Vec<ItemMeta>,
    /// Festivals, markets and other dated happenings, at an item or a place.
    pub local_events: Vec<crate::context::LocalEvent>,
}

impl TrainingData {
    /// The newest interaction time, or 0 with no interactions.
    pub fn max_timestamp(&self) -> i64 {
        self.events.iter().map(|e| e.timestamp).max().unwrap_or(0)
    }

    pub fn meta(&self, item: u32) -> Option<&ItemMeta> {
        self.item_meta.get(item as usize)
    }

    /// Events grouped by user and sorted by time within each user:
    /// `(order, offsets)` where user `u`'s events are
    /// `order[offsets[u]..offsets[u + 1]]` (indices into `events`).
    pub fn by_user(&self) -> (Vec<u32>, Vec<usize>) {
        let mut order: Vec<u32> = (0..self.events.len() as u32).collect();
        order.sort_by_key(|&i| {
            let e = &self.events[i as usize];
            (e.user, e.timestamp, i)
        });
        let mut offsets = vec![0usize; self.users.len() + 1];
        for e in &self.events {
            offsets[e.user as usize + 1] += 1;
        }
        for u in 0..self.users.len() {
            offsets[u + 1] += offsets[u];
        }
        (order, offsets)
    }
}

/// Builds [`TrainingData`] from string ids, one interaction at a time, so that
/// callers can stream rows from storage without holding them twice.
#[derive(Debug, Default)]
pub struct TrainingDataBuilder {
    data: TrainingData,
}

impl TrainingDataBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a catalogue item (from the items dataset), with or without interactions.
    pub fn add_item(&mut self, item_id: &str) {
        self.data.items.intern(item_id);
    }

    /// Adds a catalogue item with what is known about it.
    pub fn add_item_with_meta(&mut self, item_id: &str, meta: ItemMeta) {
        let index = self.data.items.intern(item_id) as usize;
        if self.data.item_meta.len() <= index {
            self.data.item_meta.resize(index + 1, ItemMeta::default());
        }
        self.data.item_meta[index] = meta;
    }

    pub fn add_interaction(&mut self, user_id: &str, item_id: &str, timestamp: i64, event_type: &str, value: Option<f32>) {
        self.add_located_interaction(user_id, item_id, timestamp, event_type, value, None);
    }

    /// An interaction with where the user was when it happened.
    pub fn add_located_interaction(
        &mut self,
        user_id: &str,
        item_id: &str,
        timestamp: i64,
        event_type: &str,
        value: Option<f32>,
        location: Option<(f32, f32)>,
    ) {
        let user = self.data.users.intern(user_id);
        let item = self.data.items.intern(item_id);
        let event_type = self.data.event_types.intern(event_type) as u16;
        self.data.events.push(TrainingEvent { user, item, event_type, timestamp, value, location });
    }

    /// A local event at `item_id` (added to the catalogue if new) and/or a place, from `start` to `end` (Unix seconds).
    pub fn add_local_event(&mut self, item_id: Option<&str>, location: Option<(f64, f64)>, start: i64, end: i64) {
        let item = item_id.map(|id| self.data.items.intern(id));
        self.data.local_events.push(crate::context::LocalEvent { item, location, start, end });
    }

    pub fn len(&self) -> usize {
        self.data.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.events.is_empty()
    }

    pub fn build(mut self) -> TrainingData {
        self.data.item_meta.resize(self.data.items.len(), ItemMeta::default());
        self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_events_by_user_in_time_order() {
        let mut b = TrainingDataBuilder::new();
        b.add_interaction("u1", "a", 30, "click", None);
        b.add_interaction("u2", "b", 10, "view", None);
        b.add_interaction("u1", "b", 20, "view", None);
        b.add_item("cold");
        let data = b.build();
        assert_eq!(data.items.len(), 3);
        let (order, offsets) = data.by_user();
        assert_eq!(offsets, vec![0, 2, 3]);
        let u1: Vec<i64> = order[0..2].iter().map(|&i| data.events[i as usize].timestamp).collect();
        assert_eq!(u1, vec![20, 30]);
        assert_eq!(data.max_timestamp(), 30);
    }
}
