//! Dataset rows as stored: validated, typed where the engine needs the type,
//! and the remaining schema fields kept as validated text.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InteractionRow {
    pub user_id: String,
    pub item_id: String,
    /// Unix seconds.
    pub timestamp: i64,
    pub event_type: String,
    pub event_value: Option<f32>,
    pub session_id: Option<String>,
    /// Other schema fields (context such as LOCATION or DEVICE), by field name.
    pub fields: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemRow {
    pub item_id: String,
    pub fields: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRow {
    pub user_id: String,
    pub fields: Vec<(String, String)>,
}

/// An interaction that arrived through an event tracker, with what the
/// tracker knew about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackedEvent {
    pub interaction: InteractionRow,
    /// When travelrec received it (Unix seconds). Real-time fold-in treats an
    /// event as at least this recent: it is new information whatever its timestamp.
    pub received_at: i64,
    /// The caller's `eventId` (or one travelrec made up); an id is stored once per dataset group.
    pub event_id: String,
    /// The recommendation the user acted on, if the client says so.
    pub recommendation_id: Option<String>,
    /// Items the user was shown along with this one.
    pub impression: Vec<String>,
}

/// Where an event sits in the event log: its record's partition (shard) and
/// sequence number, and its index within the record. Positions order events
/// within a partition and identify them for idempotent writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct EventPosition {
    pub partition: u32,
    pub sequence: u64,
    pub index: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalEventRow {
    pub local_event_id: String,
    /// NAME, CITY, ITEM_ID, LATITUDE, LONGITUDE, START_DATE, END_DATE, ….
    pub fields: Vec<(String, String)>,
}

/// A batch of rows of one dataset type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RowBatch {
    Interactions(Vec<InteractionRow>),
    Items(Vec<ItemRow>),
    Users(Vec<UserRow>),
    LocalEvents(Vec<LocalEventRow>),
}

impl RowBatch {
    /// Drops the rows of `user_id` (interactions and user rows; items and
    /// local events have no user); returns how many went.
    pub fn remove_user(&mut self, user_id: &str) -> usize {
        let before = self.len();
        match self {
            RowBatch::Interactions(rows) => rows.retain(|r| r.user_id != user_id),
            RowBatch::Users(rows) => rows.retain(|r| r.user_id != user_id),
            RowBatch::Items(_) | RowBatch::LocalEvents(_) => {}
        }
        before - self.len()
    }

    pub fn len(&self) -> usize {
        match self {
            RowBatch::Interactions(r) => r.len(),
            RowBatch::Items(r) => r.len(),
            RowBatch::Users(r) => r.len(),
            RowBatch::LocalEvents(r) => r.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where a scan of a dataset's rows continues; start with `RowCursor::default()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct RowCursor {
    pub import: u64,
    pub chunk: u64,
}
