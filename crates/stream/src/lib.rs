//! A durable, partitioned, append-only event log on local disk — the
//! Kinesis-like stream that event ingestion sits on.
//!
//! Records are routed to a partition (a "shard") by their key, get a
//! per-partition sequence number (1, 2, 3, … never reused, also across
//! restarts and retention), and are appended to segment files. Appends from
//! many callers are grouped: one writer thread writes everything queued and
//! fsyncs once per touched file before it acknowledges any of them (group
//! commit). Consumers read by `(partition, sequence)` and commit their
//! offsets durably; retention deletes old closed segments but never ones a
//! registered consumer still needs.
//!
//! # Guarantees
//!
//! - [`Durability::Fsync`] (default): an append resolves `Ok` only after its
//!   records were written and `fdatasync`ed. No acknowledged record is lost
//!   by a process crash or power loss, and none is stored twice (the log never
//!   appends a record again; a caller that retries after an *error* may store
//!   a record twice, as with any at-least-once stream).
//! - A record changes only through [`EventLog::rewrite_in_place`] (erasure):
//!   its key is zeroed and its payload replaced by one no longer, at the same
//!   offset with the same sequence, through a journal a crash cannot tear.
//! - [`Durability::Batch`]: an append resolves after `write(2)`; files are
//!   fsynced every `interval`. Survives a process crash, may lose up to
//!   `interval` of acknowledged records on power loss.
//! - Readers see a record only once it is acknowledged (fsynced, resp. written).
//! - Memory is bounded: queued appends are limited to
//!   [`LogConfig::max_pending_bytes`] (and 4,096 requests); beyond that an
//!   append fails at once with [`LogError::Backpressure`] carrying a
//!   `retry_after` estimate. Nothing ever blocks waiting for room.
//! - [`EventLog::partition_for`] is 32-bit FNV-1a of the key bytes modulo the
//!   partition count — fixed forever, the same on every platform. The
//!   partition count is stored in the directory and cannot change.
//!
//! # On-disk format (version 1)
//!
//! ```text
//! dir/
//!   LOCK                          flock(2)ed while a process has the log open
//!   log.json                      {"format_version": 1, "partitions": 4}
//!   partition-0000/               one directory per partition ("shardId-000000000000")
//!     00000000000000000001.log    segment: records from sequence 1 (20-digit first sequence)
//!     00000000000000052117.log    the newest segment is the active one
//!     rewrite.journal             only while records are written over (see the journal module)
//!   offsets/
//!     {consumer}.json             {"consumer": "...", "next_sequence_by_partition": {"0": 17, "3": 5}}
//! ```
//!
//! A segment is a plain concatenation of records, with no file header. A
//! record (all integers little-endian):
//!
//! ```text
//! offset  size  field
//!      0     1  magic = 0xA1 (0xA_ = record, low nibble = format version 1)
//!      1     4  body_len: u32 = 18 + key_len + payload_len (bytes after the checksum)
//!      5     4  crc32: u32, CRC-32 (IEEE, as zlib) over bytes 0..5 followed by the body
//!      9     8  sequence: u64
//!     17     8  appended_at_ms: i64, Unix milliseconds when the writer took the record
//!     25     2  key_len: u16
//!     27     k  key
//!   27+k     n  payload
//! ```
//!
//! A record larger than the space left in the active segment starts a new
//! segment (a record larger than `segment_bytes` gets a segment of its own).
//! Before a new segment is created the previous one is fsynced, so only the
//! newest segment of a partition can have a torn tail. On open, the newest
//! segment of each partition is checked record by record; at the first record
//! that is short, has a bad magic byte, a bad checksum or an unexpected
//! sequence, the file is cut there (and fsynced) with a `tracing::warn!` naming
//! partition, segment, offset and bytes cut (also returned by
//! [`EventLog::tail_repairs`]). Closed segments are checked lazily: the first
//! read of a closed segment scans it, and a bad record there is reported as
//! [`LogError::Corrupt`] with file and offset.
//!
//! Recovery can only cut records that were never acknowledged, except after
//! power loss in batch mode or when the disk corrupts an acknowledged record.
//! Then the cut sequences are given to new records, and a consumer that had
//! committed past the new end is moved back to it (with a warning), so it
//! reads the new records rather than skipping them.
//!
//! Offsets files are replaced atomically: write `{consumer}.json.tmp`, fsync,
//! rename over, fsync the directory.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), travelrec_stream::LogError> {
//! use travelrec_stream::{EventLog, LogConfig};
//! # let dir = tempfile::tempdir().unwrap();
//! let log = EventLog::open(dir.path(), LogConfig::default()).await?;
//! let id = log.append(b"user-429", br#"{"itemId":"185"}"#.to_vec()).await?; // durable now
//!
//! // A consumer: read from its committed offset, apply, commit. It registers
//! // on its first commit; from then on retention keeps what it has not read.
//! let partition = id.partition;
//! let mut next = log.offset("realtime", partition);
//! for record in log.read(partition, next, 100).await? {
//!     // apply(record.payload) ...
//!     next = record.sequence + 1;
//! }
//! log.commit_offset("realtime", partition, next).await?;
//! assert_eq!(log.offset("realtime", partition), id.sequence + 1);
//! // Nothing new: wait with `log.subscribe().changed().await`.
//! # Ok(())
//! # }
//! ```

