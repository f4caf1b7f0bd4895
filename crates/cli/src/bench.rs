//! `travelrec bench ingest`: ingestion throughput over HTTP and freshness
//! (acknowledgement of an event → getRecommendations reflecting it), against
//! a baseline measured in the same run, printed as a table and written as JSON.
//!
//! Everything runs in one process: a travelrec server on loopback with its
//! own data directory, and async HTTP clients. On a 2-core machine the
//! clients take CPU from the server, so absolute numbers are a floor; the
//! ratio to the baseline is what compares across machines.

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use travelrec_store::ImportMode;

#[derive(clap::Args)]
pub struct IngestArgs {
    /// Concurrent clients in the main scenario.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Events per PutEvents call in the main scenario.
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// Seconds each scenario runs.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Freshness probes (sequential, during the main scenario).
    #[arg(long, default_value_t = 300)]
    probes: usize,
    /// Durability of the event log: fsync (acknowledge after fsync) or batch.
    #[arg(long, value_enum, default_value = "fsync")]
    durability: crate::DurabilityArg,
    /// Where the benchmark's data directory goes (a temporary one by default).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Also write the results as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Clone, serde::Serialize)]
struct Scenario {
    name: String,
    clients: usize,
    batch: usize,
    seconds: f64,
    requests: u64,
    events: u64,
    events_per_second: f64,
    refused_429: u64,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
}

fn millis(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    histogram.value_at_quantile(quantile) as f64 / 1000.0
}

/// A small deployed world: generated data, imported, trained, a campaign and a tracker, served on loopback.
struct World {
    service: travelrec_service::Service,
    base: String,
    campaign: String,
    tracking_id: String,
    items: u32,
    _dir: Option<tempfile::TempDir>,
    server: LoopbackServer,
}

/// Generated data imported into a fresh data directory, trained with the
/// default solution and deployed: what every benchmark starts from.
pub(crate) struct Deployment {
    pub service: travelrec_service::Service,
    pub defaults: travelrec_service::DefaultResources,
    pub version: travelrec_store::SolutionVersion,
    pub campaign: travelrec_store::Campaign,
    pub tracker: travelrec_store::EventTracker,
}

/// Generates `config`'s data under `dir`, imports it (items, local events,
/// interactions) into a data directory beside it, trains and deploys.
pub(crate) async fn deploy_generated(
    dir: &std::path::Path,
    config: &travelrec_datagen::GeneratorConfig,
    durability: crate::DurabilityArg,
    partitions: u32,
) -> Result<Deployment> {
    let data = dir.join("bench-data");
    travelrec_datagen::generate(config, &data)?;
    let store_args = crate::StoreArgs {
        data_dir: dir.join("travelrec-data"),
        region: "local".into(),
        account: "000000000000".into(),
        durability,
        partitions,
        log_retention_days: 7,
        archive_flush_seconds: 60,
        database_url: None,
        database_schema: "travelrec".into(),
    };
    let service = crate::open_service(&store_args).await?;
    let defaults = service.ensure_default_resources().await?;
    for (dataset, file) in [
        (&defaults.items_dataset_arn, travelrec_datagen::ITEMS_FILE),
        (&defaults.local_events_dataset_arn, travelrec_datagen::LOCAL_EVENTS_FILE),
        (&defaults.interactions_dataset_arn, travelrec_datagen::INTERACTIONS_FILE),
    ] {
        crate::progress::import_file(&service, dataset, &data.join(file), ImportMode::Full).await?;
    }
    let version = crate::progress::train_version(&service, &defaults.solution_arn, "bench").await?;
    let campaign = crate::progress::deploy(&service, "bench", &version.solution_version_arn).await?;
    let tracker = service.create_event_tracker("bench", &defaults.dataset_group_arn).await?;
    Ok(Deployment { service, defaults, version, campaign, tracker })
}

/// The HTTP server on a free loopback port, until `stop`.
pub(crate) struct LoopbackServer {
    pub base: String,
    stop: tokio::sync::oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<()>,
}

impl LoopbackServer {
    pub async fn start(service: &travelrec_service::Service) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = service.clone();
        let handle = tokio::spawn(async move {
            let _ = travelrec_server::serve(listener, served, Default::default(), async {
                let _ = stopped.await;
            })
            .await;
        });
        Ok(Self { base, stop, handle })
    }

    /// Finishes in-flight requests and stops.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.handle.await;
    }
}

