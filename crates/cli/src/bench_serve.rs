//! `travelrec bench serve`: how long getRecommendations takes, per catalogue
//! size, against baselines measured in the same run.
//!
//! Per size it generates data, imports it, trains the default solution and
//! deploys it, then measures in-process (no HTTP):
//! - the engine alone: the naive path (every item scored, the whole
//!   catalogue sorted) against the serving path (`Model::query`: partial
//!   top-k, exploration, softmax);
//! - the whole service call (`Service::get_recommendations`) for a warm
//!   user, a user with fresh events to fold in, and with context, a filter,
//!   both, and a promotion — each as a ratio to the plain call, which is
//!   what context and filters cost.
//!
//! Then over HTTP on loopback: the maximum throughput of the original
//! `/getRecommendations` route measured by `wrk` (a separate process; skipped
//! with a note when it is not installed), and the latency at a fixed rate of
//! half that maximum from an open-loop client (`bench load`) in a process of
//! its own (latency counted from each request's scheduled time, so a stall is
//! not hidden). Memory: the
//! process's resident size and the bytes per user of real-time state.
//!
//! Absolute times on a noisy 2-core machine move from run to run; the ratios
//! are what to compare.

use anyhow::{Result, bail};
use hdrhistogram::Histogram;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;
use travelrec_engine::{Collaborative, Context, Model, Query};
use travelrec_service::{NewEvent, PromotionRequest, RecommendationRequest, Service};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Catalogue sizes (attractions), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    items: Vec<u32>,
    /// Interactions generated per attraction.
    #[arg(long, default_value_t = 50)]
    interactions_per_item: u64,
    /// Requests measured per scenario.
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    /// Seconds of each HTTP measurement (0 skips HTTP).
    #[arg(long, default_value_t = 5)]
    http_seconds: u64,
    /// Open connections of the maximum-throughput run.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Skip the approximations' comparison with the exact model (which
    /// trains a second model: half the run at 10,000 items).
    #[arg(long)]
    no_approximation: bool,
    /// Also write the results as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Clone, serde::Serialize)]