mod error;
mod format;
mod journal;
mod offsets;
mod segment;
mod writer;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};

pub use error::LogError;
pub use format::{MAX_KEY_BYTES, MAX_PAYLOAD_BYTES};

use format::{Scanned, SegmentScanner, fnv1a_32, parse_segment_file_name, partition_dir, segment_file_name};
use offsets::{ConsumerOffsets, OffsetStore, validate_consumer_name};
use segment::{Segment, fsync_dir, recover_tail};
use writer::{AppendRequest, PartitionWriter, PendingRecord, Reservation, Writer};

/// Most append requests queued for the writer at once (each also counts against `max_pending_bytes`).
const REQUEST_QUEUE_CAPACITY: usize = 4096;
/// Bookkeeping bytes counted against `max_pending_bytes` per queued record, on top of key and payload.
const PENDING_BYTES_PER_RECORD: usize = 64;
const FORMAT_VERSION: u32 = 1;

/// How the log is laid out and how durable an acknowledgement is.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// Number of partitions (shards). Fixed when the directory is created. Default 4.
    pub partitions: u32,
    /// A segment is closed when the next record would take it past this size. Default 64 MiB.
    pub segment_bytes: u64,
    pub durability: Durability,
    pub retention: Retention,
    /// Bound on appends accepted but not yet written: key + payload bytes plus
    /// 64 bytes per record. Beyond it appends fail with
    /// [`LogError::Backpressure`]. Default 64 MiB.
    pub max_pending_bytes: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            partitions: 4,
            segment_bytes: 64 * 1024 * 1024,
            durability: Durability::default(),
            retention: Retention::default(),
            max_pending_bytes: 64 * 1024 * 1024,
        }
    }
}

/// When an append is acknowledged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// After the records are fsynced (group commit). Survives power loss.
    #[default]
    Fsync,
    /// After `write(2)`; files are fsynced every `interval`. Survives a
    /// process crash; power loss may lose up to `interval` of acknowledged records.
    Batch { interval: Duration },
}

/// What [`EventLog::apply_retention`] may delete. Only whole closed segments
/// are deleted (never the active one), oldest first, and never one holding a
/// record that a registered consumer has not committed past.
#[derive(Clone, Debug, Default)]
pub struct Retention {
    /// Delete a closed segment once its newest record is older than this
    /// (judged by the first record of the following segment, which is at
    /// least as new).
    pub max_age: Option<Duration>,
    /// Delete the oldest closed segments while a partition holds more than this.
    pub max_bytes_per_partition: Option<u64>,
}

/// Where an appended record went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordId {
    pub partition: u32,
    pub sequence: u64,
}

/// A stored record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub partition: u32,
    pub sequence: u64,
    /// Unix milliseconds when the writer took the record (shared by a commit group).
    pub appended_at_ms: i64,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
}

/// A torn or corrupt tail that [`EventLog::open`] cut off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TailRepair {
    pub partition: u32,
    pub segment: PathBuf,
    /// Where the file was cut: the start of the first bad record.
    pub offset: u64,
    pub bytes_cut: u64,
    pub reason: String,
}

/// What [`EventLog::apply_retention`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub deleted: Vec<DeletedSegment>,
    /// Segments past the retention limits that were kept because a consumer
    /// has not committed past them (one per partition: the oldest).
    pub held: Vec<HeldSegment>,
}

