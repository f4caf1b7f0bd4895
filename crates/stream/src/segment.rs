//! Segments: one file of consecutive records, its sparse in-memory index,
//! and the tail check that recovery runs on the newest segment.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::format::{Scanned, SegmentScanner};
use crate::{LogError, TailRepair};

/// One index entry is kept per this many bytes of a segment, so a read seeks
/// to within this distance of the record it wants.
pub(crate) const INDEX_INTERVAL_BYTES: u64 = 64 * 1024;

#[derive(Clone, Copy, Debug)]
pub(crate) struct IndexEntry {
    pub sequence: u64,
    pub offset: u64,
}

/// A segment file. The newest segment of a partition is the active one (the
/// writer appends to it); all others are closed and never change again.
pub(crate) struct Segment {
    pub first_sequence: u64,
    pub path: PathBuf,
    /// Bytes of records in the file (written, not necessarily readable yet).
    pub bytes: AtomicU64,
    /// Sparse (sequence, offset) index. `None` for closed segments found at
    /// open until the first read needs it (it is built by scanning the file).
    index: Mutex<Option<Vec<IndexEntry>>>,
    /// Set by retention before the file is removed, so a reader that finds
    /// the file gone knows why.
    pub deleted: AtomicBool,
}

impl Segment {
    pub(crate) fn new(first_sequence: u64, path: PathBuf, bytes: u64, index: Option<Vec<IndexEntry>>) -> Self {
        Segment { first_sequence, path, bytes: AtomicU64::new(bytes), index: Mutex::new(index), deleted: AtomicBool::new(false) }
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Acquire)
    }

    pub(crate) fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// Called by the writer for records it has just written to this (active) segment.
    pub(crate) fn extend_index(&self, entries: &[IndexEntry]) {
        if let Some(index) = self.index.lock().as_mut() {
            index.extend_from_slice(entries);
        }
    }

    /// Byte offset of a record at or before `sequence` to start scanning from.
    /// Builds the index of a closed segment on first use; the scan also
    /// validates the whole segment, so corruption is reported here.
    pub(crate) fn seek_offset(&self, partition: u32, sequence: u64) -> Result<u64, LogError> {
        let mut index = self.index.lock();
        if index.is_none() {
            *index = Some(build_index(&self.path, partition, self.first_sequence)?);
        }
        let entries = index.as_ref().expect("index was just built");
        let position = entries.partition_point(|entry| entry.sequence <= sequence);
        Ok(if position == 0 { 0 } else { entries[position - 1].offset })
    }
}

/// Whether a record starting at `offset` gets an index entry, given the offset of the previous entry.
pub(crate) fn needs_index_entry(offset: u64, last_entry_offset: Option<u64>) -> bool {
    match last_entry_offset {
        None => true,
        Some(last) => offset >= last + INDEX_INTERVAL_BYTES,
    }
}

/// Scans a closed segment: every record must check out and the sequences
/// must run on from `first_sequence` without gaps.
fn build_index(path: &Path, partition: u32, first_sequence: u64) -> Result<Vec<IndexEntry>, LogError> {
    let mut scanner = SegmentScanner::open(path, partition, 0)?;
    let mut entries = Vec::new();
    let mut expected = first_sequence;
    loop {
        match scanner.next_record()? {
            Scanned::End => return Ok(entries),
            Scanned::Bad { offset, reason } => return Err(LogError::Corrupt { path: path.to_path_buf(), offset, reason }),
            Scanned::Record { record, offset, .. } => {
                if record.sequence != expected {
                    return Err(LogError::Corrupt {
                        path: path.to_path_buf(),
                        offset,
                        reason: format!("sequence {} where {expected} was expected", record.sequence),
                    });
                }
                if needs_index_entry(offset, entries.last().map(|e: &IndexEntry| e.offset)) {
                    entries.push(IndexEntry { sequence: record.sequence, offset });
                }
                expected += 1;
            }
        }
    }
}

/// The newest segment of a partition after its tail was checked.
pub(crate) struct RecoveredTail {
    pub index: Vec<IndexEntry>,
    /// Bytes of valid records (the file's length after any cut).
    pub valid_bytes: u64,
    /// The sequence the next appended record gets.
    pub next_sequence: u64,
    pub repair: Option<TailRepair>,
}

/// Checks the newest segment record by record. At the first record that does
/// not check out (short, bad magic, bad checksum, sequence gap) the file is
/// cut there and the cut is made durable; everything after it is lost.
pub(crate) fn recover_tail(path: &Path, partition: u32, first_sequence: u64) -> Result<RecoveredTail, LogError> {
    let mut scanner = SegmentScanner::open(path, partition, 0)?;
    let mut index = Vec::new();
    let mut expected = first_sequence;
    let mut valid_bytes = 0u64;
    let bad = loop {
        match scanner.next_record()? {
            Scanned::End => break None,
            Scanned::Bad { offset, reason } => break Some((offset, reason)),
            Scanned::Record { record, offset, len } => {
                if record.sequence != expected {
                    break Some((offset, format!("sequence {} where {expected} was expected", record.sequence)));
                }
                if needs_index_entry(offset, index.last().map(|e: &IndexEntry| e.offset)) {
                    index.push(IndexEntry { sequence: record.sequence, offset });
                }
                expected += 1;
                valid_bytes = offset + len;
            }
        }
    };
    let path = scanner.path().to_path_buf();
    drop(scanner);
    let repair = match bad {
        None => None,
        Some((offset, reason)) => {
            let file = OpenOptions::new().write(true).open(&path).map_err(LogError::io("open segment for repair", &path))?;
            let file_len = file.metadata().map_err(LogError::io("stat segment", &path))?.len();
            file.set_len(offset).map_err(LogError::io("truncate torn tail of segment", &path))?;
            file.sync_all().map_err(LogError::io("fsync segment", &path))?;
            Some(TailRepair { partition, segment: path.clone(), offset, bytes_cut: file_len - offset, reason })
        }
    };
    Ok(RecoveredTail { index, valid_bytes, next_sequence: expected, repair })
}

/// Makes creations, renames and removals in `dir` durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(LogError::io("fsync directory", dir))
}
