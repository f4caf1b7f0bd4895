//! The event log through its public API: round trips, restarts, torn tails,
//! group commit, retention and offsets.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use travelrec_stream::{Durability, EventLog, LogConfig, LogError, Record, RecordId, Retention};

fn config(partitions: u32, segment_bytes: u64) -> LogConfig {
    LogConfig { partitions, segment_bytes, ..LogConfig::default() }
}

/// Every retained record of a partition, read in small pages.
async fn read_all(log: &EventLog, partition: u32) -> Vec<Record> {
    let mut records = Vec::new();
    let mut next = 0;
    loop {
        let page = log.read(partition, next, 7).await.unwrap();
        let Some(last) = page.last() else { return records };
        next = last.sequence + 1;
        records.extend(page);
    }
}

fn segment_files(dir: &Path, partition: u32) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir.join(format!("partition-{partition:04}")))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    files.sort();
    files
}

/// Bytes one record takes on disk (27 bytes of framing).
fn record_len(key: &[u8], payload: &[u8]) -> u64 {
    27 + key.len() as u64 + payload.len() as u64
}

#[tokio::test]
async fn records_round_trip_across_partitions_and_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), config(4, 1024)).await.unwrap();
    let mut expected: BTreeMap<RecordId, (Vec<u8>, Vec<u8>)> = BTreeMap::new();
    for batch in 0..40 {
        let records: Vec<(Vec<u8>, Vec<u8>)> =
            (0..10).map(|i| (format!("user-{}", (batch * 10 + i) % 37).into_bytes(), format!("event-{batch}-{i}").into_bytes())).collect();
        let ids = log.append_batch(records.clone()).await.unwrap();
        assert_eq!(ids.len(), records.len());
        for (id, (key, payload)) in ids.into_iter().zip(records) {
            assert_eq!(id.partition, log.partition_for(&key));
            assert!(expected.insert(id, (key, payload)).is_none(), "record id {id:?} handed out twice");
        }
    }
    let single = log.append(b"user-5", b"single".to_vec()).await.unwrap();
    expected.insert(single, (b"user-5".to_vec(), b"single".to_vec()));

    let stats = log.stats();
    for partition in 0..4 {
        // Sequences are 1, 2, 3, ... per partition.
        let sequences: Vec<u64> = expected.keys().filter(|id| id.partition == partition).map(|id| id.sequence).collect();
        assert_eq!(sequences, (1..=sequences.len() as u64).collect::<Vec<_>>(), "partition {partition}");
        assert_eq!(log.last_sequence(partition), Some(sequences.len() as u64));
        let partition_stats = &stats.partitions[partition as usize];
        assert!(partition_stats.segments > 1, "1 KiB segments must rotate: {partition_stats:?}");
        assert_eq!(partition_stats.records, sequences.len() as u64);
        assert_eq!(segment_files(dir.path(), partition).len(), partition_stats.segments);

        let records = read_all(&log, partition).await;
        assert_eq!(records.len(), sequences.len());
        for record in &records {
            let (key, payload) = &expected[&RecordId { partition, sequence: record.sequence }];
            assert_eq!((&record.key, &record.payload), (key, payload));
            assert_eq!(record.partition, partition);
            assert!(record.appended_at_ms > 1_600_000_000_000);
        }
    }
    assert_eq!(stats.appended_records, 401);

    // A page from the middle, crossing segment boundaries.
    let page = log.read(0, 20, 30).await.unwrap();
    assert_eq!(page.iter().map(|r| r.sequence).collect::<Vec<_>>(), (20..50).collect::<Vec<_>>());
    // Past the end: nothing yet.
    let last = log.last_sequence(0).unwrap();
    assert!(log.read(0, last + 1, 10).await.unwrap().is_empty());
    assert!(log.read(0, 1, 0).await.unwrap().is_empty());
    let error = log.read(4, 0, 10).await.unwrap_err();
    assert!(matches!(error, LogError::InvalidPartition { partition: 4, partitions: 4 }), "{error}");
}

