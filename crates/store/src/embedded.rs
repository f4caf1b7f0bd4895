//! The embedded backend: one data directory with a redb database
//! (`travelrec.redb`) and model snapshots as files (`models/`).
//!
//! Dataset rows are stored in chunks (one postcard-encoded batch per key)
//! under the import that wrote them; a dataset's visible rows are those of its
//! committed imports. An import writes its chunks in small transactions (so it
//! never holds the single redb writer for long) and becomes visible in one
//! final durable transaction. Imports that never commit are listed in
//! `pending_imports` and their chunks are removed on abort or at the next open.

use crate::rows::{EventPosition, RowBatch, RowCursor, TrackedEvent};
use crate::{ErasedRows, ImportMode, Resource, RowImport, Store, StoreError, backend, corrupt};
use async_trait::async_trait;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const RESOURCES: TableDefinition<&str, &[u8]> = TableDefinition::new("resources");
/// (dataset ARN, import id, chunk number) → postcard `RowBatch`.
const ROWS: TableDefinition<(&str, u64, u64), &[u8]> = TableDefinition::new("rows");
/// dataset ARN → postcard `Vec<CommittedImport>`.
const DATASET_IMPORTS: TableDefinition<&str, &[u8]> = TableDefinition::new("dataset_imports");
/// import id → dataset ARN, for imports that have not committed yet.
const PENDING_IMPORTS: TableDefinition<u64, &str> = TableDefinition::new("pending_imports");
/// (dataset group ARN, log partition, sequence, index in record) → postcard `TrackedEvent`.
const EVENTS: TableDefinition<(&str, u32, u64, u32), &[u8]> = TableDefinition::new("events");
/// (dataset group ARN, event id) → 0: the event ids a group has stored.
const EVENT_IDS: TableDefinition<(&str, &str), u8> = TableDefinition::new("event_ids");
/// Counters: "next_import".
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CommittedImport {
    import: u64,
    rows: u64,
    chunks: u64,
}

pub struct EmbeddedStore {
    db: Arc<Database>,
    models_dir: PathBuf,
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `data_dir`, and clears what interrupted
    /// imports left behind.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir)?;
        let models_dir = data_dir.join("models");
        std::fs::create_dir_all(&models_dir)?;
        let path = data_dir.join("travelrec.redb");
        let db = Database::builder().set_cache_size(128 << 20).create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked { path: data_dir.display().to_string() },
            other => backend(format!("opening {}: {other}", path.display())),
        })?;
        // The directory is this process's now (the database lock above):
        // a snapshot written aside and never renamed is a crash's leftover.
        remove_interrupted_model_writes(&models_dir)?;
        let store = Self { db: Arc::new(db), models_dir };
        store.initialise()?;
        Ok(store)
    }

    fn initialise(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(backend)?;
        {
            txn.open_table(RESOURCES).map_err(backend)?;
            txn.open_table(DATASET_IMPORTS).map_err(backend)?;
            txn.open_table(EVENTS).map_err(backend)?;
            txn.open_table(EVENT_IDS).map_err(backend)?;
            txn.open_table(COUNTERS).map_err(backend)?;
            let mut rows = txn.open_table(ROWS).map_err(backend)?;
            let mut pending = txn.open_table(PENDING_IMPORTS).map_err(backend)?;
            let interrupted: Vec<(u64, String)> = pending
                .iter()
                .map_err(backend)?
                .map(|entry| entry.map(|(k, v)| (k.value(), v.value().to_string())))
                .collect::<Result<_, _>>()
                .map_err(backend)?;
            for (import, dataset) in interrupted {
                tracing::warn!(import, "removing the rows of an import that was interrupted before it committed");
                rows.retain_in((dataset.as_str(), import, 0)..=(dataset.as_str(), import, u64::MAX), |_, _| false).map_err(backend)?;
                pending.remove(import).map_err(backend)?;
            }
        }
        txn.commit().map_err(backend)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || work(&db)).await.map_err(backend)?
    }

    async fn start_import(&self, dataset_arn: &str, mode: ImportMode) -> Result<EmbeddedImport, StoreError> {
        let dataset = dataset_arn.to_string();
        let import = self
            .blocking(move |db| {
                let txn = db.begin_write().map_err(backend)?;
                let import = next_counter(&txn, "next_import")?;
                txn.open_table(PENDING_IMPORTS).map_err(backend)?.insert(import, dataset.as_str()).map_err(backend)?;
                txn.commit().map_err(backend)?;
                Ok(import)
            })
            .await?;
        Ok(EmbeddedImport { db: self.db.clone(), dataset: dataset_arn.to_string(), import, mode, rows: 0, chunks: 0, finished: false })
    }

    fn model_path(&self, key: &str) -> PathBuf {
        // Percent-encode the separators of an ARN so that any key maps to one file name.
        let name: String = key
            .chars()
            .map(|c| match c {
                c if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' => c.to_string(),
                c => format!("%{:02X}", c as u32),
            })
            .collect();
        self.models_dir.join(format!("{name}.model"))
    }
}