impl RetentionReport {
    pub fn bytes_freed(&self) -> u64 {
        self.deleted.iter().map(|segment| segment.bytes).sum()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeletedSegment {
    pub partition: u32,
    pub first_sequence: u64,
    pub last_sequence: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldSegment {
    pub partition: u32,
    pub first_sequence: u64,
    pub last_sequence: u64,
    /// The consumer furthest behind on this partition, and its committed next sequence.
    pub consumer: String,
    pub consumer_next_sequence: u64,
}

/// A snapshot of the log's counters.
#[derive(Clone, Debug)]
pub struct LogStats {
    pub partitions: Vec<PartitionStats>,
    /// Bytes of appends accepted but not yet acknowledged.
    pub pending_bytes: usize,
    pub max_pending_bytes: usize,
    /// `fdatasync` calls on segment files since open.
    pub fsyncs: u64,
    /// Commit groups written since open.
    pub write_groups: u64,
    /// Records acknowledged since open.
    pub appended_records: u64,
    /// Set when the writer stopped after an I/O error.
    pub writer_failure: Option<String>,
}

#[derive(Clone, Debug)]
pub struct PartitionStats {
    pub partition: u32,
    pub shard_id: String,
    /// Oldest retained sequence (`last_sequence + 1` when no record is retained).
    pub first_sequence: u64,
    pub last_sequence: Option<u64>,
    pub records: u64,
    pub bytes: u64,
    pub segments: usize,
}

/// State shared by the handles, the writer thread and blocking readers.
pub(crate) struct Shared {
    pub config: LogConfig,
    pub dir: PathBuf,
    pub partitions: Vec<PartitionState>,
    pub pending_bytes: AtomicUsize,
    /// Recent writer throughput, for `retry_after`.
    pub drain_bytes_per_sec: AtomicU64,
    pub fsyncs: AtomicU64,
    pub write_groups: AtomicU64,
    pub appended_records: AtomicU64,
    pub writer_failure: OnceLock<String>,
    /// Counts records made readable since open; changes wake subscribers.
    pub readable: watch::Sender<u64>,
    /// Retention runs one at a time (it removes segments from the front of the lists).
    pub retention_lock: parking_lot::Mutex<()>,
    /// Rewriting records in place ([`EventLog::rewrite_in_place`]) holds it
    /// exclusively, readers shared: no reader sees a record half rewritten.
    pub rewrite_lock: parking_lot::RwLock<()>,
    /// Lets a test hold the writer still.
    #[cfg(test)]
    pub writer_gate: parking_lot::Mutex<()>,
    /// Lets a test stop a rewrite as a crash would, once its journal is written.
    #[cfg(test)]
    pub crash_after_journal: std::sync::atomic::AtomicBool,
}

pub(crate) struct PartitionState {
    /// The last sequence readers may see (0 before the first record).
    pub visible_sequence: AtomicU64,
    /// Oldest first; the last one is the active segment. Never empty.
    pub segments: parking_lot::Mutex<Vec<Arc<Segment>>>,
}

impl PartitionState {
    fn first_retained_sequence(&self) -> u64 {
        self.segments.lock()[0].first_sequence
    }
}

impl Shared {
    fn reserve(self: &Arc<Self>, bytes: usize) -> Result<Reservation, LogError> {
        let limit = self.config.max_pending_bytes;
        let mut current = self.pending_bytes.load(Ordering::Acquire);
        loop {
            if current + bytes > limit {
                return Err(self.backpressure(current));
            }
            match self.pending_bytes.compare_exchange_weak(current, current + bytes, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(Reservation { shared: self.clone(), bytes }),
                Err(actual) => current = actual,
            }
        }
    }

    fn backpressure(&self, pending_bytes: usize) -> LogError {
        let retry_after = writer::retry_after(pending_bytes, self.drain_bytes_per_sec.load(Ordering::Relaxed));
        LogError::Backpressure { retry_after, pending_bytes, limit_bytes: self.config.max_pending_bytes }
    }

    /// Keeps a moving average of how fast the writer drains queued bytes.
    pub(crate) fn record_drain_rate(&self, bytes: usize, elapsed: Duration) {
        let rate = (bytes as f64 / elapsed.as_secs_f64().max(1e-6)) as u64;
        let previous = self.drain_bytes_per_sec.load(Ordering::Relaxed);
        let smoothed = if previous == 0 { rate } else { (previous * 7 + rate) / 8 };
        self.drain_bytes_per_sec.store(smoothed, Ordering::Relaxed);
    }
}

/// `log.json`.
#[derive(Serialize, Deserialize)]
struct LogMeta {
    format_version: u32,
    partitions: u32,
}

/// The event log. Cheap to clone (an `Arc` inside); every clone is the same log.
/// Dropping the last clone closes the channel to the writer, waits for it to
/// finish what it holds (fsyncing in batch mode) and releases the directory lock.
#[derive(Clone)]
pub struct EventLog {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    offsets: OffsetStore,
    /// `None` only while dropping, to close the channel before joining the writer.
    requests: Option<SyncSender<AppendRequest>>,
    writer: Option<JoinHandle<()>>,
    tail_repairs: Vec<TailRepair>,
    /// Held (flock) for as long as the log is open; declared last so it is released last.
    _dir_lock: File,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.requests.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog").field("dir", &self.inner.shared.dir).field("partitions", &self.inner.shared.config.partitions).finish()
    }
}

struct Opened {
    shared: Arc<Shared>,
    offsets: OffsetStore,
    writers: Vec<PartitionWriter>,
    tail_repairs: Vec<TailRepair>,
    dir_lock: File,
}

impl EventLog {
    /// Opens (creating if needed) the log in `dir`: takes the directory lock,
    /// checks and repairs the newest segment of every partition, loads
    /// consumer offsets and starts the writer thread. Sequences continue
    /// where they ended.
    pub async fn open(dir: &Path, config: LogConfig) -> Result<EventLog, LogError> {
        validate_config(&config)?;
        let dir = dir.to_path_buf();
        let opened = spawn_blocking(move || open_blocking(dir, config)).await?;
        for repair in &opened.tail_repairs {
            tracing::warn!(
                partition = repair.partition,
                segment = %repair.segment.display(),
                offset = repair.offset,
                bytes_cut = repair.bytes_cut,
                reason = %repair.reason,
                "event log: cut a torn or corrupt tail at the last good record"
            );
        }
        let next_sequences: Vec<u64> =
            opened.shared.partitions.iter().map(|state| state.visible_sequence.load(Ordering::Acquire) + 1).collect();
        for (consumer, partition, committed, end) in opened.offsets.clamp_to_end(&next_sequences) {
            tracing::warn!(
                consumer = %consumer,
                partition,
                committed_next_sequence = committed,
                log_next_sequence = end,
                "event log: a consumer had committed past the end of a partition (records it read were cut by recovery); \
                 it resumes at the new end"
            );
        }
        let (requests, receiver) = std::sync::mpsc::sync_channel(REQUEST_QUEUE_CAPACITY);
        let writer = Writer { shared: opened.shared.clone(), partitions: opened.writers, requests: receiver }.spawn();
        Ok(EventLog {
            inner: Arc::new(Inner {
                shared: opened.shared,
                offsets: opened.offsets,
                requests: Some(requests),
                writer: Some(writer),
                tail_repairs: opened.tail_repairs,
                _dir_lock: opened.dir_lock,
            }),
        })
    }

    /// The partition a key goes to: 32-bit FNV-1a of the key bytes, modulo
    /// the partition count. Stable across versions and platforms.
    pub fn partition_for(&self, key: &[u8]) -> u32 {
        fnv1a_32(key) % self.inner.shared.config.partitions
    }

    pub fn partitions(&self) -> u32 {
        self.inner.shared.config.partitions
    }

    /// The Kinesis-style shard id of a partition: `shardId-000000000003`.
    pub fn shard_id(partition: u32) -> String {
        format!("shardId-{partition:012}")
    }

    /// Appends one record to the partition of `key`; resolves when it is
    /// durable per [`Durability`]. Fails at once with
    /// [`LogError::Backpressure`] when too much is queued.
    ///
    /// If the future is dropped after the record was queued, the record is
    /// still written, just not acknowledged.
    pub async fn append(&self, key: &[u8], payload: Vec<u8>) -> Result<RecordId, LogError> {
        let ids = self.append_batch(vec![(key.to_vec(), payload)]).await?;
        Ok(ids[0])
    }

    /// Appends several `(key, payload)` records with the same guarantee as
    /// [`append`](Self::append); ids are returned in input order. Records of
    /// the same key keep their order. The batch is admitted or refused as a
    /// whole, but it is not atomic across partitions: if the writer fails
    /// mid-way, some of its records may be stored although the call fails.
    pub async fn append_batch(&self, records: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Vec<RecordId>, LogError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let reply = self.submit(records)?;
        reply.await.map_err(|_| LogError::WriterStopped)?
    }

    /// Validates, reserves room and queues a request, without waiting.
    fn submit(&self, records: Vec<(Vec<u8>, Vec<u8>)>) -> Result<oneshot::Receiver<Result<Vec<RecordId>, LogError>>, LogError> {
        let shared = &self.inner.shared;
        if let Some(reason) = shared.writer_failure.get() {
            return Err(LogError::WriterFailed { reason: reason.clone() });
        }
        let mut pending_bytes = PENDING_BYTES_PER_RECORD;
        let mut pending = Vec::with_capacity(records.len());
        for (key, payload) in records {
            if key.len() > MAX_KEY_BYTES {
                return Err(LogError::KeyTooLarge { bytes: key.len(), limit: MAX_KEY_BYTES });
            }
            if payload.len() > MAX_PAYLOAD_BYTES {
                return Err(LogError::TooLarge { what: "record payload", bytes: payload.len(), limit: MAX_PAYLOAD_BYTES });
            }
            pending_bytes += key.len() + payload.len() + PENDING_BYTES_PER_RECORD;
            pending.push(PendingRecord { partition: self.partition_for(&key), key, payload });
        }
        if pending_bytes > shared.config.max_pending_bytes {
            return Err(LogError::TooLarge {
                what: "append batch (keys, payloads and 64 bytes per record)",
                bytes: pending_bytes,
                limit: shared.config.max_pending_bytes,
            });
        }
        let reservation = shared.reserve(pending_bytes)?;
        let (reply, receiver) = oneshot::channel();
        let request = AppendRequest { records: pending, reservation, reply };
        let sender = self.inner.requests.as_ref().ok_or(LogError::WriterStopped)?;
        match sender.try_send(request) {
            Ok(()) => Ok(receiver),
            Err(TrySendError::Full(request)) => {
                drop(request); // releases the reservation
                Err(shared.backpressure(shared.pending_bytes.load(Ordering::Acquire)))
            }
            Err(TrySendError::Disconnected(_)) => Err(LogError::WriterStopped),
        }
    }

    /// Up to `max_records` records of `partition` with sequence >=
    /// `from_sequence`, in order, among those acknowledged so far. Reading
    /// below the retained range starts at the oldest retained record (compare
    /// the first returned sequence with `from_sequence` to detect the gap).
    /// An empty result means nothing new yet: wait on [`subscribe`](Self::subscribe).
    pub async fn read(&self, partition: u32, from_sequence: u64, max_records: usize) -> Result<Vec<Record>, LogError> {
        let state = self.partition_state(partition)?;
        let visible = state.visible_sequence.load(Ordering::Acquire);
        let from = from_sequence.max(state.first_retained_sequence()).max(1);
        if max_records == 0 || from > visible {
            return Ok(Vec::new());
        }
        let to = visible.min(from.saturating_add(max_records as u64 - 1));
        let shared = self.inner.shared.clone();
        spawn_blocking(move || read_range(&shared, partition, from, to)).await
    }

    /// A receiver whose value changes whenever records become readable (it
    /// counts records made readable since open, across all partitions).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.shared.readable.subscribe()
    }

    /// The newest readable sequence of a partition; `None` if it never had a
    /// record (or the partition does not exist).
    pub fn last_sequence(&self, partition: u32) -> Option<u64> {
        let state = self.inner.shared.partitions.get(partition as usize)?;
        Some(state.visible_sequence.load(Ordering::Acquire)).filter(|&sequence| sequence > 0)
    }

    /// The oldest retained sequence of a partition (`last_sequence + 1` when
    /// retention left no record).
    pub fn first_sequence(&self, partition: u32) -> Result<u64, LogError> {
        Ok(self.partition_state(partition)?.first_retained_sequence())
    }

    /// Registers a consumer (if new) so retention keeps every record it has
    /// not committed past. Durable. Committing an offset also registers.
    pub async fn register_consumer(&self, consumer: &str) -> Result<(), LogError> {
        validate_consumer_name(consumer)?;
        self.inner.offsets.update(consumer, |_| {}).await
    }

    /// Forgets a consumer and its offsets, so it no longer holds back
    /// retention. Returns whether it was registered.
    pub async fn unregister_consumer(&self, consumer: &str) -> Result<bool, LogError> {
        validate_consumer_name(consumer)?;
        self.inner.offsets.remove(consumer).await
    }

    /// Registered consumers, by name.
    pub fn consumers(&self) -> Vec<String> {
        self.inner.offsets.consumers()
    }

    /// Durably records that `consumer` has processed everything before
    /// `next_sequence` on `partition` (registering the consumer if new).
    /// Moving an offset backwards (to re-read) is allowed; past the last
    /// readable sequence + 1 is not.
    pub async fn commit_offset(&self, consumer: &str, partition: u32, next_sequence: u64) -> Result<(), LogError> {
        validate_consumer_name(consumer)?;
        let state = self.partition_state(partition)?;
        let last_sequence = state.visible_sequence.load(Ordering::Acquire);
        if next_sequence > last_sequence + 1 {
            return Err(LogError::OffsetBeyondEnd { consumer: consumer.to_string(), partition, next_sequence, last_sequence });
        }
        self.inner
            .offsets
            .update(consumer, move |offsets: &mut ConsumerOffsets| {
                offsets.insert(partition, next_sequence);
            })
            .await
    }

    /// The next sequence `consumer` should read on `partition`: what it last
    /// committed, or 0 if it never committed there (and [`read`](Self::read)
    /// from 0 starts at the oldest retained record).
    pub fn offset(&self, consumer: &str, partition: u32) -> u64 {
        self.inner.offsets.offset(consumer, partition)
    }

    /// Deletes closed segments beyond [`LogConfig::retention`], oldest first,
    /// but never a segment holding a record that a registered consumer has
    /// not committed past, and never the active segment. Call it periodically.
    pub async fn apply_retention(&self) -> Result<RetentionReport, LogError> {
        let shared = self.inner.shared.clone();
        let offsets = self.inner.offsets.clone();
        spawn_blocking(move || {
            // One run at a time, taken on the blocking thread so a dropped caller cannot overlap two runs.
            let _one_at_a_time = shared.retention_lock.lock();
            apply_retention_blocking(&shared, &offsets.snapshot())
        })
        .await
    }

    /// Rewrites in place the readable records of `partition` for which
    /// `rewrite` returns a new payload: the new payload, zero-padded to the
    /// old one's length (it may not be longer), replaces it, and the key's
    /// bytes are zeroed, so what the record held is gone from the segment
    /// file (not from copies of it). Sequences, offsets and consumers'
    /// positions stay as they were; readers wait while the new bytes are
    /// written (appends do not). The new records go to a journal first, so a
    /// crash in the middle is finished when the log is next opened. For
    /// erasing a person's data before retention would. Returns the records
    /// rewritten.
    pub async fn rewrite_in_place<F>(&self, partition: u32, rewrite: F) -> Result<u64, LogError>
    where
        F: Fn(&Record) -> Option<Vec<u8>> + Send + 'static,
    {
        self.partition_state(partition)?;
        let shared = self.inner.shared.clone();
        spawn_blocking(move || {
            let _one_at_a_time = shared.retention_lock.lock();
            rewrite_in_place_blocking(&shared, partition, &rewrite)
        })
        .await
    }

    /// The tails cut off by recovery when this log was opened.
    pub fn tail_repairs(&self) -> &[TailRepair] {
        &self.inner.tail_repairs
    }

    pub fn stats(&self) -> LogStats {
        let shared = &self.inner.shared;
        let partitions = shared
            .partitions
            .iter()
            .enumerate()
            .map(|(index, state)| {
                let partition = index as u32;
                let segments = state.segments.lock().clone();
                let last = state.visible_sequence.load(Ordering::Acquire);
                let first = segments[0].first_sequence;
                PartitionStats {
                    partition,
                    shard_id: Self::shard_id(partition),
                    first_sequence: first,
                    last_sequence: Some(last).filter(|&sequence| sequence > 0),
                    records: (last + 1).saturating_sub(first),
                    bytes: segments.iter().map(|segment| segment.bytes()).sum(),
                    segments: segments.len(),
                }
            })
            .collect();
        LogStats {
            partitions,
            pending_bytes: shared.pending_bytes.load(Ordering::Acquire),
            max_pending_bytes: shared.config.max_pending_bytes,
            fsyncs: shared.fsyncs.load(Ordering::Relaxed),
            write_groups: shared.write_groups.load(Ordering::Relaxed),
            appended_records: shared.appended_records.load(Ordering::Relaxed),
            writer_failure: shared.writer_failure.get().cloned(),
        }
    }

    fn partition_state(&self, partition: u32) -> Result<&PartitionState, LogError> {
        self.inner
            .shared
            .partitions
            .get(partition as usize)
            .ok_or(LogError::InvalidPartition { partition, partitions: self.inner.shared.config.partitions })
    }
}

/// Runs blocking file work off the async worker threads.
pub(crate) async fn spawn_blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T, LogError> + Send + 'static) -> Result<T, LogError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(join_error) if join_error.is_panic() => std::panic::resume_unwind(join_error.into_panic()),
        Err(_) => Err(LogError::Cancelled),
    }
}