#[tokio::test]
async fn partition_for_is_fnv1a_modulo_partitions_and_never_changes() {
    let dir = tempfile::tempdir().unwrap();
    let four = EventLog::open(&dir.path().join("four"), config(4, 1 << 20)).await.unwrap();
    let sixteen = EventLog::open(&dir.path().join("sixteen"), config(16, 1 << 20)).await.unwrap();
    // FNV-1a 32: "429" = 0xa52b83ce, "user-1" = 0xf5537974, "shardId" = 0xb2ad1a66, "" = 0x811c9dc5.
    for (key, in_four, in_sixteen) in [("429", 2, 14), ("user-1", 0, 4), ("a", 0, 12), ("foobar", 0, 8), ("shardId", 2, 6), ("", 1, 5)] {
        assert_eq!(four.partition_for(key.as_bytes()), in_four, "key {key:?}");
        assert_eq!(sixteen.partition_for(key.as_bytes()), in_sixteen, "key {key:?}");
    }
    assert_eq!(EventLog::shard_id(0), "shardId-000000000000");
    assert_eq!(EventLog::shard_id(13), "shardId-000000000013");
}

#[tokio::test]
async fn a_reopened_log_has_every_record_once_and_continues_its_sequences() {
    let dir = tempfile::tempdir().unwrap();
    let mut before = Vec::new();
    {
        let log = EventLog::open(dir.path(), config(3, 2048)).await.unwrap();
        for i in 0..300 {
            let payload = format!("payload-{i}").into_bytes();
            let id = log.append(format!("k{}", i % 11).as_bytes(), payload.clone()).await.unwrap();
            before.push((id, payload));
        }
    }
    let log = EventLog::open(dir.path(), config(3, 2048)).await.unwrap();
    assert!(log.tail_repairs().is_empty());
    let mut seen = HashSet::new();
    for partition in 0..3 {
        for record in read_all(&log, partition).await {
            assert!(seen.insert((record.partition, record.sequence, record.payload)), "record read twice");
        }
    }
    let expected: HashSet<_> = before.iter().map(|(id, payload)| (id.partition, id.sequence, payload.clone())).collect();
    assert_eq!(seen, expected);

    let last_before = log.last_sequence(1).unwrap();
    let key = (0..).map(|i| format!("k{i}")).find(|key| log.partition_for(key.as_bytes()) == 1).unwrap();
    let id = log.append(key.as_bytes(), b"after restart".to_vec()).await.unwrap();
    assert_eq!(id, RecordId { partition: 1, sequence: last_before + 1 });
}

/// Captures what `tracing` prints, to check the warnings recovery gives.
#[derive(Clone, Default)]
struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CapturedLogs {
    type Writer = CapturedLogs;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl CapturedLogs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Writes 20 records to one partition and closes the log; returns the payloads.
async fn write_twenty(dir: &Path) -> Vec<Vec<u8>> {
    let log = EventLog::open(dir, config(1, 1 << 20)).await.unwrap();
    let mut payloads = Vec::new();
    for i in 0..20 {
        let payload = format!("record number {i}").into_bytes();
        log.append(b"key", payload.clone()).await.unwrap();
        payloads.push(payload);
    }
    payloads
}

async fn reopen_capturing_warnings(dir: &Path) -> (EventLog, String) {
    let logs = CapturedLogs::default();
    let subscriber = tracing_subscriber::fmt().with_writer(logs.clone()).with_ansi(false).finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let log = EventLog::open(dir, config(1, 1 << 20)).await.unwrap();
    (log, logs.text())
}

#[tokio::test]
async fn a_truncated_tail_is_cut_at_the_last_good_record_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let payloads = write_twenty(dir.path()).await;
    let segment = segment_files(dir.path(), 0).pop().unwrap();
    let length = fs::metadata(&segment).unwrap().len();
    OpenOptions::new().write(true).open(&segment).unwrap().set_len(length - 3).unwrap();

    let (log, warnings) = reopen_capturing_warnings(dir.path()).await;
    let last_len = record_len(b"key", &payloads[19]);
    assert_eq!(log.tail_repairs().len(), 1);
    let repair = &log.tail_repairs()[0];
    assert_eq!((repair.partition, repair.offset, repair.bytes_cut), (0, length - last_len, last_len - 3));
    assert!(repair.reason.contains("truncated"), "{}", repair.reason);
    assert!(warnings.contains("WARN") && warnings.contains("cut a torn or corrupt tail"), "{warnings}");
    assert!(warnings.contains(&format!("bytes_cut={}", last_len - 3)), "{warnings}");
    assert_eq!(fs::metadata(&segment).unwrap().len(), length - last_len);

    let records = read_all(&log, 0).await;
    assert_eq!(records.iter().map(|r| r.payload.clone()).collect::<Vec<_>>(), payloads[..19].to_vec());
    let id = log.append(b"key", b"next".to_vec()).await.unwrap();
    assert_eq!(id.sequence, 20);
    drop(log);
    // The repaired log opens cleanly.
    let (log, warnings) = reopen_capturing_warnings(dir.path()).await;
    assert!(log.tail_repairs().is_empty() && !warnings.contains("WARN"), "{warnings}");
    assert_eq!(read_all(&log, 0).await.len(), 20);
}

