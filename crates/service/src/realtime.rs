//! Real-time user state: each user's newest tracked events, per dataset
//! group, folded into recommendations at query time.

use dashmap::DashMap;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Clone, PartialEq)]
pub struct RecentEvent {
    pub sequence: u64,
    pub item_id: Arc<str>,
    pub event_type: Arc<str>,
    pub timestamp: i64,
    pub value: Option<f32>,
    /// When it arrived; fold-in counts the event as at least this recent.
    pub received_at: i64,
}

/// One dataset group's users. Holds every tracked event with a sequence
/// number above `loaded_after` (up to `max_per_user` newest per user): live
/// events are always recorded, and older ones are loaded on demand when a
/// campaign whose model predates them is deployed.
pub struct GroupState {
    users: DashMap<String, Mutex<VecDeque<RecentEvent>>>,
    loaded_after: AtomicU64,
    max_per_user: usize,
}

impl GroupState {
    fn new(max_per_user: usize) -> Self {
        Self { users: DashMap::new(), loaded_after: AtomicU64::new(u64::MAX), max_per_user }
    }

    /// Records events for one user (already durable), keeping the newest
    /// `max_per_user` by sequence and skipping sequences already present.
    pub fn record(&self, user_id: &str, events: impl IntoIterator<Item = RecentEvent>) {
        let entry = self.users.entry(user_id.to_string()).or_insert_with(|| Mutex::new(VecDeque::new()));
        let mut queue = entry.lock();
        for event in events {
            if queue.iter().any(|e| e.sequence == event.sequence) {
                continue;
            }
            match queue.back() {
                Some(last) if last.sequence > event.sequence => {
                    let at = queue.partition_point(|e| e.sequence < event.sequence);
                    queue.insert(at, event);
                }
                _ => queue.push_back(event),
            }
            while queue.len() > self.max_per_user {
                queue.pop_front();
            }
        }
    }

    /// The user's events with a sequence number above `after`, oldest first.
    pub fn recent(&self, user_id: &str, after: u64) -> Vec<RecentEvent> {
        match self.users.get(user_id) {
            Some(queue) => queue.lock().iter().filter(|e| e.sequence > after).cloned().collect(),
            None => Vec::new(),
        }
    }

    pub fn loaded_after(&self) -> u64 {
        self.loaded_after.load(Ordering::Acquire)
    }

    pub fn mark_loaded_after(&self, sequence: u64) {
        self.loaded_after.fetch_min(sequence, Ordering::AcqRel);
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

    fn event(sequence: u64) -> RecentEvent {
        RecentEvent { sequence, item_id: "i".into(), event_type: "view".into(), timestamp: sequence as i64, value: None, received_at: 0 }
    }

    #[test]
    fn keeps_the_newest_events_in_sequence_order_without_duplicates() {
        let group = GroupState::new(3);
        group.record("u", [event(5), event(7)]);
        group.record("u", [event(6), event(7), event(9)]);
        let seqs: Vec<u64> = group.recent("u", 0).iter().map(|e| e.sequence).collect();
        assert_eq!(seqs, vec![6, 7, 9]);
        assert_eq!(group.recent("u", 6).len(), 2);
        assert!(group.recent("nobody", 0).is_empty());
    }
}