fn validate_config(config: &LogConfig) -> Result<(), LogError> {
    let problem = if !(1..=9999).contains(&config.partitions) {
        Some(format!("partitions is {}; use 1 to 9999", config.partitions))
    } else if config.segment_bytes == 0 {
        Some("segment_bytes is 0; use at least a few KiB (default 64 MiB)".to_string())
    } else if config.max_pending_bytes == 0 {
        Some("max_pending_bytes is 0; use at least a few MiB (default 64 MiB)".to_string())
    } else if config.durability == (Durability::Batch { interval: Duration::ZERO }) {
        Some("durability Batch needs an interval above zero (or use Fsync)".to_string())
    } else {
        None
    };
    match problem {
        Some(problem) => Err(LogError::InvalidConfig(problem)),
        None => Ok(()),
    }
}

fn open_blocking(dir: PathBuf, config: LogConfig) -> Result<Opened, LogError> {
    let created = !dir.exists();
    fs::create_dir_all(&dir).map_err(LogError::io("create log directory", &dir))?;
    if created && let Some(parent) = dir.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        fsync_dir(parent)?;
    }

    let lock_path = dir.join("LOCK");
    let dir_lock =
        OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(LogError::io("open lock file", &lock_path))?;
    match dir_lock.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => return Err(LogError::Locked { dir }),
        Err(fs::TryLockError::Error(source)) => return Err(LogError::Io { action: "lock", path: lock_path, source }),
    }

    check_or_write_meta(&dir, config.partitions)?;

    let offsets_dir = dir.join("offsets");
    fs::create_dir_all(&offsets_dir).map_err(LogError::io("create offsets directory", &offsets_dir))?;
    let offsets = OffsetStore::load(offsets_dir)?;

    let mut states = Vec::new();
    let mut writers = Vec::new();
    let mut tail_repairs = Vec::new();
    for partition in 0..config.partitions {
        let (state, writer, repair) = open_partition(&dir, partition)?;
        states.push(state);
        writers.push(writer);
        tail_repairs.extend(repair);
    }
    fsync_dir(&dir)?;

    let shared = Arc::new(Shared {
        config,
        dir,
        partitions: states,
        pending_bytes: AtomicUsize::new(0),
        drain_bytes_per_sec: AtomicU64::new(0),
        fsyncs: AtomicU64::new(0),
        write_groups: AtomicU64::new(0),
        appended_records: AtomicU64::new(0),
        writer_failure: OnceLock::new(),
        readable: watch::Sender::new(0),
        retention_lock: parking_lot::Mutex::new(()),
        rewrite_lock: parking_lot::RwLock::new(()),
        #[cfg(test)]
        writer_gate: parking_lot::Mutex::new(()),
        #[cfg(test)]
        crash_after_journal: std::sync::atomic::AtomicBool::new(false),
    });
    Ok(Opened { shared, offsets, writers, tail_repairs, dir_lock })
}