struct HttpRow {
    items: u32,
    /// From wrk: requests/s with `connections` connections, and its latencies.
    max_requests_per_second: f64,
    max_p50_ms: f64,
    max_p99_ms: f64,
    /// Open loop at half the maximum, from `bench load` in its own process.
    fixed_rate: f64,
    fixed_achieved_rate: f64,
    fixed_p50_ms: f64,
    fixed_p99_ms: f64,
    fixed_errors: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
struct MemoryRow {
    items: u32,
    resident_mib: Option<f64>,
    realtime_users: usize,
    realtime_events: usize,
    realtime_bytes_per_user: f64,
}

/// An approximate collaborative model against the exact one: the pruned
/// EASE (each item's strongest weights only) or ALS scored from bfloat16
/// factors; how much of the exact top 25 it keeps, and how fast.
#[derive(Debug, Clone, serde::Serialize)]
struct ApproximationRow {
    items: u32,
    /// What is approximated, e.g. "EASE, 512 weights per item" or "ALS, bfloat16 factors".
    variant: String,
    /// Share of the exact model's top 25 that this one also returns.
    recall_at_25: f64,
    p50_us: f64,
    p99_us: f64,
    /// Median over the exact model's median.
    ratio: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
struct Row {
    items: u32,
    scenario: String,
    p50_us: f64,
    p99_us: f64,
    /// Median over the size's baseline median.
    ratio: f64,
    baseline: String,
}

fn micros(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds")
}

/// Says which measurement is running (a profiler can then be attached to the right one).
fn announce(label: &str, count: usize) {
    println!("  timing {label} ({count} calls)");
}

/// Times `run` for `count` calls (after a short warm-up), in nanoseconds.
fn time_sync(label: &str, count: usize, mut run: impl FnMut(usize)) -> Histogram<u64> {
    announce(label, count);
    // Warmed on calls of their own, so no measured call finds what a warm-up call kept.
    (count..count + count.min(50)).for_each(&mut run);
    let mut h = histogram();
    for i in 0..count {
        let started = Instant::now();
        run(i);
        h.record(started.elapsed().as_nanos().max(1) as u64).expect("in bounds");
    }
    h
}

/// Call `i` of a traveller on the move: about 10 m on from the call
/// before, north-west (a 30 km walk over 3,000 calls), never a place asked
/// about before.
fn walked(latitude: f64, longitude: f64, i: usize) -> (f64, f64) {
    (latitude + i as f64 * 7e-5, longitude - i as f64 * 9e-5)
}

/// Call `i` from anywhere within about 10 km of the place: travellers all
/// over a city, each call somewhere new (what nearness keeps per place
/// rarely helps).
fn scattered_in_city(latitude: f64, longitude: f64, i: usize) -> (f64, f64) {
    let hash = |salt: u64| {
        let x = (i as u64 ^ salt).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        ((x ^ (x >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9) >> 11) as f64 / (1u64 << 53) as f64
    };
    (latitude + 0.18 * (hash(1) - 0.5), longitude + 0.28 * (hash(2) - 0.5))
}

/// The naive path: every item scored into a fresh vector, the whole catalogue sorted.
fn naive_top(model: &Model, history: &[travelrec_engine::HistoryEvent], context: &Context, k: usize) -> Vec<u32> {
    let mut scores = vec![0f32; model.items.len()];
    model.raw_scores(history, &[], context, &mut scores);
    let mut order: Vec<u32> = (0..scores.len() as u32).collect();
    order.sort_by(|&a, &b| scores[b as usize].total_cmp(&scores[a as usize]).then(a.cmp(&b)));
    order.truncate(k);
    order
}

struct Deployed {
    service: Service,
    model: Model,
    campaign: String,
    tracking_id: String,
    group: String,
    users: Vec<String>,
    city: String,
    location: String,
    _dir: tempfile::TempDir,
}

async fn deploy(items: u32, interactions_per_item: u64) -> Result<Deployed> {
    let dir = tempfile::tempdir()?;
    let cities = 14u32.min(items.div_ceil(20).max(1));
    let interactions = items as u64 * interactions_per_item;
    let config = travelrec_datagen::GeneratorConfig {
        interactions,
        users: (interactions / 20).max(100) as u32,
        items_per_city: items / cities,
        cities: cities as usize,
        ..Default::default()
    };
    let crate::bench::Deployment { service, defaults, version, campaign, tracker } =
        crate::bench::deploy_generated(dir.path(), &config, crate::DurabilityArg::Batch, 2).await?;
    let Some(bytes) = service.store().get_model(&version.solution_version_arn).await? else {
        bail!("the trained model is missing from the store");
    };
    let model = Model::from_bytes(&bytes)?;
    let users: Vec<String> = (0..model.histories.users() as u32)
        .filter(|&u| !model.histories.get_index(u).is_empty())
        .take(1000)
        .map(|u| model.histories.user_id(u).to_string())
        .collect();
    let first = csv::Reader::from_path(dir.path().join("bench-data").join(travelrec_datagen::ITEMS_FILE))?.records().next().transpose()?;
    let Some(first) = first else { bail!("no items generated") };
    Ok(Deployed {
        service,
        model,
        campaign: campaign.campaign_arn,
        tracking_id: tracker.tracking_id,
        group: defaults.dataset_group_arn,
        users,
        city: first[4].to_string(),
        location: format!("{},{}", &first[5], &first[6]),
        _dir: dir,
    })
}

/// Prints the signals the model blends, and how many of the bench's users
/// the context's LOCATION moves on (they are scored with the moved-on blend,
/// whose signals can differ): what a context call computes beyond a plain one.
fn describe_blends(model: &Model, users: &[String], context: &Context) {
    let signals = |blend: &travelrec_engine::Blend| {
        travelrec_engine::Feature::ALL
            .into_iter()
            .filter(|&f| blend.get(f) != 0.0)
            .map(|f| format!("{} {:.2}", f.name(), blend.get(f)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("  blend: {}", signals(&model.blend));
    if let Some(moved_on) = &model.moved_on_blend {
        let moved = users.iter().filter(|u| model.moved_on(&model.profile(model.histories.get(u), &[]), context)).count();
        println!("  moved-on blend (for {moved} of the {} users in the context calls): {}", users.len(), signals(moved_on));
    }
}

/// A named service call, built from a user index (which user; the same
/// indices for every scenario) and the round (how far a traveller has walked).
type Scenario<'a> = (&'a str, Box<dyn Fn(usize, usize) -> RecommendationRequest + 'a>);

/// Times every scenario's service call, taking turns request by request, so
/// that whatever else the machine does in the meantime falls on all of them
/// alike and their ratios to the first stay fair.
///
/// Every scenario asks the same users, as many times each: the timed calls
/// cycle over `min(users, count)` user indices (whole cycles when `count` is
/// a multiple of that), each scenario from its own offset in the cycle, so
/// that within a round the scenarios ask different users and a user's data
/// is never in cache because the previous scenario just asked for them.
/// (An index per call would give each scenario its own share of the users,
/// and its ratio would then also hold how their histories differ.)
async fn time_service_scenarios(d: &Deployed, count: usize, scenarios: &[Scenario<'_>]) -> Result<Vec<Histogram<u64>>> {
    announce(&format!("{} service scenarios, in turn", scenarios.len()), count);
    const WARM_UP: usize = 50;
    let cycle = d.users.len().min(count).max(1);
    let offset = (cycle / scenarios.len()).max(1);
    let mut histograms: Vec<Histogram<u64>> = scenarios.iter().map(|_| histogram()).collect();
    for i in 0..count + WARM_UP {
        for (j, ((_, request), h)) in scenarios.iter().zip(&mut histograms).enumerate() {
            // The timed rounds (from WARM_UP on) start the cycle.
            let request = request((i + cycle - WARM_UP % cycle + j * offset) % cycle, i);
            let started = Instant::now();
            let result = d.service.get_recommendations(&request).await?;
            let elapsed = started.elapsed().as_nanos().max(1) as u64;
            std::hint::black_box(result);
            if i >= WARM_UP {
                h.record(elapsed)?;
            }
        }
    }
    Ok(histograms)
}

/// The deployed model's approximation against the exact model: EASE pruned
/// to several sizes against every weight (the exact model trained beside the
/// deployed one, same data and defaults otherwise), or ALS scored from
/// bfloat16 factors (`als_half_precision`) against `f32` ones. Empty for
/// other models.
async fn measure_approximation(d: &Deployed, items: u32, count: usize) -> Result<Vec<ApproximationRow>> {
    match &d.model.components.collaborative {
        Collaborative::Ease(served) if served.row_len() < d.model.items.len() => measure_pruned_ease(d, items, count).await,
        Collaborative::Als(_) => {
            let (mut exact, mut half) = (d.model.clone(), d.model.clone());
            exact.hyperparameters.als_half_precision = false;
            half.hyperparameters.als_half_precision = true;
            let variants = [("ALS, f32 factors (exact)".to_string(), exact), ("ALS, bfloat16 factors".to_string(), half)];
            Ok(compare_with_exact(d, items, count, &variants))
        }
        _ => Ok(Vec::new()),
    }
}

async fn measure_pruned_ease(d: &Deployed, items: u32, count: usize) -> Result<Vec<ApproximationRow>> {
    println!("— {items} attractions: training the exact model (every item-to-item weight) to measure the pruned one against");
    let solution = d
        .service
        .create_solution("bench-exact", &d.group, "user-personalization", [("ease_neighbours".to_string(), "0".to_string())].into())
        .await?;
    let version = crate::progress::train_version(&d.service, &solution.solution_arn, "exact").await?;
    let Some(bytes) = d.service.store().get_model(&version.solution_version_arn).await? else {
        bail!("the exact model is missing from the store");
    };
    let exact = Model::from_bytes(&bytes)?;
    let Collaborative::Ease(exact_ease) = &exact.components.collaborative else { bail!("the exact model is not EASE") };
    let catalogue = exact.items.len();
    let mut sizes = vec![catalogue, 1000, 512, 256, 128];
    sizes.retain(|&keep| keep <= catalogue);
    sizes.dedup();
    let variants: Vec<(String, Model)> = sizes
        .into_iter()
        .map(|keep| {
            let mut model = exact.clone();
            model.components.collaborative = Collaborative::Ease(exact_ease.pruned(keep));
            let name =
                if keep == catalogue { format!("EASE, all {keep} weights (exact)") } else { format!("EASE, {keep} weights per item") };
            (name, model)
        })
        .collect();
    Ok(compare_with_exact(d, items, count, &variants))
}

/// Recall of the first variant's top 25 (the exact one) and latency, for each variant.
fn compare_with_exact(d: &Deployed, items: u32, count: usize, variants: &[(String, Model)]) -> Vec<ApproximationRow> {
    let users = d.users.len().min(count);
    let user = |i: usize| d.users[i % d.users.len()].as_str();
    let top = |model: &Model, i: usize| -> Vec<u32> {
        model.recommend(model.histories.get(user(i)), &[], 25).into_iter().map(|s| s.item).collect()
    };
    let exact_top: Vec<Vec<u32>> = (0..users).map(|i| top(&variants[0].1, i)).collect();
    let expected: usize = exact_top.iter().map(Vec::len).sum();
    let mut rows = Vec::new();
    let mut exact_p50 = f64::NAN;
    for (index, (name, model)) in variants.iter().enumerate() {
        let found: usize = (0..users).map(|i| top(model, i).iter().filter(|item| exact_top[i].contains(item)).count()).sum();
        let h = time_sync(&format!("Model::query, {name}"), count, |i| {
            std::hint::black_box(model.query(&Query { history: model.histories.get(user(i)), k: 25, ..Query::default() }));
        });
        if index == 0 {
            exact_p50 = micros(&h, 0.5);
        }
        rows.push(ApproximationRow {
            items,
            variant: name.clone(),
            recall_at_25: found as f64 / expected.max(1) as f64,
            p50_us: micros(&h, 0.5),
            p99_us: micros(&h, 0.99),
            ratio: micros(&h, 0.5) / exact_p50,
        });
    }
    rows
}

async fn measure_size(items: u32, args: &ServeArgs) -> Result<(Vec<Row>, Vec<ApproximationRow>, Option<HttpRow>, MemoryRow)> {
    println!("— {items} attractions: generating, importing, training, deploying");
    let d = deploy(items, args.interactions_per_item).await?;
    let mut rows = Vec::new();
    let count = args.requests;

    // The engine alone.
    let model = &d.model;
    let context = Context::default();
    let history = |i: usize| model.histories.get(&d.users[i % d.users.len()]);
    let naive = time_sync("engine: naive", count, |i| {
        std::hint::black_box(naive_top(model, history(i), &context, 25));
    });
    let served = time_sync("engine: Model::query", count, |i| {
        let query = Query { history: history(i), k: 25, ..Query::default() };
        std::hint::black_box(model.query(&query));
    });
    // The service call's context (as the service reads it), bar the day's local events.
    let context_map: BTreeMap<String, String> =
        [("LOCATION".to_string(), d.location.clone()), ("DATE".to_string(), "2026-07-14".to_string())].into();
    let requested = travelrec_service::context::parse_context(&context_map)?;
    let in_context = Context { location: requested.location, time: requested.time, ..Context::default() };
    let served_in_context = time_sync("engine: Model::query in context", count, |i| {
        let query = Query { history: history(i), k: 25, context: in_context.clone(), ..Query::default() };
        std::hint::black_box(model.query(&query));
    });
    let (latitude, longitude) = in_context.location.expect("the bench's context has a LOCATION");
    let walking = |i: usize| Context { location: Some(walked(latitude, longitude, i)), ..in_context.clone() };
    let scattered = |i: usize| Context { location: Some(scattered_in_city(latitude, longitude, i)), ..in_context.clone() };
    let served_walking = time_sync("engine: Model::query in context, walking on", count, |i| {
        let query = Query { history: history(i), k: 25, context: walking(i), ..Query::default() };
        std::hint::black_box(model.query(&query));
    });
    let served_scattered = time_sync("engine: Model::query in context, anywhere in the city", count, |i| {
        let query = Query { history: history(i), k: 25, context: scattered(i), ..Query::default() };
        std::hint::black_box(model.query(&query));
    });
    describe_blends(model, &d.users, &in_context);
    let engine_base = micros(&naive, 0.5);
    for (name, h) in [
        ("engine: naive (score all, full sort)", &naive),
        ("engine: Model::query", &served),
        ("engine: Model::query + LOCATION, DATE", &served_in_context),
        ("engine: Model::query + LOCATION walking on", &served_walking),
        ("engine: Model::query + LOCATION anywhere in city", &served_scattered),
    ] {
        rows.push(Row {
            items,
            scenario: name.into(),
            p50_us: micros(h, 0.5),
            p99_us: micros(h, 0.99),
            ratio: micros(h, 0.5) / engine_base,
            baseline: "engine naive".into(),
        });
    }

    // The whole service call.
    let booked =
        d.service.create_filter("bench-not-booked", &d.group, "EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN (\"book\")").await?;
    let in_city = d.service.create_filter("bench-in-city", &d.group, "INCLUDE ItemID WHERE Items.CITY IN ($CITY)").await?;
    let base = |user: &str| RecommendationRequest {
        campaign_arn: d.campaign.clone(),
        user_id: Some(user.to_string()),
        num_results: 25,
        ..RecommendationRequest::default()
    };
    // Fresh events: each measured user has just clicked five attractions.
    let fresh_users: Vec<String> = (0..200).map(|u| format!("bench-fresh-{u}")).collect();
    for (u, user) in fresh_users.iter().enumerate() {
        let events = (0..5)
            .map(|k| NewEvent {
                item_id: d.model.item_id(((u * 7 + k * 13) % d.model.items.len()) as u32).to_string(),
                event_type: "click".into(),
                timestamp: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64),
                ..NewEvent::default()
            })
            .collect();
        d.service.track_events(&d.tracking_id, user, None, events).await?;
    }
    let user = |i: usize| d.users[i % d.users.len()].as_str();
    let scenarios: Vec<Scenario> = vec![
        ("service: warm user", Box::new(|i, _| base(user(i)))),
        ("service: fresh events folded in", Box::new(|i, _| base(&fresh_users[i % fresh_users.len()]))),
        ("service: + context (LOCATION, DATE)", Box::new(|i, _| RecommendationRequest { context: context_map.clone(), ..base(user(i)) })),
        (
            "service: + context, LOCATION walking on",
            Box::new(|i, call| {
                let mut context = context_map.clone();
                let (latitude, longitude) = walked(latitude, longitude, call);
                context.insert("LOCATION".into(), format!("{latitude:.6},{longitude:.6}"));
                RecommendationRequest { context, ..base(user(i)) }
            }),
        ),
        (
            "service: + context, LOCATION anywhere in city",
            Box::new(|i, call| {
                let mut context = context_map.clone();
                // Somewhere new on every call (user indices repeat, rounds do not).
                let (latitude, longitude) = scattered_in_city(latitude, longitude, call);
                context.insert("LOCATION".into(), format!("{latitude:.6},{longitude:.6}"));
                RecommendationRequest { context, ..base(user(i)) }
            }),
        ),
        (
            "service: + filter (not booked)",
            Box::new(|i, _| RecommendationRequest { filter_arn: Some(booked.filter_arn.clone()), ..base(user(i)) }),
        ),
        (
            "service: + context + filter",
            Box::new(|i, _| RecommendationRequest {
                context: context_map.clone(),
                filter_arn: Some(booked.filter_arn.clone()),
                ..base(user(i))
            }),
        ),
        (
            "service: + promotion (20 %)",
            Box::new(|i, _| RecommendationRequest {
                promotions: vec![PromotionRequest {
                    name: "city".into(),
                    percent_promoted_items: 20,
                    filter_arn: in_city.filter_arn.clone(),
                    filter_values: [("CITY".to_string(), format!("\"{}\"", d.city))].into(),
                }],
                ..base(user(i))
            }),
        ),
    ];
    let histograms = time_service_scenarios(&d, count, &scenarios).await?;
    let service_base = micros(&histograms[0], 0.5);
    for ((name, _), h) in scenarios.iter().zip(&histograms) {
        rows.push(Row {
            items,
            scenario: name.to_string(),
            p50_us: micros(h, 0.5),
            p99_us: micros(h, 0.99),
            ratio: micros(h, 0.5) / service_base,
            baseline: "service warm user".into(),
        });
    }
    let realtime = d.service.realtime_memory(&d.group);
    let memory = MemoryRow {
        items,
        resident_mib: resident_mib(),
        realtime_users: realtime.users,
        realtime_events: realtime.events,
        realtime_bytes_per_user: realtime.bytes as f64 / realtime.users.max(1) as f64,
    };
    let http = if args.http_seconds > 0 { measure_http(&d, items, args).await? } else { None };
    let approximation = if args.no_approximation { Vec::new() } else { measure_approximation(&d, items, count).await? };
    d.service.shutdown().await;
    Ok((rows, approximation, http, memory))
}

/// `wrk`'s latency line (`99%  3.21ms`) in milliseconds.
fn wrk_millis(text: &str, label: &str) -> Option<f64> {
    let line = text.lines().map(str::trim).find(|l| l.starts_with(label))?;
    let value = line.split_whitespace().nth(1)?;
    let (number, unit) = value.split_at(value.find(|c: char| c.is_ascii_alphabetic())?);
    let number: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => number / 1000.0,
        "ms" => number,
        "s" => number * 1000.0,
        "m" => number * 60_000.0,
        _ => return None,
    })
}

async fn measure_http(d: &Deployed, items: u32, args: &ServeArgs) -> Result<Option<HttpRow>> {
    let server = crate::bench::LoopbackServer::start(&d.service).await?;
    let paths: Vec<String> =
        d.users.iter().take(500).map(|u| format!("/getRecommendations?campaignArn={}&userId={u}&numResults=25", d.campaign)).collect();

    // Maximum throughput: wrk in its own process, cycling through the users.
    let script = tempfile::Builder::new().suffix(".lua").tempfile()?;
    let list: Vec<String> = paths.iter().map(|p| format!("{p:?}")).collect();
    std::fs::write(
        script.path(),
        format!(
            "local paths = {{{}}}\nlocal i = 0\nrequest = function()\n  i = i + 1\n  return wrk.format(\"GET\", paths[(i % #paths) + 1])\nend\n",
            list.join(",")
        ),
    )?;
    println!("  timing HTTP: maximum throughput by wrk ({} connections, {} s)", args.connections, args.http_seconds);
    let mut wrk = std::process::Command::new("wrk");
    wrk.args(["-t1", &format!("-c{}", args.connections), &format!("-d{}s", args.http_seconds), "--latency", "-s"])
        .arg(script.path())
        .arg(&server.base);
    let output = tokio::task::spawn_blocking(move || wrk.output()).await?;
    let result = match output {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("   HTTP: wrk is not installed (apt-get install wrk); skipped");
            None
        }
        Err(e) => return Err(e.into()),
        Ok(output) => {
            let text = String::from_utf8_lossy(&output.stdout).to_string();
            let rps = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .ok_or_else(|| anyhow::anyhow!("wrk printed no Requests/sec: {text}{}", String::from_utf8_lossy(&output.stderr)))?;
            if text.contains("Non-2xx") {
                bail!("wrk saw error responses: {text}");
            }
            let (p50, p99) = (wrk_millis(&text, "50%").unwrap_or(f64::NAN), wrk_millis(&text, "99%").unwrap_or(f64::NAN));
            let rate = (rps / 2.0).max(1.0);
            println!("  timing HTTP: fixed rate of {rate:.0} requests/s ({} s)", args.http_seconds);
            let fixed = crate::bench_load::in_own_process(&server.base, &paths, rate, args.http_seconds).await?;
            Some(HttpRow {
                items,
                max_requests_per_second: rps,
                max_p50_ms: p50,
                max_p99_ms: p99,
                fixed_rate: rate,
                fixed_p50_ms: fixed.p50_ms,
                fixed_p99_ms: fixed.p99_ms,
                fixed_achieved_rate: fixed.achieved_rate,
                fixed_errors: fixed.errors,
            })
        }
    };
    server.stop().await;
    Ok(result)
}

fn resident_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

pub async fn serve(args: ServeArgs) -> Result<()> {
    let (mut rows, mut approximation, mut http, mut memory) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for &items in &args.items {
        let (size_rows, size_approximation, size_http, size_memory) = measure_size(items, &args).await?;
        rows.extend(size_rows);
        approximation.extend(size_approximation);
        http.extend(size_http);
        memory.push(size_memory);
    }
    println!();
    println!("{:>7}  {:<46} {:>10} {:>10} {:>8}", "items", "scenario (in-process)", "p50 µs", "p99 µs", "ratio");
    for r in &rows {
        println!("{:>7}  {:<46} {:>10.1} {:>10.1} {:>7.2}×", r.items, r.scenario, r.p50_us, r.p99_us, r.ratio);
    }
    println!("ratios: engine rows against the naive engine path, service rows against the plain warm-user call (same size, same run)");
    if !approximation.is_empty() {
        println!();
        println!("{:>7}  {:<34} {:>10} {:>10} {:>10} {:>8}", "items", "collaborative model", "recall@25", "p50 µs", "p99 µs", "ratio");
        for a in &approximation {
            println!("{:>7}  {:<34} {:>10.3} {:>10.1} {:>10.1} {:>7.2}×", a.items, a.variant, a.recall_at_25, a.p50_us, a.p99_us, a.ratio);
        }
        println!("approximations against the exact model (first row of each size), same blend; Model::query in-process");
    }
    if !http.is_empty() {
        println!();
        println!(
            "{:>7}  {:>12} {:>9} {:>9}   {:>10} {:>9} {:>9} {:>9} {:>7}",
            "items", "max req/s", "p50 ms", "p99 ms", "fixed req/s", "achieved", "p50 ms", "p99 ms", "errors"
        );
        for h in &http {
            println!(
                "{:>7}  {:>12.0} {:>9.2} {:>9.2}   {:>10.0} {:>9.0} {:>9.2} {:>9.2} {:>7}",
                h.items,
                h.max_requests_per_second,
                h.max_p50_ms,
                h.max_p99_ms,
                h.fixed_rate,
                h.fixed_achieved_rate,
                h.fixed_p50_ms,
                h.fixed_p99_ms,
                h.fixed_errors
            );
        }
        println!(
            "HTTP: GET /getRecommendations (25 items) on loopback; max by wrk ({} connections), fixed rate = half of it, open loop from `bench load` in its own process",
            args.connections
        );
    }
    println!();
    for m in &memory {
        println!(
            "{:>7} items: process resident {} MiB (training leftovers and the bench's own model copy included); real-time state {:.0} bytes per user ({} users, {} events)",
            m.items,
            m.resident_mib.map_or("?".to_string(), |v| format!("{v:.0}")),
            m.realtime_bytes_per_user,
            m.realtime_users,
            m.realtime_events
        );
    }
    if let Some(path) = &args.json {
        let report = json!({"benchmark": "serve", "rows": rows, "approximation": approximation, "http": http, "memory": memory});
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}
