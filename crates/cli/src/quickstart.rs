//! `travelrec quickstart`: from nothing to a serving campaign in one command,
//! reusing whatever an earlier run left in the data directory.

use crate::progress;
use anyhow::{Result, bail};
use std::path::{Path, PathBuf};
use travelrec_engine::Model;
use travelrec_service::Service;
use travelrec_store::{Campaign, EventTracker, ImportMode, SolutionVersion, Status};

const CAMPAIGN: &str = "my-campaign";
const TRACKER: &str = "interactions-tracker";
const FILES: [&str; 3] = [travelrec_datagen::ITEMS_FILE, travelrec_datagen::USERS_FILE, travelrec_datagen::INTERACTIONS_FILE];

pub async fn run(args: crate::QuickstartArgs) -> Result<()> {
    let service = crate::open_service(&args.store).await?;
    let defaults = service.ensure_default_resources().await?;

    // Data: imported once; a later quickstart keeps what is there.
    if service.store().row_count(&defaults.interactions_dataset_arn).await? == 0 {
        let folder = match &args.data {
            Some(folder) => folder.clone(),
            None => demo_data(&args.store.data_dir, args.interactions, args.seed)?,
        };
        let missing: Vec<&str> = FILES.iter().copied().filter(|f| !folder.join(f).is_file()).collect();
        if !missing.is_empty() {
            bail!(
                "{} has no {}; --data needs a folder with {} (the original demo layout)",
                folder.display(),
                missing.join(", "),
                FILES.join(", ")
            );
        }
        for (file, dataset) in
            FILES.iter().zip([&defaults.items_dataset_arn, &defaults.users_dataset_arn, &defaults.interactions_dataset_arn])
        {
            progress::import_file(&service, dataset, &folder.join(file), ImportMode::Full).await?;
        }
        // Local events (festivals, markets) are optional: the original layout has none.
        let local_events = folder.join(travelrec_datagen::LOCAL_EVENTS_FILE);
        if local_events.is_file() {
            progress::import_file(&service, &defaults.local_events_dataset_arn, &local_events, ImportMode::Full).await?;
        }
    } else {
        println!("reusing the data already imported in {}", crate::display_path(&args.store.data_dir));
    }

    // Model: the newest ACTIVE version of the default solution that this
    // build can load, or a new one (a data directory from an older travelrec
    // holds snapshots of an older format).
    let versions: Vec<SolutionVersion> = service.list().await?;
    let newest_active = versions
        .into_iter()
        .filter(|v| v.solution_arn == defaults.solution_arn && v.lifecycle.status == Status::Active)
        .max_by_key(|v| v.lifecycle.creation_date_time);
    let reusable = match newest_active {
        Some(v) => match service.store().get_model(&v.solution_version_arn).await?.map(|bytes| Model::check_snapshot_format(&bytes)) {
            Some(Ok(())) => Some(v),
            Some(Err(e)) => {
                println!("solution version {} cannot be served by this build ({e}); training a new one", v.solution_version_arn);
                None
            }
            None => None,
        },
        None => None,
    };
    let version = match reusable {
        Some(v) => {
            println!("reusing solution version {}", v.solution_version_arn);
            v
        }
        None => {
            let name = next_version_name(&service, &defaults.solution_arn).await?;
            progress::train_version(&service, &defaults.solution_arn, &name).await?
        }
    };

    let campaign_arn = service.config().arns.arn(travelrec_store::ResourceKind::Campaign, CAMPAIGN);
    let campaign = match service.describe::<Campaign>(&campaign_arn).await {
        Ok(c) if c.lifecycle.status == Status::Active => c,
        // The demo campaign could not deploy (its model unreadable, say):
        // deployed again on the version chosen above.
        Ok(c) if c.lifecycle.status == Status::CreateFailed => {
            let reason = c.lifecycle.failure_reason.unwrap_or_default();
            println!("campaign {CAMPAIGN} is CREATE FAILED ({reason}); deploying it again");
            service.delete_campaign(&campaign_arn).await?;
            for _ in 0..200 {
                if service.describe::<Campaign>(&campaign_arn).await.is_err() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            progress::deploy(&service, CAMPAIGN, &version.solution_version_arn).await?
        }
        Ok(c) => bail!(
            "campaign {CAMPAIGN} exists but is {}; wait for it, or delete it (DELETE /v1/campaigns/{CAMPAIGN}), and run quickstart again",
            c.lifecycle.status
        ),
        Err(_) => progress::deploy(&service, CAMPAIGN, &version.solution_version_arn).await?,
    };
    let tracker = match service.list::<EventTracker>().await?.into_iter().find(|t| t.name == TRACKER) {
        Some(t) => t,
        None => service.create_event_tracker(TRACKER, &defaults.dataset_group_arn).await?,
    };

    let listener = if args.no_serve { None } else { Some(crate::bind(&args.listen).await?) };
    let base = match &listener {
        Some(l) => format!("http://{}", l.local_addr()?),
        None => format!("http://{}:{}", args.listen.host, args.listen.port),
    };
    print_walkthrough(&base, &defaults.solution_arn, &defaults.dataset_group_arn, &campaign, &tracker);
    if args.listen.master_key.is_some() {
        println!(
            "API keys are required (a master key is set): add -H \"Authorization: Bearer $TRAVELREC_MASTER_KEY\" to the calls above,\n\
             or create narrower keys: curl -X POST {base}/v1/api-keys -H \"Authorization: Bearer $TRAVELREC_MASTER_KEY\" -d '{{\"name\": \"app\", \"scopes\": [\"recommend\", \"track\"]}}'\n"
        );
    }
    match listener {
        Some(listener) => crate::run_server(service, listener, &args.listen).await,
        None => {
            service.shutdown().await;
            Ok(())
        }
    }
}

/// Generates the demo data into the data directory once.
fn demo_data(data_dir: &Path, interactions: u64, seed: u64) -> Result<PathBuf> {
    let folder = data_dir.join("demo-data");
    if FILES.iter().chain([&travelrec_datagen::LOCAL_EVENTS_FILE]).all(|f| folder.join(f).is_file()) {
        return Ok(folder);
    }
    let config =
        travelrec_datagen::GeneratorConfig { seed, interactions, users: (interactions / 20).max(100) as u32, ..Default::default() };
    let started = std::time::Instant::now();
    let summary = travelrec_datagen::generate(&config, &folder)?;
    println!(
        "generated {} interactions, {} attractions in {} cities and {} local events in {:.1}s ({})",
        summary.interactions,
        summary.items,
        config.cities,
        summary.local_events,
        started.elapsed().as_secs_f64(),
        crate::display_path(&folder)
    );
    Ok(folder)
}

/// `v0`, `v1`, ...: the first name no version of the solution has.
pub async fn next_version_name(service: &Service, solution_arn: &str) -> Result<String> {
    let taken: Vec<String> =
        service.list::<SolutionVersion>().await?.into_iter().filter(|v| v.solution_arn == solution_arn).map(|v| v.name).collect();
    Ok((0..).map(|i| format!("v{i}")).find(|n| !taken.contains(n)).expect("some name is free"))
}

fn print_walkthrough(base: &str, solution_arn: &str, group_arn: &str, campaign: &Campaign, tracker: &EventTracker) {
    let c = &campaign.campaign_arn;
    let t = &tracker.tracking_id;
    println!(
        r#"
travelrec is ready.
  dataset group     {group_arn}
  solution          {solution_arn}
  solution version  {version}
  campaign          {c}
  event tracker     {tracker_arn}
  trackingId        {t}

Dashboard (behaviour, latency, click-through): {base}/dashboard

The original API (also under {base}/prod/...):

  # recommendations for user 429
  curl "{base}/getRecommendations?campaignArn={c}&userId=429&numResults=5"

  # ... for the same user standing in Lisbon in July (context: LOCATION, CITY, DATE, DEVICE)
  curl "{base}/getRecommendations?campaignArn={c}&userId=429&numResults=5&CITY=Lisbon&DATE=2026-07-14"

  # user 429 clicked attraction 185 three times: the next recommendations change at once
  curl -X POST {base}/data -d '{{"stream-name": "my-stream", "Data": {{"userId": "429", "interactions": 3, "itemId": "185", "trackingId": "{t}", "eventType": "click", "dateFrom": "2022-01-01", "dateTo": "2023-04-05"}}, "PartitionKey": "429"}}'
  curl "{base}/getRecommendations?campaignArn={c}&userId=429&numResults=5"

  # train a new version, watch it, deploy it
  curl -X POST {base}/solutionVersion -d '{{"solutionArn": "{solution_arn}", "version": "v-next"}}'
  curl -X POST {base}/describeSolutionVersion -d '{{"solutionVersionArn": "{solution_arn}/v-next"}}'
  curl -X POST {base}/campaign -d '{{"solutionVersionArn": "{solution_arn}/v-next", "name": "next-campaign"}}'
  curl -X POST {base}/describeCampaign -d '{{"campaignArn": "{next_campaign}"}}'

  # a second tracker, and cleaning up
  curl -X POST {base}/eventTracker -d '{{"name": "second-tracker", "datasetGroupArn": "{group_arn}"}}'
  curl -X DELETE {base}/deleteResources -d '{{"campaignArn": "{next_campaign}", "eventTrackerArn": "<eventTrackerArn from the call above>"}}'

Everything with full descriptions: curl {base}/v1/campaigns   (and /v1/solution-versions, /v1/dataset-import-jobs, ...)
"#,
        version = campaign.solution_version_arn,
        tracker_arn = tracker.event_tracker_arn,
        next_campaign = c.replace(CAMPAIGN, "next-campaign"),
    );
}
