//! The PostgreSQL backend: resources, dataset rows, tracked events and model
//! snapshots in one database schema, shared by every travelrec process that
//! connects to it.
//!
//! The layout follows the embedded store: dataset rows are postcard-encoded
//! chunks under the import that wrote them, visible once the import commits
//! (one transaction); tracked events are keyed by log position and carry
//! their user id as a column, so erasing a user is an indexed delete. An
//! import that never commits (its process died) leaves a pending mark: the
//! process that takes the schema ([`PostgresStore::connect_exclusive`])
//! removes them all; a shared connection only those older than
//! [`ABANDONED_AFTER_HOURS`] (a younger one may belong to a live process).
//! Writes to one dataset's rows take a transaction-scoped advisory lock on
//! it, so a full import's commit and an appended batch never interleave.
//! TLS as the URL's `sslmode` asks (rustls with the Mozilla roots):
//! `prefer` (the default) encrypts where the server offers it, `require`
//! refuses a server that does not, `verify-full` also checks the server's
//! certificate against `sslrootcert` or the Mozilla roots. [`PostgresStore::tls`]
//! tells which a connection got, and connecting logs it.

use crate::rows::{EventPosition, RowBatch, RowCursor, TrackedEvent};
use crate::{ErasedRows, ImportMode, Resource, RowImport, Store, StoreError, backend, corrupt};
use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Pending imports older than this are taken as abandoned and removed.
pub const ABANDONED_AFTER_HOURS: i64 = 24;

const TABLES: [&str; 9] = [
    "CREATE TABLE IF NOT EXISTS resources (arn TEXT PRIMARY KEY, body BYTEA NOT NULL)",
    "CREATE TABLE IF NOT EXISTS dataset_rows (dataset TEXT NOT NULL, import BIGINT NOT NULL, chunk BIGINT NOT NULL, \
     body BYTEA NOT NULL, PRIMARY KEY (dataset, import, chunk))",
    "CREATE TABLE IF NOT EXISTS committed_imports (dataset TEXT NOT NULL, import BIGINT NOT NULL, row_count BIGINT NOT NULL, \
     chunks BIGINT NOT NULL, PRIMARY KEY (dataset, import))",
    "CREATE TABLE IF NOT EXISTS pending_imports (import BIGINT PRIMARY KEY, dataset TEXT NOT NULL, \
     started_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    "CREATE SEQUENCE IF NOT EXISTS import_ids",
    "CREATE TABLE IF NOT EXISTS tracked_events (dataset_group TEXT NOT NULL, log_partition INTEGER NOT NULL, \
     log_sequence BIGINT NOT NULL, index_in_record INTEGER NOT NULL, user_id TEXT NOT NULL, body BYTEA NOT NULL, \
     PRIMARY KEY (dataset_group, log_partition, log_sequence, index_in_record))",
    "CREATE INDEX IF NOT EXISTS tracked_events_by_user ON tracked_events (dataset_group, user_id)",
    "CREATE TABLE IF NOT EXISTS event_ids (dataset_group TEXT NOT NULL, event_id TEXT NOT NULL, PRIMARY KEY (dataset_group, event_id))",
    "CREATE TABLE IF NOT EXISTS models (model_key TEXT PRIMARY KEY, bytes BYTEA NOT NULL)",
];

pub struct PostgresStore {
    pool: PgPool,
    /// Set when the session holding the schema's advisory lock
    /// ([`PostgresStore::connect_exclusive`]) is gone: writes are refused
    /// from then on, as another process may hold the schema now.
    lock_lost: Option<Arc<AtomicBool>>,
    /// Stops the task that watches the lock's session.
    watch: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // The watcher owns the locking session: ending it releases the lock.
        if let Some(watch) = self.watch.take() {
            watch.abort();
        }
    }
}

