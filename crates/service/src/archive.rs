//! The archive: every tracked event as one JSON line, zstd-compressed, in
//! date- and hour-partitioned files (the delivery-stream-to-bucket of the
//! original system):
//!
//! ```text
//! archive/dt=2026-11-29/hour=14/part-0002-00000000000000001234.jsonl.zst
//! ```
//!
//! A file holds the events of consecutive log records of one partition that
//! arrived in one hour; its name carries the partition and the first record's
//! sequence, so re-archiving after a crash rewrites the same file instead of
//! adding a second copy. Files are written aside, fsynced and renamed into
//! place. `travelrec import` reads them back (a file or a whole folder).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use travelrec_store::{EventPosition, InteractionRow, TrackedEvent};

/// One archived event, as a JSON line (camelCase, like PutEvents).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchivedEvent {
    pub sequence_number: String,
    pub shard_id: String,
    pub dataset_group_arn: String,
    pub received_at: i64,
    pub event_id: String,
    pub user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    pub item_id: String,
    pub event_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_value: Option<f32>,
    /// Unix seconds.
    pub sent_at: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommendation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub impression: Vec<String>,
}

impl ArchivedEvent {
    pub fn new(group: &str, position: EventPosition, event: &TrackedEvent) -> Self {
        let i = &event.interaction;
        Self {
            sequence_number: crate::tracking::sequence_number(position),
            shard_id: travelrec_stream::EventLog::shard_id(position.partition),
            dataset_group_arn: group.to_string(),
            received_at: event.received_at,
            event_id: event.event_id.clone(),
            user_id: i.user_id.clone(),
            session_id: i.session_id.clone(),
            item_id: i.item_id.clone(),
            event_type: i.event_type.clone(),
            event_value: i.event_value,
            sent_at: i.timestamp,
            properties: i.fields.clone(),
            recommendation_id: event.recommendation_id.clone(),
            impression: event.impression.clone(),
        }
    }

    pub fn interaction(&self) -> InteractionRow {
        InteractionRow {
            user_id: self.user_id.clone(),
            item_id: self.item_id.clone(),
            timestamp: self.sent_at,
            event_type: self.event_type.clone(),
            event_value: self.event_value,
            session_id: self.session_id.clone(),
            fields: self.properties.clone(),
        }
    }
}

/// The folder of the hour an event arrived in (`dt=…/hour=…`).
pub fn hour_folder(root: &Path, appended_at_ms: i64) -> PathBuf {
    let time: DateTime<Utc> = DateTime::from_timestamp_millis(appended_at_ms).unwrap_or_default();
    root.join(format!("dt={}", time.format("%Y-%m-%d"))).join(format!("hour={}", time.format("%H")))
}

/// An archive file being written.
pub struct ArchiveFile {
    final_path: PathBuf,
    temporary: PathBuf,
    encoder: zstd::stream::write::Encoder<'static, BufWriter<std::fs::File>>,
    pub hour: PathBuf,
    pub first_sequence: u64,
    pub last_sequence: u64,
    pub events: usize,
    pub opened: std::time::Instant,
}

impl ArchiveFile {
    pub fn create(hour: PathBuf, partition: u32, first_sequence: u64) -> std::io::Result<Self> {
        std::fs::create_dir_all(&hour)?;
        let final_path = hour.join(format!("part-{partition:04}-{first_sequence:020}.jsonl.zst"));
        Self::at(final_path, hour, first_sequence)
    }

    /// A file that replaces the one at `final_path` when closed.
    fn at(final_path: PathBuf, hour: PathBuf, first_sequence: u64) -> std::io::Result<Self> {
        let name = final_path.file_name().expect("a file name").to_string_lossy();
        let temporary = hour.join(format!(".{name}.tmp"));
        let encoder = zstd::stream::write::Encoder::new(BufWriter::new(std::fs::File::create(&temporary)?), 3)?;
        Ok(Self {
            final_path,
            temporary,
            encoder,
            hour,
            first_sequence,
            last_sequence: first_sequence,
            events: 0,
            opened: std::time::Instant::now(),
        })
    }

    pub fn write(&mut self, event: &ArchivedEvent) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.encoder, event)?;
        self.encoder.write_all(b"\n")?;
        self.events += 1;
        Ok(())
    }

    /// Finishes the compressed stream, syncs, and moves the file into place.
    pub fn close(self) -> std::io::Result<PathBuf> {
        let writer = self.encoder.finish()?;
        let file = writer.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&self.temporary, &self.final_path)?;
        std::fs::File::open(self.final_path.parent().expect("in a folder"))?.sync_all()?;
        Ok(self.final_path)
    }
}

