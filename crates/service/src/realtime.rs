//! Real-time user state: each user's newest tracked events, per dataset
//! group, folded into recommendations at query time.

use dashmap::DashMap;
use parking_lot::Mutex;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use travelrec_store::EventPosition;

#[derive(Debug, Clone, PartialEq)]
pub struct RecentEvent {
    pub position: EventPosition,
    pub item_id: Arc<str>,
    pub event_type: Arc<str>,
    pub timestamp: i64,
    pub value: Option<f32>,
    /// Where the user was (the event's LOCATION), when it says.
    pub location: Option<(f64, f64)>,
    /// When it arrived; fold-in counts the event as at least this recent.
    pub received_at: i64,
}

/// An event's LOCATION field (`"lat,lon"`), when it has a valid one.
pub fn event_location(fields: &[(String, String)]) -> Option<(f64, f64)> {
    let value = fields.iter().find(|(n, _)| n == "LOCATION")?.1.as_str();
    crate::context::parse_location("LOCATION", value).ok()
}

/// Tracked events a model already contains: per log partition, the last
/// sequence number included.
pub type Cutoff = BTreeMap<u32, u64>;

/// Whether an event is newer than what a model was trained on.
pub fn after_cutoff(position: EventPosition, cutoff: &Cutoff) -> bool {
    position.sequence > cutoff.get(&position.partition).copied().unwrap_or(0)
}

/// One dataset group's users. Holds every tracked event newer than `loaded`
/// (up to `max_per_user` newest per user): live events are always recorded,
/// older ones are loaded from the store when a campaign whose model predates
/// them is deployed.
pub struct GroupState {
    users: DashMap<String, Mutex<VecDeque<RecentEvent>>>,
    /// Item ids and event types, shared by every event that names them.
    interned: DashMap<Arc<str>, ()>,
    /// `None` until something was loaded from the store: only live events so far.
    loaded: Mutex<Option<Cutoff>>,
    max_per_user: usize,
}

/// What the real-time state of a group holds, approximately, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct RealtimeMemory {
    pub users: usize,
    pub events: usize,
    pub bytes: usize,
}

impl GroupState {
    fn new(max_per_user: usize) -> Self {
        Self { users: DashMap::new(), interned: DashMap::new(), loaded: Mutex::new(None), max_per_user }
    }

    fn intern(&self, text: &Arc<str>) -> Arc<str> {
        if let Some(entry) = self.interned.get(&**text) {
            return entry.key().clone();
        }
        self.interned.entry(text.clone()).or_insert(()).key().clone()
    }

    /// Drops everything held of a user; returns how many events went.
    pub fn forget(&self, user_id: &str) -> usize {
        self.users.remove(user_id).map_or(0, |(_, queue)| queue.into_inner().len())
    }

    /// Records events for one user, keeping the newest `max_per_user` by log
    /// position and skipping positions already present.
    pub fn record(&self, user_id: &str, events: impl IntoIterator<Item = RecentEvent>) {
        let entry = self.users.entry(user_id.to_string()).or_insert_with(|| Mutex::new(VecDeque::new()));
        let mut queue = entry.lock();
        for mut event in events {
            event.item_id = self.intern(&event.item_id);
            event.event_type = self.intern(&event.event_type);
            if queue.iter().any(|e| e.position == event.position) {
                continue;
            }
            match queue.back() {
                Some(last) if last.position > event.position => {
                    let at = queue.partition_point(|e| e.position < event.position);
                    queue.insert(at, event);
                }
                _ => queue.push_back(event),
            }
            while queue.len() > self.max_per_user {
                queue.pop_front();
            }
        }
    }

    /// The user's events newer than `cutoff`, in log order.
    pub fn recent(&self, user_id: &str, cutoff: &Cutoff) -> Vec<RecentEvent> {
        match self.users.get(user_id) {
            Some(queue) => queue.lock().iter().filter(|e| after_cutoff(e.position, cutoff)).cloned().collect(),
            None => Vec::new(),
        }
    }

    /// Users, events and bytes held: per user its id, its queue and the
    /// queue's slots; interned strings once for the whole group.
    pub fn memory(&self) -> RealtimeMemory {
        let (mut events, mut bytes) = (0, 0);
        for entry in self.users.iter() {
            let queue = entry.value().lock();
            events += queue.len();
            bytes += std::mem::size_of::<(String, Mutex<VecDeque<RecentEvent>>)>()
                + entry.key().capacity()
                + queue.capacity() * std::mem::size_of::<RecentEvent>();
        }
        bytes += self.interned.iter().map(|e| std::mem::size_of::<Arc<str>>() + 16 + e.key().len()).sum::<usize>();
        RealtimeMemory { users: self.users.len(), events, bytes }
    }

