//! Storage for travelrec: resources with their lifecycle, dataset rows,
//! tracked events and model snapshots, behind the [`Store`] trait.
//!
//! The embedded backend ([`EmbeddedStore`]) keeps everything in one data
//! directory (a redb database plus model files); the PostgreSQL backend
//! ([`PostgresStore`]) in one database schema that several processes share.
//! Every backend must pass [`conformance::run_all`].

pub mod conformance;
mod embedded;
pub mod postgres;
mod resources;
mod rows;

pub use embedded::EmbeddedStore;
pub use postgres::PostgresStore;
pub use resources::*;
pub use rows::{EventPosition, InteractionRow, ItemRow, LocalEventRow, RowBatch, RowCursor, TrackedEvent, UserRow};

use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} `{arn}` already exists")]
    AlreadyExists { kind: &'static str, arn: String },
    #[error("the data directory {path} is in use by another travelrec process; stop that process or pass another --data-dir")]
    Locked { path: String },
    #[error(
        "the PostgreSQL schema `{schema}` is in use by another travelrec process (one process per schema until the event log is shared); stop that process or pass another --database-schema"
    )]
    SchemaLocked { schema: String },
    #[error("storage I/O failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("storage backend failed: {0}")]
    Backend(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// A backend's own failure, as a [`StoreError`].
fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Stored bytes that do not decode.
fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// One storage backend. Every method is a complete, durable operation unless
/// it says otherwise; [`RowImport`] is the one multi-step write.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Inserts a new resource; fails with [`StoreError::AlreadyExists`] if its ARN is taken.
    async fn insert_resource(&self, resource: Resource) -> Result<(), StoreError>;
    /// Inserts or replaces a resource.
    async fn put_resource(&self, resource: Resource) -> Result<(), StoreError>;
    async fn get_resource(&self, arn: &str) -> Result<Option<Resource>, StoreError>;
    /// All resources (there are few; callers filter).
    async fn list_resources(&self) -> Result<Vec<Resource>, StoreError>;
    /// Returns whether it existed.
    async fn delete_resource(&self, arn: &str) -> Result<bool, StoreError>;

    /// Starts an import into a dataset. Nothing is visible to readers until
    /// [`RowImport::commit`]; an import that is aborted, dropped or cut short by
    /// a crash leaves nothing behind.
    async fn begin_import(&self, dataset_arn: &str, mode: ImportMode) -> Result<Box<dyn RowImport>, StoreError>;
    /// The next batch of a dataset's committed rows at or after `cursor`, and
    /// the cursor after it; `None` at the end.
    async fn read_rows(&self, dataset_arn: &str, cursor: RowCursor) -> Result<Option<(RowBatch, RowCursor)>, StoreError>;
    /// Number of committed rows in a dataset.
    async fn row_count(&self, dataset_arn: &str) -> Result<u64, StoreError>;
    /// Removes every row of a dataset (when the dataset is deleted).
    async fn delete_rows(&self, dataset_arn: &str) -> Result<(), StoreError>;

    /// Durably stores tracked events of a dataset group at their log
    /// positions. Idempotent: writing the same position again changes
    /// nothing, and an event whose `event_id` the group already has is skipped.
    async fn put_events(&self, dataset_group_arn: &str, events: Vec<(EventPosition, TrackedEvent)>) -> Result<(), StoreError>;
    /// Up to `limit` events after `after` (from the start with `None`), in position order.
    async fn read_events(
        &self,
        dataset_group_arn: &str,
        after: Option<EventPosition>,
        limit: usize,
    ) -> Result<Vec<(EventPosition, TrackedEvent)>, StoreError>;
    /// Which of `event_ids` the group already has events with.
    async fn known_event_ids(&self, dataset_group_arn: &str, event_ids: Vec<String>) -> Result<Vec<String>, StoreError>;
    /// Durably adds rows to a dataset at once (items and users that arrive
    /// one at a time, not by import).
    async fn append_rows(&self, dataset_arn: &str, rows: RowBatch) -> Result<(), StoreError>;

    /// Removes, in one transaction, a user's rows from `dataset_arns` (their
    /// interactions and their user row) and their tracked events in
    /// `dataset_group_arn`, with those events' ids. Scans the datasets whole:
    /// an erasure is rare, and nothing is indexed by user.
    async fn erase_user(&self, dataset_group_arn: &str, dataset_arns: &[String], user_id: &str) -> Result<ErasedRows, StoreError>;

    async fn put_model(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError>;
    async fn get_model(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    async fn delete_model(&self, key: &str) -> Result<(), StoreError>;
}

/// What [`Store::erase_user`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErasedRows {
    /// Interaction and user rows.
    pub rows: u64,
    pub tracked_events: u64,
}

/// A dataset import in progress.
#[async_trait]
pub trait RowImport: Send {
    async fn write(&mut self, rows: RowBatch) -> Result<(), StoreError>;
    /// Makes the rows visible atomically (replacing earlier imports in
    /// [`ImportMode::Full`]) and returns the number of rows written.
    async fn commit(self: Box<Self>) -> Result<u64, StoreError>;
    /// Discards everything written.
    async fn abort(self: Box<Self>) -> Result<(), StoreError>;
}

impl dyn Store {
    /// A resource of a known type; `None` if missing or of another type.
    pub async fn get<T: ResourceType>(&self, arn: &str) -> Result<Option<T>, StoreError> {
        Ok(self.get_resource(arn).await?.and_then(T::from_resource))
    }

    /// All resources of one type.
    pub async fn list<T: ResourceType>(&self) -> Result<Vec<T>, StoreError> {
        Ok(self.list_resources().await?.into_iter().filter_map(T::from_resource).collect())
    }

    pub async fn put<T: ResourceType>(&self, resource: T) -> Result<(), StoreError> {
        self.put_resource(resource.into_resource()).await
    }

    pub async fn insert<T: ResourceType>(&self, resource: T) -> Result<(), StoreError> {
        self.insert_resource(resource.into_resource()).await
    }
}