/// The extension of a model snapshot written aside, before its rename
/// (see [`EmbeddedStore::put_model`]).
const MODEL_WRITE_EXTENSION: &str = "model.tmp";

/// Removes the `*.model.tmp` files [`EmbeddedStore::put_model`] writes
/// before its rename: one left over was cut short (the snapshot it was
/// replacing, if any, is intact under its own name).
fn remove_interrupted_model_writes(models_dir: &Path) -> Result<(), StoreError> {
    for entry in std::fs::read_dir(models_dir)? {
        let path = entry?.path();
        if path.file_name().is_some_and(|name| name.to_string_lossy().ends_with(&format!(".{MODEL_WRITE_EXTENSION}"))) {
            tracing::warn!(file = %path.display(), "removing a model snapshot whose write was interrupted");
            std::fs::remove_file(&path).map_err(|e| {
                backend(format!(
                    "removing {}, a model snapshot whose write was interrupted: {e}; delete it by hand or give this process write access to {}",
                    path.display(),
                    models_dir.display()
                ))
            })?;
        }
    }
    Ok(())
}

fn next_counter(txn: &redb::WriteTransaction, name: &str) -> Result<u64, StoreError> {
    let mut counters = txn.open_table(COUNTERS).map_err(backend)?;
    let next = counters.get(name).map_err(backend)?.map(|v| v.value()).unwrap_or(1);
    counters.insert(name, next + 1).map_err(backend)?;
    Ok(next)
}

