//! Ingestion through the event log: idempotency, validation, new items,
//! the archive, and restart from the log's tail.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use travelrec_service::{ErrorKind, NewEvent, Service, ServiceConfig};
use travelrec_store::{
    Campaign, DatasetImportJob, EmbeddedStore, ErasedRows, EventPosition, ImportMode, Resource, RowBatch, RowCursor, RowImport,
    SolutionVersion, Status, Store, StoreError, TrackedEvent,
};

async fn start(dir: &Path) -> Service {
    start_on(Arc::new(EmbeddedStore::open(dir).unwrap()), dir).await
}

async fn start_on(store: Arc<dyn Store>, dir: &Path) -> Service {
    let log = travelrec_stream::EventLog::open(&dir.join("log"), Default::default()).await.unwrap();
    let config = ServiceConfig { archive_dir: Some(dir.join("archive")), ..ServiceConfig::default() };
    Service::start(store, log, config).await.unwrap()
}

async fn until<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..1200 {
        if let Some(value) = check().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

fn event(id: Option<&str>, item: &str) -> NewEvent {
    NewEvent {
        event_id: id.map(str::to_string),
        item_id: item.into(),
        event_type: "click".into(),
        timestamp: 1_790_000_000,
        ..NewEvent::default()
    }
}

/// Every file under `dir`.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .flat_map(|path| if path.is_dir() { files_under(&path) } else { vec![path] })
        .collect()
}

/// A deployed campaign over generated data, with a tracker.
async fn deployed(dir: &Path, data: &Path) -> (Service, String, String, String) {
    deployed_on(Arc::new(EmbeddedStore::open(dir).unwrap()), dir, data).await
}

