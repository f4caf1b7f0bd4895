//! The intent journal that makes rewriting records in place crash-safe.
//!
//! [`EventLog::rewrite_in_place`](crate::EventLog::rewrite_in_place) writes
//! every new record to `rewrite.journal` in the partition's directory and
//! fsyncs it before it touches a segment, and deletes the journal once the
//! segments are fsynced. A crash in between leaves the journal: opening the
//! log writes its records again (they are whole, and writing them twice
//! changes nothing) before anything reads the segments. A journal cut short
//! by a crash while it was written is dropped: no segment was touched yet.
//!
//! Layout: `TRJ1`, then per record the segment's first sequence (u64), the
//! offset (u64), the length (u32) and the bytes, then a CRC-32 of everything
//! after the magic (u32) and `DONE`. Integers are little-endian.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::LogError;
use crate::format::segment_file_name;
use crate::segment::fsync_dir;

const MAGIC: &[u8; 4] = b"TRJ1";
const END: &[u8; 4] = b"DONE";
const FILE_NAME: &str = "rewrite.journal";

/// New bytes for one segment: the segment's first sequence and `(offset, bytes)` pairs.
pub(crate) struct SegmentPatches {
    pub first_sequence: u64,
    pub patches: Vec<(u64, Vec<u8>)>,
}

pub(crate) fn path(partition_dir: &Path) -> PathBuf {
    partition_dir.join(FILE_NAME)
}

/// Writes and fsyncs the journal of `segments`.
pub(crate) fn write(partition_dir: &Path, segments: &[SegmentPatches]) -> Result<(), LogError> {
    let mut body = Vec::new();
    for segment in segments {
        for (offset, bytes) in &segment.patches {
            body.extend_from_slice(&segment.first_sequence.to_le_bytes());
            body.extend_from_slice(&offset.to_le_bytes());
            body.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            body.extend_from_slice(bytes);
        }
    }
    let path = path(partition_dir);
    let mut file = File::create(&path).map_err(LogError::io("create", &path))?;
    file.write_all(MAGIC).map_err(LogError::io("write", &path))?;
    file.write_all(&body).map_err(LogError::io("write", &path))?;
    file.write_all(&crc32fast::hash(&body).to_le_bytes()).map_err(LogError::io("write", &path))?;
    file.write_all(END).map_err(LogError::io("write", &path))?;
    file.sync_all().map_err(LogError::io("fsync", &path))?;
    fsync_dir(partition_dir)
}

/// Writes the journal's records into their segments and fsyncs them.
pub(crate) fn apply(partition_dir: &Path, segments: &[SegmentPatches]) -> Result<(), LogError> {
    for segment in segments {
        let path = partition_dir.join(segment_file_name(segment.first_sequence));
        let file = match OpenOptions::new().write(true).open(&path) {
            Ok(file) => file,
            // Only retention deletes segments, and never while a journal is
            // written; a segment gone since holds nothing left to rewrite.
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(LogError::io("open segment for rewriting", &path)(e)),
        };
        for (offset, bytes) in &segment.patches {
            file.write_all_at(bytes, *offset).map_err(LogError::io("rewrite a record in", &path))?;
        }
        file.sync_data().map_err(LogError::io("fsync", &path))?;
    }
    Ok(())
}

/// Deletes the journal (its records are in the segments).
pub(crate) fn remove(partition_dir: &Path) -> Result<(), LogError> {
    let path = path(partition_dir);
    fs::remove_file(&path).map_err(LogError::io("remove", &path))?;
    fsync_dir(partition_dir)
}

/// At open: finishes a rewrite a crash interrupted, or drops a journal a
/// crash cut short. Returns whether records were written again.
pub(crate) fn recover(partition_dir: &Path) -> Result<bool, LogError> {
    let path = path(partition_dir);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(LogError::io("read", &path)(e)),
    };
    let replayed = match parse(&bytes) {
        Some(segments) => {
            apply(partition_dir, &segments)?;
            true
        }
        None => {
            tracing::warn!(path = %path.display(), "dropping an unfinished event log rewrite journal (no record had been rewritten)");
            false
        }
    };
    remove(partition_dir)?;
    Ok(replayed)
}

/// The journal's records, or `None` if it is not whole.
pub(crate) fn parse(bytes: &[u8]) -> Option<Vec<SegmentPatches>> {
    let body = bytes.strip_prefix(MAGIC)?.strip_suffix(END)?;
    let (body, checksum) = body.split_at(body.len().checked_sub(4)?);
    if crc32fast::hash(body).to_le_bytes() != checksum {
        return None;
    }
    let mut segments: Vec<SegmentPatches> = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let take = |rest: &mut &[u8], n: usize| -> Option<Vec<u8>> {
            let (head, tail) = rest.split_at_checked(n)?;
            *rest = tail;
            Some(head.to_vec())
        };
        let first_sequence = u64::from_le_bytes(take(&mut rest, 8)?.try_into().ok()?);
        let offset = u64::from_le_bytes(take(&mut rest, 8)?.try_into().ok()?);
        let len = u32::from_le_bytes(take(&mut rest, 4)?.try_into().ok()?) as usize;
        let record = take(&mut rest, len)?;
        match segments.last_mut() {
            Some(last) if last.first_sequence == first_sequence => last.patches.push((offset, record)),
            _ => segments.push(SegmentPatches { first_sequence, patches: vec![(offset, record)] }),
        }
    }
    Some(segments)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_journal_parses_back_and_a_cut_or_altered_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let segments = vec![
            SegmentPatches { first_sequence: 1, patches: vec![(0, b"abc".to_vec()), (40, b"de".to_vec())] },
            SegmentPatches { first_sequence: 17, patches: vec![(9, vec![0; 5])] },
        ];
        write(dir.path(), &segments).unwrap();
        let bytes = fs::read(path(dir.path())).unwrap();
        let parsed = parse(&bytes).unwrap();
        let flat = |s: &[SegmentPatches]| s.iter().map(|s| (s.first_sequence, s.patches.clone())).collect::<Vec<_>>();
        assert_eq!(flat(&parsed), flat(&segments));
        for cut in 0..bytes.len() {
            assert!(parse(&bytes[..cut]).is_none(), "cut at {cut}");
        }
        let mut altered = bytes.clone();
        altered[10] ^= 1;
        assert!(parse(&altered).is_none());
    }
}