fn committed_imports(table: &impl ReadableTable<&'static str, &'static [u8]>, dataset: &str) -> Result<Vec<CommittedImport>, StoreError> {
    match table.get(dataset).map_err(backend)? {
        Some(bytes) => postcard::from_bytes(bytes.value()).map_err(corrupt),
        None => Ok(Vec::new()),
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn insert_resource(&self, resource: Resource) -> Result<(), StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut table = txn.open_table(RESOURCES).map_err(backend)?;
                if table.get(resource.arn()).map_err(backend)?.is_some() {
                    return Err(StoreError::AlreadyExists { kind: resource.kind().label(), arn: resource.arn().to_string() });
                }
                let json = serde_json::to_vec(&resource).map_err(backend)?;
                table.insert(resource.arn(), json.as_slice()).map_err(backend)?;
            }
            txn.commit().map_err(backend)
        })
        .await
    }

    async fn put_resource(&self, resource: Resource) -> Result<(), StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut table = txn.open_table(RESOURCES).map_err(backend)?;
                let json = serde_json::to_vec(&resource).map_err(backend)?;
                table.insert(resource.arn(), json.as_slice()).map_err(backend)?;
            }
            txn.commit().map_err(backend)
        })
        .await
    }

    async fn get_resource(&self, arn: &str) -> Result<Option<Resource>, StoreError> {
        let arn = arn.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(RESOURCES).map_err(backend)?;
            match table.get(arn.as_str()).map_err(backend)? {
                Some(bytes) => serde_json::from_slice(bytes.value()).map(Some).map_err(corrupt),
                None => Ok(None),
            }
        })
        .await
    }

    async fn list_resources(&self) -> Result<Vec<Resource>, StoreError> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(RESOURCES).map_err(backend)?;
            let mut out = Vec::new();
            for entry in table.iter().map_err(backend)? {
                let (_, bytes) = entry.map_err(backend)?;
                out.push(serde_json::from_slice(bytes.value()).map_err(corrupt)?);
            }
            Ok(out)
        })
        .await
    }

    async fn delete_resource(&self, arn: &str) -> Result<bool, StoreError> {
        let arn = arn.to_string();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            let existed = txn.open_table(RESOURCES).map_err(backend)?.remove(arn.as_str()).map_err(backend)?.is_some();
            txn.commit().map_err(backend)?;
            Ok(existed)
        })
        .await
    }

    async fn begin_import(&self, dataset_arn: &str, mode: ImportMode) -> Result<Box<dyn RowImport>, StoreError> {
        Ok(Box::new(self.start_import(dataset_arn, mode).await?))
    }

    async fn read_rows(&self, dataset_arn: &str, cursor: RowCursor) -> Result<Option<(RowBatch, RowCursor)>, StoreError> {
        let dataset = dataset_arn.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let imports = committed_imports(&txn.open_table(DATASET_IMPORTS).map_err(backend)?, &dataset)?;
            let rows = txn.open_table(ROWS).map_err(backend)?;
            for committed in imports.iter().filter(|c| c.import >= cursor.import) {
                let first = if committed.import == cursor.import { cursor.chunk } else { 0 };
                if first >= committed.chunks {
                    continue;
                }
                let bytes = rows
                    .get((dataset.as_str(), committed.import, first))
                    .map_err(backend)?
                    .ok_or_else(|| corrupt(format!("chunk {first} of import {} of {dataset} is missing", committed.import)))?;
                let batch: RowBatch = postcard::from_bytes(bytes.value()).map_err(corrupt)?;
                return Ok(Some((batch, RowCursor { import: committed.import, chunk: first + 1 })));
            }
            Ok(None)
        })
        .await
    }

    async fn row_count(&self, dataset_arn: &str) -> Result<u64, StoreError> {
        let dataset = dataset_arn.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let imports = committed_imports(&txn.open_table(DATASET_IMPORTS).map_err(backend)?, &dataset)?;
            Ok(imports.iter().map(|c| c.rows).sum())
        })
        .await
    }

    async fn delete_rows(&self, dataset_arn: &str) -> Result<(), StoreError> {
        let dataset = dataset_arn.to_string();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut rows = txn.open_table(ROWS).map_err(backend)?;
                rows.retain_in((dataset.as_str(), 0, 0)..=(dataset.as_str(), u64::MAX, u64::MAX), |_, _| false).map_err(backend)?;
                txn.open_table(DATASET_IMPORTS).map_err(backend)?.remove(dataset.as_str()).map_err(backend)?;
            }
            txn.commit().map_err(backend)
        })
        .await
    }

    async fn put_events(&self, dataset_group_arn: &str, events: Vec<(EventPosition, TrackedEvent)>) -> Result<(), StoreError> {
        let group = dataset_group_arn.to_string();
        self.blocking(move |db| {
            let mut txn = db.begin_write().map_err(backend)?;
            txn.set_durability(Durability::Immediate).map_err(backend)?;
            {
                let mut table = txn.open_table(EVENTS).map_err(backend)?;
                let mut ids = txn.open_table(EVENT_IDS).map_err(backend)?;
                for (position, event) in &events {
                    let key = (group.as_str(), position.partition, position.sequence, position.index);
                    if table.get(key).map_err(backend)?.is_some() {
                        continue;
                    }
                    if ids.get((group.as_str(), event.event_id.as_str())).map_err(backend)?.is_some() {
                        continue;
                    }
                    let bytes = postcard::to_stdvec(event).map_err(backend)?;
                    table.insert(key, bytes.as_slice()).map_err(backend)?;
                    ids.insert((group.as_str(), event.event_id.as_str()), 0u8).map_err(backend)?;
                }
            }
            txn.commit().map_err(backend)
        })
        .await
    }

    async fn read_events(
        &self,
        dataset_group_arn: &str,
        after: Option<EventPosition>,
        limit: usize,
    ) -> Result<Vec<(EventPosition, TrackedEvent)>, StoreError> {
        let group = dataset_group_arn.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(EVENTS).map_err(backend)?;
            let start = match after {
                Some(p) => (group.as_str(), p.partition, p.sequence, p.index),
                None => (group.as_str(), 0, 0, 0),
            };
            let mut out = Vec::new();
            let range = table.range(start..=(group.as_str(), u32::MAX, u64::MAX, u32::MAX)).map_err(backend)?;
            for entry in range {
                let (key, bytes) = entry.map_err(backend)?;
                let (_, partition, sequence, index) = key.value();
                let position = EventPosition { partition, sequence, index };
                if Some(position) == after {
                    continue;
                }
                out.push((position, postcard::from_bytes(bytes.value()).map_err(corrupt)?));
                if out.len() >= limit {
                    break;
                }
            }
            Ok(out)
        })
        .await
    }

    async fn known_event_ids(&self, dataset_group_arn: &str, event_ids: Vec<String>) -> Result<Vec<String>, StoreError> {
        let group = dataset_group_arn.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(EVENT_IDS).map_err(backend)?;
            let mut known = Vec::new();
            for id in event_ids {
                if table.get((group.as_str(), id.as_str())).map_err(backend)?.is_some() {
                    known.push(id);
                }
            }
            Ok(known)
        })
        .await
    }

    async fn append_rows(&self, dataset_arn: &str, rows: RowBatch) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let dataset = dataset_arn.to_string();
        self.blocking(move |db| {
            let bytes = postcard::to_stdvec(&rows).map_err(backend)?;
            let mut txn = db.begin_write().map_err(backend)?;
            txn.set_durability(Durability::Immediate).map_err(backend)?;
            let import = next_counter(&txn, "next_import")?;
            {
                txn.open_table(ROWS).map_err(backend)?.insert((dataset.as_str(), import, 0), bytes.as_slice()).map_err(backend)?;
                let mut imports_table = txn.open_table(DATASET_IMPORTS).map_err(backend)?;
                let mut imports = committed_imports(&imports_table, &dataset)?;
                imports.push(CommittedImport { import, rows: rows.len() as u64, chunks: 1 });
                let bytes = postcard::to_stdvec(&imports).map_err(backend)?;
                imports_table.insert(dataset.as_str(), bytes.as_slice()).map_err(backend)?;
            }
            txn.commit().map_err(backend)
        })
        .await
    }

    async fn erase_user(&self, dataset_group_arn: &str, dataset_arns: &[String], user_id: &str) -> Result<ErasedRows, StoreError> {
        let (group, datasets, user) = (dataset_group_arn.to_string(), dataset_arns.to_vec(), user_id.to_string());
        self.blocking(move |db| {
            let mut erased = ErasedRows::default();
            let mut txn = db.begin_write().map_err(backend)?;
            txn.set_durability(Durability::Immediate).map_err(backend)?;
            {
                let mut rows = txn.open_table(ROWS).map_err(backend)?;
                let mut imports_table = txn.open_table(DATASET_IMPORTS).map_err(backend)?;
                for dataset in &datasets {
                    let mut imports = committed_imports(&imports_table, dataset)?;
                    let mut changed = false;
                    for committed in &mut imports {
                        for chunk in 0..committed.chunks {
                            let key = (dataset.as_str(), committed.import, chunk);
                            let Some(bytes) = rows.get(key).map_err(backend)? else { continue };
                            let mut batch: RowBatch = postcard::from_bytes(bytes.value()).map_err(corrupt)?;
                            drop(bytes);
                            let removed = batch.remove_user(&user) as u64;
                            if removed > 0 {
                                // An emptied chunk stays, empty: chunk numbers are the read cursor.
                                rows.insert(key, postcard::to_stdvec(&batch).map_err(backend)?.as_slice()).map_err(backend)?;
                                committed.rows -= removed;
                                erased.rows += removed;
                                changed = true;
                            }
                        }
                    }
                    if changed {
                        imports_table
                            .insert(dataset.as_str(), postcard::to_stdvec(&imports).map_err(backend)?.as_slice())
                            .map_err(backend)?;
                    }
                }
                let mut events = txn.open_table(EVENTS).map_err(backend)?;
                let mut ids = txn.open_table(EVENT_IDS).map_err(backend)?;
                let mut doomed = Vec::new();
                for entry in events.range((group.as_str(), 0, 0, 0)..=(group.as_str(), u32::MAX, u64::MAX, u32::MAX)).map_err(backend)? {
                    let (key, bytes) = entry.map_err(backend)?;
                    let event: TrackedEvent = postcard::from_bytes(bytes.value()).map_err(corrupt)?;
                    if event.interaction.user_id == user {
                        let (_, partition, sequence, index) = key.value();
                        doomed.push(((partition, sequence, index), event.event_id));
                    }
                }
                for ((partition, sequence, index), event_id) in doomed {
                    events.remove((group.as_str(), partition, sequence, index)).map_err(backend)?;
                    ids.remove((group.as_str(), event_id.as_str())).map_err(backend)?;
                    erased.tracked_events += 1;
                }
            }
            txn.commit().map_err(backend)?;
            Ok(erased)
        })
        .await
    }

    async fn put_model(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        let path = self.model_path(key);
        let dir = self.models_dir.clone();
        tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
            // Write aside, sync, then rename: a crash leaves the old snapshot or the new one, never half of one.
            let tmp = path.with_extension(MODEL_WRITE_EXTENSION);
            {
                use std::io::Write;
                let mut file = std::fs::File::create(&tmp)?;
                file.write_all(&bytes)?;
                file.sync_all()?;
            }
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(&dir)?.sync_all()?;
            Ok(())
        })
        .await
        .map_err(backend)?
    }

    async fn get_model(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.model_path(key);
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete_model(&self, key: &str) -> Result<(), StoreError> {
        match tokio::fs::remove_file(self.model_path(key)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

struct EmbeddedImport {
    db: Arc<Database>,
    dataset: String,
    import: u64,
    mode: ImportMode,
    rows: u64,
    chunks: u64,
    /// Set once committed or aborted; otherwise dropping the import discards it.
    finished: bool,
}

impl Drop for EmbeddedImport {
    fn drop(&mut self) {
        if !self.finished {
            let (db, dataset, import) = (self.db.clone(), self.dataset.clone(), self.import);
            std::thread::spawn(move || {
                if let Err(e) = discard_import(&db, &dataset, import) {
                    tracing::warn!(import, "could not discard an abandoned import (it is removed at the next start): {e}");
                }
            });
        }
    }
}

impl EmbeddedImport {
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || work(&db)).await.map_err(backend)?
    }
}

/// Removes an import's chunks and its pending mark.
fn discard_import(db: &Database, dataset: &str, import: u64) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(backend)?;
    {
        let mut rows = txn.open_table(ROWS).map_err(backend)?;
        rows.retain_in((dataset, import, 0)..=(dataset, import, u64::MAX), |_, _| false).map_err(backend)?;
        txn.open_table(PENDING_IMPORTS).map_err(backend)?.remove(import).map_err(backend)?;
    }
    txn.commit().map_err(backend)
}