/// How often the locking session is checked.
const LOCK_CHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// Log positions and counts are u64 in travelrec and BIGINT in PostgreSQL.
fn big(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl PostgresStore {
    /// Connects to `url` (e.g. `postgres://user@127.0.0.1:5432/db`) and uses
    /// `schema` (created if missing, with its tables).
    pub async fn connect(url: &str, schema: &str) -> Result<Self, StoreError> {
        let starts_well = schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_');
        if !starts_well || !schema.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
            return Err(backend(format!("schema name `{schema}`: use lower-case letters, digits and _, starting with a letter or _")));
        }
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| backend(format!("database URL: {e}")))?
            .options([("search_path", schema), ("client_min_messages", "warning")]);
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(|e| backend(format!("cannot connect to PostgreSQL at {}: {e}{}", redacted(url), connect_hint(&e))))?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS {schema}"))).execute(&pool).await.map_err(backend)?;
        for statement in TABLES {
            sqlx::query(statement).execute(&pool).await.map_err(backend)?;
        }
        let store = PostgresStore { pool, lock_lost: None, watch: None };
        store.remove_abandoned_imports(Some(ABANDONED_AFTER_HOURS)).await?;
        let tls = if store.tls().await? { "encrypted (TLS)" } else { "not encrypted: add ?sslmode=require to refuse that" };
        tracing::info!(schema, "connected to PostgreSQL at {}, {tls}", redacted(url));
        Ok(store)
    }

    /// Whether the store's connections to the server are encrypted.
    pub async fn tls(&self) -> Result<bool, StoreError> {
        let row =
            sqlx::query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetch_optional(&self.pool).await.map_err(backend)?;
        Ok(row.is_some_and(|row| row.get::<bool, _>(0)))
    }

    /// [`PostgresStore::connect`], and holds the schema for this process
    /// alone (a session advisory lock, released when the process ends): the
    /// event log is still each process's own, and two processes would give
    /// their tracked events the same positions.
    pub async fn connect_exclusive(url: &str, schema: &str) -> Result<Self, StoreError> {
        let mut store = Self::connect(url, schema).await?;
        let mut session = store.pool.acquire().await.map_err(backend)?.detach();
        let locked: bool = sqlx::query("SELECT pg_try_advisory_lock(hashtext('travelrec.' || $1))")
            .bind(schema)
            .fetch_one(&mut session)
            .await
            .map_err(backend)?
            .get(0);
        if !locked {
            return Err(StoreError::SchemaLocked { schema: schema.to_string() });
        }
        let lost = Arc::new(AtomicBool::new(false));
        let flag = lost.clone();
        store.watch = Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(LOCK_CHECK).await;
                if let Err(e) = sqlx::query("SELECT 1").execute(&mut session).await {
                    tracing::error!(
                        "the session holding the PostgreSQL schema's lock is gone ({e}); refusing writes from now on: restart travelrec"
                    );
                    flag.store(true, Ordering::Release);
                    return;
                }
            }
        }));
        store.lock_lost = Some(lost);
        // The schema is this process's alone now: every pending import was abandoned.
        store.remove_abandoned_imports(None).await?;
        Ok(store)
    }

    /// Ends the sessions holding `schema`'s lock, as a database restart
    /// would (for tests of what a lost lock does).
    pub async fn terminate_lock_holders(&self, schema: &str) -> Result<(), StoreError> {
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND objid = hashtext('travelrec.' || $1)::oid",
        )
        .bind(schema)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    /// Drops the schema and everything in it (tests use a schema each).
    pub async fn drop_schema(self, schema: &str) -> Result<(), StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))).execute(&self.pool).await.map_err(backend)?;
        self.pool.close().await;
        Ok(())
    }

    /// Removes pending imports older than `hours` (all with `None`).
    /// Refuses writes once the schema's lock is lost.
    fn writable(&self) -> Result<(), StoreError> {
        match &self.lock_lost {
            Some(lost) if lost.load(Ordering::Acquire) => Err(StoreError::Backend(
                "the session holding the PostgreSQL schema's lock is gone (a database restart or failover?); restart travelrec".into(),
            )),
            _ => Ok(()),
        }
    }

    async fn remove_abandoned_imports(&self, hours: Option<i64>) -> Result<(), StoreError> {
        let abandoned =
            sqlx::query("SELECT import, dataset FROM pending_imports WHERE started_at <= now() - make_interval(hours => $1::INTEGER)")
                .bind(hours.unwrap_or(0) as i32)
                .fetch_all(&self.pool)
                .await
                .map_err(backend)?;
        for row in abandoned {
            let (import, dataset): (i64, String) = (row.get(0), row.get(1));
            tracing::warn!(import, "removing the rows of an import that was abandoned before it committed");
            discard_import(&self.pool, &dataset, import).await?;
        }
        Ok(())
    }
}