#[tokio::test]
async fn a_flipped_byte_in_the_last_record_is_caught_by_its_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let payloads = write_twenty(dir.path()).await;
    let segment = segment_files(dir.path(), 0).pop().unwrap();
    let length = fs::metadata(&segment).unwrap().len();
    let mut file = OpenOptions::new().read(true).write(true).open(&segment).unwrap();
    file.seek(SeekFrom::Start(length - 2)).unwrap(); // inside the last payload
    file.write_all(b"#").unwrap();
    drop(file);

    let (log, warnings) = reopen_capturing_warnings(dir.path()).await;
    let last_len = record_len(b"key", &payloads[19]);
    let repair = &log.tail_repairs()[0];
    assert_eq!((repair.offset, repair.bytes_cut), (length - last_len, last_len));
    assert!(repair.reason.contains("checksum mismatch"), "{}", repair.reason);
    assert!(warnings.contains("checksum mismatch"), "{warnings}");
    let records = read_all(&log, 0).await;
    assert_eq!(records.len(), 19);
    assert_eq!(records.last().unwrap().payload, payloads[18]);
    assert_eq!(log.append(b"key", b"next".to_vec()).await.unwrap().sequence, 20);
}

#[tokio::test]
async fn a_consumer_that_read_records_recovery_cut_resumes_at_the_new_end() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = EventLog::open(dir.path(), config(1, 1 << 20)).await.unwrap();
        for i in 0..20 {
            log.append(b"key", format!("record number {i}").into_bytes()).await.unwrap();
        }
        log.commit_offset("reader", 0, 21).await.unwrap();
    }
    // Simulate losing the last acknowledged record (batch mode and power loss, or a bad disk).
    let segment = segment_files(dir.path(), 0).pop().unwrap();
    let length = fs::metadata(&segment).unwrap().len();
    OpenOptions::new().write(true).open(&segment).unwrap().set_len(length - 1).unwrap();

    let (log, warnings) = reopen_capturing_warnings(dir.path()).await;
    assert!(warnings.contains("committed past the end"), "{warnings}");
    assert_eq!(log.offset("reader", 0), 20);
    let id = log.append(b"key", b"replacement".to_vec()).await.unwrap();
    assert_eq!(id.sequence, 20);
    let unread = log.read(0, log.offset("reader", 0), 10).await.unwrap();
    assert_eq!(unread.iter().map(|r| r.payload.clone()).collect::<Vec<_>>(), vec![b"replacement".to_vec()]);
}

#[tokio::test]
async fn garbage_after_the_last_record_is_cut_too() {
    let dir = tempfile::tempdir().unwrap();
    write_twenty(dir.path()).await;
    let segment = segment_files(dir.path(), 0).pop().unwrap();
    let length = fs::metadata(&segment).unwrap().len();
    OpenOptions::new().append(true).open(&segment).unwrap().write_all(&[0u8; 100]).unwrap();
    let (log, _) = reopen_capturing_warnings(dir.path()).await;
    let repair = &log.tail_repairs()[0];
    assert_eq!((repair.offset, repair.bytes_cut), (length, 100));
    assert!(repair.reason.contains("bad magic"), "{}", repair.reason);
    assert_eq!(read_all(&log, 0).await.len(), 20);
}

