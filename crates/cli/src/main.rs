//! `travelrec`: the one binary. `quickstart` sets up everything and serves;
//! `serve` runs on an existing data directory; `generate`, `import` and
//! `train` do one step each.

mod bench;
mod bench_load;
mod bench_serve;
mod bench_store;
mod progress;
mod quickstart;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use travelrec_service::{Service, ServiceConfig};
use travelrec_store::{ArnBuilder, EmbeddedStore, ImportMode, PostgresStore, Store};

#[derive(Parser)]
#[command(name = "travelrec", version, about = "Self-hosted, near real-time recommendations for travel attractions")]
struct Cli {
    /// Log filter (tracing syntax), e.g. `info` or `travelrec_service=debug`.
    #[arg(long, global = true, env = "TRAVELREC_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate (or load) data, import it, train, deploy, and serve with ready-to-paste curl commands.
    Quickstart(QuickstartArgs),
    /// Serve the API on an existing data directory.
    Serve(ServeArgs),
    /// Write a deterministic synthetic travel data set (CSV, the original layout plus travel columns).
    Generate(GenerateArgs),
    /// Import CSV files (or an event archive folder) into the default dataset group (the server must not be running on the directory).
    Import(ImportArgs),
    /// Train a new version of the default solution (the server must not be running on the directory).
    Train(TrainArgs),
    /// Offline quality on a public data set: every recipe and baseline on the same split, one table.
    Evaluate(EvaluateArgs),
    /// Benchmarks that print their numbers beside a baseline measured in the same run.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Ingestion throughput over HTTP (PutEvents) and freshness (ack → recommendations reflect it).
    Ingest(bench::IngestArgs),
    /// getRecommendations latency per catalogue size: the naive engine path against the
    /// serving path, and what context, filters, promotions and fresh events cost.
    Serve(bench_serve::ServeArgs),
    /// GET requests at a fixed rate (open loop), each timed from when it was due:
    /// the load generator `bench serve` runs in a process of its own.
    Load(bench_load::LoadArgs),
    /// Tracked events written per second by each storage backend (the store
    /// writer's work), the embedded store as the baseline.
    Store(bench_store::StoreBenchArgs),
}

