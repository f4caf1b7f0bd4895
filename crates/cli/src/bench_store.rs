//! `travelrec bench store`: how fast each storage backend writes tracked
//! events (the store writer's work), the embedded store as the baseline in
//! the same run.

use anyhow::{Context, Result};
use clap::Args;
use std::time::Instant;
use travelrec_store::{EmbeddedStore, EventPosition, InteractionRow, PostgresStore, Store, TrackedEvent};

#[derive(Args)]
pub struct StoreBenchArgs {
    /// Events written per backend.
    #[arg(long, default_value_t = 51_200)]
    events: u64,
    /// Events per `put_events` call (the store writer's batch).
    #[arg(long, default_value_t = 512)]
    batch: u64,
    /// The PostgreSQL server to measure (a scratch schema is created and dropped).
    #[arg(long, env = "TRAVELREC_DATABASE_URL", hide_env_values = true, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    database_url: String,
}

fn event(i: u64) -> (EventPosition, TrackedEvent) {
    let interaction = InteractionRow {
        user_id: format!("user-{}", i % 5_000),
        item_id: format!("{}", i % 1_400),
        timestamp: 1_790_000_000 + i as i64,
        event_type: "click".into(),
        event_value: None,
        session_id: Some(format!("s-{}", i / 20)),
        fields: vec![("DEVICE".into(), "mobile".into())],
    };
    let event = TrackedEvent {
        interaction,
        received_at: 1_790_000_000,
        event_id: format!("bench-{i}"),
        recommendation_id: None,
        impression: vec![],
    };
    (EventPosition { partition: (i % 4) as u32, sequence: i / 4, index: 0 }, event)
}

/// Events per second writing `args.events` events in batches.
async fn events_per_second(store: &dyn Store, args: &StoreBenchArgs) -> Result<f64> {
    let started = Instant::now();
    let mut next = 0;
    while next < args.events {
        let end = (next + args.batch).min(args.events);
        store.put_events("bench-group", (next..end).map(event).collect()).await?;
        next = end;
    }
    Ok(args.events as f64 / started.elapsed().as_secs_f64())
}

pub async fn run(args: StoreBenchArgs) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let embedded = events_per_second(&EmbeddedStore::open(dir.path())?, &args).await?;
    let schema = format!("bench_store_{}", std::process::id());
    let postgres = PostgresStore::connect(&args.database_url, &schema).await.context("the PostgreSQL backend")?;
    let measured = events_per_second(&postgres, &args).await;
    postgres.drop_schema(&schema).await?;
    let postgres = measured?;
    println!("backend      events/s   ratio   ({} events in batches of {})", args.events, args.batch);
    println!("embedded   {embedded:>10.0}   1.00×");
    println!("postgres   {postgres:>10.0}   {:.2}×", postgres / embedded);
    println!("ratio: against the embedded store, same run");
    Ok(())
}
