//! The event log's consumers, each reading every partition from its own
//! committed offset:
//!
//! - `store-writer` writes events, items and users into the store (the
//!   training data); on start it catches up before anything is served, so the
//!   store plus the real-time state hold every acknowledged event.
//! - `archiver` writes events into the hourly zstd JSON-lines archive.
//! - `analytics` counts events by type, item and minute for the dashboard
//!   (in memory, rebuilt from the retained log on start).
//!
//! Offsets are committed only after the consumer's own write is durable, so a
//! crash replays records instead of losing them; every write is idempotent
//! (events by log position, archive files by first sequence).

use crate::Service;
use crate::archive::{ArchiveFile, ArchivedEvent, hour_folder};
use crate::error::{Result, ServiceError};
use crate::tracking::{LogRecord, pending_key};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;
use travelrec_store::EventPosition;
use travelrec_stream::Record;

pub(crate) const STORE_WRITER: &str = "store-writer";
pub(crate) const ARCHIVER: &str = "archiver";
/// Records read per partition per pass.
const BATCH: usize = 512;

fn log_failure(what: &str) -> impl Fn(travelrec_stream::LogError) -> ServiceError + '_ {
    move |e| ServiceError::internal(format!("{what}: {e}"))
}

impl Service {
    /// One pass of the store writer over every partition; returns how many
    /// records it wrote.
    pub(crate) async fn store_writer_pass(&self) -> Result<usize> {
        // An erasure holds this while it catches up and erases, so no record
        // read before it is written after it.
        let _writing = self.inner.store_writer_lock.lock().await;
        self.store_writer_pass_locked().await
    }

    /// Writes every record the log held when called (not those appended
    /// since: under steady traffic the log never runs dry); the caller holds
    /// the store writer's lock.
    pub(crate) async fn write_what_is_logged_locked(&self) -> Result<()> {
        let log = &self.inner.log;
        let last: Vec<Option<u64>> = (0..log.partitions()).map(|p| log.last_sequence(p)).collect();
        let behind = || (0..log.partitions()).any(|p| last[p as usize].is_some_and(|l| log.offset(STORE_WRITER, p) <= l));
        while behind() {
            if self.store_writer_pass_locked().await? == 0 {
                return Err(ServiceError::internal("the store writer made no progress while records were left to write"));
            }
        }
        Ok(())
    }

    pub(crate) async fn store_writer_pass_locked(&self) -> Result<usize> {
        let log = &self.inner.log;
        let mut written = 0;
        for partition in 0..log.partitions() {
            let next = log.offset(STORE_WRITER, partition);
            let records = log.read(partition, next, BATCH).await.map_err(log_failure("reading the event log"))?;
            let Some(last) = records.last().map(|r| r.sequence) else { continue };
            self.write_records(&records).await?;
            log.commit_offset(STORE_WRITER, partition, last + 1).await.map_err(log_failure("committing the store writer's offset"))?;
            written += records.len();
        }
        Ok(written)
    }

    async fn write_records(&self, records: &[Record]) -> Result<()> {
        let mut events: BTreeMap<String, Vec<(EventPosition, travelrec_store::TrackedEvent)>> = BTreeMap::new();
        for record in records {
            let decoded = LogRecord::decode(&record.payload).map_err(|e| {
                ServiceError::internal(format!("log record {} of partition {} is unreadable: {e}", record.sequence, record.partition))
            })?;
            match decoded {
                LogRecord::Events { dataset_group_arn, events: list, .. } => {
                    let batch = events.entry(dataset_group_arn).or_default();
                    for (index, event) in list.into_iter().enumerate() {
                        batch.push((EventPosition { partition: record.partition, sequence: record.sequence, index: index as u32 }, event));
                    }
                }
                LogRecord::Rows { dataset_arn, rows, .. } => self.store_dyn().append_rows(&dataset_arn, rows).await?,
                LogRecord::Erased => {}
            }
        }
        for (group, batch) in events {
            let ids: Vec<String> = batch.iter().map(|(_, e)| pending_key(&group, &e.event_id)).collect();
            self.store_dyn().put_events(&group, batch).await?;
            // The store knows these ids now; the in-memory reservations can go.
            ids.iter().for_each(|id| {
                self.inner.pending_event_ids.remove(id);
            });
        }
        Ok(())
    }

    /// Applies everything the store writer has not yet written (after a crash
    /// or restart). Runs before the service serves.
    pub(crate) async fn catch_up(&self) -> Result<usize> {
        let mut total = 0;
        loop {
            let written = self.store_writer_pass().await?;
            if written == 0 {
                return Ok(total);
            }
            total += written;
        }
    }