async fn world(args: &IngestArgs) -> Result<World> {
    let (dir, temp) = match &args.dir {
        Some(dir) => (dir.clone(), None),
        None => {
            let temp = tempfile::tempdir()?;
            (temp.path().to_path_buf(), Some(temp))
        }
    };
    let config =
        travelrec_datagen::GeneratorConfig { interactions: 50_000, users: 2_500, items_per_city: 25, cities: 8, ..Default::default() };
    let items = config.items_per_city * config.cities as u32;
    let deployment = deploy_generated(&dir, &config, args.durability, 4).await?;
    let server = LoopbackServer::start(&deployment.service).await?;
    Ok(World {
        base: server.base.clone(),
        service: deployment.service,
        campaign: deployment.campaign.campaign_arn,
        tracking_id: deployment.tracker.tracking_id,
        items,
        _dir: temp,
        server,
    })
}

fn events_body(world: &World, user: &str, batch: usize, counter: u64) -> Value {
    let events: Vec<Value> = (0..batch)
        .map(|k| {
            json!({
                "eventId": format!("{user}-{counter}-{k}"),
                "eventType": if k % 3 == 0 { "view" } else { "click" },
                "itemId": ((counter as usize * batch + k) % world.items as usize + 1).to_string(),
                "sentAt": 1_790_000_000 + counter,
            })
        })
        .collect();
    json!({"trackingId": world.tracking_id, "userId": user, "sessionId": user, "eventList": events})
}

/// `clients` clients send PutEvents of `batch` events for `seconds`.
async fn run_scenario(world: &World, client: &reqwest::Client, name: &str, clients: usize, batch: usize, seconds: u64) -> Result<Scenario> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let requests = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (client, requests, refused) = (client.clone(), requests.clone(), refused.clone());
        let url = format!("{}/events", world.base);
        let bodies: Vec<Value> = (0..64).map(|n| events_body(world, &format!("{name}-{c}-{n}"), batch, 0)).collect();
        tasks.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
            let mut n = 0u64;
            while Instant::now() < deadline {
                // Fresh event ids every call: change the counter in the prepared body.
                let mut body = bodies[(n % 64) as usize].clone();
                for (k, event) in body["eventList"].as_array_mut().expect("list").iter_mut().enumerate() {
                    event["eventId"] = json!(format!("{c}-{n}-{k}"));
                }
                let started = Instant::now();
                let response = client.post(&url).json(&body).send().await;
                match response {
                    Ok(r) if r.status().is_success() => {
                        histogram.record(started.elapsed().as_micros().max(1) as u64).expect("in range");
                        requests.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) if r.status().as_u16() == 429 => {
                        refused.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Ok(r) => return Err(anyhow::anyhow!("PutEvents answered {}: {}", r.status(), r.text().await.unwrap_or_default())),
                    Err(e) => return Err(anyhow::anyhow!("PutEvents failed: {e}")),
                }
                n += 1;
            }
            Ok(histogram)
        }));
    }
    let started = Instant::now();
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    for task in tasks {
        histogram.add(task.await??).expect("same bounds");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let requests = requests.load(Ordering::Relaxed);
    Ok(Scenario {
        name: name.to_string(),
        clients,
        batch,
        seconds: elapsed,
        requests,
        events: requests * batch as u64,
        events_per_second: (requests * batch as u64) as f64 / elapsed,
        refused_429: refused.load(Ordering::Relaxed),
        latency_p50_ms: millis(&histogram, 0.5),
        latency_p99_ms: millis(&histogram, 0.99),
    })
}

#[derive(Debug, Clone, serde::Serialize)]
struct Freshness {
    probes: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// Probes whose very first getRecommendations after the acknowledgement already reflected the event.
    reflected_on_first_read: usize,
}