#[tokio::test]
async fn a_corrupt_record_inside_a_closed_segment_is_an_error_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = EventLog::open(dir.path(), config(1, 512)).await.unwrap();
        for i in 0..40 {
            log.append(b"key", format!("payload {i:04}").into_bytes()).await.unwrap();
        }
    }
    let first_segment = segment_files(dir.path(), 0).remove(0);
    let one = record_len(b"key", b"payload 0000");
    let mut file = OpenOptions::new().write(true).open(&first_segment).unwrap();
    file.seek(SeekFrom::Start(one * 2 + one - 1)).unwrap(); // last payload byte of the third record
    file.write_all(b"X").unwrap();
    drop(file);

    // Recovery checks only the newest segment, so the log opens...
    let log = EventLog::open(dir.path(), config(1, 512)).await.unwrap();
    assert!(log.tail_repairs().is_empty());
    // ...and reading the damaged segment reports where the damage is.
    match log.read(0, 1, 10).await.unwrap_err() {
        LogError::Corrupt { path, offset, reason } => {
            assert_eq!((path, offset), (first_segment.clone(), one * 2));
            assert!(reason.contains("checksum"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other}"),
    }
    let error = log.read(0, 1, 10).await.unwrap_err().to_string();
    assert!(error.contains(&first_segment.display().to_string()) && error.contains(&format!("offset {}", one * 2)), "{error}");
    // Later segments are still readable.
    let tail = log.read(0, 30, 10).await.unwrap();
    assert_eq!(tail.len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    // Two partitions, so every commit group costs at most two fsyncs.
    let log = EventLog::open(dir.path(), config(2, 256 * 1024)).await.unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|task| {
            let log = log.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..500 {
                    let id = log.append(format!("user-{task}").as_bytes(), format!("{task}:{i}").into_bytes()).await.unwrap();
                    ids.push(id);
                }
                ids
            })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        ids.extend(task.await.unwrap());
    }
    assert_eq!(ids.len(), 8000);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 8000, "a record id was handed out twice");

    let stats = log.stats();
    let mut read = 0;
    for partition in 0..2 {
        let records = read_all(&log, partition).await;
        assert_eq!(records.iter().map(|r| r.sequence).collect::<Vec<_>>(), (1..=records.len() as u64).collect::<Vec<_>>());
        // Each task's records keep their order.
        let mut last_by_task: BTreeMap<String, u32> = BTreeMap::new();
        for record in &records {
            let text = String::from_utf8(record.payload.clone()).unwrap();
            let (task, i) = text.split_once(':').unwrap();
            let i: u32 = i.parse().unwrap();
            if let Some(previous) = last_by_task.insert(task.to_string(), i) {
                assert!(i > previous, "task {task} record {i} after {previous}");
            }
        }
        read += records.len();
    }
    assert_eq!(read, 8000);
    println!("8000 appends: {} fsyncs in {} commit groups", stats.fsyncs, stats.write_groups);
    // Commit groups hold many appends, and each costs one fsync per partition file it touched.
    assert!(stats.write_groups * 4 <= 8000, "group commit did not group: {} commit groups for 8000 appends", stats.write_groups);
    assert!(stats.fsyncs <= stats.write_groups * 2, "more than one fsync per partition per group: {stats:?}");
    assert!(stats.fsyncs * 2 <= 8000, "{} fsyncs for 8000 appends", stats.fsyncs);
    assert_eq!(stats.appended_records, 8000);
}

#[tokio::test]
async fn batch_durability_acknowledges_after_write_and_fsyncs_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let batch = LogConfig { durability: Durability::Batch { interval: Duration::from_millis(20) }, ..config(2, 1 << 20) };
    {
        let log = EventLog::open(dir.path(), batch.clone()).await.unwrap();
        for i in 0..200 {
            let id = log.append(b"user-1", format!("{i}").into_bytes()).await.unwrap();
            // Readable as soon as acknowledged.
            assert_eq!(log.read(id.partition, id.sequence, 1).await.unwrap()[0].payload, format!("{i}").into_bytes());
        }
        let appended = log.stats();
        assert!(appended.fsyncs < 100, "batch mode fsynced {} times for 200 appends", appended.fsyncs);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(log.stats().fsyncs >= 1, "the background fsync did not run");
    }
    let log = EventLog::open(dir.path(), batch).await.unwrap();
    assert_eq!(read_all(&log, log.partition_for(b"user-1")).await.len(), 200);
}

