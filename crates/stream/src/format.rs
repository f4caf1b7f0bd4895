//! The record framing and file names; see the crate docs for the layout.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::{LogError, Record};

/// First byte of every record: 0xA_ marks a record, the low nibble is the
/// format version (1).
pub(crate) const RECORD_MAGIC: u8 = 0xA1;
/// magic (1) + body length (4) + checksum (4).
pub(crate) const HEADER_LEN: usize = 9;
/// sequence (8) + appended_at_ms (8) + key length (2).
pub(crate) const BODY_FIXED_LEN: usize = 18;
/// Largest partition key (its length is stored in a u16).
pub const MAX_KEY_BYTES: usize = u16::MAX as usize;
/// Largest payload of one record.
pub const MAX_PAYLOAD_BYTES: usize = 16 * 1024 * 1024;
const MAX_BODY_LEN: usize = BODY_FIXED_LEN + MAX_KEY_BYTES + MAX_PAYLOAD_BYTES;

/// Bytes one record takes on disk.
pub(crate) fn encoded_len(key_len: usize, payload_len: usize) -> usize {
    HEADER_LEN + BODY_FIXED_LEN + key_len + payload_len
}

/// Appends one framed record to `buf`.
pub(crate) fn encode_record(buf: &mut Vec<u8>, sequence: u64, appended_at_ms: i64, key: &[u8], payload: &[u8]) {
    let start = buf.len();
    let body_len = BODY_FIXED_LEN + key.len() + payload.len();
    buf.push(RECORD_MAGIC);
    buf.extend_from_slice(&(body_len as u32).to_le_bytes());
    buf.extend_from_slice(&[0; 4]); // checksum, filled in below
    buf.extend_from_slice(&sequence.to_le_bytes());
    buf.extend_from_slice(&appended_at_ms.to_le_bytes());
    buf.extend_from_slice(&(key.len() as u16).to_le_bytes());
    buf.extend_from_slice(key);
    buf.extend_from_slice(payload);
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&buf[start..start + 5]);
    hasher.update(&buf[start + HEADER_LEN..]);
    buf[start + 5..start + HEADER_LEN].copy_from_slice(&hasher.finalize().to_le_bytes());
}