#[async_trait]
impl RowImport for EmbeddedImport {
    async fn write(&mut self, rows: RowBatch) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let (dataset, import, chunk) = (self.dataset.clone(), self.import, self.chunks);
        let count = rows.len() as u64;
        self.run(move |db| {
            let bytes = postcard::to_stdvec(&rows).map_err(backend)?;
            let mut txn = db.begin_write().map_err(backend)?;
            // Made durable by the commit's final transaction; a crash before
            // then leaves a pending import that the next open removes.
            txn.set_durability(Durability::None).map_err(backend)?;
            txn.open_table(ROWS).map_err(backend)?.insert((dataset.as_str(), import, chunk), bytes.as_slice()).map_err(backend)?;
            txn.commit().map_err(backend)
        })
        .await?;
        self.chunks += 1;
        self.rows += count;
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<u64, StoreError> {
        self.finished = true;
        let (dataset, import, mode, rows, chunks) = (self.dataset.clone(), self.import, self.mode, self.rows, self.chunks);
        self.run(move |db| {
            let mut txn = db.begin_write().map_err(backend)?;
            txn.set_durability(Durability::Immediate).map_err(backend)?;
            {
                let mut imports_table = txn.open_table(DATASET_IMPORTS).map_err(backend)?;
                let mut imports = committed_imports(&imports_table, &dataset)?;
                let mut rows_table = txn.open_table(ROWS).map_err(backend)?;
                if mode == ImportMode::Full {
                    for old in imports.drain(..) {
                        rows_table
                            .retain_in((dataset.as_str(), old.import, 0)..=(dataset.as_str(), old.import, u64::MAX), |_, _| false)
                            .map_err(backend)?;
                    }
                }
                imports.push(CommittedImport { import, rows, chunks });
                let bytes = postcard::to_stdvec(&imports).map_err(backend)?;
                imports_table.insert(dataset.as_str(), bytes.as_slice()).map_err(backend)?;
                txn.open_table(PENDING_IMPORTS).map_err(backend)?.remove(import).map_err(backend)?;
            }
            txn.commit().map_err(backend)?;
            Ok(rows)
        })
        .await
    }