fn check_or_write_meta(dir: &Path, partitions: u32) -> Result<(), LogError> {
    let path = dir.join("log.json");
    match fs::read_to_string(&path) {
        Ok(text) => {
            let meta: LogMeta = serde_json::from_str(&text).map_err(|e| LogError::Corrupt {
                path: path.clone(),
                offset: 0,
                reason: format!("log.json is not valid: {e}"),
            })?;
            if meta.format_version != FORMAT_VERSION {
                return Err(LogError::Corrupt {
                    path,
                    offset: 0,
                    reason: format!("format version {} is not supported (this build reads version {FORMAT_VERSION})", meta.format_version),
                });
            }
            if meta.partitions != partitions {
                return Err(LogError::PartitionCountMismatch { dir: dir.to_path_buf(), on_disk: meta.partitions, configured: partitions });
            }
            Ok(())
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let meta = serde_json::to_vec_pretty(&LogMeta { format_version: FORMAT_VERSION, partitions }).expect("meta serialises");
            let temp = dir.join("log.json.tmp");
            let mut file = File::create(&temp).map_err(LogError::io("create", &temp))?;
            std::io::Write::write_all(&mut file, &meta).map_err(LogError::io("write", &temp))?;
            file.sync_all().map_err(LogError::io("fsync", &temp))?;
            fs::rename(&temp, &path).map_err(LogError::io("rename into place", &path))?;
            fsync_dir(dir)
        }
        Err(error) => Err(LogError::Io { action: "read", path, source: error }),
    }
}

