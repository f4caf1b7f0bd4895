//! The travelrec application layer: the managed service's resources and
//! their lifecycle, import and training jobs, deployed campaigns, real-time
//! user state and event tracking. It glues the pure engine to a [`Store`] and
//! knows nothing about HTTP.
//!
//! Slow work (imports, training, deployment) runs as background jobs whose
//! progress shows in the resource's status; requests never wait for it.

mod api_keys;
pub mod archive;
mod catalogue;
mod consumers;
pub mod context;
mod dashboard;
mod erasure;
mod error;
mod feedback;
mod filters;
pub mod import;
mod lifecycle;
pub mod realtime;
pub mod schema;
mod serving;
mod tracking;
mod training;
mod updates;

pub use api_keys::{Grant, secret_sha256};
pub use consumers::GroupAnalytics;
pub use dashboard::{CampaignPanel, Dashboard, DatasetGroupPanel};
pub use erasure::Erasure;
pub use error::{ErrorKind, Result, ServiceError};
pub use feedback::{CampaignActivity, LatencySummary};
pub use lifecycle::DefaultResources;
pub use realtime::RecentEvent;
pub use serving::{PromotionRequest, RankingRequest, RecommendationRequest, Recommendations, RecommendedItem};
pub use tracking::{DataRecord, NewEvent, PutDataResult, TrackResult, sequence_number};
pub use updates::{RECORD_ATTEMPTS, RETRAINED_KEPT};

/// Per-call limits of ingestion, as the managed service sets them.
pub mod tracking_limits {
    pub use crate::tracking::{MAX_INTERACTIONS_PER_RECORD, MAX_PER_CALL};
}

use dashmap::DashMap;
use parking_lot::{Mutex, RwLock};
use realtime::RealtimeState;
use serving::Deployment;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use travelrec_store::{ArnBuilder, Store};
use travelrec_stream::EventLog;

/// Names the original deployment created, used as defaults so its runbook
/// works with only the host changed.
#[derive(Debug, Clone)]
pub struct DefaultNames {
    pub dataset_group: String,
    pub interactions_schema: String,
    pub items_schema: String,
    pub users_schema: String,
    pub local_events_schema: String,
    pub solution: String,
    pub stream: String,
}

impl Default for DefaultNames {
    fn default() -> Self {
        Self {
            dataset_group: "my-dsg-1".into(),
            interactions_schema: "my-schema".into(),
            items_schema: "my-item-schema".into(),
            users_schema: "my-user-schema".into(),
            local_events_schema: "my-local-events-schema".into(),
            solution: "my-sol-from-cdk".into(),
            stream: "my-stream".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub arns: ArnBuilder,
    pub names: DefaultNames,
    /// Newest tracked events kept per user for real-time fold-in.
    pub max_recent_events_per_user: usize,
    /// Where the archive of raw events goes (`None`: no archive).
    pub archive_dir: Option<PathBuf>,
    /// Archive files are closed (and become visible) at least this often.
    pub archive_flush_interval: Duration,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            arns: ArnBuilder::default(),
            names: DefaultNames::default(),
            max_recent_events_per_user: 200,
            archive_dir: None,
            archive_flush_interval: Duration::from_secs(60),
        }
    }
}