    async fn abort(mut self: Box<Self>) -> Result<(), StoreError> {
        self.finished = true;
        let (dataset, import) = (self.dataset.clone(), self.import);
        self.run(move |db| discard_import(db, &dataset, import)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ItemRow, RowBatch};
    use redb::ReadableTableMetadata;

    #[tokio::test]
    async fn data_survives_a_reopen_and_interrupted_imports_are_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let dataset = "arn:aws:personalize:local:000000000000:dataset/g/ITEMS";
        let item = |id: &str| ItemRow { item_id: id.into(), fields: vec![] };
        {
            let store = EmbeddedStore::open(dir.path()).unwrap();
            let mut import = store.begin_import(dataset, ImportMode::Full).await.unwrap();
            import.write(RowBatch::Items(vec![item("1")])).await.unwrap();
            import.commit().await.unwrap();
            // A crash mid-import: never committed, and no drop-time cleanup.
            let mut interrupted = store.start_import(dataset, ImportMode::Full).await.unwrap();
            interrupted.write(RowBatch::Items(vec![item("2")])).await.unwrap();
            interrupted.finished = true;
            let chunks = store.db.begin_read().unwrap().open_table(ROWS).unwrap().len().unwrap();
            assert_eq!(chunks, 2);
        }
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(store.row_count(dataset).await.unwrap(), 1);
        let (batch, _) = store.read_rows(dataset, RowCursor::default()).await.unwrap().unwrap();
        assert_eq!(batch, RowBatch::Items(vec![item("1")]));
        let chunks = store.db.begin_read().unwrap().open_table(ROWS).unwrap().len().unwrap();
        assert_eq!(chunks, 1, "the interrupted import's chunk must be gone");
    }
}
