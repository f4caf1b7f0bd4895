//! Append throughput of the event log.
//!
//! ```sh
//! cargo run --release -p travelrec-stream --example log_bench -- [--seconds 5] [--clients 8] [--dir PATH]
//! ```
//!
//! Each scenario runs for `--seconds` against a fresh log (4 partitions) in a
//! temporary directory under `--dir` (default: the system temp directory;
//! point it at the disk the service will use). Clients send batches of 10
//! records of 300 bytes with random user-id keys, each waiting for its
//! acknowledgement before sending the next batch. The baseline is one client
//! appending one record at a time with fsync durability: no group commit is
//! possible there, so it is one fsync round per record.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use travelrec_stream::{Durability, EventLog, LogConfig};

struct Scenario {
    name: &'static str,
    clients: usize,
    batch: usize,
    durability: Durability,
}

struct Outcome {
    records: u64,
    elapsed: Duration,
    fsyncs: u64,
    groups: u64,
    latencies: Vec<Duration>,
}

impl Outcome {
    fn per_second(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }

    /// `latencies` must be sorted.
    fn latency_percentile(&self, percentile: f64) -> Duration {
        let index = ((self.latencies.len() as f64 - 1.0) * percentile).round() as usize;
        self.latencies.get(index).copied().unwrap_or_default()
    }
}

fn main() {
    let mut seconds = 5u64;
    let mut clients = 8usize;
    let mut base_dir = std::env::temp_dir();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--seconds" => seconds = value.parse().expect("--seconds takes a whole number"),
            "--clients" => clients = value.parse().expect("--clients takes a whole number"),
            "--dir" => base_dir = PathBuf::from(value),
            other => panic!("unknown argument {other}; use --seconds, --clients, --dir"),
        }
    }
    let duration = Duration::from_secs(seconds);
    let scenarios = [
        Scenario { name: "baseline: 1 client, 1 record/append, fsync", clients: 1, batch: 1, durability: Durability::Fsync },
        Scenario { name: "fsync (group commit)", clients, batch: 10, durability: Durability::Fsync },
        Scenario {
            name: "batch, fsync every 100 ms",
            clients,
            batch: 10,
            durability: Durability::Batch { interval: Duration::from_millis(100) },
        },
    ];

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!(
        "event log append benchmark: {} cpus, {seconds} s per scenario, 4 partitions, 300-byte payloads, dir {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        base_dir.display()
    );
    let mut baseline = None;
    for scenario in scenarios {
        let dir = tempfile::tempdir_in(&base_dir).expect("create a temp dir for the benchmark");
        let outcome = runtime.block_on(run(&scenario, dir.path().to_path_buf(), duration));
        let rate = outcome.per_second();
        let baseline_rate = *baseline.get_or_insert(rate);
        println!(
            "{:<45} {:>2} clients x {:>2} records: {:>9.0} records/s ({:>5.1}x baseline), {:>7} fsyncs in {:>7} groups, \
             {:>6.1} records/fsync, append latency p50 {:?} p99 {:?}",
            scenario.name,
            scenario.clients,
            scenario.batch,
            rate,
            rate / baseline_rate,
            outcome.fsyncs,
            outcome.groups,
            outcome.records as f64 / outcome.fsyncs.max(1) as f64,
            outcome.latency_percentile(0.5),
            outcome.latency_percentile(0.99),
        );
    }
}

async fn run(scenario: &Scenario, dir: PathBuf, duration: Duration) -> Outcome {
    let config = LogConfig { durability: scenario.durability, ..LogConfig::default() };
    let log = EventLog::open(&dir, config).await.expect("open the log");
    let started = Instant::now();
    let deadline = started + duration;
    let clients: Vec<_> = (0..scenario.clients)
        .map(|client| {
            let log = log.clone();
            let batch = scenario.batch;
            tokio::spawn(async move {
                let mut random = 0x9e37_79b9_7f4a_7c15u64 ^ (client as u64 + 1);
                let mut records = 0u64;
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let events: Vec<(Vec<u8>, Vec<u8>)> = (0..batch)
                        .map(|_| {
                            // xorshift64: cheap, deterministic user ids
                            random ^= random << 13;
                            random ^= random >> 7;
                            random ^= random << 17;
                            let user = random % 100_000;
                            (user.to_string().into_bytes(), vec![b'e'; 300])
                        })
                        .collect();
                    let sent = Instant::now();
                    let ids = log.append_batch(events).await.expect("append");
                    latencies.push(sent.elapsed());
                    records += ids.len() as u64;
                }
                (records, latencies)
            })
        })
        .collect();
    let mut records = 0;
    let mut latencies = Vec::new();
    for client in clients {
        let (client_records, client_latencies) = client.await.unwrap();
        records += client_records;
        latencies.extend(client_latencies);
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let stats = log.stats();
    Outcome { records, elapsed, fsyncs: stats.fsyncs, groups: stats.write_groups, latencies }
}
