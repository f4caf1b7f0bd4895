//! The writer thread: group commit.
//!
//! One std thread owns every active segment file. It takes all append
//! requests that are queued (up to [`MAX_GROUP_BYTES`]), writes each touched
//! partition's records with one `write(2)`, makes them durable with one
//! `fdatasync` per touched file (the files in parallel, on helper threads),
//! and only then publishes them to readers and answers the callers. While it
//! waits on the disk, new requests queue up and form the next group, so the
//! cost of an fsync is shared by every append that arrived during the
//! previous one.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;

use crate::format::{encode_record, encoded_len, segment_file_name};
use crate::segment::{IndexEntry, Segment, fsync_dir, needs_index_entry};
use crate::{Durability, LogError, RecordId, Shared};

/// Most bytes of requests one group takes, so one group's latency stays bounded.
const MAX_GROUP_BYTES: usize = 8 * 1024 * 1024;
/// Most helper threads fsyncing alongside the writer.
const MAX_FSYNC_HELPERS: usize = 7;

pub(crate) struct PendingRecord {
    pub partition: u32,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
}

pub(crate) struct AppendRequest {
    pub records: Vec<PendingRecord>,
    /// Released (dropped) once the request is answered.
    pub reservation: Reservation,
    pub reply: oneshot::Sender<Result<Vec<RecordId>, LogError>>,
}

/// Bytes counted against `max_pending_bytes` while a request is queued or being written.
pub(crate) struct Reservation {
    pub shared: Arc<Shared>,
    pub bytes: usize,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.shared.pending_bytes.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// The writer's view of one partition.
pub(crate) struct PartitionWriter {
    pub partition: u32,
    pub dir: PathBuf,
    /// Shared with the fsync helpers while they sync it.
    pub file: Arc<File>,
    pub segment: Arc<Segment>,
    /// Bytes already written to `file`.
    pub written: u64,
    pub next_sequence: u64,
    pub last_index_offset: Option<u64>,
    /// Records of the current group not yet written, and their index entries.
    buffer: Vec<u8>,
    new_index_entries: Vec<IndexEntry>,
    /// Written since the last fsync.
    unsynced: bool,
    /// Touched by the current group.
    touched: bool,
}

impl PartitionWriter {
    pub(crate) fn new(
        partition: u32,
        dir: PathBuf,
        file: Arc<File>,
        segment: Arc<Segment>,
        next_sequence: u64,
        last_index_offset: Option<u64>,
    ) -> Self {
        let written = segment.bytes();
        PartitionWriter {
            partition,
            dir,
            file,
            segment,
            written,
            next_sequence,
            last_index_offset,
            buffer: Vec::new(),
            new_index_entries: Vec::new(),
            unsynced: false,
            touched: false,
        }
    }

    fn append(&mut self, shared: &Shared, appended_at_ms: i64, key: &[u8], payload: &[u8]) -> Result<RecordId, LogError> {
        let len = encoded_len(key.len(), payload.len()) as u64;
        let size = self.written + self.buffer.len() as u64;
        if size > 0 && size + len > shared.config.segment_bytes {
            self.rotate(shared)?;
        }
        let offset = self.written + self.buffer.len() as u64;
        let sequence = self.next_sequence;
        if needs_index_entry(offset, self.last_index_offset) {
            self.new_index_entries.push(IndexEntry { sequence, offset });
            self.last_index_offset = Some(offset);
        }
        encode_record(&mut self.buffer, sequence, appended_at_ms, key, payload);
        self.next_sequence += 1;
        self.touched = true;
        Ok(RecordId { partition: self.partition, sequence })
    }

    fn write_buffer(&mut self) -> Result<(), LogError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        (&*self.file).write_all(&self.buffer).map_err(LogError::io("write segment", &self.segment.path))?;
        self.written += self.buffer.len() as u64;
        self.segment.bytes.store(self.written, Ordering::Release);
        self.segment.extend_index(&self.new_index_entries);
        self.buffer.clear();
        self.new_index_entries.clear();
        self.unsynced = true;
        Ok(())
    }

    fn sync(&mut self, shared: &Shared) -> Result<(), LogError> {
        if self.unsynced {
            self.file.sync_data().map_err(LogError::io("fsync segment", &self.segment.path))?;
            shared.fsyncs.fetch_add(1, Ordering::Relaxed);
            self.unsynced = false;
        }
        Ok(())
    }