/// What to check when connecting failed: TLS (a certificate the URL's
/// `sslmode` does not accept arrives as an I/O error) or the server itself.
fn connect_hint(error: &sqlx::Error) -> &'static str {
    let text = error.to_string().to_ascii_lowercase();
    match error {
        sqlx::Error::Tls(_) => TLS_HINT,
        sqlx::Error::Io(_) if text.contains("certificate") || text.contains("tls") => TLS_HINT,
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => "; is it running?",
        _ => "",
    }
}

const TLS_HINT: &str = "; check the URL's sslmode and sslrootcert against the server's certificate";

/// The URL without its password, for error messages.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{}{user}@{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

async fn discard_import(pool: &PgPool, dataset: &str, import: i64) -> Result<(), StoreError> {
    let mut txn = pool.begin().await.map_err(backend)?;
    sqlx::query("DELETE FROM dataset_rows WHERE dataset = $1 AND import = $2")
        .bind(dataset)
        .bind(import)
        .execute(&mut *txn)
        .await
        .map_err(backend)?;
    sqlx::query("DELETE FROM pending_imports WHERE import = $1").bind(import).execute(&mut *txn).await.map_err(backend)?;
    txn.commit().await.map_err(backend)
}

/// Chunks an erasure reads and locks at a time.
const ERASE_PAGE_CHUNKS: i64 = 64;

/// Removes `user_id`'s rows from one chunk (`import`, `chunk`, `body`),
/// rewriting it and its import's row count if any were there; returns how
/// many. An emptied chunk stays, empty: chunk numbers are the read cursor.
async fn erase_from_chunk(
    txn: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    dataset: &str,
    row: sqlx::postgres::PgRow,
    user_id: &str,
) -> Result<u64, StoreError> {
    let (import, chunk): (i64, i64) = (row.get(0), row.get(1));
    let mut batch: RowBatch = postcard::from_bytes(row.get::<&[u8], _>(2)).map_err(corrupt)?;
    let removed = batch.remove_user(user_id) as i64;
    if removed == 0 {
        return Ok(0);
    }
    sqlx::query("UPDATE dataset_rows SET body = $4 WHERE dataset = $1 AND import = $2 AND chunk = $3")
        .bind(dataset)
        .bind(import)
        .bind(chunk)
        .bind(postcard::to_stdvec(&batch).map_err(backend)?)
        .execute(&mut **txn)
        .await
        .map_err(backend)?;
    sqlx::query("UPDATE committed_imports SET row_count = row_count - $3 WHERE dataset = $1 AND import = $2")
        .bind(dataset)
        .bind(import)
        .bind(removed)
        .execute(&mut **txn)
        .await
        .map_err(backend)?;
    Ok(removed as u64)
}

/// Serialises writes to one dataset's rows until the transaction ends.
async fn lock_dataset(txn: &mut sqlx::PgConnection, dataset: &str) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('travelrec.rows.' || $1))").bind(dataset).execute(txn).await.map_err(backend)?;
    Ok(())
}

async fn next_import(executor: impl sqlx::PgExecutor<'_>) -> Result<i64, StoreError> {
    sqlx::query("SELECT nextval('import_ids')").fetch_one(executor).await.map(|row| row.get::<i64, _>(0)).map_err(backend)
}

