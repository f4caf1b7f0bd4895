//! The whole flow through the service layer, on the embedded store.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use travelrec_service::{DataRecord, ErrorKind, NewEvent, Service, ServiceConfig};
use travelrec_store::{Campaign, DatasetImportJob, EmbeddedStore, ImportMode, SolutionVersion, Status, Store};

fn shared(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared").join(path)
}

async fn start(dir: &Path) -> Service {
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir).unwrap());
    let log = travelrec_stream::EventLog::open(&dir.join("log"), Default::default()).await.unwrap();
    let config = ServiceConfig { archive_dir: Some(dir.join("archive")), ..ServiceConfig::default() };
    Service::start(store, log, config).await.unwrap()
}

async fn wait_import(service: &Service, arn: &str) -> DatasetImportJob {
    for _ in 0..600 {
        let job: DatasetImportJob = service.describe(arn).await.unwrap();
        if !job.lifecycle.status.is_creating() {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("import {arn} did not finish");
}

async fn wait_version(service: &Service, arn: &str) -> SolutionVersion {
    for _ in 0..1200 {
        let v: SolutionVersion = service.describe(arn).await.unwrap();
        if !v.lifecycle.status.is_creating() {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("training {arn} did not finish");
}

async fn wait_campaign(service: &Service, arn: &str) -> Campaign {
    for _ in 0..600 {
        let c: Campaign = service.describe(arn).await.unwrap();
        if !c.lifecycle.status.is_creating() {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("campaign {arn} did not deploy");
}

/// Each generated attraction's city, by item id.
fn item_cities(data: &Path) -> std::collections::HashMap<String, String> {
    csv::Reader::from_path(data.join("item_data.csv"))
        .unwrap()
        .records()
        .map(|r| r.unwrap())
        .map(|r| (r[0].to_string(), r[4].to_string()))
        .collect()
}

fn generate(dir: &Path) {
    let config =
        travelrec_datagen::GeneratorConfig { interactions: 30_000, users: 1_500, items_per_city: 15, cities: 8, ..Default::default() };
    travelrec_datagen::generate(&config, dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_train_deploy_track_and_restart() {
    let data = tempfile::tempdir().unwrap();
    generate(data.path());
    let dir = tempfile::tempdir().unwrap();
    let (campaign_arn, before_restart) = {
        let service = start(dir.path()).await;
        let defaults = service.ensure_default_resources().await.unwrap();
        // Idempotent: a second call keeps what exists.
        assert_eq!(service.ensure_default_resources().await.unwrap(), defaults);
        for (name, dataset, file) in [
            ("items", &defaults.items_dataset_arn, "item_data.csv"),
            ("users", &defaults.users_dataset_arn, "user_data.csv"),
            ("interactions", &defaults.interactions_dataset_arn, "event_data.csv"),
        ] {
            let path = data.path().join(file);
            let job = service.create_import_job(name, dataset, path.to_str().unwrap(), ImportMode::Full).await.unwrap();
            let job = wait_import(&service, &job.dataset_import_job_arn).await;
            assert_eq!(job.lifecycle.status, Status::Active, "{:?}", job.lifecycle.failure_reason);
        }
        let version = service.create_solution_version(&defaults.solution_arn, "v0").await.unwrap();
        assert!(version.solution_version_arn.ends_with("solution/my-sol-from-cdk/v0"));
        let err = service.create_campaign("too-early", &version.solution_version_arn).await;
        // Either still training (in use) or already done; never a half-deployed campaign.
        if let Err(e) = err {
            assert_eq!(e.kind, ErrorKind::ResourceInUse);
        }
        let version = wait_version(&service, &version.solution_version_arn).await;
        assert_eq!(version.lifecycle.status, Status::Active, "{:?}", version.lifecycle.failure_reason);
        let campaign = service.create_campaign("my-campaign", &version.solution_version_arn).await.unwrap();
        let campaign = wait_campaign(&service, &campaign.campaign_arn).await;
        assert_eq!(campaign.lifecycle.status, Status::Active);

        let tracker = service.create_event_tracker("interactions-tracker", &defaults.dataset_group_arn).await.unwrap();
        // A user nobody has seen gets popular items.
        let cold = service.recommend(&campaign.campaign_arn, "brand-new-user", 10).await.unwrap();
        assert_eq!(cold.items.len(), 10);
        // Events for that user change the next recommendations at once.
        let result = service
            .put_data(DataRecord {
                stream_name: "my-stream".into(),
                partition_key: Some("3".into()),
                user_id: "brand-new-user".into(),
                item_id: "1".into(),
                tracking_id: tracker.tracking_id.clone(),
                event_type: "book".into(),
                interactions: 3,
                date_from: "2026-01-01".into(),
                date_to: "2026-01-02".into(),
            })
            .await
            .unwrap();
        assert_eq!(result.events, 3);
        let warm = service.recommend(&campaign.campaign_arn, "brand-new-user", 10).await.unwrap();
        assert_ne!(cold.items, warm.items);
        // Item 1 is in the first city; the user's next attractions should be there too.
        let cities: std::collections::HashMap<String, String> = item_cities(data.path());
        let city_of = |id: &str| cities.get(id).cloned();
        let same_city = warm.items.iter().filter(|i| city_of(&i.item_id) == city_of("1")).count();
        assert!(same_city >= 7, "only {same_city} of 10 in the booked attraction's city: {:?}", warm.items);

        // A user with a trained history changes too, even with events dated
        // years back (as the original runbook sends them): they are new information.
        let regular = service.recommend(&campaign.campaign_arn, "7", 10).await.unwrap();
        service
            .put_data(DataRecord {
                stream_name: "my-stream".into(),
                partition_key: None,
                user_id: "7".into(),
                item_id: "100".into(),
                tracking_id: tracker.tracking_id.clone(),
                event_type: "click".into(),
                interactions: 3,
                date_from: "2022-01-01".into(),
                date_to: "2023-04-05".into(),
            })
            .await
            .unwrap();
        let regular_after = service.recommend(&campaign.campaign_arn, "7", 10).await.unwrap();
        assert_ne!(regular.items, regular_after.items);
        let near_100 = regular_after.items.iter().filter(|i| city_of(&i.item_id) == city_of("100")).count();
        assert!(near_100 >= 5, "only {near_100} of 10 near the clicked attraction: {:?}", regular_after.items);

        let untouched = service.recommend(&campaign.campaign_arn, "42", 10).await.unwrap();
        service.shutdown().await;
        (campaign.campaign_arn, (untouched.items, warm.items))
    };
    // A restart serves the same model without retraining, and remembers tracked events.
    let service = start(dir.path()).await;
    let untouched = service.recommend(&campaign_arn, "42", 10).await.unwrap();
    assert_eq!(untouched.items, before_restart.0);
    let warm = service.recommend(&campaign_arn, "brand-new-user", 10).await.unwrap();
    assert_eq!(warm.items, before_restart.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_seed_files_import_as_they_are() {
    let seed = shared("seed-data");
    if !seed.exists() {
        eprintln!("skipped: {} is absent", seed.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let service = start(dir.path()).await;
    let defaults = service.ensure_default_resources().await.unwrap();
    for (name, dataset, file, rows) in [
        ("seed-items", &defaults.items_dataset_arn, "item_data.csv", 600),
        ("seed-users", &defaults.users_dataset_arn, "user_data.csv", 500),
        ("seed-interactions", &defaults.interactions_dataset_arn, "event_data.csv", 20_000),
    ] {
        let job = service.create_import_job(name, dataset, seed.join(file).to_str().unwrap(), ImportMode::Full).await.unwrap();
        let job = wait_import(&service, &job.dataset_import_job_arn).await;
        assert_eq!(job.lifecycle.status, Status::Active, "{file}: {:?}", job.lifecycle.failure_reason);
        assert_eq!(job.rows_imported, rows, "{file}");
    }
    // The upstream example's files import too (extra YEAR column ignored with a warning).
    let upstream = seed.join("upstream-aws-samples");
    let job = service
        .create_import_job(
            "upstream-items",
            &defaults.items_dataset_arn,
            upstream.join("item-meta.csv").to_str().unwrap(),
            ImportMode::Full,
        )
        .await
        .unwrap();
    let job = wait_import(&service, &job.dataset_import_job_arn).await;
    assert_eq!(job.lifecycle.status, Status::Active, "{:?}", job.lifecycle.failure_reason);
    assert!(job.warnings.iter().any(|w| w.contains("YEAR")), "{:?}", job.warnings);
    let job = service
        .create_import_job(
            "upstream-interactions",
            &defaults.interactions_dataset_arn,
            upstream.join("interactions.csv").to_str().unwrap(),
            ImportMode::Full,
        )
        .await
        .unwrap();
    let job = wait_import(&service, &job.dataset_import_job_arn).await;
    assert_eq!(job.lifecycle.status, Status::Active, "{:?}", job.lifecycle.failure_reason);
    assert_eq!(job.rows_imported, 158_371);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_import_leaves_the_previous_rows_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let service = start(dir.path()).await;
    let defaults = service.ensure_default_resources().await.unwrap();
    let good = files.path().join("good.csv");
    std::fs::write(&good, "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\n1,2,100,click\n2,3,200,click\n").unwrap();
    let job =
        service.create_import_job("good", &defaults.interactions_dataset_arn, good.to_str().unwrap(), ImportMode::Full).await.unwrap();
    assert_eq!(wait_import(&service, &job.dataset_import_job_arn).await.lifecycle.status, Status::Active);

    let mut bad = String::from("USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\n");
    for i in 0..20_000 {
        bad.push_str(&format!("{i},{i},{},click\n", 1_600_000_000 + i));
    }
    bad.push_str("oops,1,not-a-time,click\n");
    let bad_path = files.path().join("bad.csv");
    std::fs::write(&bad_path, bad).unwrap();
    let job =
        service.create_import_job("bad", &defaults.interactions_dataset_arn, bad_path.to_str().unwrap(), ImportMode::Full).await.unwrap();
    let job = wait_import(&service, &job.dataset_import_job_arn).await;
    assert_eq!(job.lifecycle.status, Status::CreateFailed);
    let reason = job.lifecycle.failure_reason.unwrap();
    assert!(reason.contains("bad.csv, line 20002, column 3 (TIMESTAMP)"), "{reason}");
    assert_eq!(service.store().row_count(&defaults.interactions_dataset_arn).await.unwrap(), 2, "the failed import must leave nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let service = start(dir.path()).await;
    let defaults = service.ensure_default_resources().await.unwrap();
    let missing = "arn:aws:personalize:local:000000000000:campaign/nope";
    let err = service.recommend(missing, "1", 5).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert!(err.message.contains("does not exist"));
    assert_eq!(service.recommend(missing, "1", 0).await.unwrap_err().kind, ErrorKind::InvalidInput);
    assert_eq!(service.recommend(missing, "1", 501).await.unwrap_err().kind, ErrorKind::InvalidInput);
    let tracker = service.create_event_tracker("t", &defaults.dataset_group_arn).await.unwrap();
    let record = DataRecord {
        stream_name: "my-stream".into(),
        partition_key: None,
        user_id: "u".into(),
        item_id: "i".into(),
        tracking_id: tracker.tracking_id.clone(),
        event_type: "click".into(),
        interactions: 2,
        date_from: "2023-04-05".into(),
        date_to: "2022-01-01".into(),
    };
    let err = service.put_data(record.clone()).await.unwrap_err();
    assert!(err.message.contains("dateFrom 2023-04-05 is after dateTo 2022-01-01"), "{err}");
    let err = service.put_data(DataRecord { date_from: "yesterday".into(), ..record.clone() }).await.unwrap_err();
    assert!(err.message.contains("dateFrom `yesterday` is not a date"), "{err}");
    let err = service.put_data(DataRecord { interactions: 0, ..record.clone() }).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput);
    let err =
        service.put_data(DataRecord { tracking_id: "nope".into(), date_to: "2023-05-05".into(), ..record.clone() }).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    let err = service
        .track_events(
            &tracker.tracking_id,
            "",
            None,
            vec![NewEvent { item_id: "i".into(), event_type: "click".into(), timestamp: 1, ..NewEvent::default() }],
        )
        .await
        .unwrap_err();
    assert!(err.message.contains("userId"), "{err}");
    // Deleted trackers stop accepting events.
    service.delete_event_tracker(&tracker.event_tracker_arn).await.unwrap();
    let err = service.put_data(DataRecord { date_to: "2023-05-05".into(), ..record }).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_recipe_trains_with_offline_metrics_and_serves() {
    let data = tempfile::tempdir().unwrap();
    generate(data.path());
    let dir = tempfile::tempdir().unwrap();
    let service = start(dir.path()).await;
    let defaults = service.ensure_default_resources().await.unwrap();
    for (name, dataset, file) in
        [("items", &defaults.items_dataset_arn, "item_data.csv"), ("interactions", &defaults.interactions_dataset_arn, "event_data.csv")]
    {
        let job = service.create_import_job(name, dataset, data.path().join(file).to_str().unwrap(), ImportMode::Full).await.unwrap();
        assert_eq!(wait_import(&service, &job.dataset_import_job_arn).await.lifecycle.status, Status::Active);
    }
    let cities: std::collections::HashMap<String, String> = item_cities(data.path());
    for recipe in ["user-personalization", "popularity-count", "trending-now", "similar-items", "personalized-ranking"] {
        let solution = service.create_solution(recipe, &defaults.dataset_group_arn, recipe, Default::default()).await.unwrap();
        let version = service.create_solution_version(&solution.solution_arn, "v1").await.unwrap();
        let version = wait_version(&service, &version.solution_version_arn).await;
        assert_eq!(version.lifecycle.status, Status::Active, "{recipe}: {:?}", version.lifecycle.failure_reason);
        let metrics = version.metrics.clone().expect("offline metrics on every version");
        for key in
            ["coverage", "mean_reciprocal_rank_at_25", "normalized_discounted_cumulative_gain_at_10", "precision_at_25", "recall_at_5"]
        {
            assert!(metrics.contains_key(key), "{recipe}: no {key} in {metrics:?}");
        }
        let campaign = service.create_campaign(&format!("{recipe}-campaign"), &version.solution_version_arn).await.unwrap();
        assert_eq!(wait_campaign(&service, &campaign.campaign_arn).await.lifecycle.status, Status::Active);
        let served = service.recommend(&campaign.campaign_arn, "7", 10).await.unwrap();
        assert_eq!(served.items.len(), 10, "{recipe}");
        match recipe {
            "similar-items" => {
                let similar = service.recommend_similar(&campaign.campaign_arn, "1", 10).await.unwrap();
                let same_city = similar.items.iter().filter(|i| cities.get(&i.item_id) == cities.get("1")).count();
                assert!(same_city >= 8, "{same_city} of 10 similar items share the city: {:?}", similar.items);
                assert!(similar.items.iter().all(|i| i.item_id != "1"));
            }
            "personalized-ranking" => {
                let list: Vec<String> = ["1", "2", "3", "no-such-item"].iter().map(|s| s.to_string()).collect();
                let ranked = service.rank(&campaign.campaign_arn, "7", &list).await.unwrap();
                let mut ids: Vec<&str> = ranked.items.iter().map(|i| i.item_id.as_str()).collect();
                assert_eq!(ids.pop(), Some("no-such-item"), "unknown items go last");
                ids.sort();
                assert_eq!(ids, vec!["1", "2", "3"]);
            }
            "user-personalization" => {
                let tuned = version.tuned_hpo_params.clone().unwrap().algorithm_hyper_parameters;
                assert!(tuned.contains_key("blend.sequence"), "{tuned:?}");
                assert!(metrics["normalized_discounted_cumulative_gain_at_10"] > 0.05, "{metrics:?}");
            }
            _ => {}
        }
    }
}