    /// Starts the consumers and the retention timer as background tasks.
    pub(crate) fn spawn_consumers(&self) {
        let service = self.clone();
        self.spawn_background(async move { service.run_store_writer().await });
        if let Some(root) = self.inner.archive_dir.clone() {
            let service = self.clone();
            self.spawn_background(async move { service.run_archiver(root).await });
        }
        let service = self.clone();
        self.spawn_background(async move { service.run_analytics().await });
        let service = self.clone();
        self.spawn_background(async move { service.run_retention().await });
    }

    fn spawn_background(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.inner.background.lock().push(tokio::spawn(task));
    }

    /// Waits for new records, a flush request, shutdown or the timeout;
    /// returns false on shutdown.
    async fn wait(&self, seen: &mut tokio::sync::watch::Receiver<u64>, timeout: Duration) -> bool {
        let mut shutdown = self.inner.shutdown.subscribe();
        if *shutdown.borrow() {
            return false;
        }
        tokio::select! {
            _ = seen.changed() => true,
            _ = self.inner.flush_requested.notified() => true,
            _ = shutdown.changed() => false,
            _ = tokio::time::sleep(timeout) => true,
        }
    }

    async fn run_store_writer(self) {
        let mut seen = self.inner.log.subscribe();
        loop {
            match self.store_writer_pass().await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => {
                    tracing::error!("the store writer failed and retries in a second: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            if !self.wait(&mut seen, Duration::from_secs(1)).await {
                // Shutting down: write what is left, then stop.
                if let Err(e) = self.catch_up().await {
                    tracing::error!("the store writer could not finish before shutdown (the log keeps the records): {e}");
                }
                return;
            }
        }
    }

    async fn run_archiver(self, root: PathBuf) {
        let mut seen = self.inner.log.subscribe();
        let mut open: HashMap<u32, ArchiveFile> = HashMap::new();
        loop {
            let flush_all = self.inner.flush_pending.swap(false, std::sync::atomic::Ordering::AcqRel);
            if let Err(e) = self.archive_pass(&root, &mut open, flush_all).await {
                tracing::error!("the archiver failed and retries in a second: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            if flush_all {
                self.inner.flush_done.notify_waiters();
            }
            if !self.wait(&mut seen, self.inner.archive_flush_interval.min(Duration::from_secs(1))).await {
                let _ = self.archive_pass(&root, &mut open, true).await;
                return;
            }
        }
    }

    /// Reads new records into open archive files; closes (and commits) files
    /// that changed hour, grew old, or when `flush_all`.
    async fn archive_pass(&self, root: &std::path::Path, open: &mut HashMap<u32, ArchiveFile>, flush_all: bool) -> Result<()> {
        let log = &self.inner.log;
        let max_age = self.inner.archive_flush_interval;
        for partition in 0..log.partitions() {
            let mut next = open.get(&partition).map_or_else(|| log.offset(ARCHIVER, partition), |f| f.last_sequence + 1);
            loop {
                let records = log.read(partition, next, BATCH).await.map_err(log_failure("reading the event log"))?;
                if records.is_empty() {
                    break;
                }
                for record in &records {
                    let hour = hour_folder(root, record.appended_at_ms);
                    if open.get(&partition).is_some_and(|f| f.hour != hour) {
                        let file = open.remove(&partition).expect("checked");
                        self.close_archive(partition, file).await?;
                    }
                    let file = match open.entry(partition) {
                        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                        std::collections::hash_map::Entry::Vacant(e) => e.insert(
                            ArchiveFile::create(hour, partition, record.sequence)
                                .map_err(|e| ServiceError::internal(format!("archive: {e}")))?,
                        ),
                    };
                    if let Ok(LogRecord::Events { dataset_group_arn, events, .. }) = LogRecord::decode(&record.payload) {
                        for (index, event) in events.iter().enumerate() {
                            let position = EventPosition { partition, sequence: record.sequence, index: index as u32 };
                            file.write(&ArchivedEvent::new(&dataset_group_arn, position, event))
                                .map_err(|e| ServiceError::internal(format!("archive: {e}")))?;
                        }
                    }
                    file.last_sequence = record.sequence;
                }
                next = records.last().expect("not empty").sequence + 1;
            }
            if open.get(&partition).is_some_and(|f| flush_all || f.opened.elapsed() >= max_age) {
                let file = open.remove(&partition).expect("checked");
                self.close_archive(partition, file).await?;
            }
        }
        Ok(())
    }

    async fn close_archive(&self, partition: u32, file: ArchiveFile) -> Result<()> {
        let next = file.last_sequence + 1;
        let events = file.events;
        let path = tokio::task::spawn_blocking(move || file.close())
            .await
            .map_err(|e| ServiceError::internal(e.to_string()))?
            .map_err(|e| ServiceError::internal(format!("archive: {e}")))?;
        tracing::debug!(partition, events, path = %path.display(), "archived");
        self.inner.log.commit_offset(ARCHIVER, partition, next).await.map_err(log_failure("committing the archiver's offset"))
    }

    /// Closes every open archive file now and waits until that is done.
    pub async fn flush_archive(&self) {
        if self.inner.archive_dir.is_none() {
            return;
        }
        let done = self.inner.flush_done.notified();
        self.inner.flush_pending.store(true, std::sync::atomic::Ordering::Release);
        self.inner.flush_requested.notify_waiters();
        let _ = tokio::time::timeout(Duration::from_secs(30), done).await;
    }

    async fn run_analytics(self) {
        let mut seen = self.inner.log.subscribe();
        let log = self.inner.log.clone();
        let mut next: Vec<u64> = (0..log.partitions()).map(|p| log.first_sequence(p).unwrap_or(0)).collect();
        loop {
            for partition in 0..log.partitions() {
                while let Ok(records) = log.read(partition, next[partition as usize], BATCH).await {
                    let Some(last) = records.last().map(|r| r.sequence) else { break };
                    for record in &records {
                        if let Ok(LogRecord::Events { dataset_group_arn, events, .. }) = LogRecord::decode(&record.payload) {
                            self.inner.analytics.record(&dataset_group_arn, record.appended_at_ms, &events);
                            self.inner.feedback.attribute(record.appended_at_ms, &events);
                        }
                    }
                    next[partition as usize] = last + 1;
                }
            }
            if !self.wait(&mut seen, Duration::from_secs(5)).await {
                return;
            }
        }
    }

    async fn run_retention(self) {
        loop {
            match self.inner.log.apply_retention().await {
                Ok(report) if !report.deleted.is_empty() => {
                    tracing::info!(segments = report.deleted.len(), bytes = report.bytes_freed(), "log retention")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("log retention failed: {e}"),
            }
            let mut shutdown = self.inner.shutdown.subscribe();
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Stops the consumers after they wrote what the log holds (the archive
    /// is flushed), for a clean shutdown.
    pub async fn shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
        let tasks: Vec<_> = std::mem::take(&mut *self.inner.background.lock());
        for task in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
        }
    }
}

/// Event counts for the dashboard, per dataset group.
#[derive(Default)]
pub struct Analytics {
    groups: Mutex<HashMap<String, GroupAnalytics>>,
}

/// Minutes of per-minute counts kept (a day).
const MINUTES_KEPT: i64 = 24 * 60;

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupAnalytics {
    pub events: u64,
    pub by_event_type: BTreeMap<String, u64>,
    pub by_item: HashMap<String, u64>,
    /// Unix minute → events received in it (the last day).
    pub by_minute: BTreeMap<i64, u64>,
    /// Events that name the recommendation they came from.
    pub attributed: u64,
    pub users: u64,
    #[serde(skip)]
    seen_users: std::collections::HashSet<String>,
}

impl Analytics {
    fn record(&self, group: &str, appended_at_ms: i64, events: &[travelrec_store::TrackedEvent]) {
        let mut groups = self.groups.lock();
        let g = groups.entry(group.to_string()).or_default();
        let minute = appended_at_ms.div_euclid(60_000);
        for e in events {
            g.events += 1;
            *g.by_event_type.entry(e.interaction.event_type.clone()).or_default() += 1;
            *g.by_item.entry(e.interaction.item_id.clone()).or_default() += 1;
            count_minute(&mut g.by_minute, minute, MINUTES_KEPT + 1);
            if e.recommendation_id.is_some() {
                g.attributed += 1;
            }
            if g.seen_users.insert(e.interaction.user_id.clone()) {
                g.users += 1;
            }
        }
    }

    /// Forgets that a user was seen: they no longer count among the distinct
    /// users (event counts, which name nobody, stay).
    pub(crate) fn forget_user(&self, group: &str, user_id: &str) {
        if let Some(g) = self.groups.lock().get_mut(group)
            && g.seen_users.remove(user_id)
        {
            g.users -= 1;
        }
    }

    pub fn snapshot(&self, group: &str) -> GroupAnalytics {
        self.groups.lock().get(group).cloned().unwrap_or_default()
    }
}

/// Counts one in `minute`, keeping the newest `kept` minutes.
pub(crate) fn count_minute(by_minute: &mut BTreeMap<i64, u64>, minute: i64, kept: i64) {
    *by_minute.entry(minute).or_default() += 1;
    while by_minute.first_key_value().is_some_and(|(m, _)| *m <= minute - kept) {
        by_minute.pop_first();
    }
}

/// The counts of the `shown` minutes up to `now_minute`, oldest first.
pub(crate) fn last_minutes(by_minute: &BTreeMap<i64, u64>, now_minute: i64, shown: i64) -> Vec<(i64, u64)> {
    by_minute.range(now_minute - shown + 1..).map(|(m, n)| (*m, *n)).collect()
}