#[async_trait]
impl Store for PostgresStore {
    async fn insert_resource(&self, resource: Resource) -> Result<(), StoreError> {
        self.writable()?;
        let json = serde_json::to_vec(&resource).map_err(backend)?;
        let inserted = sqlx::query("INSERT INTO resources (arn, body) VALUES ($1, $2) ON CONFLICT (arn) DO NOTHING")
            .bind(resource.arn())
            .bind(json)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::AlreadyExists { kind: resource.kind().label(), arn: resource.arn().to_string() });
        }
        Ok(())
    }

    async fn put_resource(&self, resource: Resource) -> Result<(), StoreError> {
        self.writable()?;
        let json = serde_json::to_vec(&resource).map_err(backend)?;
        sqlx::query("INSERT INTO resources (arn, body) VALUES ($1, $2) ON CONFLICT (arn) DO UPDATE SET body = EXCLUDED.body")
            .bind(resource.arn())
            .bind(json)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn get_resource(&self, arn: &str) -> Result<Option<Resource>, StoreError> {
        let row = sqlx::query("SELECT body FROM resources WHERE arn = $1").bind(arn).fetch_optional(&self.pool).await.map_err(backend)?;
        row.map(|row| serde_json::from_slice(row.get::<&[u8], _>(0)).map_err(corrupt)).transpose()
    }

    async fn list_resources(&self) -> Result<Vec<Resource>, StoreError> {
        let rows = sqlx::query("SELECT body FROM resources ORDER BY arn").fetch_all(&self.pool).await.map_err(backend)?;
        rows.iter().map(|row| serde_json::from_slice(row.get::<&[u8], _>(0)).map_err(corrupt)).collect()
    }

    async fn delete_resource(&self, arn: &str) -> Result<bool, StoreError> {
        self.writable()?;
        let deleted = sqlx::query("DELETE FROM resources WHERE arn = $1").bind(arn).execute(&self.pool).await.map_err(backend)?;
        Ok(deleted.rows_affected() > 0)
    }

    async fn begin_import(&self, dataset_arn: &str, mode: ImportMode) -> Result<Box<dyn RowImport>, StoreError> {
        self.writable()?;
        let import = next_import(&self.pool).await?;
        sqlx::query("INSERT INTO pending_imports (import, dataset) VALUES ($1, $2)")
            .bind(import)
            .bind(dataset_arn)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(Box::new(PostgresImport {
            pool: self.pool.clone(),
            dataset: dataset_arn.to_string(),
            import,
            mode,
            rows: 0,
            chunks: 0,
            finished: false,
        }))
    }

    async fn read_rows(&self, dataset_arn: &str, cursor: RowCursor) -> Result<Option<(RowBatch, RowCursor)>, StoreError> {
        let imports = sqlx::query("SELECT import, chunks FROM committed_imports WHERE dataset = $1 AND import >= $2 ORDER BY import")
            .bind(dataset_arn)
            .bind(big(cursor.import))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        for row in imports {
            let (import, chunks) = (row.get::<i64, _>(0) as u64, row.get::<i64, _>(1) as u64);
            let first = if import == cursor.import { cursor.chunk } else { 0 };
            if first >= chunks {
                continue;
            }
            let chunk = sqlx::query("SELECT body FROM dataset_rows WHERE dataset = $1 AND import = $2 AND chunk = $3")
                .bind(dataset_arn)
                .bind(big(import))
                .bind(big(first))
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?
                .ok_or_else(|| corrupt(format!("chunk {first} of import {import} of {dataset_arn} is missing")))?;
            let batch: RowBatch = postcard::from_bytes(chunk.get::<&[u8], _>(0)).map_err(corrupt)?;
            return Ok(Some((batch, RowCursor { import, chunk: first + 1 })));
        }
        Ok(None)
    }

    async fn row_count(&self, dataset_arn: &str) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT COALESCE(SUM(row_count), 0)::BIGINT FROM committed_imports WHERE dataset = $1")
            .bind(dataset_arn)
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        Ok(row.get::<i64, _>(0) as u64)
    }

    async fn delete_rows(&self, dataset_arn: &str) -> Result<(), StoreError> {
        self.writable()?;
        let mut txn = self.pool.begin().await.map_err(backend)?;
        lock_dataset(&mut txn, dataset_arn).await?;
        for statement in ["DELETE FROM dataset_rows WHERE dataset = $1", "DELETE FROM committed_imports WHERE dataset = $1"] {
            sqlx::query(statement).bind(dataset_arn).execute(&mut *txn).await.map_err(backend)?;
        }
        txn.commit().await.map_err(backend)
    }

    /// Three statements per batch, whatever its size (a row per event made
    /// the store writer 80 times slower than the embedded store's).
    async fn put_events(&self, dataset_group_arn: &str, events: Vec<(EventPosition, TrackedEvent)>) -> Result<(), StoreError> {
        self.writable()?;
        if events.is_empty() {
            return Ok(());
        }
        let key = |p: &EventPosition| (p.partition as i32, big(p.sequence), p.index as i32);
        let mut txn = self.pool.begin().await.map_err(backend)?;
        // Positions already stored are replays.
        let stored: HashSet<(i32, i64, i32)> = sqlx::query(
            "SELECT log_partition, log_sequence, index_in_record FROM tracked_events WHERE dataset_group = $1 \
             AND (log_partition, log_sequence, index_in_record) IN (SELECT * FROM UNNEST($2::INTEGER[], $3::BIGINT[], $4::INTEGER[]))",
        )
        .bind(dataset_group_arn)
        .bind(events.iter().map(|(p, _)| p.partition as i32).collect::<Vec<_>>())
        .bind(events.iter().map(|(p, _)| big(p.sequence)).collect::<Vec<_>>())
        .bind(events.iter().map(|(p, _)| p.index as i32).collect::<Vec<_>>())
        .fetch_all(&mut *txn)
        .await
        .map_err(backend)?
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
        // The first event of each position and id in the batch...
        let (mut positions, mut ids) = (HashSet::new(), HashSet::new());
        let candidates: Vec<&(EventPosition, TrackedEvent)> = events
            .iter()
            .filter(|(p, e)| !stored.contains(&key(p)) && positions.insert(key(p)) && ids.insert(e.event_id.as_str()))
            .collect();
        // ...whose id the group did not have.
        let new_ids: HashSet<String> = sqlx::query(
            "INSERT INTO event_ids (dataset_group, event_id) SELECT $1, UNNEST($2::TEXT[]) ON CONFLICT DO NOTHING RETURNING event_id",
        )
        .bind(dataset_group_arn)
        .bind(candidates.iter().map(|(_, e)| e.event_id.clone()).collect::<Vec<_>>())
        .fetch_all(&mut *txn)
        .await
        .map_err(backend)?
        .iter()
        .map(|row| row.get(0))
        .collect();
        let new: Vec<&&(EventPosition, TrackedEvent)> = candidates.iter().filter(|(_, e)| new_ids.contains(&e.event_id)).collect();
        let bodies = new.iter().map(|(_, e)| postcard::to_stdvec(e).map_err(backend)).collect::<Result<Vec<_>, _>>()?;
        sqlx::query(
            "INSERT INTO tracked_events (dataset_group, log_partition, log_sequence, index_in_record, user_id, body) \
             SELECT $1, * FROM UNNEST($2::INTEGER[], $3::BIGINT[], $4::INTEGER[], $5::TEXT[], $6::BYTEA[])",
        )
        .bind(dataset_group_arn)
        .bind(new.iter().map(|(p, _)| p.partition as i32).collect::<Vec<_>>())
        .bind(new.iter().map(|(p, _)| big(p.sequence)).collect::<Vec<_>>())
        .bind(new.iter().map(|(p, _)| p.index as i32).collect::<Vec<_>>())
        .bind(new.iter().map(|(_, e)| e.interaction.user_id.clone()).collect::<Vec<_>>())
        .bind(bodies)
        .execute(&mut *txn)
        .await
        .map_err(backend)?;
        txn.commit().await.map_err(backend)
    }

    async fn read_events(
        &self,
        dataset_group_arn: &str,
        after: Option<EventPosition>,
        limit: usize,
    ) -> Result<Vec<(EventPosition, TrackedEvent)>, StoreError> {
        // From the start: after a position before every real one.
        let (partition, sequence, index) = after.map_or((-1, -1, -1), |p| (p.partition as i64, big(p.sequence), p.index as i64));
        let rows = sqlx::query(
            "SELECT log_partition, log_sequence, index_in_record, body FROM tracked_events \
             WHERE dataset_group = $1 AND (log_partition, log_sequence, index_in_record) > ($2::INTEGER, $3::BIGINT, $4::INTEGER) \
             ORDER BY log_partition, log_sequence, index_in_record LIMIT $5",
        )
        .bind(dataset_group_arn)
        .bind(partition)
        .bind(sequence)
        .bind(index)
        .bind(big(limit as u64))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|row| {
                let position = EventPosition {
                    partition: row.get::<i32, _>(0) as u32,
                    sequence: row.get::<i64, _>(1) as u64,
                    index: row.get::<i32, _>(2) as u32,
                };
                Ok((position, postcard::from_bytes(row.get::<&[u8], _>(3)).map_err(corrupt)?))
            })
            .collect()
    }

    async fn known_event_ids(&self, dataset_group_arn: &str, event_ids: Vec<String>) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT event_id FROM event_ids WHERE dataset_group = $1 AND event_id = ANY($2)")
            .bind(dataset_group_arn)
            .bind(&event_ids)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        let known: HashSet<String> = rows.iter().map(|row| row.get::<String, _>(0)).collect();
        Ok(event_ids.into_iter().filter(|id| known.contains(id)).collect())
    }

    async fn append_rows(&self, dataset_arn: &str, rows: RowBatch) -> Result<(), StoreError> {
        self.writable()?;
        if rows.is_empty() {
            return Ok(());
        }
        let mut txn = self.pool.begin().await.map_err(backend)?;
        lock_dataset(&mut txn, dataset_arn).await?;
        let import = next_import(&mut *txn).await?;
        sqlx::query("INSERT INTO dataset_rows (dataset, import, chunk, body) VALUES ($1, $2, 0, $3)")
            .bind(dataset_arn)
            .bind(import)
            .bind(postcard::to_stdvec(&rows).map_err(backend)?)
            .execute(&mut *txn)
            .await
            .map_err(backend)?;
        sqlx::query("INSERT INTO committed_imports (dataset, import, row_count, chunks) VALUES ($1, $2, $3, 1)")
            .bind(dataset_arn)
            .bind(import)
            .bind(rows.len() as i64)
            .execute(&mut *txn)
            .await
            .map_err(backend)?;
        txn.commit().await.map_err(backend)
    }

    async fn erase_user(&self, dataset_group_arn: &str, dataset_arns: &[String], user_id: &str) -> Result<ErasedRows, StoreError> {
        self.writable()?;
        let mut erased = ErasedRows::default();
        let mut txn = self.pool.begin().await.map_err(backend)?;
        for dataset in dataset_arns {
            lock_dataset(&mut txn, dataset).await?;
            // A page of chunks at a time, in (import, chunk) order: a data
            // set of millions of rows is never in memory at once.
            let mut after: (i64, i64) = (-1, -1);
            loop {
                let chunks = sqlx::query(
                    "SELECT r.import, r.chunk, r.body FROM dataset_rows r \
                     JOIN committed_imports c ON c.dataset = r.dataset AND c.import = r.import \
                     WHERE r.dataset = $1 AND (r.import, r.chunk) > ($2, $3) ORDER BY r.import, r.chunk LIMIT $4 FOR UPDATE OF r",
                )
                .bind(dataset)
                .bind(after.0)
                .bind(after.1)
                .bind(ERASE_PAGE_CHUNKS)
                .fetch_all(&mut *txn)
                .await
                .map_err(backend)?;
                let Some(last) = chunks.last() else { break };
                after = (last.get(0), last.get(1));
                for row in chunks {
                    erased.rows += erase_from_chunk(&mut txn, dataset, row, user_id).await?;
                }
            }
        }
        let events = sqlx::query("DELETE FROM tracked_events WHERE dataset_group = $1 AND user_id = $2 RETURNING body")
            .bind(dataset_group_arn)
            .bind(user_id)
            .fetch_all(&mut *txn)
            .await
            .map_err(backend)?;
        let mut event_ids = Vec::with_capacity(events.len());
        for row in &events {
            let event: TrackedEvent = postcard::from_bytes(row.get::<&[u8], _>(0)).map_err(corrupt)?;
            event_ids.push(event.event_id);
        }
        sqlx::query("DELETE FROM event_ids WHERE dataset_group = $1 AND event_id = ANY($2)")
            .bind(dataset_group_arn)
            .bind(&event_ids)
            .execute(&mut *txn)
            .await
            .map_err(backend)?;
        erased.tracked_events = events.len() as u64;
        txn.commit().await.map_err(backend)?;
        Ok(erased)
    }

    async fn put_model(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.writable()?;
        sqlx::query("INSERT INTO models (model_key, bytes) VALUES ($1, $2) ON CONFLICT (model_key) DO UPDATE SET bytes = EXCLUDED.bytes")
            .bind(key)
            .bind(bytes)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn get_model(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row =
            sqlx::query("SELECT bytes FROM models WHERE model_key = $1").bind(key).fetch_optional(&self.pool).await.map_err(backend)?;
        Ok(row.map(|row| row.get::<Vec<u8>, _>(0)))
    }

    async fn delete_model(&self, key: &str) -> Result<(), StoreError> {
        self.writable()?;
        sqlx::query("DELETE FROM models WHERE model_key = $1").bind(key).execute(&self.pool).await.map_err(backend)?;
        Ok(())
    }
}