#[derive(Args)]
struct EvaluateArgs {
    /// Data set(s): ml-100k, ml-1m-partial, flickr-toronto, flickr-osaka, flickr-glasgow, themepark, foursquare.
    #[arg(long, required = true, num_args = 1..)]
    dataset: Vec<String>,
    /// stratified-75-25, leave-last-out, next-trip or trajectory.
    #[arg(long, default_value = "leave-last-out")]
    protocol: String,
    /// Number of split seeds (42, 43, ...) averaged over; for `generated`, each seed is also a generated world of its own
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// Where the public data sets are.
    #[arg(long, env = "TRAVELREC_DATASETS", default_value = "../shared/datasets")]
    datasets_dir: PathBuf,
    /// Also run travelrec with hyperparameter search (on a validation split of the training part).
    #[arg(long)]
    hpo: bool,
    /// Skip the Python `implicit` baselines.
    #[arg(long)]
    no_implicit: bool,
    /// The implicit baseline script (installed with scripts/install-baselines.sh).
    #[arg(long, default_value = "scripts/implicit_baseline.py")]
    implicit_script: PathBuf,
    /// Evaluate at most this many test users per split (random).
    #[arg(long)]
    max_test_users: Option<usize>,
    /// Also write the results as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Overrides one of travelrec's hyperparameters, `key=value` (repeatable),
    /// e.g. `--set ease_neighbours=256`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(Args, Clone)]
pub(crate) struct StoreArgs {
    /// Where travelrec keeps its resources, data and models.
    #[arg(long, env = "TRAVELREC_DATA_DIR", default_value = "travelrec-data")]
    data_dir: PathBuf,
    /// Region in ARNs (clients of the managed service see familiar ARNs).
    #[arg(long, env = "TRAVELREC_REGION", default_value = "local")]
    region: String,
    /// Account id in ARNs.
    #[arg(long, env = "TRAVELREC_ACCOUNT", default_value = "000000000000")]
    account: String,
    /// When an event is acknowledged: `fsync` (after it is on disk; the default) or
    /// `batch` (after it is written; the disk is synced every 100 ms).
    #[arg(long, env = "TRAVELREC_DURABILITY", value_enum, default_value = "fsync")]
    durability: DurabilityArg,
    /// Shards of the event log (fixed when the data directory is created).
    #[arg(long, env = "TRAVELREC_PARTITIONS", default_value_t = 4)]
    partitions: u32,
    /// Days the event log keeps events its consumers have processed.
    #[arg(long, env = "TRAVELREC_LOG_RETENTION_DAYS", default_value_t = 7)]
    log_retention_days: u64,
    /// How often archive files are closed (seconds).
    #[arg(long, env = "TRAVELREC_ARCHIVE_FLUSH_SECONDS", default_value_t = 60)]
    archive_flush_seconds: u64,
    /// Keep resources, dataset rows, tracked events and models in PostgreSQL
    /// (e.g. postgres://travelrec@db.internal:5432/travelrec) instead of the
    /// data directory, which then holds the event log and the archive only.
    #[arg(long, env = "TRAVELREC_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// The PostgreSQL schema (created if missing); one process per schema.
    #[arg(long, env = "TRAVELREC_DATABASE_SCHEMA", default_value = "travelrec")]
    database_schema: String,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum DurabilityArg {
    Fsync,
    Batch,
}

#[derive(Args, Clone)]
struct ListenArgs {
    #[arg(long, env = "TRAVELREC_HOST", default_value = "127.0.0.1")]
    host: String,
    /// 0 picks a free port (the chosen one is printed).
    #[arg(long, env = "TRAVELREC_PORT", default_value_t = 8080)]
    port: u16,
    /// Requires an API key on every route but the dashboard's page and health;
    /// this key holds every scope and creates the others (POST /v1/api-keys).
    /// Without it every route is open. Prefer the environment variable: a flag
    /// shows in the process list.
    #[arg(long, env = "TRAVELREC_MASTER_KEY", hide_env_values = true)]
    master_key: Option<String>,
    /// Retrain every ACTIVE campaign's solution this often (hours, fractions
    /// allowed) on everything tracked so far, and swap each new model in
    /// without downtime (as POST /v1/campaigns/{name}/retrain does).
    #[arg(long, env = "TRAVELREC_RETRAIN_EVERY_HOURS")]
    retrain_every_hours: Option<f64>,
}

/// Shortest master key accepted.
const MIN_MASTER_KEY_CHARS: usize = 16;

#[derive(Args)]
struct QuickstartArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    listen: ListenArgs,
    /// A folder with event_data.csv, item_data.csv and user_data.csv (e.g. ../shared/seed-data)
    /// instead of generated demo data.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Size of the generated demo data.
    #[arg(long, default_value_t = 1_000_000)]
    interactions: u64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Set up everything, print the walkthrough, then exit instead of serving.
    #[arg(long)]
    no_serve: bool,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    listen: ListenArgs,
}

#[derive(Args)]
struct GenerateArgs {
    /// Output folder (created if missing).
    #[arg(long, default_value = "travelrec-demo-data")]
    out: PathBuf,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, default_value_t = 1_000_000)]
    interactions: u64,
    /// Defaults to one user per 20 interactions.
    #[arg(long)]
    users: Option<u32>,
    #[arg(long, default_value_t = 100)]
    items_per_city: u32,
    /// How many of the 14 built-in cities to use.
    #[arg(long, default_value_t = 14)]
    cities: usize,
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Full,
    Incremental,
}

#[derive(Args)]
struct ImportArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[arg(long)]
    interactions: Option<PathBuf>,
    #[arg(long)]
    items: Option<PathBuf>,
    #[arg(long)]
    users: Option<PathBuf>,
    /// An event archive (`<data-dir>/archive`, a day or hour folder of it, or one .jsonl.zst file),
    /// imported as interactions.
    #[arg(long)]
    archive: Option<PathBuf>,
    /// `full` replaces the dataset's rows, `incremental` adds to them.
    #[arg(long, value_enum, default_value = "full")]
    mode: Mode,
}