/// Lists a partition's segments, repairs the newest one's tail and opens it for appending.
fn open_partition(dir: &Path, partition: u32) -> Result<(PartitionState, PartitionWriter, Option<TailRepair>), LogError> {
    let partition_dir = partition_dir(dir, partition);
    fs::create_dir_all(&partition_dir).map_err(LogError::io("create partition directory", &partition_dir))?;
    if journal::recover(&partition_dir)? {
        tracing::warn!(partition, "finished rewriting event log records that a crash had interrupted");
    }
    let mut first_sequences = Vec::new();
    for entry in fs::read_dir(&partition_dir).map_err(LogError::io("list partition directory", &partition_dir))? {
        let entry = entry.map_err(LogError::io("list partition directory", &partition_dir))?;
        if let Some(first_sequence) = parse_segment_file_name(&entry.file_name().to_string_lossy()) {
            first_sequences.push(first_sequence);
        }
    }
    first_sequences.sort_unstable();
    if first_sequences.is_empty() {
        let path = partition_dir.join(segment_file_name(1));
        File::create(&path).map_err(LogError::io("create segment", &path))?;
        fsync_dir(&partition_dir)?;
        first_sequences.push(1);
    }

    let (&active_first, closed) = first_sequences.split_last().expect("at least one segment");
    let mut segments = Vec::with_capacity(first_sequences.len());
    for &first_sequence in closed {
        let path = partition_dir.join(segment_file_name(first_sequence));
        let bytes = fs::metadata(&path).map_err(LogError::io("stat segment", &path))?.len();
        segments.push(Arc::new(Segment::new(first_sequence, path, bytes, None)));
    }
    let active_path = partition_dir.join(segment_file_name(active_first));
    let tail = recover_tail(&active_path, partition, active_first)?;
    let last_index_offset = tail.index.last().map(|entry| entry.offset);
    let active = Arc::new(Segment::new(active_first, active_path.clone(), tail.valid_bytes, Some(tail.index)));
    segments.push(active.clone());
    let file = OpenOptions::new().append(true).open(&active_path).map_err(LogError::io("open segment for appending", &active_path))?;

    let state = PartitionState { visible_sequence: AtomicU64::new(tail.next_sequence - 1), segments: parking_lot::Mutex::new(segments) };
    let writer = PartitionWriter::new(partition, partition_dir, Arc::new(file), active, tail.next_sequence, last_index_offset);
    Ok((state, writer, tail.repair))
}