    /// Where the user's newest located event says they were (nothing copied).
    pub fn last_location(&self, user_id: &str) -> Option<(f64, f64)> {
        self.users.get(user_id)?.lock().iter().rev().find_map(|e| e.location)
    }

    /// Whether every event newer than `cutoff` is already here.
    pub fn covers(&self, cutoff: &Cutoff) -> bool {
        match &*self.loaded.lock() {
            Some(loaded) => loaded.iter().all(|(p, s)| cutoff.get(p).copied().unwrap_or(0) >= *s),
            None => false,
        }
    }

    /// Notes that everything newer than `cutoff` has been loaded.
    pub fn mark_loaded(&self, cutoff: &Cutoff) {
        let mut loaded = self.loaded.lock();
        let merged = match loaded.take() {
            Some(mut current) => {
                current.retain(|p, s| {
                    *s = (*s).min(cutoff.get(p).copied().unwrap_or(0));
                    true
                });
                current
            }
            None => cutoff.clone(),
        };
        *loaded = Some(merged);
    }
}

pub struct RealtimeState {
    groups: DashMap<String, Arc<GroupState>>,
    max_per_user: usize,
}

impl RealtimeState {
    pub fn new(max_per_user: usize) -> Self {
        Self { groups: DashMap::new(), max_per_user }
    }

    pub fn group(&self, dataset_group_arn: &str) -> Arc<GroupState> {
        if let Some(group) = self.groups.get(dataset_group_arn) {
            return group.clone();
        }
        self.groups.entry(dataset_group_arn.to_string()).or_insert_with(|| Arc::new(GroupState::new(self.max_per_user))).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(partition: u32, sequence: u64) -> RecentEvent {
        RecentEvent {
            position: EventPosition { partition, sequence, index: 0 },
            item_id: "i".into(),
            event_type: "view".into(),
            timestamp: sequence as i64,
            value: None,
            location: None,
            received_at: 0,
        }
    }

    #[test]
    fn keeps_the_newest_events_in_log_order_without_duplicates() {
        let group = GroupState::new(3);
        group.record("u", [event(0, 5), event(0, 7)]);
        group.record("u", [event(0, 6), event(0, 7), event(0, 9)]);
        let seqs: Vec<u64> = group.recent("u", &Cutoff::new()).iter().map(|e| e.position.sequence).collect();
        assert_eq!(seqs, vec![6, 7, 9]);
        assert_eq!(group.recent("u", &Cutoff::from([(0, 6)])).len(), 2);
        assert_eq!(group.recent("u", &Cutoff::from([(1, 100)])).len(), 3, "a cutoff on another partition does not apply");
        assert!(group.recent("nobody", &Cutoff::new()).is_empty());
    }

    #[test]
    fn shares_item_ids_and_counts_its_memory() {
        let group = GroupState::new(50);
        for u in 0..200 {
            let events = (0..5).map(|k| RecentEvent { item_id: format!("item-{}", (u + k) % 30).into(), ..event(0, (u * 10 + k) as u64) });
            group.record(&format!("user-{u}"), events);
        }
        let memory = group.memory();
        assert_eq!((memory.users, memory.events), (200, 1000));
        let a = group.recent("user-1", &Cutoff::new());
        let b = group.recent("user-31", &Cutoff::new());
        assert!(Arc::ptr_eq(&a[0].item_id, &b[0].item_id), "the same item id is stored once: {:?} {:?}", a[0], b[0]);
        let per_user = memory.bytes / memory.users;
        assert!(per_user > 5 * std::mem::size_of::<RecentEvent>() && per_user < 2048, "{per_user} bytes per user");
    }

    #[test]
    fn knows_what_it_has_loaded() {
        let group = GroupState::new(10);
        let cutoff = Cutoff::from([(0, 10), (1, 4)]);
        assert!(!group.covers(&cutoff));
        group.mark_loaded(&cutoff);
        assert!(group.covers(&cutoff));
        assert!(group.covers(&Cutoff::from([(0, 12), (1, 4)])));
        assert!(!group.covers(&Cutoff::from([(0, 9), (1, 4)])));
    }
}