#[tokio::test]
async fn subscribers_wake_when_records_become_readable() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), config(2, 1 << 20)).await.unwrap();
    let mut readable = log.subscribe();
    let before = *readable.borrow_and_update();
    let reader = {
        let log = log.clone();
        tokio::spawn(async move {
            loop {
                let records = log.read(log.partition_for(b"k"), 0, 10).await.unwrap();
                if !records.is_empty() {
                    return records;
                }
                readable.changed().await.unwrap();
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    log.append(b"k", b"hello".to_vec()).await.unwrap();
    let records = tokio::time::timeout(Duration::from_secs(5), reader).await.unwrap().unwrap();
    assert_eq!(records[0].payload, b"hello");
    assert_eq!(*log.subscribe().borrow(), before + 1);
}

#[tokio::test]
async fn offsets_are_durable_validated_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = EventLog::open(dir.path(), config(2, 1 << 20)).await.unwrap();
        assert_eq!(log.offset("realtime", 0), 0);
        for i in 0..10 {
            log.append(b"user-1", vec![i]).await.unwrap();
        }
        let partition = log.partition_for(b"user-1");
        log.commit_offset("realtime", partition, 4).await.unwrap();
        log.commit_offset("realtime", partition, 11).await.unwrap();
        log.commit_offset("archiver", partition, 3).await.unwrap();
        assert_eq!(log.offset("realtime", partition), 11);

        let error = log.commit_offset("realtime", partition, 12).await.unwrap_err();
        assert!(matches!(error, LogError::OffsetBeyondEnd { next_sequence: 12, last_sequence: 10, .. }), "{error}");
        let error = log.commit_offset("../escape", partition, 1).await.unwrap_err();
        assert!(matches!(error, LogError::InvalidConsumerName { .. }), "{error}");
        let error = log.commit_offset("realtime", 9, 1).await.unwrap_err();
        assert!(matches!(error, LogError::InvalidPartition { .. }), "{error}");
        assert!(!dir.path().join("offsets/realtime.json.tmp").exists());
    }
    let log = EventLog::open(dir.path(), config(2, 1 << 20)).await.unwrap();
    let partition = log.partition_for(b"user-1");
    assert_eq!(log.offset("realtime", partition), 11);
    assert_eq!(log.offset("archiver", partition), 3);
    assert_eq!(log.offset("archiver", 1 - partition), 0);
    assert_eq!(log.consumers(), vec!["archiver".to_string(), "realtime".to_string()]);
    assert!(log.unregister_consumer("archiver").await.unwrap());
    assert!(!log.unregister_consumer("archiver").await.unwrap());
    drop(log);
    let log = EventLog::open(dir.path(), config(2, 1 << 20)).await.unwrap();
    assert_eq!(log.consumers(), vec!["realtime".to_string()]);
    assert_eq!(log.offset("archiver", partition), 0);
}

/// 40 records of 100 bytes in one partition with 400-byte segments: 10 segments of 4 records.
async fn ten_segments(dir: &Path, retention: Retention) -> EventLog {
    let log = EventLog::open(dir, LogConfig { retention, ..config(1, 400) }).await.unwrap();
    for i in 0..40 {
        log.append(b"k", vec![i as u8; 100 - 27 - 1]).await.unwrap();
    }
    assert_eq!(log.stats().partitions[0].segments, 10);
    log
}

#[tokio::test]
async fn retention_by_size_waits_for_every_registered_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let retention = Retention { max_age: None, max_bytes_per_partition: Some(1000) };
    let log = ten_segments(dir.path(), retention.clone()).await;
    log.register_consumer("slow").await.unwrap();
    log.commit_offset("fast", 0, 41).await.unwrap();

    // "slow" has read nothing: nothing may go.
    let report = log.apply_retention().await.unwrap();
    assert!(report.deleted.is_empty());
    assert_eq!(report.held.len(), 1);
    assert_eq!((report.held[0].consumer.as_str(), report.held[0].first_sequence, report.held[0].last_sequence), ("slow", 1, 4));
    assert_eq!(segment_files(dir.path(), 0).len(), 10);

    // "slow" committed up to sequence 10 (next 11): segments 1-4 and 5-8 may go, 9-12 not.
    log.commit_offset("slow", 0, 11).await.unwrap();
    let report = log.apply_retention().await.unwrap();
    assert_eq!(report.deleted.iter().map(|d| (d.first_sequence, d.last_sequence)).collect::<Vec<_>>(), vec![(1, 4), (5, 8)]);
    assert_eq!(report.bytes_freed(), 800);
    assert_eq!(report.held[0].first_sequence, 9);
    assert_eq!(log.first_sequence(0).unwrap(), 9);

    // Everyone is done: delete down to at most 1000 bytes (10 records), never the active segment.
    log.commit_offset("slow", 0, 41).await.unwrap();
    let report = log.apply_retention().await.unwrap();
    assert!(report.held.is_empty());
    let stats = log.stats().partitions[0].clone();
    assert!(stats.bytes <= 1000, "{stats:?}");
    assert_eq!((stats.first_sequence, stats.last_sequence, stats.records, stats.segments), (33, Some(40), 8, 2));
    assert_eq!(segment_files(dir.path(), 0).len(), 2);

    // Reading below the retained range starts at the oldest retained record.
    let records = log.read(0, 1, 100).await.unwrap();
    assert_eq!(records.first().unwrap().sequence, 33);
    assert_eq!(records.len(), 8);

    // Sequences go on after retention and a restart.
    drop(log);
    let log = EventLog::open(dir.path(), LogConfig { retention, ..config(1, 400) }).await.unwrap();
    assert_eq!(log.first_sequence(0).unwrap(), 33);
    assert_eq!(log.append(b"k", vec![1; 72]).await.unwrap().sequence, 41);
    assert_eq!(read_all(&log, 0).await.len(), 9);
}