/// Reads records `from..=to` (all acknowledged) of a partition.
fn read_range(shared: &Shared, partition: u32, from: u64, to: u64) -> Result<Vec<Record>, LogError> {
    let _not_rewritten = shared.rewrite_lock.read();
    let segments = shared.partitions[partition as usize].segments.lock().clone();
    let mut records = Vec::with_capacity(((to - from + 1) as usize).min(4096));
    let mut next = from;
    let start = segments.partition_point(|segment| segment.first_sequence <= from).saturating_sub(1);
    let mut first_segment = true;
    for (position, segment) in segments.iter().enumerate().skip(start) {
        if next > to {
            break;
        }
        if segment.first_sequence > next {
            if !first_segment {
                return Err(LogError::Corrupt {
                    path: segment.path.clone(),
                    offset: 0,
                    reason: format!("segment starts at sequence {} but the previous one ends before {next}", segment.first_sequence),
                });
            }
            // Retention deleted the records we were asked for meanwhile: start at the oldest retained.
            next = segment.first_sequence;
        }
        first_segment = false;
        let opened = segment.seek_offset(partition, next).and_then(|offset| SegmentScanner::open(&segment.path, partition, offset));
        let mut scanner = match opened {
            Ok(scanner) => scanner,
            // Deleted by retention while we were reading: those records are gone.
            Err(_) if segment.is_deleted() => continue,
            Err(error) => return Err(error),
        };
        loop {
            match scanner.next_record()? {
                Scanned::Record { record, offset, .. } => {
                    if record.sequence < next {
                        continue;
                    }
                    if record.sequence != next {
                        return Err(LogError::Corrupt {
                            path: segment.path.clone(),
                            offset,
                            reason: format!("sequence {} where {next} was expected", record.sequence),
                        });
                    }
                    records.push(record);
                    next += 1;
                    if next > to {
                        break;
                    }
                }
                Scanned::End => {
                    if position + 1 == segments.len() {
                        return Err(LogError::Corrupt {
                            path: segment.path.clone(),
                            offset: segment.bytes(),
                            reason: format!("the segment ends before sequence {next}, which was acknowledged"),
                        });
                    }
                    break;
                }
                Scanned::Bad { offset, reason } => return Err(LogError::Corrupt { path: segment.path.clone(), offset, reason }),
            }
        }
    }
    Ok(records)
}

