//! Crash safety across a real process kill: a child process (this test
//! binary, re-invoked) appends as fast as it can and prints every
//! acknowledged record; the parent SIGKILLs it mid-stream, reopens the log and
//! checks that every acknowledged record is there exactly once.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use travelrec_stream::{EventLog, LogConfig, RecordId};

const CHILD_DIR_ENV: &str = "TRAVELREC_STREAM_CRASH_CHILD_DIR";
const CHILD_ROUND_ENV: &str = "TRAVELREC_STREAM_CRASH_CHILD_ROUND";
const TEST_NAME: &str = "acknowledged_records_survive_sigkill";
const ROUNDS: usize = 3;
/// Acknowledgements the parent waits for before it kills the child.
const ACKS_BEFORE_KILL: usize = 3000;
/// Bytes of filler after each payload's id (`r{round}-t{task}-b{batch}-i{i}|xxx…`), also to recognise a line cut short.
const FILLER_BYTES: usize = 200;

/// The id part of a payload, if the payload is whole.
fn payload_id(payload: &str) -> Option<&str> {
    let (id, filler) = payload.split_once('|')?;
    (filler.len() == FILLER_BYTES && filler.bytes().all(|b| b == b'x')).then_some(id)
}

fn config() -> LogConfig {
    // Small segments, so kills also land around rotations.
    LogConfig { partitions: 3, segment_bytes: 64 * 1024, ..LogConfig::default() }
}

#[test]
fn acknowledged_records_survive_sigkill() {
    if let Ok(dir) = std::env::var(CHILD_DIR_ENV) {
        let round: usize = std::env::var(CHILD_ROUND_ENV).unwrap().parse().unwrap();
        append_until_killed(Path::new(&dir), round);
        return;
    }

    let dir = tempfile::tempdir().unwrap();
    let mut acknowledged: HashMap<String, RecordId> = HashMap::new();
    for round in 0..ROUNDS {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([TEST_NAME, "--exact", "--nocapture", "--test-threads", "1"])
            .env(CHILD_DIR_ENV, dir.path())
            .env(CHILD_ROUND_ENV, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut acks_this_round = 0;
        let mut record_ack = |line: String| {
            let Some(ack) = line.strip_prefix("ACK ") else { return false };
            let mut fields = ack.split(' ');
            let partition = fields.next().unwrap().parse().unwrap();
            let sequence = fields.next().unwrap().parse().unwrap();
            let Some(id) = payload_id(fields.next().unwrap()) else {
                return false; // a line cut short by the kill
            };
            assert!(acknowledged.insert(id.to_string(), RecordId { partition, sequence }).is_none(), "{id} was acknowledged twice");
            true
        };
        for line in stdout.by_ref() {
            if record_ack(line.unwrap()) {
                acks_this_round += 1;
                if acks_this_round == ACKS_BEFORE_KILL {
                    break;
                }
            }
        }
        child.kill().unwrap(); // SIGKILL: no destructors, no final fsync
        child.wait().unwrap();
        assert_eq!(acks_this_round, ACKS_BEFORE_KILL, "the child stopped before it was killed (see its stderr above)");
        // Acknowledgements the child printed before it died are still in the pipe: they count too.
        for line in stdout {
            let Ok(line) = line else { break };
            record_ack(line);
        }

        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let log = EventLog::open(dir.path(), config()).await.unwrap();
            let mut stored: HashMap<String, RecordId> = HashMap::new();
            for partition in 0..3 {
                let mut next = 1;
                loop {
                    let records = log.read(partition, next, 1000).await.unwrap();
                    let Some(last) = records.last() else { break };
                    next = last.sequence + 1;
                    for record in records {
                        let payload = String::from_utf8(record.payload).unwrap();
                        let payload = payload_id(&payload).expect("a stored payload is whole").to_string();
                        let id = RecordId { partition, sequence: record.sequence };
                        assert!(stored.insert(payload.clone(), id).is_none(), "{payload} is stored twice");
                    }
                }
                let last = log.last_sequence(partition).unwrap_or(0);
                assert_eq!(next, last + 1, "partition {partition} ends at {last} but reads stopped at {next}");
            }
            for (payload, id) in &acknowledged {
                assert_eq!(stored.get(payload), Some(id), "round {round}: acknowledged record {payload} ({id:?}) is missing or moved");
            }
            println!("round {round}: {} acknowledged, {} stored, tail repairs: {:?}", acknowledged.len(), stored.len(), log.tail_repairs());
        });
    }
}

/// The child: 8 tasks append batches of 5 and print each acknowledged record.
/// Bounded in count and time in case nobody kills it.
fn append_until_killed(dir: &Path, round: usize) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let log = EventLog::open(dir, config()).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let tasks: Vec<_> = (0..8)
            .map(|task| {
                let log = log.clone();
                tokio::spawn(async move {
                    for batch in 0..20_000 {
                        if Instant::now() > deadline {
                            return;
                        }
                        let records: Vec<(Vec<u8>, Vec<u8>)> = (0..5)
                            .map(|i| {
                                let payload = format!("r{round}-t{task}-b{batch}-i{i}|{}", "x".repeat(FILLER_BYTES));
                                (format!("user-{}", (task * 7 + i) % 50).into_bytes(), payload.into_bytes())
                            })
                            .collect();
                        let payloads: Vec<String> = records.iter().map(|(_, p)| String::from_utf8(p.clone()).unwrap()).collect();
                        let ids = log.append_batch(records).await.unwrap();
                        for (id, payload) in ids.iter().zip(payloads) {
                            println!("ACK {} {} {payload}", id.partition, id.sequence);
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
}