/// A cheap-to-clone handle on the running application.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    /// Every event, item and user arrives through here first.
    log: EventLog,
    config: ServiceConfig,
    /// ACTIVE campaigns, by ARN, with their models in memory.
    deployments: RwLock<HashMap<String, Arc<Deployment>>>,
    realtime: RealtimeState,
    /// trackingId → (tracker ARN, dataset group ARN) of ACTIVE trackers.
    trackers: DashMap<String, (String, String)>,
    /// Percent complete of running jobs, by ARN (not persisted on every step).
    progress: DashMap<String, f32>,
    /// Training uses every core; run one at a time.
    training_slot: tokio::sync::Semaphore,
    /// Schemas of dataset groups' datasets, by group and type (see `schema_of`).
    schemas: DashMap<(String, travelrec_store::DatasetType), Arc<schema::DatasetSchema>>,
    /// Held while a campaign's model is loaded and swapped (UpdateCampaign,
    /// retraining) and while an erasure rewrites models: an update never
    /// swaps in a model read before an erasure rewrote it.
    model_swap_lock: tokio::sync::Mutex<()>,
    /// Held for each read-modify-write of a campaign's record by updates and deletes.
    campaign_records_lock: tokio::sync::Mutex<()>,
    /// Held by each store-writer pass, and by an erasure while it catches up and erases.
    store_writer_lock: tokio::sync::Mutex<()>,
    /// Event ids logged but not yet in the store (group + id), for idempotency.
    pending_event_ids: DashMap<String, ()>,
    /// Items', users' and local events' fields per dataset group (see `catalogue`).
    catalogues: DashMap<String, Arc<catalogue::Catalogue>>,
    /// Parsed filter expressions by filter ARN.
    /// Parsed filters by ARN, with the dataset group each belongs to.
    filters: DashMap<String, Arc<filters::ParsedFilter>>,
    /// Grants of API keys by the SHA-256 of their secret.
    api_keys: DashMap<String, Arc<api_keys::Grant>>,
    analytics: consumers::Analytics,
    /// Campaigns' calls, latency and attributed events.
    feedback: feedback::Feedback,
    archive_dir: Option<PathBuf>,
    archive_flush_interval: Duration,
    flush_requested: tokio::sync::Notify,
    flush_pending: AtomicBool,
    flush_done: tokio::sync::Notify,
    shutdown: tokio::sync::watch::Sender<bool>,
    background: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Service {
    /// Starts the service on `store` and `log`: writes to the store whatever
    /// the log holds that the store does not (a crash's tail), reloads ACTIVE
    /// campaigns and trackers, settles jobs that a previous process left
    /// unfinished, then starts the log's consumers.
    pub async fn start(store: Arc<dyn Store>, log: EventLog, config: ServiceConfig) -> Result<Service> {
        let realtime = RealtimeState::new(config.max_recent_events_per_user);
        let service = Service {
            inner: Arc::new(Inner {
                store,
                log,
                archive_dir: config.archive_dir.clone(),
                archive_flush_interval: config.archive_flush_interval,
                config,
                deployments: RwLock::new(HashMap::new()),
                realtime,
                trackers: DashMap::new(),
                progress: DashMap::new(),
                training_slot: tokio::sync::Semaphore::new(1),
                store_writer_lock: tokio::sync::Mutex::new(()),
                model_swap_lock: tokio::sync::Mutex::new(()),
                campaign_records_lock: tokio::sync::Mutex::new(()),
                pending_event_ids: DashMap::new(),
                schemas: DashMap::new(),
                catalogues: DashMap::new(),
                filters: DashMap::new(),
                api_keys: DashMap::new(),
                analytics: consumers::Analytics::default(),
                feedback: feedback::Feedback::default(),
                flush_requested: tokio::sync::Notify::new(),
                flush_pending: AtomicBool::new(false),
                flush_done: tokio::sync::Notify::new(),
                shutdown: tokio::sync::watch::channel(false).0,
                background: Mutex::new(Vec::new()),
            }),
        };
        let replayed = service.catch_up().await?;
        if replayed > 0 {
            tracing::info!(records = replayed, "wrote the event log's tail to the store");
        }
        service.recover().await?;
        service.spawn_consumers();
        Ok(service)
    }

    /// What the real-time user state of a dataset group holds in memory.
    pub fn realtime_memory(&self, dataset_group_arn: &str) -> realtime::RealtimeMemory {
        self.inner.realtime.group(dataset_group_arn).memory()
    }

    /// Event counts of a dataset group, for the dashboard.
    pub fn analytics(&self, dataset_group_arn: &str) -> GroupAnalytics {
        self.inner.analytics.snapshot(dataset_group_arn)
    }

    pub fn log(&self) -> &EventLog {
        &self.inner.log
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.inner.config
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    fn store_dyn(&self) -> &dyn Store {
        self.inner.store.as_ref()
    }
}