#[tokio::test]
async fn retention_by_age_and_unregistering_a_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let retention = Retention { max_age: Some(Duration::ZERO), max_bytes_per_partition: None };
    let log = ten_segments(dir.path(), retention).await;
    log.register_consumer("gone").await.unwrap();
    assert!(log.apply_retention().await.unwrap().deleted.is_empty());
    // A consumer that is gone for good stops holding records back once unregistered.
    assert!(log.unregister_consumer("gone").await.unwrap());
    let report = log.apply_retention().await.unwrap();
    // Every closed segment is "older than zero"; the active one stays.
    assert_eq!(report.deleted.len(), 9);
    assert_eq!(log.first_sequence(0).unwrap(), 37);
    assert_eq!(read_all(&log, 0).await.iter().map(|r| r.sequence).collect::<Vec<_>>(), vec![37, 38, 39, 40]);

    // With an hour of retention nothing is old enough.
    let dir = tempfile::tempdir().unwrap();
    let log = ten_segments(dir.path(), Retention { max_age: Some(Duration::from_secs(3600)), max_bytes_per_partition: None }).await;
    assert!(log.apply_retention().await.unwrap().deleted.is_empty());
}

#[tokio::test]
async fn a_directory_is_opened_by_one_log_at_a_time_with_a_fixed_partition_count() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), config(4, 1 << 20)).await.unwrap();
    let error = EventLog::open(dir.path(), config(4, 1 << 20)).await.unwrap_err();
    assert!(matches!(error, LogError::Locked { .. }), "{error}");
    drop(log);
    let error = EventLog::open(dir.path(), config(8, 1 << 20)).await.unwrap_err();
    assert!(matches!(error, LogError::PartitionCountMismatch { on_disk: 4, configured: 8, .. }), "{error}");
    assert!(error.to_string().contains("partitions = 4"), "{error}");
    EventLog::open(dir.path(), config(4, 1 << 20)).await.unwrap();
    let error = EventLog::open(&dir.path().join("other"), config(0, 1 << 20)).await.unwrap_err();
    assert!(matches!(error, LogError::InvalidConfig(_)), "{error}");
}

#[tokio::test]
async fn a_record_larger_than_a_segment_gets_a_segment_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), config(1, 100)).await.unwrap();
    log.append(b"k", vec![1; 10]).await.unwrap();
    log.append(b"k", vec![2; 500]).await.unwrap();
    log.append(b"k", vec![3; 10]).await.unwrap();
    let records = read_all(&log, 0).await;
    assert_eq!(records.iter().map(|r| r.payload.len()).collect::<Vec<_>>(), vec![10, 500, 10]);
    assert_eq!(segment_files(dir.path(), 0).len(), 3);
}

