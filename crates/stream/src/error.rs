use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Everything that can go wrong with the event log. Each message says what
/// failed, where (file, byte offset) when there is a where, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// More bytes are queued for writing than `max_pending_bytes` allows:
    /// ingestion outruns the disk. Nothing was written; retry later
    /// (HTTP: 429/503 with `Retry-After`).
    #[error("the event log is busy: {pending_bytes} bytes are waiting to be written (limit {limit_bytes}); retry after {retry_after:?}")]
    Backpressure { retry_after: Duration, pending_bytes: usize, limit_bytes: usize },

    /// A key longer than the record format allows.
    #[error("partition key is {bytes} bytes; the most a key may have is {limit} bytes")]
    KeyTooLarge { bytes: usize, limit: usize },

    /// One record, or a whole batch, that could never be accepted: it is larger
    /// than the payload limit or than `max_pending_bytes`. Send smaller records
    /// or smaller batches (or raise `max_pending_bytes`).
    #[error("{what} is {bytes} bytes; the most the event log accepts is {limit} bytes")]
    TooLarge { what: &'static str, bytes: usize, limit: usize },

    #[error("partition {partition} does not exist; this log has partitions 0..{partitions}")]
    InvalidPartition { partition: u32, partitions: u32 },

    #[error("consumer name `{name}` is not allowed: {reason}")]
    InvalidConsumerName { name: String, reason: &'static str },

    /// A consumer tried to commit past the end of a partition.
    #[error(
        "consumer `{consumer}` cannot commit next sequence {next_sequence} on partition {partition}: \
         the last readable sequence there is {last_sequence}, so the most it can commit is {}",
        last_sequence + 1
    )]
    OffsetBeyondEnd { consumer: String, partition: u32, next_sequence: u64, last_sequence: u64 },

    #[error("invalid event log configuration: {0}")]
    InvalidConfig(String),

    #[error("the event log directory {} is in use by another process (or another open EventLog in this one); stop it or use another directory", dir.display())]
    Locked { dir: PathBuf },

    #[error(
        "the event log in {} was created with {on_disk} partitions but is opened with {configured}; \
         keys would move between partitions, so open it with partitions = {on_disk}",
        dir.display()
    )]
    PartitionCountMismatch { dir: PathBuf, on_disk: u32, configured: u32 },

    #[error("event log I/O failed: cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A stored record or file does not check out (bad checksum, bad framing,
    /// sequence gap) somewhere other than the tail that recovery repairs.
    #[error(
        "the event log is corrupt in {} at byte offset {offset}: {reason}; \
         restore this segment from a backup, or move it away to lose its records",
        path.display()
    )]
    Corrupt { path: PathBuf, offset: u64, reason: String },

    /// The writer hit an I/O error (disk full, failed fsync). A failed fsync
    /// cannot be retried safely, so the log accepts no more appends; reads
    /// still work. Fix the cause and restart: recovery cuts any partly
    /// written tail.
    #[error("the event log writer stopped after an I/O error ({reason}); no appends are accepted until the log is reopened")]
    WriterFailed { reason: String },

    /// The writer thread is gone (it panicked, or the log is shutting down).
    #[error("the event log writer is not running; reopen the log")]
    WriterStopped,

    /// Blocking file work was cancelled because the async runtime is shutting down.
    #[error("the event log operation was cancelled because the async runtime is shutting down")]
    Cancelled,
}

impl LogError {
    pub(crate) fn io(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> LogError {
        let path = path.to_path_buf();
        move |source| LogError::Io { action, path, source }
    }
}
