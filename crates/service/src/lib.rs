//! The travelrec application layer: the managed service's resources and
//! their lifecycle, import and training jobs, deployed campaigns, real-time
//! user state and event tracking. It glues the pure engine to a [`Store`] and
//! knows nothing about HTTP.
//!
//! Slow work (imports, training, deployment) runs as background jobs whose
//! progress shows in the resource's status; requests never wait for it.

mod error;
pub mod import;
mod lifecycle;
mod realtime;
pub mod schema;
mod serving;
mod tracking;
mod training;

pub use error::{ErrorKind, Result, ServiceError};
pub use lifecycle::DefaultResources;
pub use serving::{Recommendations, RecommendedItem};
pub use tracking::{DataRecord, NewEvent, PutDataResult};

use dashmap::DashMap;
use parking_lot::RwLock;
use realtime::RealtimeState;
use serving::Deployment;
use std::collections::HashMap;
use std::sync::Arc;
use travelrec_store::{ArnBuilder, Store};

/// Names the original deployment created, used as defaults so its runbook
/// works with only the host changed.
#[derive(Debug, Clone)]
pub struct DefaultNames {
    pub dataset_group: String,
    pub interactions_schema: String,
    pub items_schema: String,
    pub users_schema: String,
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
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self { arns: ArnBuilder::default(), names: DefaultNames::default(), max_recent_events_per_user: 200 }
    }
}

/// A cheap-to-clone handle on the running application.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
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
}

impl Service {
    /// Starts the service on `store`: reloads ACTIVE campaigns and trackers and
    /// settles jobs that a previous process left unfinished.
    pub async fn start(store: Arc<dyn Store>, config: ServiceConfig) -> Result<Service> {
        let realtime = RealtimeState::new(config.max_recent_events_per_user);
        let service = Service {
            inner: Arc::new(Inner {
                store,
                config,
                deployments: RwLock::new(HashMap::new()),
                realtime,
                trackers: DashMap::new(),
                progress: DashMap::new(),
                training_slot: tokio::sync::Semaphore::new(1),
            }),
        };
        service.recover().await?;
        Ok(service)
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