struct PostgresImport {
    pool: PgPool,
    dataset: String,
    import: i64,
    mode: ImportMode,
    rows: u64,
    chunks: u64,
    /// Set once committed or aborted; otherwise dropping the import discards it.
    finished: bool,
}

impl Drop for PostgresImport {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let (pool, dataset, import) = (self.pool.clone(), self.dataset.clone(), self.import);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = discard_import(&pool, &dataset, import).await {
                    tracing::warn!(import, "could not discard an abandoned import (a later connect removes it): {e}");
                }
            });
        }
    }
}

#[async_trait]
impl RowImport for PostgresImport {
    async fn write(&mut self, rows: RowBatch) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        sqlx::query("INSERT INTO dataset_rows (dataset, import, chunk, body) VALUES ($1, $2, $3, $4)")
            .bind(&self.dataset)
            .bind(self.import)
            .bind(big(self.chunks))
            .bind(postcard::to_stdvec(&rows).map_err(backend)?)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        self.chunks += 1;
        self.rows += rows.len() as u64;
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<u64, StoreError> {
        let mut txn = self.pool.begin().await.map_err(backend)?;
        lock_dataset(&mut txn, &self.dataset).await?;
        if self.mode == ImportMode::Full {
            sqlx::query(
                "DELETE FROM dataset_rows WHERE dataset = $1 AND import IN (SELECT import FROM committed_imports WHERE dataset = $1)",
            )
            .bind(&self.dataset)
            .execute(&mut *txn)
            .await
            .map_err(backend)?;
            sqlx::query("DELETE FROM committed_imports WHERE dataset = $1")
                .bind(&self.dataset)
                .execute(&mut *txn)
                .await
                .map_err(backend)?;
        }
        sqlx::query("INSERT INTO committed_imports (dataset, import, row_count, chunks) VALUES ($1, $2, $3, $4)")
            .bind(&self.dataset)
            .bind(self.import)
            .bind(big(self.rows))
            .bind(big(self.chunks))
            .execute(&mut *txn)
            .await
            .map_err(backend)?;
        sqlx::query("DELETE FROM pending_imports WHERE import = $1").bind(self.import).execute(&mut *txn).await.map_err(backend)?;
        txn.commit().await.map_err(backend)?;
        // Only now: a commit that failed leaves the import to be discarded on drop.
        self.finished = true;
        Ok(self.rows)
    }

    async fn abort(mut self: Box<Self>) -> Result<(), StoreError> {
        self.finished = true;
        discard_import(&self.pool, &self.dataset, self.import).await
    }
}
