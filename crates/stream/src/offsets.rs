//! Per-consumer offsets: one small JSON file per consumer, replaced atomically.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::segment::fsync_dir;
use crate::{LogError, spawn_blocking};

/// Next sequence to read, by partition. A partition that is missing has never
/// been committed (offset 0).
pub(crate) type ConsumerOffsets = BTreeMap<u32, u64>;

/// `offsets/{consumer}.json`.
#[derive(Serialize, Deserialize)]
struct OffsetsFile {
    consumer: String,
    next_sequence_by_partition: ConsumerOffsets,
}

/// Offsets of every registered consumer, in memory and on disk. File updates
/// are serialised and run to completion on a blocking thread, so a caller
/// that stops waiting never leaves memory and disk disagreeing.
#[derive(Clone)]
pub(crate) struct OffsetStore {
    files: Arc<OffsetFiles>,
}

struct OffsetFiles {
    dir: PathBuf,
    consumers: Mutex<BTreeMap<String, ConsumerOffsets>>,
    /// Held while a file is rewritten, so updates land in order.
    write_lock: Mutex<()>,
}

impl OffsetStore {
    /// Loads every consumer's offsets from `dir` (blocking), removing temp files left by a crash.
    pub(crate) fn load(dir: PathBuf) -> Result<Self, LogError> {
        let mut consumers = BTreeMap::new();
        let entries = fs::read_dir(&dir).map_err(LogError::io("list offsets directory", &dir))?;
        for entry in entries {
            let entry = entry.map_err(LogError::io("list offsets directory", &dir))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".json.tmp") {
                fs::remove_file(&path).map_err(LogError::io("remove leftover temp file", &path))?;
                continue;
            }
            let Some(consumer) = name.strip_suffix(".json") else { continue };
            let text = fs::read_to_string(&path).map_err(LogError::io("read offsets file", &path))?;
            let file: OffsetsFile = serde_json::from_str(&text).map_err(|e| LogError::Corrupt {
                path: path.clone(),
                offset: 0,
                reason: format!("offsets file is not valid JSON: {e}"),
            })?;
            consumers.insert(consumer.to_string(), file.next_sequence_by_partition);
        }
        Ok(OffsetStore { files: Arc::new(OffsetFiles { dir, consumers: Mutex::new(consumers), write_lock: Mutex::new(()) }) })
    }

    pub(crate) fn offset(&self, consumer: &str, partition: u32) -> u64 {
        self.files.consumers.lock().get(consumer).and_then(|offsets| offsets.get(&partition).copied()).unwrap_or(0)
    }

    /// Lowers in memory every offset past the end of its partition
    /// (`next_sequences[p]` is the sequence the next record of partition `p`
    /// gets). That happens only when recovery cut records a consumer had
    /// already read; the consumer then reads the new records that take those
    /// sequences instead of skipping them. Returns (consumer, partition,
    /// committed, lowered to).
    pub(crate) fn clamp_to_end(&self, next_sequences: &[u64]) -> Vec<(String, u32, u64, u64)> {
        let mut lowered = Vec::new();
        for (consumer, offsets) in self.files.consumers.lock().iter_mut() {
            for (&partition, committed) in offsets.iter_mut() {
                if let Some(&end) = next_sequences.get(partition as usize)
                    && *committed > end
                {
                    lowered.push((consumer.clone(), partition, *committed, end));
                    *committed = end;
                }
            }
        }
        lowered
    }

    /// Every registered consumer's offsets.
    pub(crate) fn snapshot(&self) -> BTreeMap<String, ConsumerOffsets> {
        self.files.consumers.lock().clone()
    }

    pub(crate) fn consumers(&self) -> Vec<String> {
        self.files.consumers.lock().keys().cloned().collect()
    }

    /// Durably applies `change` to a consumer's offsets (registering it if
    /// new), then makes the result visible in memory.
    pub(crate) async fn update(&self, consumer: &str, change: impl FnOnce(&mut ConsumerOffsets) + Send + 'static) -> Result<(), LogError> {
        let files = self.files.clone();
        let consumer = consumer.to_string();
        spawn_blocking(move || {
            let _in_order = files.write_lock.lock();
            let mut offsets = files.consumers.lock().get(&consumer).cloned().unwrap_or_default();
            change(&mut offsets);
            let file = OffsetsFile { consumer: consumer.clone(), next_sequence_by_partition: offsets };
            write_atomically(&files.dir, &consumer, &file)?;
            files.consumers.lock().insert(consumer, file.next_sequence_by_partition);
            Ok(())
        })
        .await
    }

    /// Removes a consumer; returns whether it was registered.
    pub(crate) async fn remove(&self, consumer: &str) -> Result<bool, LogError> {
        let files = self.files.clone();
        let consumer = consumer.to_string();
        spawn_blocking(move || {
            let _in_order = files.write_lock.lock();
            if !files.consumers.lock().contains_key(&consumer) {
                return Ok(false);
            }
            let path = files.dir.join(format!("{consumer}.json"));
            fs::remove_file(&path).map_err(LogError::io("remove offsets file", &path))?;
            fsync_dir(&files.dir)?;
            files.consumers.lock().remove(&consumer);
            Ok(true)
        })
        .await
    }
}

/// Write aside, fsync, rename over, fsync the directory: a crash leaves
/// either the old file or the new one, never a mix.
fn write_atomically(dir: &Path, consumer: &str, file: &OffsetsFile) -> Result<(), LogError> {
    let path = dir.join(format!("{consumer}.json"));
    let temp = dir.join(format!("{consumer}.json.tmp"));
    let json = serde_json::to_vec_pretty(file).expect("offsets serialise to JSON");
    let mut out = fs::File::create(&temp).map_err(LogError::io("create offsets temp file", &temp))?;
    out.write_all(&json).map_err(LogError::io("write offsets temp file", &temp))?;
    out.sync_all().map_err(LogError::io("fsync offsets temp file", &temp))?;
    drop(out);
    fs::rename(&temp, &path).map_err(LogError::io("rename offsets file into place", &path))?;
    fsync_dir(dir)
}

/// Consumer names become file names, so they are kept to a safe alphabet.
pub(crate) fn validate_consumer_name(name: &str) -> Result<(), LogError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 128 {
        Some("it is longer than 128 bytes")
    } else if name.starts_with('.') {
        Some("it starts with a dot")
    } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        Some("use only ASCII letters, digits, '-', '_' and '.'")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(LogError::InvalidConsumerName { name: name.to_string(), reason }),
        None => Ok(()),
    }
}