#[tokio::test]
async fn after_a_write_error_appends_fail_fast_until_the_log_is_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), config(1, 200)).await.unwrap();
    log.append(b"k", vec![1; 100]).await.unwrap();
    // The next record needs a new segment, which cannot be created without the directory.
    fs::rename(dir.path().join("partition-0000"), dir.path().join("moved-away")).unwrap();
    let error = log.append(b"k", vec![2; 100]).await.unwrap_err();
    assert!(matches!(error, LogError::WriterFailed { .. }), "{error}");
    assert!(error.to_string().contains("create segment"), "{error}");
    let error = log.append(b"k", vec![3; 10]).await.unwrap_err();
    assert!(matches!(error, LogError::WriterFailed { .. }), "{error}");
    assert!(log.stats().writer_failure.is_some());
    drop(log);

    fs::rename(dir.path().join("moved-away"), dir.path().join("partition-0000")).unwrap();
    let log = EventLog::open(dir.path(), config(1, 200)).await.unwrap();
    // Rotation failed before the second record was written: only the acknowledged one is there.
    let records = read_all(&log, 0).await;
    assert_eq!(records.iter().map(|r| r.payload.clone()).collect::<Vec<_>>(), vec![vec![1; 100]]);
    assert_eq!(log.append(b"k", vec![4; 10]).await.unwrap().sequence, 2);
}

/// Whether `needle` occurs in any file under `dir`.
fn bytes_on_disk_contain(dir: &Path, needle: &[u8]) -> bool {
    fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().path()).any(|path| {
        if path.is_dir() {
            bytes_on_disk_contain(&path, needle)
        } else {
            fs::read(&path).unwrap().windows(needle.len()).any(|w| w == needle)
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_rewritten_in_place_are_gone_from_the_files_and_the_rest_reads_as_before() {
    let dir = tempfile::tempdir().unwrap();
    // Small segments: the rewritten records lie in closed ones and in the active one.
    let log = EventLog::open(dir.path(), config(2, 1024)).await.unwrap();
    let mut written = Vec::new();
    for i in 0..120 {
        let key = format!("user-{}", i % 6);
        let payload = format!("{key} visited attraction {i}").into_bytes();
        written.push((log.append(key.as_bytes(), payload.clone()).await.unwrap(), key, payload));
    }
    let partition = log.partition_for(b"user-3");
    assert!(segment_files(dir.path(), partition).len() > 2);
    // Appends go on while the records are rewritten.
    let appending = {
        let log = log.clone();
        tokio::spawn(async move {
            for i in 0..200 {
                log.append(format!("other-{i}").as_bytes(), format!("later {i}").into_bytes()).await.unwrap();
            }
        })
    };
    let erased =
        log.rewrite_in_place(partition, |record| record.payload.starts_with(b"user-3 ").then(|| b"erased".to_vec())).await.unwrap();
    appending.await.unwrap();
    assert_eq!(erased, 20);
    assert!(!bytes_on_disk_contain(dir.path(), b"user-3"), "the key and payload bytes are gone from the files");

    // Every record keeps its sequence; the rewritten ones read back padded, with a zeroed key.
    let read: BTreeMap<u64, Record> = read_all(&log, partition).await.into_iter().map(|r| (r.sequence, r)).collect();
    for (id, key, payload) in written.iter().filter(|(id, ..)| id.partition == partition) {
        let record = &read[&id.sequence];
        if key == "user-3" {
            assert_eq!(&record.payload[..6], b"erased");
            assert!(record.payload[6..].iter().all(|&b| b == 0) && record.payload.len() == payload.len());
            assert!(record.key.iter().all(|&b| b == 0) && record.key.len() == key.len());
        } else {
            assert_eq!((&record.key, &record.payload), (&key.as_bytes().to_vec(), payload));
        }
    }
    // A reopened log finds every file whole (no torn tail to repair).
    drop(log);
    let log = EventLog::open(dir.path(), config(2, 1024)).await.unwrap();
    assert!(log.tail_repairs().is_empty());
    assert_eq!(read_all(&log, partition).await.len(), read.len());

    // A new payload longer than the old one is refused, and nothing is written.
    let error = log.rewrite_in_place(partition, |record| Some(vec![1; record.payload.len() + 1])).await.unwrap_err();
    assert!(matches!(error, LogError::TooLarge { .. }), "{error}");
    assert_eq!(read_all(&log, partition).await.into_iter().map(|r| (r.sequence, r)).collect::<BTreeMap<_, _>>(), read);
}