/// 32-bit FNV-1a: the partition hash. Fixed forever: changing it would move
/// keys between partitions.
pub(crate) fn fnv1a_32(bytes: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for &byte in bytes {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

pub(crate) fn partition_dir(dir: &Path, partition: u32) -> PathBuf {
    dir.join(format!("partition-{partition:04}"))
}

pub(crate) fn segment_file_name(first_sequence: u64) -> String {
    format!("{first_sequence:020}.log")
}

/// The first sequence encoded in a segment file name, or `None` for any other file.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// What the scanner found at its position.
pub(crate) enum Scanned {
    Record {
        record: Record,
        offset: u64,
        len: u64,
    },
    /// A clean end of the file, on a record boundary.
    End,
    /// Bytes that are not a valid record (torn write, bit rot).
    Bad {
        offset: u64,
        reason: String,
    },
}

/// Reads records one after another from a segment file, checking framing and checksums.
pub(crate) struct SegmentScanner {
    reader: BufReader<File>,
    path: PathBuf,
    partition: u32,
    offset: u64,
    file_len: u64,
}

impl SegmentScanner {
    /// Opens `path` positioned at byte `offset` (which must be a record boundary).
    pub(crate) fn open(path: &Path, partition: u32, offset: u64) -> Result<Self, LogError> {
        let mut file = File::open(path).map_err(LogError::io("open segment", path))?;
        let file_len = file.metadata().map_err(LogError::io("stat segment", path))?.len();
        if offset > 0 {
            file.seek(SeekFrom::Start(offset)).map_err(LogError::io("seek in segment", path))?;
        }
        Ok(SegmentScanner { reader: BufReader::with_capacity(64 * 1024, file), path: path.to_path_buf(), partition, offset, file_len })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn next_record(&mut self) -> Result<Scanned, LogError> {
        let offset = self.offset;
        let remaining = self.file_len.saturating_sub(offset);
        if remaining == 0 {
            return Ok(Scanned::End);
        }
        let bad = |reason: String| Ok(Scanned::Bad { offset, reason });
        if remaining < HEADER_LEN as u64 {
            return bad(format!("truncated record header: {remaining} of {HEADER_LEN} bytes"));
        }
        let mut header = [0u8; HEADER_LEN];
        self.read_exact(&mut header)?;
        if header[0] != RECORD_MAGIC {
            return bad(format!("bad magic byte {:#04x} (expected {RECORD_MAGIC:#04x})", header[0]));
        }
        let body_len = u32::from_le_bytes(header[1..5].try_into().expect("4 bytes")) as usize;
        let stored_crc = u32::from_le_bytes(header[5..9].try_into().expect("4 bytes"));
        if !(BODY_FIXED_LEN..=MAX_BODY_LEN).contains(&body_len) {
            return bad(format!("impossible record length {body_len}"));
        }
        let available = remaining - HEADER_LEN as u64;
        if (body_len as u64) > available {
            return bad(format!("truncated record: {available} of {body_len} body bytes present"));
        }
        let mut fixed = [0u8; BODY_FIXED_LEN];
        self.read_exact(&mut fixed)?;
        let sequence = u64::from_le_bytes(fixed[0..8].try_into().expect("8 bytes"));
        let appended_at_ms = i64::from_le_bytes(fixed[8..16].try_into().expect("8 bytes"));
        let key_len = u16::from_le_bytes(fixed[16..18].try_into().expect("2 bytes")) as usize;
        if key_len > body_len - BODY_FIXED_LEN {
            return bad(format!("key length {key_len} does not fit in a record body of {body_len} bytes"));
        }
        let mut key = vec![0u8; key_len];
        self.read_exact(&mut key)?;
        let mut payload = vec![0u8; body_len - BODY_FIXED_LEN - key_len];
        self.read_exact(&mut payload)?;

        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&header[..5]);
        hasher.update(&fixed);
        hasher.update(&key);
        hasher.update(&payload);
        let computed_crc = hasher.finalize();
        if computed_crc != stored_crc {
            return bad(format!("checksum mismatch (stored {stored_crc:#010x}, computed {computed_crc:#010x})"));
        }
        let len = (HEADER_LEN + body_len) as u64;
        self.offset += len;
        Ok(Scanned::Record { record: Record { partition: self.partition, sequence, appended_at_ms, key, payload }, offset, len })
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), LogError> {
        self.reader.read_exact(buf).map_err(|source| {
            // The length was checked against the file size, so a short read means the file shrank under us.
            let source = if source.kind() == io::ErrorKind::UnexpectedEof {
                io::Error::new(io::ErrorKind::UnexpectedEof, "segment file shrank while being read")
            } else {
                source
            };
            LogError::Io { action: "read segment", path: self.path.clone(), source }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_published_test_vectors() {
        assert_eq!(fnv1a_32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a_32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a_32(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn segment_file_names_round_trip() {
        assert_eq!(segment_file_name(42), "00000000000000000042.log");
        assert_eq!(parse_segment_file_name("00000000000000000042.log"), Some(42));
        assert_eq!(parse_segment_file_name("42.log"), None);
        assert_eq!(parse_segment_file_name("00000000000000000042.log.tmp"), None);
        assert_eq!(parse_segment_file_name("0000000000000000004x.log"), None);
    }

    #[test]
    fn encoded_record_has_the_documented_layout() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 7, -3, b"k1", b"hello");
        assert_eq!(buf.len(), encoded_len(2, 5));
        assert_eq!(buf[0], RECORD_MAGIC);
        assert_eq!(u32::from_le_bytes(buf[1..5].try_into().unwrap()) as usize, BODY_FIXED_LEN + 2 + 5);
        let mut crc_input = buf[..5].to_vec();
        crc_input.extend_from_slice(&buf[9..]);
        assert_eq!(u32::from_le_bytes(buf[5..9].try_into().unwrap()), crc32fast::hash(&crc_input));
        assert_eq!(u64::from_le_bytes(buf[9..17].try_into().unwrap()), 7);
        assert_eq!(i64::from_le_bytes(buf[17..25].try_into().unwrap()), -3);
        assert_eq!(u16::from_le_bytes(buf[25..27].try_into().unwrap()), 2);
        assert_eq!(&buf[27..29], b"k1");
        assert_eq!(&buf[29..], b"hello");
    }
}