#[derive(Args)]
struct TrainArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Version name; defaults to the next free `vN`.
    #[arg(long)]
    version: Option<String>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log).context("invalid --log filter")?)
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let outcome = runtime.block_on(async move {
        match cli.command {
            Command::Quickstart(args) => quickstart::run(args).await,
            Command::Serve(args) => serve(args).await,
            Command::Generate(args) => generate(args),
            Command::Import(args) => import(args).await,
            Command::Train(args) => train(args).await,
            Command::Evaluate(args) => evaluate(args),
            Command::Bench(BenchCommand::Ingest(args)) => bench::ingest(args).await,
            Command::Bench(BenchCommand::Serve(args)) => bench_serve::serve(args).await,
            Command::Bench(BenchCommand::Load(args)) => bench_load::run(args),
            Command::Bench(BenchCommand::Store(args)) => bench_store::run(args).await,
        }
    });
    // A training job still running when the server stops is not waited for
    // (dropping the runtime would wait for its thread): the next start marks
    // it interrupted, to be started again.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    outcome
}

async fn open_service(args: &StoreArgs) -> Result<Service> {
    let store: Arc<dyn Store> = match &args.database_url {
        Some(url) => Arc::new(PostgresStore::connect_exclusive(url, &args.database_schema).await?),
        None => Arc::new(EmbeddedStore::open(&args.data_dir)?),
    };
    let log_config = travelrec_stream::LogConfig {
        partitions: args.partitions,
        durability: match args.durability {
            DurabilityArg::Fsync => travelrec_stream::Durability::Fsync,
            DurabilityArg::Batch => travelrec_stream::Durability::Batch { interval: std::time::Duration::from_millis(100) },
        },
        retention: travelrec_stream::Retention {
            max_age: Some(std::time::Duration::from_secs(args.log_retention_days * 86_400)),
            max_bytes_per_partition: None,
        },
        ..travelrec_stream::LogConfig::default()
    };
    let log = travelrec_stream::EventLog::open(&args.data_dir.join("log"), log_config).await?;
    let config = ServiceConfig {
        arns: ArnBuilder { region: args.region.clone(), account: args.account.clone() },
        archive_dir: Some(args.data_dir.join("archive")),
        archive_flush_interval: std::time::Duration::from_secs(args.archive_flush_seconds.max(1)),
        ..ServiceConfig::default()
    };
    Ok(Service::start(store, log, config).await?)
}