/// Time from a PutEvents acknowledgement to a getRecommendations that
/// reflects the event, for users with no history (the list must change).
async fn freshness(world: &World, client: &reqwest::Client, label: &str, probes: usize) -> Result<Freshness> {
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    let mut first_read = 0;
    let recommendations = |user: String| {
        let url = format!("{}/getRecommendations?campaignArn={}&userId={user}&numResults=10", world.base, world.campaign);
        let client = client.clone();
        async move {
            let body: Value = client.get(url).send().await?.json().await?;
            let items: Vec<String> =
                body["itemList"].as_array().map(|l| l.iter().map(|i| i["itemId"].to_string()).collect()).unwrap_or_default();
            anyhow::Ok(items)
        }
    };
    for probe in 0..probes {
        let user = format!("fresh-{label}-{probe}");
        let before = recommendations(user.clone()).await?;
        let body = json!({
            "trackingId": world.tracking_id, "userId": user, "sessionId": user,
            "eventList": [{"eventId": format!("{user}-probe"), "eventType": "book", "itemId": ((probe * 7) % world.items as usize + 1).to_string(), "sentAt": 1_790_000_000}]
        });
        let response = client.post(format!("{}/events", world.base)).json(&body).send().await?;
        if !response.status().is_success() {
            bail!("a freshness probe was refused: {}", response.text().await.unwrap_or_default());
        }
        let acknowledged = Instant::now();
        let mut reads = 0;
        loop {
            reads += 1;
            if recommendations(user.clone()).await? != before {
                break;
            }
            if acknowledged.elapsed() > Duration::from_secs(5) {
                bail!("an event was not reflected 5 s after its acknowledgement");
            }
        }
        if reads == 1 {
            first_read += 1;
        }
        histogram.record(acknowledged.elapsed().as_micros().max(1) as u64)?;
    }
    Ok(Freshness {
        probes,
        p50_ms: millis(&histogram, 0.5),
        p99_ms: millis(&histogram, 0.99),
        max_ms: histogram.max() as f64 / 1000.0,
        reflected_on_first_read: first_read,
    })
}

pub async fn ingest(args: IngestArgs) -> Result<()> {
    let world = world(&args).await.context("setting up the benchmark's data and server")?;
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    eprintln!("baseline: 1 client, 1 event per call, {} s", args.seconds);
    let baseline = run_scenario(&world, &client, "baseline", 1, 1, args.seconds).await?;
    eprintln!("main: {} clients, {} events per call, {} s, with freshness probes", args.clients, args.batch, args.seconds);
    let main = run_scenario(&world, &client, "main", args.clients, args.batch, args.seconds);
    let probing = async {
        // Probe while the main load runs, so freshness is measured under load.
        tokio::time::sleep(Duration::from_millis(200)).await;
        freshness(&world, &client, "loaded", args.probes).await
    };
    let (main, fresh) = tokio::join!(main, probing);
    let (main, fresh) = (main?, fresh?);
    let idle = freshness(&world, &client, "idle", args.probes.min(100)).await?;
    let stats = world.service.log().stats();

    let ratio = main.events_per_second / baseline.events_per_second.max(1e-9);
    println!("travelrec bench ingest — durability {}, {} partitions", args.durability_name(), stats.partitions.len());
    println!(
        "{:<10} {:>7} {:>6} {:>10} {:>12} {:>9} {:>9} {:>6}",
        "scenario", "clients", "batch", "requests", "events/s", "p50 ms", "p99 ms", "429s"
    );
    for s in [&baseline, &main] {
        println!(
            "{:<10} {:>7} {:>6} {:>10} {:>12.0} {:>9.2} {:>9.2} {:>6}",
            s.name, s.clients, s.batch, s.requests, s.events_per_second, s.latency_p50_ms, s.latency_p99_ms, s.refused_429
        );
    }
    println!("main / baseline events/s: {ratio:.1}×   (log: {} fsyncs, {} write groups)", stats.fsyncs, stats.write_groups);
    println!(
        "freshness (ack → getRecommendations reflects it): under load p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} of {} on the first read); idle p50 {:.2} ms, p99 {:.2} ms",
        fresh.p50_ms, fresh.p99_ms, fresh.max_ms, fresh.reflected_on_first_read, fresh.probes, idle.p50_ms, idle.p99_ms
    );
    if let Some(path) = &args.json {
        let report = json!({
            "benchmark": "ingest",
            "durability": args.durability_name(),
            "scenarios": [baseline, main],
            "ratio_main_to_baseline": ratio,
            "freshness_under_load": fresh,
            "freshness_idle": idle,
            "log": {"fsyncs": stats.fsyncs, "write_groups": stats.write_groups},
        });
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    world.server.stop().await;
    world.service.shutdown().await;
    Ok(())
}

impl IngestArgs {
    fn durability_name(&self) -> &'static str {
        match self.durability {
            crate::DurabilityArg::Fsync => "fsync",
            crate::DurabilityArg::Batch => "batch",
        }
    }
}
