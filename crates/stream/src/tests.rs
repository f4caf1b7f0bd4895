//! Tests that need to reach inside: holding the writer still.

use std::time::{Duration, Instant};

use super::*;

fn small_config(max_pending_bytes: usize) -> LogConfig {
    LogConfig { partitions: 2, max_pending_bytes, ..LogConfig::default() }
}

#[test]
fn event_log_is_send_sync_and_clone() {
    fn assert_send_sync_clone<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync_clone::<EventLog>();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[expect(clippy::await_holding_lock, reason = "the gate stalls the writer thread; the awaited append is refused without waiting for it")]
async fn appends_are_refused_at_once_when_the_writer_falls_behind() {
    let dir = tempfile::tempdir().unwrap();
    let max_pending_bytes = 8 * 1024;
    let log = EventLog::open(dir.path(), small_config(max_pending_bytes)).await.unwrap();
    let payload = vec![7u8; 500];

    let stalled = log.inner.shared.writer_gate.lock();
    let mut accepted = Vec::new();
    let mut refusal = None;
    let started = Instant::now();
    for index in 0..1000 {
        let key = format!("user-{index}").into_bytes();
        match log.submit(vec![(key, payload.clone())]) {
            Ok(reply) => accepted.push(reply),
            Err(error) => {
                refusal = Some(error);
                break;
            }
        }
        assert!(log.stats().pending_bytes <= max_pending_bytes, "pending bytes exceed the bound");
    }
    let refused_after = started.elapsed();
    match refusal {
        Some(LogError::Backpressure { retry_after, pending_bytes, limit_bytes }) => {
            assert!(retry_after >= Duration::from_millis(10) && retry_after <= Duration::from_secs(5), "{retry_after:?}");
            assert!(pending_bytes <= limit_bytes);
            assert_eq!(limit_bytes, max_pending_bytes);
        }
        other => panic!("expected backpressure, got {other:?}"),
    }
    // 8 KiB holds at most 14 records of 500 + 64 + key bytes: refused almost at once, without waiting.
    assert!(accepted.len() <= 14, "{} appends were queued", accepted.len());
    assert!(refused_after < Duration::from_millis(500), "refusal took {refused_after:?}");
    // The async API refuses the same way while the writer is stalled.
    let error = log.append(b"late", payload.clone()).await.unwrap_err();
    assert!(matches!(error, LogError::Backpressure { .. }), "{error}");
    assert!(error.to_string().contains("retry after"), "{error}");

    drop(stalled);
    let mut ids = Vec::new();
    for reply in accepted {
        ids.extend(reply.await.unwrap().unwrap());
    }
    assert_eq!(log.stats().pending_bytes, 0);
    // Once drained, appends are accepted again.
    let id = log.append(b"after", payload.clone()).await.unwrap();
    ids.push(id);
    let total: u64 = (0..2).map(|p| log.last_sequence(p).unwrap_or(0)).sum();
    assert_eq!(total as usize, ids.len());
}

#[tokio::test]
async fn a_batch_that_could_never_fit_is_refused_as_too_large_not_busy() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), small_config(4096)).await.unwrap();
    let error = log.append(b"k", vec![0; 5000]).await.unwrap_err();
    assert!(matches!(error, LogError::TooLarge { limit: 4096, .. }), "{error}");
    let error = log.append(&vec![b'k'; MAX_KEY_BYTES + 1], vec![]).await.unwrap_err();
    assert!(matches!(error, LogError::KeyTooLarge { .. }), "{error}");
    assert_eq!(log.stats().pending_bytes, 0);
}

#[tokio::test]
async fn the_request_queue_is_bounded_too() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), small_config(usize::MAX / 2)).await.unwrap();
    let stalled = log.inner.shared.writer_gate.lock();
    let mut accepted = Vec::new();
    let refusal = loop {
        match log.submit(vec![(b"k".to_vec(), b"v".to_vec())]) {
            Ok(reply) => accepted.push(reply),
            Err(error) => break error,
        }
        assert!(accepted.len() <= REQUEST_QUEUE_CAPACITY + 1, "the queue grew past its capacity");
    };
    assert!(matches!(refusal, LogError::Backpressure { .. }), "{refusal}");
    drop(stalled);
    for reply in accepted {
        reply.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn a_rewrite_a_crash_interrupted_is_finished_when_the_log_opens_again() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { partitions: 1, segment_bytes: 512, ..LogConfig::default() };
    let log = EventLog::open(dir.path(), config.clone()).await.unwrap();
    for i in 0..40 {
        let key = if i % 4 == 0 { "erase-me" } else { "keep-me" };
        log.append(key.as_bytes(), format!("{key} record {i}").into_bytes()).await.unwrap();
    }
    log.inner.shared.crash_after_journal.store(true, Ordering::SeqCst);
    let rewrite = |r: &Record| r.key.starts_with(b"erase-me").then(|| b"gone".to_vec());
    log.rewrite_in_place(0, rewrite).await.unwrap_err();
    drop(log);

    // The crash also tore the first record being written over: half its new bytes landed.
    let partition_dir = format::partition_dir(dir.path(), 0);
    let patched = journal::parse(&std::fs::read(journal::path(&partition_dir)).unwrap()).unwrap();
    assert!(patched.len() > 1, "the rewrite spans segments");
    let (offset, bytes) = &patched[0].patches[0];
    let segment = partition_dir.join(format::segment_file_name(patched[0].first_sequence));
    std::os::unix::fs::FileExt::write_all_at(
        &std::fs::OpenOptions::new().write(true).open(&segment).unwrap(),
        &bytes[..bytes.len() / 2],
        *offset,
    )
    .unwrap();

    let log = EventLog::open(dir.path(), config.clone()).await.unwrap();
    assert!(!journal::path(&partition_dir).exists(), "the journal is gone once applied");
    let records = log.read(0, 1, 100).await.unwrap();
    assert_eq!(records.len(), 40);
    for (i, record) in records.iter().enumerate() {
        if i % 4 == 0 {
            assert_eq!(&record.payload[..4], b"gone", "record {i}");
            assert!(record.key.iter().all(|&b| b == 0));
        } else {
            assert_eq!(record.payload, format!("keep-me record {i}").into_bytes());
        }
    }
    drop(log);

    // A journal cut short (the crash came while it was written) is dropped, and the records stay.
    std::fs::write(journal::path(&partition_dir), b"TRJ1 half a journ").unwrap();
    let log = EventLog::open(dir.path(), config).await.unwrap();
    assert!(!journal::path(&partition_dir).exists());
    assert_eq!(log.read(0, 1, 100).await.unwrap(), records);
}