    /// Closes the active segment and starts a new one. The closed segment is
    /// fsynced first, whatever the durability mode, so that only the newest
    /// segment of a partition can ever have a torn tail (recovery checks only that one).
    fn rotate(&mut self, shared: &Shared) -> Result<(), LogError> {
        self.write_buffer()?;
        self.sync(shared)?;
        let path = self.dir.join(segment_file_name(self.next_sequence));
        let file = OpenOptions::new().create_new(true).append(true).open(&path).map_err(LogError::io("create segment", &path))?;
        fsync_dir(&self.dir)?;
        let segment = Arc::new(Segment::new(self.next_sequence, path, 0, Some(Vec::new())));
        shared.partitions[self.partition as usize].segments.lock().push(segment.clone());
        self.file = Arc::new(file);
        self.segment = segment;
        self.written = 0;
        self.last_index_offset = None;
        Ok(())
    }
}

pub(crate) struct Writer {
    pub shared: Arc<Shared>,
    pub partitions: Vec<PartitionWriter>,
    pub requests: Receiver<AppendRequest>,
}

/// Threads that fsync files alongside the writer, so a group that touched
/// several partitions waits for about one fsync rather than one per partition
/// (the device works on them together).
struct FsyncHelpers {
    jobs: Vec<Sender<(usize, Arc<File>)>>,
    done: Receiver<(usize, io::Result<()>)>,
    threads: Vec<JoinHandle<()>>,
}

impl FsyncHelpers {
    fn start(count: usize) -> Self {
        let (done_sender, done) = channel();
        let mut jobs = Vec::with_capacity(count);
        let mut threads = Vec::with_capacity(count);
        for index in 0..count {
            let (job_sender, job_receiver) = channel::<(usize, Arc<File>)>();
            let done_sender = done_sender.clone();
            let thread = std::thread::Builder::new()
                .name(format!("travelrec-stream-fsync-{index}"))
                .spawn(move || {
                    for (job, file) in job_receiver {
                        if done_sender.send((job, file.sync_data())).is_err() {
                            return;
                        }
                    }
                })
                .expect("spawn an event log fsync thread");
            jobs.push(job_sender);
            threads.push(thread);
        }
        FsyncHelpers { jobs, done, threads }
    }

    /// fsyncs all `files` at once (the calling thread takes the first); one result per file, in order.
    fn sync_all(&self, files: &[Arc<File>]) -> Vec<io::Result<()>> {
        let mut results: Vec<Option<io::Result<()>>> = (0..files.len()).map(|_| None).collect();
        let mut sent = 0;
        for (job, file) in files.iter().enumerate().skip(1) {
            let handed_to_helper = !self.jobs.is_empty() && self.jobs[(job - 1) % self.jobs.len()].send((job, file.clone())).is_ok();
            if handed_to_helper {
                sent += 1;
            } else {
                results[job] = Some(file.sync_data());
            }
        }
        if let Some(first) = files.first() {
            results[0] = Some(first.sync_data());
        }
        for _ in 0..sent {
            match self.done.recv() {
                Ok((job, result)) => results[job] = Some(result),
                Err(_) => break,
            }
        }
        results.into_iter().map(|result| result.unwrap_or_else(|| Err(io::Error::other("an fsync helper thread stopped")))).collect()
    }
}