async fn bind(listen: &ListenArgs) -> Result<tokio::net::TcpListener> {
    if let Some(key) = &listen.master_key
        && key.chars().count() < MIN_MASTER_KEY_CHARS
    {
        bail!("the master key must be at least {MIN_MASTER_KEY_CHARS} characters (it has {})", key.chars().count());
    }
    let address: SocketAddr =
        format!("{}:{}", listen.host, listen.port).parse().with_context(|| format!("`{}` is not an IP address", listen.host))?;
    tokio::net::TcpListener::bind(address).await.with_context(|| {
        format!(
            "cannot listen on {address}: is another server using port {}? pass --port to choose another (0 picks a free one)",
            listen.port
        )
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("can listen for SIGTERM");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}

async fn run_server(service: Service, listener: tokio::net::TcpListener, listen: &ListenArgs) -> Result<()> {
    let address = listener.local_addr()?;
    println!("travelrec listening on http://{address}");
    match &listen.master_key {
        Some(_) => tracing::info!("API keys required (a master key is set)"),
        None if !address.ip().is_loopback() => {
            tracing::warn!("every route is open to the network on {address}: set TRAVELREC_MASTER_KEY to require API keys")
        }
        None => {}
    }
    if let Some(hours) = listen.retrain_every_hours {
        if !(hours.is_finite() && hours > 0.0) {
            bail!("--retrain-every-hours must be a positive number of hours, got {hours}");
        }
        tokio::spawn(retrain_periodically(service.clone(), std::time::Duration::from_secs_f64(hours * 3600.0)));
    }
    let options = travelrec_server::ServerOptions { master_key: listen.master_key.clone() };
    travelrec_server::serve(listener, service.clone(), options, shutdown_signal()).await?;
    // Let the log's consumers write out what they hold (the archive is flushed).
    service.shutdown().await;
    Ok(())
}

/// Retrains every ACTIVE campaign each `period`: one new version per
/// solution, shared by the campaigns that serve it.
async fn retrain_periodically(service: Service, period: std::time::Duration) {
    loop {
        tokio::time::sleep(period).await;
        match service.retrain_active_campaigns().await {
            Ok(versions) => {
                for version in versions {
                    tracing::info!(version = %version.solution_version_arn, "scheduled retraining started")
                }
            }
            Err(e) => tracing::warn!("scheduled retraining could not list the campaigns: {e}"),
        }
    }
}

async fn serve(args: ServeArgs) -> Result<()> {
    let service = open_service(&args.store).await?;
    service.ensure_default_resources().await?;
    let listener = bind(&args.listen).await?;
    run_server(service, listener, &args.listen).await
}

fn generate(args: GenerateArgs) -> Result<()> {
    let config = travelrec_datagen::GeneratorConfig {
        seed: args.seed,
        interactions: args.interactions,
        users: args.users.unwrap_or_else(|| (args.interactions / 20).max(1) as u32),
        items_per_city: args.items_per_city,
        cities: args.cities,
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let summary = travelrec_datagen::generate(&config, &args.out)?;
    println!(
        "wrote {} interactions ({} of {} users active), {} attractions and {} local events to {} in {:.1}s",
        summary.interactions,
        summary.users_with_interactions,
        summary.users,
        summary.items,
        summary.local_events,
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn import(args: ImportArgs) -> Result<()> {
    if args.interactions.is_none() && args.items.is_none() && args.users.is_none() && args.archive.is_none() {
        bail!("nothing to import: pass --interactions, --items and/or --users with CSV files, or --archive");
    }
    let service = open_service(&args.store).await?;
    let defaults = service.ensure_default_resources().await?;
    let mode = match args.mode {
        Mode::Full => ImportMode::Full,
        Mode::Incremental => ImportMode::Incremental,
    };
    for (file, dataset) in [
        (&args.items, &defaults.items_dataset_arn),
        (&args.users, &defaults.users_dataset_arn),
        (&args.interactions, &defaults.interactions_dataset_arn),
        (&args.archive, &defaults.interactions_dataset_arn),
    ] {
        if let Some(file) = file {
            progress::import_file(&service, dataset, file, mode).await?;
        }
    }
    service.shutdown().await;
    Ok(())
}

async fn train(args: TrainArgs) -> Result<()> {
    let service = open_service(&args.store).await?;
    let defaults = service.ensure_default_resources().await?;
    let version = match args.version {
        Some(v) => v,
        None => quickstart::next_version_name(&service, &defaults.solution_arn).await?,
    };
    let trained = progress::train_version(&service, &defaults.solution_arn, &version).await?;
    println!("{}", trained.solution_version_arn);
    service.shutdown().await;
    Ok(())
}

fn evaluate(args: EvaluateArgs) -> Result<()> {
    let protocol = travelrec_eval::Protocol::parse(&args.protocol)
        .with_context(|| format!("unknown protocol `{}`; use stratified-75-25, leave-last-out, next-trip or trajectory", args.protocol))?;
    if !args.datasets_dir.is_dir() {
        bail!("{} is not a folder; pass --datasets-dir pointing at the shared public data sets", args.datasets_dir.display());
    }
    let implicit = (!args.no_implicit).then(|| travelrec_eval::ImplicitBaseline {
        script: args.implicit_script.clone(),
        ..travelrec_eval::ImplicitBaseline::new(Path::new("."))
    });
    let mut overrides = std::collections::BTreeMap::new();
    for setting in &args.set {
        let (key, value) = setting.split_once('=').with_context(|| format!("--set {setting}: expected KEY=VALUE"))?;
        overrides.insert(key.trim().to_string(), value.to_string());
    }
    let hyperparameters = travelrec_engine::Hyperparameters::from_map(&overrides)?;
    let config = travelrec_eval::EvalConfig {
        hyperparameters,
        protocol,
        seeds: (0..args.seeds).map(|i| 42 + i).collect(),
        hpo: args.hpo,
        max_test_users: args.max_test_users,
        implicit,
    };
    let mut reports = Vec::new();
    for name in &args.dataset {
        let started = std::time::Instant::now();
        let dataset = travelrec_eval::load(name, &args.datasets_dir)?;
        eprintln!("loaded {name} in {:.1}s", started.elapsed().as_secs_f64());
        let report = travelrec_eval::evaluate(&dataset, &config, &|line| eprintln!("{line}"));
        println!("{}", report.table());
        reports.push(report);
    }
    if let Some(path) = args.json {
        std::fs::write(&path, serde_json::to_string_pretty(&reports)?).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// A path shown relative to the current directory when it is inside it.
fn display_path(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(|p| p.display().to_string()))
        .unwrap_or_else(|| path.display().to_string())
}