fn rewrite_in_place_blocking(shared: &Shared, partition: u32, rewrite: &dyn Fn(&Record) -> Option<Vec<u8>>) -> Result<u64, LogError> {
    // The caller holds the retention lock: no other rewrite or deletion runs,
    // so the readable records stay as they are while they are scanned.
    let state = &shared.partitions[partition as usize];
    let visible = state.visible_sequence.load(Ordering::Acquire);
    let segments = state.segments.lock().clone();
    // Every new record is made before any is written: a refused one leaves the files as they were.
    let mut patched = Vec::new();
    for (position, segment) in segments.iter().enumerate() {
        let mut scanner = SegmentScanner::open(&segment.path, partition, 0)?;
        let mut patches = Vec::new();
        let mut last_sequence = segment.first_sequence.saturating_sub(1);
        loop {
            match scanner.next_record()? {
                // Records past the visible one may be half written by the writer: they are left alone.
                Scanned::Record { record, .. } if record.sequence > visible => break,
                Scanned::Record { record, offset, .. } => {
                    last_sequence = record.sequence;
                    let Some(mut payload) = rewrite(&record) else { continue };
                    if payload.len() > record.payload.len() {
                        return Err(LogError::TooLarge { what: "a rewritten payload", bytes: payload.len(), limit: record.payload.len() });
                    }
                    payload.resize(record.payload.len(), 0);
                    let mut bytes = Vec::with_capacity(format::encoded_len(record.key.len(), payload.len()));
                    format::encode_record(&mut bytes, record.sequence, record.appended_at_ms, &vec![0; record.key.len()], &payload);
                    patches.push((offset, bytes));
                }
                Scanned::End => break,
                // Only the active segment's bytes past the visible records may be unfinished.
                Scanned::Bad { .. } if position + 1 == segments.len() && last_sequence >= visible => break,
                Scanned::Bad { offset, reason } => return Err(LogError::Corrupt { path: segment.path.clone(), offset, reason }),
            }
        }
        if !patches.is_empty() {
            patched.push(journal::SegmentPatches { first_sequence: segment.first_sequence, patches });
        }
    }
    if patched.is_empty() {
        return Ok(0);
    }
    // Journal first: a crash while the segments are written is finished at the next open.
    let partition_dir = partition_dir(&shared.dir, partition);
    journal::write(&partition_dir, &patched)?;
    #[cfg(test)]
    if shared.crash_after_journal.load(Ordering::SeqCst) {
        return Err(LogError::WriterStopped);
    }
    {
        let _no_readers = shared.rewrite_lock.write();
        journal::apply(&partition_dir, &patched)?;
    }
    journal::remove(&partition_dir)?;
    Ok(patched.iter().map(|s| s.patches.len() as u64).sum())
}

fn apply_retention_blocking(shared: &Shared, consumers: &BTreeMap<String, ConsumerOffsets>) -> Result<RetentionReport, LogError> {
    let retention = &shared.config.retention;
    let now_ms = writer::now_ms();
    let mut report = RetentionReport::default();
    for (index, state) in shared.partitions.iter().enumerate() {
        let partition = index as u32;
        let segments = state.segments.lock().clone();
        let visible = state.visible_sequence.load(Ordering::Acquire);
        let slowest_consumer = consumers
            .iter()
            .map(|(name, offsets)| (name, offsets.get(&partition).copied().unwrap_or(0)))
            .min_by_key(|&(_, next_sequence)| next_sequence);
        let mut remaining_bytes: u64 = segments.iter().map(|segment| segment.bytes()).sum();
        let mut doomed = Vec::new();
        for pair in segments.windows(2) {
            let (segment, following) = (&pair[0], &pair[1]);
            let last_sequence = following.first_sequence - 1;
            let over_size = retention.max_bytes_per_partition.is_some_and(|max| remaining_bytes > max);
            let too_old = match retention.max_age {
                Some(max_age) => first_appended_at_ms(following, partition)
                    .is_some_and(|appended_at_ms| now_ms.saturating_sub(appended_at_ms) >= max_age.as_millis() as i64),
                None => false,
            };
            if !(over_size || too_old) || last_sequence > visible {
                break;
            }
            if let Some((consumer, next_sequence)) = slowest_consumer
                && next_sequence <= last_sequence
            {
                report.held.push(HeldSegment {
                    partition,
                    first_sequence: segment.first_sequence,
                    last_sequence,
                    consumer: consumer.clone(),
                    consumer_next_sequence: next_sequence,
                });
                break;
            }
            remaining_bytes -= segment.bytes();
            doomed.push((segment.clone(), last_sequence));
        }
        if doomed.is_empty() {
            continue;
        }
        {
            // Only retention removes segments (one run at a time), always from the front.
            let mut list = state.segments.lock();
            debug_assert!(Arc::ptr_eq(&list[0], &doomed[0].0));
            list.drain(..doomed.len());
        }
        for (segment, last_sequence) in doomed {
            segment.deleted.store(true, Ordering::Release);
            fs::remove_file(&segment.path).map_err(LogError::io("delete segment", &segment.path))?;
            report.deleted.push(DeletedSegment {
                partition,
                first_sequence: segment.first_sequence,
                last_sequence,
                bytes: segment.bytes(),
            });
        }
        fsync_dir(&partition_dir(&shared.dir, partition))?;
    }
    for deleted in &report.deleted {
        tracing::info!(
            partition = deleted.partition,
            first_sequence = deleted.first_sequence,
            last_sequence = deleted.last_sequence,
            bytes = deleted.bytes,
            "event log retention deleted a segment"
        );
    }
    Ok(report)
}

/// When the first record of a segment was appended; `None` if it has none
/// (yet) or it cannot be read, which keeps the segment before it.
fn first_appended_at_ms(segment: &Segment, partition: u32) -> Option<i64> {
    if segment.bytes() == 0 {
        return None;
    }
    let mut scanner = SegmentScanner::open(&segment.path, partition, 0).ok()?;
    match scanner.next_record() {
        Ok(Scanned::Record { record, .. }) => Some(record.appended_at_ms),
        _ => None,
    }
}