/// Every archive file under `path` (or `path` itself), in name order.
pub fn archive_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut folders = vec![path.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder)? {
            let path = entry?.path();
            if path.is_dir() {
                folders.push(path);
            } else if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(".jsonl.zst") && !n.starts_with('.')) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Rewrites one archive file without the events of `user_id` in `group`
/// (aside, fsynced, renamed over it; removed when nothing is left); returns
/// how many events went.
pub fn remove_user(path: &Path, group: &str, user_id: &str) -> Result<usize, String> {
    let mut kept = Vec::new();
    let mut removed = 0;
    read_file(path, |event| {
        if event.dataset_group_arn == group && event.user_id == user_id {
            removed += 1;
        } else {
            kept.push(event);
        }
    })?;
    if removed == 0 {
        return Ok(0);
    }
    let failed = |e: std::io::Error| format!("{}: {e}", path.display());
    if kept.is_empty() {
        std::fs::remove_file(path).map_err(failed)?;
        let folder = path.parent().expect("a file in a folder");
        return std::fs::File::open(folder).and_then(|f| f.sync_all()).map(|_| removed).map_err(failed);
    }
    let folder = path.parent().expect("a file in a folder").to_path_buf();
    let mut file = ArchiveFile::at(path.to_path_buf(), folder, 0).map_err(failed)?;
    for event in &kept {
        file.write(event).map_err(failed)?;
    }
    file.close().map_err(failed)?;
    Ok(removed)
}

/// Reads the events of one archive file, calling `each` per event; errors
/// name the file and line.
pub fn read_file(path: &Path, mut each: impl FnMut(ArchivedEvent)) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let decoder = zstd::stream::read::Decoder::new(file).map_err(|e| format!("{}: {e}", path.display()))?;
    for (number, line) in BufReader::new(decoder).lines().enumerate() {
        let line = line.map_err(|e| format!("{}: not a zstd JSON-lines archive file: {e}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let event = serde_json::from_str(&line).map_err(|e| format!("{}, line {}: {e}", path.display(), number + 1))?;
        each(event);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u64) -> ArchivedEvent {
        ArchivedEvent {
            sequence_number: n.to_string(),
            shard_id: "shardId-000000000000".into(),
            dataset_group_arn: "g".into(),
            received_at: 1,
            event_id: format!("e{n}"),
            user_id: "u".into(),
            session_id: None,
            item_id: "i".into(),
            event_type: "click".into(),
            event_value: Some(2.0),
            sent_at: 5,
            properties: vec![("DEVICE".into(), "mobile".into())],
            recommendation_id: None,
            impression: vec![],
        }
    }

    #[test]
    fn files_round_trip_and_land_in_their_hour() {
        let dir = tempfile::tempdir().unwrap();
        let at = chrono::NaiveDate::from_ymd_opt(2026, 11, 29).unwrap().and_hms_opt(14, 5, 0).unwrap().and_utc().timestamp_millis();
        let hour = hour_folder(dir.path(), at);
        assert!(hour.ends_with("dt=2026-11-29/hour=14"), "{}", hour.display());
        let mut file = ArchiveFile::create(hour, 2, 1234).unwrap();
        file.write(&event(1)).unwrap();
        file.write(&event(2)).unwrap();
        let path = file.close().unwrap();
        assert!(path.ends_with("part-0002-00000000000000001234.jsonl.zst"));
        let files = archive_files(dir.path()).unwrap();
        assert_eq!(files, vec![path.clone()]);
        let mut read = Vec::new();
        read_file(&path, |e| read.push(e)).unwrap();
        assert_eq!(read, vec![event(1), event(2)]);
    }

    #[test]
    fn an_unfinished_file_is_not_listed_and_garbage_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = ArchiveFile::create(dir.path().to_path_buf(), 0, 1).unwrap();
        file.write(&event(1)).unwrap();
        assert!(archive_files(dir.path()).unwrap().is_empty(), "a file being written is hidden");
        drop(file);
        let bad = dir.path().join("part-0000-00000000000000000009.jsonl.zst");
        std::fs::write(&bad, b"not zstd").unwrap();
        let err = read_file(&bad, |_| {}).unwrap_err();
        assert!(err.contains("part-0000"), "{err}");
    }
}