impl Drop for FsyncHelpers {
    fn drop(&mut self) {
        self.jobs.clear(); // closes the job channels, so the helpers return
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Writer {
    pub(crate) fn spawn(self) -> JoinHandle<()> {
        std::thread::Builder::new()
            .name("travelrec-stream-writer".into())
            .spawn(move || self.run())
            .expect("spawn the event log writer thread")
    }

    fn run(mut self) {
        let helpers = FsyncHelpers::start(self.partitions.len().saturating_sub(1).min(MAX_FSYNC_HELPERS));
        let batch_interval = match self.shared.config.durability {
            Durability::Fsync => None,
            Durability::Batch { interval } => Some(interval),
        };
        // In batch mode: when the oldest unsynced write must be fsynced.
        let mut sync_deadline: Option<Instant> = None;
        loop {
            let first = match sync_deadline {
                Some(deadline) => match self.requests.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(request) => request,
                    Err(RecvTimeoutError::Timeout) => {
                        self.sync_all_unsynced(&helpers);
                        sync_deadline = None;
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match self.requests.recv() {
                    Ok(request) => request,
                    Err(_) => break,
                },
            };
            #[cfg(test)]
            drop(self.shared.writer_gate.lock());

            let mut group = vec![first];
            let mut group_bytes = group[0].reservation.bytes;
            while group_bytes < MAX_GROUP_BYTES {
                match self.requests.try_recv() {
                    Ok(request) => {
                        group_bytes += request.reservation.bytes;
                        group.push(request);
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(group, group_bytes, &helpers);

            if let Some(interval) = batch_interval {
                let now = Instant::now();
                match sync_deadline {
                    Some(deadline) if now >= deadline => {
                        self.sync_all_unsynced(&helpers);
                        sync_deadline = None;
                    }
                    None if self.partitions.iter().any(|p| p.unsynced) => sync_deadline = Some(now + interval),
                    _ => {}
                }
            }
        }
        // Every handle is gone: make what was written durable before the files close.
        self.sync_all_unsynced(&helpers);
    }

    fn commit_group(&mut self, group: Vec<AppendRequest>, group_bytes: usize, helpers: &FsyncHelpers) {
        if let Some(reason) = self.shared.writer_failure.get() {
            for request in group {
                answer(request, Err(LogError::WriterFailed { reason: reason.clone() }));
            }
            return;
        }
        let started = Instant::now();
        match self.write_group(&group, helpers) {
            Ok(ids) => {
                self.publish();
                for (request, ids) in group.into_iter().zip(ids) {
                    answer(request, Ok(ids));
                }
                self.shared.record_drain_rate(group_bytes, started.elapsed());
            }
            Err(error) => {
                // Unknown state on disk, and a failed fsync cannot be retried safely:
                // stop accepting appends. Reopening the log recovers the files.
                let reason = error.to_string();
                tracing::error!(error = %reason, "event log writer failed; appends are refused until the log is reopened");
                let _ = self.shared.writer_failure.set(reason.clone());
                for request in group {
                    answer(request, Err(LogError::WriterFailed { reason: reason.clone() }));
                }
            }
        }
    }

    /// Writes (and in fsync mode, syncs) a group; returns each request's record ids.
    fn write_group(&mut self, group: &[AppendRequest], helpers: &FsyncHelpers) -> Result<Vec<Vec<RecordId>>, LogError> {
        let appended_at_ms = now_ms();
        let mut ids = Vec::with_capacity(group.len());
        for request in group {
            let mut request_ids = Vec::with_capacity(request.records.len());
            for record in &request.records {
                let writer = &mut self.partitions[record.partition as usize];
                request_ids.push(writer.append(&self.shared, appended_at_ms, &record.key, &record.payload)?);
            }
            ids.push(request_ids);
        }
        for writer in self.partitions.iter_mut().filter(|p| p.touched) {
            writer.write_buffer()?;
        }
        if matches!(self.shared.config.durability, Durability::Fsync) {
            self.sync_unsynced(helpers)?;
        }
        self.shared.write_groups.fetch_add(1, Ordering::Relaxed);
        Ok(ids)
    }

    /// Makes the group's records readable and wakes subscribers.
    fn publish(&mut self) {
        let mut published = 0;
        for writer in self.partitions.iter_mut().filter(|p| p.touched) {
            writer.touched = false;
            let state = &self.shared.partitions[writer.partition as usize];
            let last = writer.next_sequence - 1;
            published += last - state.visible_sequence.load(Ordering::Acquire);
            state.visible_sequence.store(last, Ordering::Release);
        }
        self.shared.appended_records.fetch_add(published, Ordering::Relaxed);
        self.shared.readable.send_modify(|count| *count += published);
    }

    /// fsyncs every file written since its last fsync, in parallel.
    fn sync_unsynced(&mut self, helpers: &FsyncHelpers) -> Result<(), LogError> {
        let unsynced: Vec<usize> = (0..self.partitions.len()).filter(|&index| self.partitions[index].unsynced).collect();
        let files: Vec<Arc<File>> = unsynced.iter().map(|&index| self.partitions[index].file.clone()).collect();
        let results = helpers.sync_all(&files);
        for (index, result) in unsynced.into_iter().zip(results) {
            let writer = &mut self.partitions[index];
            result.map_err(LogError::io("fsync segment", &writer.segment.path))?;
            writer.unsynced = false;
            self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The batch-mode background fsync (and the last one at shutdown).
    fn sync_all_unsynced(&mut self, helpers: &FsyncHelpers) {
        if self.shared.writer_failure.get().is_some() {
            return;
        }
        if let Err(error) = self.sync_unsynced(helpers) {
            let reason = error.to_string();
            tracing::error!(error = %reason, "event log background fsync failed; appends are refused until the log is reopened");
            let _ = self.shared.writer_failure.set(reason);
        }
    }
}

/// Frees the request's memory and its room in the pending-bytes budget, then
/// answers (so a caller that sees the answer also sees the room). The caller
/// may have stopped waiting; its records are written all the same.
fn answer(request: AppendRequest, result: Result<Vec<RecordId>, LogError>) {
    let AppendRequest { records, reservation, reply } = request;
    drop(records);
    drop(reservation);
    let _ = reply.send(result);
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// How long a refused caller should wait: the time the writer needs to drain
/// what is queued at its recent rate, within [10 ms, 5 s].
pub(crate) fn retry_after(pending_bytes: usize, drain_bytes_per_sec: u64) -> Duration {
    if drain_bytes_per_sec == 0 {
        return Duration::from_millis(100);
    }
    let seconds = pending_bytes as f64 / drain_bytes_per_sec as f64;
    Duration::from_secs_f64(seconds.clamp(0.010, 5.0))
}