async fn deployed_on(store: Arc<dyn Store>, dir: &Path, data: &Path) -> (Service, String, String, String) {
    let config =
        travelrec_datagen::GeneratorConfig { interactions: 20_000, users: 1_000, items_per_city: 15, cities: 6, ..Default::default() };
    travelrec_datagen::generate(&config, data).unwrap();
    let service = start_on(store, dir).await;
    let defaults = service.ensure_default_resources().await.unwrap();
    for (name, dataset, file) in
        [("items", &defaults.items_dataset_arn, "item_data.csv"), ("interactions", &defaults.interactions_dataset_arn, "event_data.csv")]
    {
        let job = service.create_import_job(name, dataset, data.join(file).to_str().unwrap(), ImportMode::Full).await.unwrap();
        let arn = job.dataset_import_job_arn;
        let job: DatasetImportJob = until("the import", async || {
            service.describe::<DatasetImportJob>(&arn).await.ok().filter(|j| !j.lifecycle.status.is_creating())
        })
        .await;
        assert_eq!(job.lifecycle.status, Status::Active);
    }
    let version = service.create_solution_version(&defaults.solution_arn, "v0").await.unwrap().solution_version_arn;
    let _: SolutionVersion = until("training", async || {
        service.describe::<SolutionVersion>(&version).await.ok().filter(|v| v.lifecycle.status == Status::Active)
    })
    .await;
    let campaign = service.create_campaign("c", &version).await.unwrap().campaign_arn;
    let _: Campaign =
        until("deployment", async || service.describe::<Campaign>(&campaign).await.ok().filter(|c| c.lifecycle.status == Status::Active))
            .await;
    let tracker = service.create_event_tracker("t", &defaults.dataset_group_arn).await.unwrap().tracking_id;
    (service, campaign, tracker, defaults.items_dataset_arn)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_event_ids_are_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let service = start(dir.path()).await;
    let defaults = service.ensure_default_resources().await.unwrap();
    let tracker = service.create_event_tracker("t", &defaults.dataset_group_arn).await.unwrap().tracking_id;
    let first = service
        .track_events(&tracker, "u1", None, vec![event(Some("e1"), "a"), event(Some("e1"), "a"), event(Some("e2"), "b")])
        .await
        .unwrap();
    assert_eq!((first.positions.len(), first.duplicates), (2, 1), "a repeat inside one call counts once");
    let again = service.track_events(&tracker, "u1", None, vec![event(Some("e1"), "a"), event(None, "c")]).await.unwrap();
    assert_eq!((again.positions.len(), again.duplicates), (1, 1));
    let group = defaults.dataset_group_arn.clone();
    let stored = until("the store writer", async || {
        let events = service.store().read_events(&group, None, 100).await.unwrap();
        (events.len() == 3).then_some(events)
    })
    .await;
    // The third is the event without an id (a UUID was made up for it).
    let ids: Vec<&str> = stored.iter().map(|(_, e)| e.event_id.as_str()).collect();
    assert_eq!(ids.iter().filter(|id| **id == "e1").count(), 1, "{ids:?}");
    assert_eq!(ids.iter().filter(|id| **id == "e2").count(), 1, "{ids:?}");
    // Still once after the id left the in-memory reservations for the store.
    let later = service.track_events(&tracker, "u1", None, vec![event(Some("e2"), "b")]).await.unwrap();
    assert_eq!((later.positions.len(), later.duplicates), (0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_events_are_refused_whole_and_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let service = start(dir.path()).await;
    let defaults = service.ensure_default_resources().await.unwrap();
    let tracker = service.create_event_tracker("t", &defaults.dataset_group_arn).await.unwrap();
    let mut bad = event(Some("ok-1"), "a");
    bad.fields = vec![("colour".into(), "red".into())];
    let err = service.track_events(&tracker.tracking_id, "u1", None, vec![event(Some("ok-0"), "a"), bad]).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput);
    assert!(err.message.contains("eventList[1].properties: unknown field `colour`"), "{err}");
    let mut located = event(Some("ok-2"), "a");
    located.fields = vec![("location".into(), "38.71,-9.14".into()), ("DEVICE".into(), "mobile".into())];
    let err = service.track_events(&tracker.tracking_id, "u1", None, vec![event(Some("x"), "")]).await.unwrap_err();
    assert!(err.message.contains("eventList[0].itemId"), "{err}");
    service.track_events(&tracker.tracking_id, "u1", None, vec![located]).await.unwrap();
    let group = defaults.dataset_group_arn.clone();
    let stored = until("the store writer", async || {
        let events = service.store().read_events(&group, None, 100).await.unwrap();
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(stored.len(), 1, "nothing of the refused call was written");
    assert_eq!(
        stored[0].1.interaction.fields,
        vec![("LOCATION".to_string(), "38.71,-9.14".to_string()), ("DEVICE".to_string(), "mobile".to_string())]
    );
    service.delete_event_tracker(&tracker.event_tracker_arn).await.unwrap();
    let err = service.track_events(&tracker.tracking_id, "u1", None, vec![event(None, "a")]).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert!(err.message.contains("deleted"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_attraction_is_recommended_before_retraining() {
    let (dir, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (service, campaign, tracker, items) = deployed(dir.path(), data.path()).await;
    // Attraction 1 and its neighbours: a new one of the same kind in the same place.
    let catalogue = std::fs::read_to_string(data.path().join("item_data.csv")).unwrap();
    let mut reader = csv::Reader::from_reader(catalogue.as_bytes());
    let first = reader.records().next().unwrap().unwrap();
    let fields = vec![
        ("GENRE".to_string(), first[1].to_string()),
        ("CITY".to_string(), first[4].to_string()),
        ("LATITUDE".to_string(), first[5].to_string()),
        ("LONGITUDE".to_string(), first[6].to_string()),
    ];
    service.put_items(&items, vec![("brand-new-attraction".into(), fields)]).await.unwrap();
    service.track_events(&tracker, "fan", None, vec![event(None, "1"), event(None, "1")]).await.unwrap();
    let recommended = service.recommend(&campaign, "fan", 25).await.unwrap();
    assert!(recommended.items.iter().any(|i| i.item_id == "brand-new-attraction"), "{:?}", recommended.items);
    // Bad items are refused with the field named.
    let err = service.put_items(&items, vec![("x".into(), vec![("LATITUDE".into(), "200".into())])]).await.unwrap_err();
    assert!(err.message.contains("items[0].properties: field LATITUDE: 200 is not a latitude"), "{err}");
    let err = service.put_items(&items, (0..11).map(|i| (format!("i{i}"), vec![])).collect()).await.unwrap_err();
    assert!(err.message.contains("1 to 10"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_survive_a_restart_and_reach_the_archive_which_imports_back() {
    let (dir, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (service, campaign, tracker, _) = deployed(dir.path(), data.path()).await;
    let mut ids = Vec::new();
    for n in 0..30 {
        let id = format!("restart-{n}");
        service.track_events(&tracker, "walker", None, vec![event(Some(&id), &format!("{}", 1 + n % 5))]).await.unwrap();
        ids.push(id);
    }
    let before = service.recommend(&campaign, "walker", 10).await.unwrap().items;
    service.flush_archive().await;
    service.shutdown().await;
    drop(service);

    let service = start(dir.path()).await;
    assert_eq!(service.recommend(&campaign, "walker", 10).await.unwrap().items, before, "the user's state survives a restart");
    let group = "arn:aws:personalize:local:000000000000:dataset-group/my-dsg-1";
    let stored = service.store().read_events(group, None, 1000).await.unwrap();
    let mut stored_ids: Vec<String> = stored.iter().map(|(_, e)| e.event_id.clone()).collect();
    stored_ids.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(stored_ids, expected, "every event exactly once in the store");

    let mut archived = Vec::new();
    for file in travelrec_service::archive::archive_files(&dir.path().join("archive")).unwrap() {
        travelrec_service::archive::read_file(&file, |e| archived.push(e.event_id)).unwrap();
    }
    archived.sort();
    assert_eq!(archived, expected, "every event exactly once in the archive");

    // The archive imports back as interactions.
    let defaults = service.ensure_default_resources().await.unwrap();
    let job = service
        .create_import_job(
            "from-archive",
            &defaults.interactions_dataset_arn,
            dir.path().join("archive").to_str().unwrap(),
            ImportMode::Incremental,
        )
        .await
        .unwrap();
    let arn = job.dataset_import_job_arn;
    let job: DatasetImportJob = until("the archive import", async || {
        service.describe::<DatasetImportJob>(&arn).await.ok().filter(|j| !j.lifecycle.status.is_creating())
    })
    .await;
    assert_eq!(job.lifecycle.status, Status::Active, "{:?}", job.lifecycle.failure_reason);
    assert_eq!(job.rows_imported, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_user_is_gone_from_the_store_the_models_the_archive_and_the_real_time_state() {
    let (dir, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (service, campaign, tracker, _) = deployed(dir.path(), data.path()).await;
    let group = "arn:aws:personalize:local:000000000000:dataset-group/my-dsg-1";
    let ids = |r: travelrec_service::Recommendations| r.items.into_iter().map(|i| i.item_id).collect::<Vec<_>>();
    // The first two users of the generated interactions: both have a history.
    let interactions = std::fs::read_to_string(data.path().join("event_data.csv")).unwrap();
    let mut users: Vec<&str> = interactions.lines().skip(1).map(|l| l.split(',').next().unwrap()).collect();
    users.dedup();
    let (user, other) = (users[0].to_string(), users[1].to_string());
    let stranger = ids(service.recommend(&campaign, "never-seen", 10).await.unwrap());
    service.track_events(&tracker, &user, None, vec![event(Some("gone-1"), "1"), event(Some("gone-2"), "2")]).await.unwrap();
    service.track_events(&tracker, &other, None, vec![event(Some("kept-1"), "3")]).await.unwrap();
    assert_ne!(ids(service.recommend(&campaign, &user, 10).await.unwrap()), stranger);
    let other_before = ids(service.recommend(&campaign, &other, 10).await.unwrap());
    service.flush_archive().await;

    let erased = service.erase_user(group, &user).await.unwrap();
    let trained_rows = interactions.lines().filter(|l| l.split(',').next() == Some(user.as_str())).count() as u64;
    // (This group's users' dataset was not imported: interactions only.)
    assert_eq!((erased.rows, erased.tracked_events, erased.realtime_events), (trained_rows, 2, 2), "{erased:?}");
    assert_eq!((erased.models, erased.campaigns, erased.archived_events, erased.archive_files), (1, 1, 2, 1), "{erased:?}");
    // The one event log record of their tracked events is written over.
    assert_eq!(erased.log_records, 1, "{erased:?}");
    let log_holds = |needle: &[u8]| {
        files_under(&dir.path().join("log")).iter().any(|f| std::fs::read(f).unwrap().windows(needle.len()).any(|w| w == needle))
    };
    assert!(!log_holds(b"gone-1") && !log_holds(b"gone-2"), "the erased events' ids are gone from the event log's files");
    assert!(log_holds(b"kept-1"), "the other user's event stays");

    // Served as a stranger at once; the other user as before.
    assert_eq!(ids(service.recommend(&campaign, &user, 10).await.unwrap()), stranger);
    assert_eq!(ids(service.recommend(&campaign, &other, 10).await.unwrap()), other_before);
    assert!(service.stored_events(group, &user).await.unwrap().is_empty());
    assert!(service.realtime_events(group, &user).is_empty());
    let defaults = service.ensure_default_resources().await.unwrap();
    for dataset in [&defaults.interactions_dataset_arn, &defaults.users_dataset_arn] {
        let mut cursor = travelrec_store::RowCursor::default();
        while let Some((batch, next)) = service.store().read_rows(dataset, cursor).await.unwrap() {
            let mut rest = batch.clone();
            assert_eq!(rest.remove_user(&user), 0, "a row of the erased user is left in {dataset}");
            cursor = next;
        }
    }
    let mut archived = Vec::new();
    for file in travelrec_service::archive::archive_files(&dir.path().join("archive")).unwrap() {
        travelrec_service::archive::read_file(&file, |e| archived.push(e.event_id)).unwrap();
    }
    assert_eq!(archived, vec!["kept-1"]);
    assert_eq!(service.erase_user(group, &user).await.unwrap(), travelrec_service::Erasure::default(), "nothing left to erase");

    // A restart loads the rewritten snapshot and the erased store.
    service.shutdown().await;
    drop(service);
    let service = start(dir.path()).await;
    assert_eq!(ids(service.recommend(&campaign, &user, 10).await.unwrap()), stranger);
    assert_eq!(ids(service.recommend(&campaign, &other, 10).await.unwrap()), other_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retraining_swaps_the_new_model_in_without_a_failed_request() {
    let (dir, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (service, campaign, tracker, _) = deployed(dir.path(), data.path()).await;
    let first: Campaign = service.describe(&campaign).await.unwrap();
    // Events tracked since the first training: the retrained model learns them.
    service.track_events(&tracker, "newcomer", None, vec![event(Some("n-1"), "1"), event(Some("n-2"), "2")]).await.unwrap();

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let (service, campaign, stop) = (service.clone(), campaign.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut served, mut failed) = (0, 0);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match service.recommend(&campaign, "newcomer", 10).await {
                    Ok(r) if r.items.len() == 10 => served += 1,
                    _ => failed += 1,
                }
                tokio::task::yield_now().await;
            }
            (served, failed)
        })
    };
    let version = service.retrain_campaign(&campaign).await.unwrap();
    assert_ne!(version.solution_version_arn, first.solution_version_arn);
    let moved: Campaign = until("the retrained model to serve", async || {
        service.describe::<Campaign>(&campaign).await.ok().filter(|c| c.solution_version_arn == version.solution_version_arn)
    })
    .await;
    assert_eq!(moved.latest_campaign_update.unwrap().lifecycle.status, Status::Active);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (served, failed) = traffic.await.unwrap();
    assert!(served > 0 && failed == 0, "{served} served, {failed} failed while the model changed");
    let model = service.store().get_model(&version.solution_version_arn).await.unwrap().unwrap();
    let model = travelrec_engine::Model::from_bytes(&model).unwrap();
    assert_eq!(model.histories.get("newcomer").len(), 2, "the retrained model learned the tracked events");

    // UpdateCampaign moves back; bad moves are refused with the reason.
    service.update_campaign(&campaign, &first.solution_version_arn).await.unwrap();
    until("the first model to serve again", async || {
        let c = service.describe::<Campaign>(&campaign).await.ok()?;
        (c.solution_version_arn == first.solution_version_arn && c.latest_campaign_update?.lifecycle.status == Status::Active).then_some(())
    })
    .await;
    let err = service.update_campaign(&campaign, "arn:aws:personalize:local:000000000000:solution/nope/v0").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");

    // Two more retrainings: the oldest retrained version, which nothing serves, is deleted with its model.
    for _ in 0..2 {
        let next = service.retrain_campaign(&campaign).await.unwrap().solution_version_arn;
        until("the next retrained model to serve", async || {
            let c = service.describe::<Campaign>(&campaign).await.ok()?;
            (c.solution_version_arn == next).then_some(())
        })
        .await;
    }
    until("the oldest retrained version to go", async || {
        service.describe::<SolutionVersion>(&version.solution_version_arn).await.is_err().then_some(())
    })
    .await;
    assert!(service.store().get_model(&version.solution_version_arn).await.unwrap().is_none());
    let retrained = service.list::<SolutionVersion>().await.unwrap().into_iter().filter(|v| v.name.starts_with("retrain-")).count();
    assert_eq!(retrained, travelrec_service::RETRAINED_KEPT);
    assert!(service.describe::<SolutionVersion>(&first.solution_version_arn).await.is_ok(), "a version trained by hand stays");
    service.update_campaign(&campaign, &first.solution_version_arn).await.unwrap();
    until("the first model to serve at the end", async || {
        let c = service.describe::<Campaign>(&campaign).await.ok()?;
        (c.solution_version_arn == first.solution_version_arn && c.latest_campaign_update?.lifecycle.status == Status::Active).then_some(())
    })
    .await;

    // A restart serves the version the campaign moved to.
    service.shutdown().await;
    drop(service);
    let service = start(dir.path()).await;
    let after: Campaign = service.describe(&campaign).await.unwrap();
    assert_eq!(after.solution_version_arn, first.solution_version_arn);
    assert_eq!(service.recommend(&campaign, "newcomer", 10).await.unwrap().items.len(), 10);
}

/// The embedded store, except that the next `failing` writes of a
/// campaign's settled move (its `latestCampaignUpdate` no longer in
/// progress) fail, as a database that drops its connections for a while
/// would; and the next `failing_after_writing` such writes are made but
/// reported failed, as when the reply to a commit is lost.
struct FailingCampaignWrites {
    store: EmbeddedStore,
    failing: AtomicUsize,
    failing_after_writing: AtomicUsize,
}

impl FailingCampaignWrites {
    fn settled_move(resource: &Resource) -> bool {
        matches!(resource, Resource::Campaign(c) if c.latest_campaign_update.as_ref().is_some_and(|u| !u.lifecycle.status.is_creating()))
    }

    fn take(count: &AtomicUsize) -> bool {
        count.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
    }

    fn check(&self, resource: &Resource) -> Result<(), StoreError> {
        if Self::settled_move(resource) && Self::take(&self.failing) {
            return Err(StoreError::Backend("connection reset by peer".into()));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Store for FailingCampaignWrites {
    async fn insert_resource(&self, resource: Resource) -> Result<(), StoreError> {
        self.check(&resource)?;
        self.store.insert_resource(resource).await
    }
    async fn put_resource(&self, resource: Resource) -> Result<(), StoreError> {
        self.check(&resource)?;
        let settled_move = Self::settled_move(&resource);
        self.store.put_resource(resource).await?;
        if settled_move && Self::take(&self.failing_after_writing) {
            return Err(StoreError::Backend("timed out waiting for the commit's reply".into()));
        }
        Ok(())
    }
    async fn get_resource(&self, arn: &str) -> Result<Option<Resource>, StoreError> {
        self.store.get_resource(arn).await
    }
    async fn list_resources(&self) -> Result<Vec<Resource>, StoreError> {
        self.store.list_resources().await
    }
    async fn delete_resource(&self, arn: &str) -> Result<bool, StoreError> {
        self.store.delete_resource(arn).await
    }
    async fn begin_import(&self, dataset_arn: &str, mode: ImportMode) -> Result<Box<dyn RowImport>, StoreError> {
        self.store.begin_import(dataset_arn, mode).await
    }
    async fn read_rows(&self, dataset_arn: &str, cursor: RowCursor) -> Result<Option<(RowBatch, RowCursor)>, StoreError> {
        self.store.read_rows(dataset_arn, cursor).await
    }
    async fn row_count(&self, dataset_arn: &str) -> Result<u64, StoreError> {
        self.store.row_count(dataset_arn).await
    }
    async fn delete_rows(&self, dataset_arn: &str) -> Result<(), StoreError> {
        self.store.delete_rows(dataset_arn).await
    }
    async fn put_events(&self, group: &str, events: Vec<(EventPosition, TrackedEvent)>) -> Result<(), StoreError> {
        self.store.put_events(group, events).await
    }
    async fn read_events(
        &self,
        group: &str,
        after: Option<EventPosition>,
        limit: usize,
    ) -> Result<Vec<(EventPosition, TrackedEvent)>, StoreError> {
        self.store.read_events(group, after, limit).await
    }
    async fn known_event_ids(&self, group: &str, event_ids: Vec<String>) -> Result<Vec<String>, StoreError> {
        self.store.known_event_ids(group, event_ids).await
    }
    async fn append_rows(&self, dataset_arn: &str, rows: RowBatch) -> Result<(), StoreError> {
        self.store.append_rows(dataset_arn, rows).await
    }
    async fn erase_user(&self, group: &str, dataset_arns: &[String], user_id: &str) -> Result<ErasedRows, StoreError> {
        self.store.erase_user(group, dataset_arns, user_id).await
    }
    async fn put_model(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.store.put_model(key, bytes).await
    }
    async fn get_model(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.get_model(key).await
    }
    async fn delete_model(&self, key: &str) -> Result<(), StoreError> {
        self.store.delete_model(key).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_serves_the_model_its_record_names_when_the_store_fails_during_a_move() {
    let (dir, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let store = Arc::new(FailingCampaignWrites {
        store: EmbeddedStore::open(dir.path()).unwrap(),
        failing: AtomicUsize::new(0),
        failing_after_writing: AtomicUsize::new(0),
    });
    let (service, campaign, _, _) = deployed_on(store.clone(), dir.path(), data.path()).await;
    let personal: Campaign = service.describe(&campaign).await.unwrap();
    let group = service.describe::<SolutionVersion>(&personal.solution_version_arn).await.unwrap().dataset_group_arn;
    // A model that answers every user alike, to tell which one serves.
    let popular = service.create_solution("popular", &group, "popularity-count", Default::default()).await.unwrap().solution_arn;
    let popular = service.create_solution_version(&popular, "p0").await.unwrap().solution_version_arn;
    until("the popularity model", async || {
        service.describe::<SolutionVersion>(&popular).await.ok().filter(|v| v.lifecycle.status == Status::Active)
    })
    .await;
    let ids = |r: travelrec_service::Recommendations| r.items.into_iter().map(|i| i.item_id).collect::<Vec<_>>();
    let (one, other) = ("1", "2");
    let personal_lists =
        (ids(service.recommend(&campaign, one, 10).await.unwrap()), ids(service.recommend(&campaign, other, 10).await.unwrap()));
    assert_ne!(personal_lists.0, personal_lists.1, "the personal model tells the two users apart");
    // A store down for longer than the retries: recording the move and then
    // its failure each give up after RECORD_ATTEMPTS; the record and what
    // serves stay on the personal model.
    const DOWN: usize = 1_000;
    store.failing.store(DOWN, Ordering::SeqCst);
    service.update_campaign(&campaign, &popular).await.unwrap();
    let attempts = 2 * travelrec_service::RECORD_ATTEMPTS as usize;
    until("every attempt to record the move", async || (store.failing.load(Ordering::SeqCst) == DOWN - attempts).then_some(())).await;
    store.failing.store(0, Ordering::SeqCst);
    let record: Campaign = service.describe(&campaign).await.unwrap();
    assert_eq!(record.solution_version_arn, personal.solution_version_arn);
    assert!(record.latest_campaign_update.unwrap().lifecycle.status.is_creating(), "its failure could not be recorded either");
    assert_eq!(ids(service.recommend(&campaign, one, 10).await.unwrap()), personal_lists.0);
    assert_eq!(ids(service.recommend(&campaign, other, 10).await.unwrap()), personal_lists.1);

    // After a restart, a store that fails twice and recovers: the retries
    // record the move, then the popularity model serves.
    service.shutdown().await;
    drop(service);
    let service = start_on(store.clone(), dir.path()).await;
    let failed: Campaign = service.describe(&campaign).await.unwrap();
    assert_eq!(
        failed.latest_campaign_update.unwrap().lifecycle.status,
        Status::CreateFailed,
        "a start marks a move left in progress failed"
    );
    store.failing.store(2, Ordering::SeqCst);
    service.update_campaign(&campaign, &popular).await.unwrap();
    let (serving, update) = until("the move", async || {
        let c = service.describe::<Campaign>(&campaign).await.ok()?;
        c.latest_campaign_update.filter(|u| !u.lifecycle.status.is_creating()).map(|u| (c.solution_version_arn, u))
    })
    .await;
    assert_eq!(update.lifecycle.status, Status::Active, "{update:?}");
    assert_eq!(serving, popular);
    assert_eq!(store.failing.load(Ordering::SeqCst), 0, "both failures were met and retried");
    let lists = (ids(service.recommend(&campaign, one, 10).await.unwrap()), ids(service.recommend(&campaign, other, 10).await.unwrap()));
    assert_eq!(lists.0, lists.1, "the popularity model serves both users alike");

    // Every attempt to record a move is written but reported failed: the
    // move fails, and the record names the model that serves on.
    store.failing_after_writing.store(travelrec_service::RECORD_ATTEMPTS as usize, Ordering::SeqCst);
    service.update_campaign(&campaign, &personal.solution_version_arn).await.unwrap();
    // (Each written attempt shows the move as done until the next one.)
    let (serving, update) = until("the failed move back", async || {
        let c = service.describe::<Campaign>(&campaign).await.ok()?;
        c.latest_campaign_update.filter(|u| u.lifecycle.status == Status::CreateFailed).map(|u| (c.solution_version_arn, u))
    })
    .await;
    assert!(update.lifecycle.failure_reason.unwrap().contains("recording the move failed"));
    assert_eq!(serving, popular, "the record names what serves");
    assert_eq!(ids(service.recommend(&campaign, one, 10).await.unwrap()), lists.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_retraining_trains_a_shared_solution_once_and_moves_each_campaign() {
    let (dir, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (service, first_campaign, _, _) = deployed(dir.path(), data.path()).await;
    let serving: Campaign = service.describe(&first_campaign).await.unwrap();
    let second_campaign = service.create_campaign("c2", &serving.solution_version_arn).await.unwrap().campaign_arn;
    until("the second deployment", async || {
        service.describe::<Campaign>(&second_campaign).await.ok().filter(|c| c.lifecycle.status == Status::Active)
    })
    .await;
    let versions_before = service.list::<SolutionVersion>().await.unwrap().len();

    let started = service.retrain_active_campaigns().await.unwrap();
    assert_eq!(started.len(), 1, "one solution, one training: {started:?}");
    let retrained = started[0].solution_version_arn.clone();
    for campaign in [&first_campaign, &second_campaign] {
        until("the campaign to serve the retrained version", async || {
            let c = service.describe::<Campaign>(campaign).await.ok()?;
            (c.solution_version_arn == retrained && c.latest_campaign_update?.lifecycle.status == Status::Active).then_some(())
        })
        .await;
    }
    assert_eq!(service.list::<SolutionVersion>().await.unwrap().len(), versions_before + 1);
    assert_eq!(service.recommend(&second_campaign, "1", 10).await.unwrap().items.len(), 10);
}
