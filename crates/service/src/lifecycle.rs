//! Creating, describing and deleting resources, the defaults of the original
//! deployment, and settling what a previous process left unfinished.

use crate::Service;
use crate::error::{ErrorKind, Result, ServiceError};
use crate::schema::{DEFAULT_INTERACTIONS_SCHEMA, DEFAULT_ITEMS_SCHEMA, DEFAULT_LOCAL_EVENTS_SCHEMA, DEFAULT_USERS_SCHEMA, DatasetSchema};
use chrono::Utc;
use std::collections::BTreeMap;
use travelrec_engine::{Hyperparameters, Recipe};
use travelrec_store::{
    Campaign, DataSource, Dataset, DatasetGroup, DatasetImportJob, DatasetType, EventTracker, ImportMode, Lifecycle, ResourceKind,
    ResourceType, Schema, Solution, SolutionConfig, SolutionVersion, Status, StoreError, validate_name,
};

/// The ARNs of the resources the original deployment created.
#[derive(Debug, Clone, PartialEq)]
pub struct DefaultResources {
    pub dataset_group_arn: String,
    pub interactions_dataset_arn: String,
    pub items_dataset_arn: String,
    pub users_dataset_arn: String,
    pub local_events_dataset_arn: String,
    pub solution_arn: String,
}

fn name_ok(name: &str) -> Result<()> {
    validate_name(name).map_err(ServiceError::invalid)
}

impl Service {
    /// A resource of type `T`, or a not-found error that names it.
    pub async fn describe<T: ResourceType>(&self, arn: &str) -> Result<T> {
        let mut resource: T = self
            .store_dyn()
            .get(arn)
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("{} `{arn}` does not exist", T::KIND.label())))?;
        self.overlay_progress(&mut resource);
        Ok(resource)
    }

    pub async fn list<T: ResourceType>(&self) -> Result<Vec<T>> {
        Ok(self.store_dyn().list().await?)
    }

    /// Jobs report progress in memory; show it on the resources they move.
    fn overlay_progress<T: ResourceType>(&self, resource: &mut T) {
        let mut as_resource = resource.clone().into_resource();
        let arn = as_resource.arn().to_string();
        if let Some(percent) = self.inner.progress.get(&arn).map(|p| *p) {
            match &mut as_resource {
                travelrec_store::Resource::DatasetImportJob(j) => j.percent_complete = percent,
                travelrec_store::Resource::SolutionVersion(v) => v.percent_complete = percent,
                _ => return,
            }
            if let Some(updated) = T::from_resource(as_resource) {
                *resource = updated;
            }
        }
    }

    pub async fn create_dataset_group(&self, name: &str) -> Result<DatasetGroup> {
        name_ok(name)?;
        let group = DatasetGroup {
            name: name.to_string(),
            dataset_group_arn: self.config().arns.arn(ResourceKind::DatasetGroup, name),
            lifecycle: Lifecycle::new(Status::Active),
        };
        self.store_dyn().insert(group.clone()).await?;
        Ok(group)
    }

    pub async fn create_schema(&self, name: &str, avro: &str) -> Result<Schema> {
        name_ok(name)?;
        DatasetSchema::parse(avro)?;
        let now = Utc::now();
        let schema = Schema {
            name: name.to_string(),
            schema_arn: self.config().arns.arn(ResourceKind::Schema, name),
            schema: avro.to_string(),
            creation_date_time: now,
            last_updated_date_time: now,
        };
        self.store_dyn().insert(schema.clone()).await?;
        Ok(schema)
    }

    /// Datasets are named after their group and type, as in the managed
    /// service: `…:dataset/<group>/INTERACTIONS`.
    pub async fn create_dataset(
        &self,
        name: &str,
        dataset_group_arn: &str,
        dataset_type: DatasetType,
        schema_arn: &str,
    ) -> Result<Dataset> {
        name_ok(name)?;
        let group: DatasetGroup = self.describe(dataset_group_arn).await?;
        let schema: Schema = self.describe(schema_arn).await?;
        DatasetSchema::parse(&schema.schema)?.check_for(dataset_type)?;
        if self.dataset_of(dataset_group_arn, dataset_type).await?.is_some() {
            return Err(ServiceError::new(
                ErrorKind::AlreadyExists,
                format!("dataset group {} already has an {} dataset", group.name, dataset_type.as_str()),
            ));
        }
        let dataset = Dataset {
            name: name.to_string(),
            dataset_arn: format!("{}/{}", self.config().arns.arn(ResourceKind::Dataset, &group.name), dataset_type.as_str()),
            dataset_group_arn: dataset_group_arn.to_string(),
            dataset_type,
            schema_arn: schema_arn.to_string(),
            lifecycle: Lifecycle::new(Status::Active),
        };
        self.store_dyn().insert(dataset.clone()).await?;
        Ok(dataset)
    }

    pub(crate) async fn dataset_of(&self, dataset_group_arn: &str, dataset_type: DatasetType) -> Result<Option<Dataset>> {
        Ok(self.list::<Dataset>().await?.into_iter().find(|d| d.dataset_group_arn == dataset_group_arn && d.dataset_type == dataset_type))
    }

    /// Creates an import job and starts it in the background.
    pub async fn create_import_job(
        &self,
        job_name: &str,
        dataset_arn: &str,
        data_location: &str,
        mode: ImportMode,
    ) -> Result<DatasetImportJob> {
        name_ok(job_name)?;
        let dataset: Dataset = self.describe(dataset_arn).await?;
        let path = crate::training::local_path(data_location)?;
        let archive = crate::training::is_archive(&path);
        if !path.is_file() && !archive {
            return Err(ServiceError::invalid(format!(
                "data location `{data_location}` is not a readable file on the server; give a path or file:// URL of a CSV file (or of an archive folder or .jsonl.zst file)"
            )));
        }
        if archive && dataset.dataset_type != DatasetType::Interactions {
            return Err(ServiceError::invalid(format!(
                "archives hold interactions; {} is an {} dataset",
                dataset.dataset_arn,
                dataset.dataset_type.as_str()
            )));
        }
        let job = DatasetImportJob {
            job_name: job_name.to_string(),
            dataset_import_job_arn: self.config().arns.arn(ResourceKind::DatasetImportJob, job_name),
            dataset_arn: dataset.dataset_arn.clone(),
            data_source: DataSource { data_location: data_location.to_string() },
            import_mode: mode,
            lifecycle: Lifecycle::new(Status::CreatePending),
            rows_imported: 0,
            percent_complete: 0.0,
            warnings: Vec::new(),
        };
        self.store_dyn().insert(job.clone()).await?;
        let service = self.clone();
        let started = job.clone();
        tokio::spawn(async move { service.run_import(started, dataset, path).await });
        Ok(job)
    }

    pub async fn create_solution(
        &self,
        name: &str,
        dataset_group_arn: &str,
        recipe: &str,
        hyperparameters: BTreeMap<String, String>,
    ) -> Result<Solution> {
        name_ok(name)?;
        self.describe::<DatasetGroup>(dataset_group_arn).await?;
        let recipe = Recipe::parse(recipe).map_err(|e| ServiceError::invalid(e.to_string()))?;
        Hyperparameters::from_map(&hyperparameters).map_err(|e| ServiceError::invalid(e.to_string()))?;
        let solution = Solution {
            name: name.to_string(),
            solution_arn: self.config().arns.arn(ResourceKind::Solution, name),
            dataset_group_arn: dataset_group_arn.to_string(),
            recipe_arn: recipe.arn(),
            solution_config: SolutionConfig { algorithm_hyper_parameters: hyperparameters },
            lifecycle: Lifecycle::new(Status::Active),
        };
        self.store_dyn().insert(solution.clone()).await?;
        Ok(solution)
    }

    /// Creates a solution version (`…:solution/<solution>/<version>`) and
    /// trains it in the background.
    pub async fn create_solution_version(&self, solution_arn: &str, version: &str) -> Result<SolutionVersion> {
        name_ok(version)?;
        let solution: Solution = self.describe(solution_arn).await?;
        let arn = self.config().arns.solution_version_arn(&solution.solution_arn, version);
        let solution_version = SolutionVersion {
            name: version.to_string(),
            solution_version_arn: arn,
            solution_arn: solution.solution_arn.clone(),
            dataset_group_arn: solution.dataset_group_arn.clone(),
            recipe_arn: solution.recipe_arn.clone(),
            training_mode: "FULL".into(),
            lifecycle: Lifecycle::new(Status::CreatePending),
            percent_complete: 0.0,
            training_hours: None,
            training_summary: None,
            metrics: None,
            tuned_hpo_params: None,
            events_through: Default::default(),
        };
        self.store_dyn().insert(solution_version.clone()).await.map_err(|e| match e {
            StoreError::AlreadyExists { .. } => ServiceError::new(
                ErrorKind::AlreadyExists,
                format!("solution version `{version}` of {} already exists; choose another version name", solution.name),
            ),
            other => other.into(),
        })?;
        let service = self.clone();
        let started = solution_version.clone();
        tokio::spawn(async move { service.run_training(started, solution).await });
        Ok(solution_version)
    }

    /// Creates a campaign on an ACTIVE solution version and deploys it in the background.
    pub async fn create_campaign(&self, name: &str, solution_version_arn: &str) -> Result<Campaign> {
        name_ok(name)?;
        let version: SolutionVersion = self.describe(solution_version_arn).await?;
        if version.lifecycle.status != Status::Active {
            let hint = if version.lifecycle.status.is_creating() {
                "wait until describeSolutionVersion says ACTIVE"
            } else {
                "train a new solution version"
            };
            return Err(ServiceError::in_use(format!(
                "solution version {solution_version_arn} is {}; a campaign needs an ACTIVE one: {hint}",
                version.lifecycle.status
            )));
        }
        let campaign = Campaign {
            name: name.to_string(),
            campaign_arn: self.config().arns.arn(ResourceKind::Campaign, name),
            solution_version_arn: solution_version_arn.to_string(),
            min_provisioned_tps: 1,
            lifecycle: Lifecycle::new(Status::CreatePending),
            latest_campaign_update: None,
        };
        self.store_dyn().insert(campaign.clone()).await?;
        let service = self.clone();
        let started = campaign.clone();
        tokio::spawn(async move { service.run_deploy(started).await });
        Ok(campaign)
    }

    pub async fn create_event_tracker(&self, name: &str, dataset_group_arn: &str) -> Result<EventTracker> {
        name_ok(name)?;
        self.describe::<DatasetGroup>(dataset_group_arn).await?;
        if let Some(existing) = self.list::<EventTracker>().await?.into_iter().find(|t| t.name == name) {
            return Err(ServiceError::new(
                ErrorKind::AlreadyExists,
                format!("event tracker `{name}` already exists ({})", existing.event_tracker_arn),
            ));
        }
        let id = uuid::Uuid::new_v4();
        let tracker = EventTracker {
            name: name.to_string(),
            event_tracker_arn: self.config().arns.arn(ResourceKind::EventTracker, &id.simple().to_string()[..12]),
            dataset_group_arn: dataset_group_arn.to_string(),
            tracking_id: id.to_string(),
            account_id: self.config().arns.account.clone(),
            lifecycle: Lifecycle::new(Status::Active),
        };
        self.store_dyn().insert(tracker.clone()).await?;
        self.inner.trackers.insert(tracker.tracking_id.clone(), (tracker.event_tracker_arn.clone(), tracker.dataset_group_arn.clone()));
        Ok(tracker)
    }

    /// Starts deleting a campaign: it stops serving at once and is gone when
    /// the returned future's background work ends.
    pub async fn delete_campaign(&self, campaign_arn: &str) -> Result<Campaign> {
        let _record = self.inner.campaign_records_lock.lock().await;
        let mut campaign: Campaign = self.describe(campaign_arn).await?;
        if campaign.lifecycle.status.is_deleting() {
            return Ok(campaign);
        }
        campaign.lifecycle.set(Status::DeletePending);
        self.store_dyn().put(campaign.clone()).await?;
        self.inner.deployments.write().remove(campaign_arn);
        let (service, arn) = (self.clone(), campaign_arn.to_string());
        tokio::spawn(async move {
            if let Err(e) = service.finish_delete::<Campaign>(&arn).await {
                tracing::error!("deleting campaign failed: {e}");
            }
        });
        Ok(campaign)
    }

    pub async fn delete_event_tracker(&self, event_tracker_arn: &str) -> Result<EventTracker> {
        let mut tracker: EventTracker = self.describe(event_tracker_arn).await?;
        if tracker.lifecycle.status.is_deleting() {
            return Ok(tracker);
        }
        tracker.lifecycle.set(Status::DeletePending);
        self.store_dyn().put(tracker.clone()).await?;
        self.inner.trackers.remove(&tracker.tracking_id);
        let (service, arn) = (self.clone(), event_tracker_arn.to_string());
        tokio::spawn(async move {
            if let Err(e) = service.finish_delete::<EventTracker>(&arn).await {
                tracing::error!("deleting event tracker failed: {e}");
            }
        });
        Ok(tracker)
    }

    /// DELETE PENDING → DELETE IN_PROGRESS → gone.
    async fn finish_delete<T: ResourceType>(&self, arn: &str) -> Result<()> {
        if let Some(resource) = self.store_dyn().get_resource(arn).await? {
            let mut resource = resource;
            match &mut resource {
                travelrec_store::Resource::Campaign(c) => c.lifecycle.set(Status::DeleteInProgress),
                travelrec_store::Resource::EventTracker(t) => t.lifecycle.set(Status::DeleteInProgress),
                _ => {}
            }
            self.store_dyn().put_resource(resource).await?;
        }
        self.store_dyn().delete_resource(arn).await?;
        tracing::info!(kind = T::KIND.label(), "deleted");
        Ok(())
    }

    /// Deletes a solution version that no campaign uses, with its model.
    pub async fn delete_solution_version(&self, arn: &str) -> Result<()> {
        let version: SolutionVersion = self.describe(arn).await?;
        if version.lifecycle.status.is_creating() {
            return Err(ServiceError::in_use(format!(
                "solution version {arn} is still training; wait until it is ACTIVE or CREATE FAILED"
            )));
        }
        let moving_to = |c: &Campaign| c.update_in_progress().is_some_and(|u| u.solution_version_arn == arn);
        if let Some(c) = self.list::<Campaign>().await?.into_iter().find(|c| c.solution_version_arn == arn || moving_to(c)) {
            return Err(ServiceError::in_use(format!(
                "campaign {} serves solution version {arn}, or is moving to it; delete the campaign first",
                c.campaign_arn
            )));
        }
        self.store_dyn().delete_model(arn).await?;
        self.store_dyn().delete_resource(arn).await?;
        Ok(())
    }

    /// Deletes a solution with no versions left.
    pub async fn delete_solution(&self, arn: &str) -> Result<()> {
        self.describe::<Solution>(arn).await?;
        if let Some(v) = self.list::<SolutionVersion>().await?.into_iter().find(|v| v.solution_arn == arn) {
            return Err(ServiceError::in_use(format!(
                "solution {arn} still has version {}; delete its versions first",
                v.solution_version_arn
            )));
        }
        self.store_dyn().delete_resource(arn).await?;
        Ok(())
    }

    /// Deletes a dataset and its rows.
    pub async fn delete_dataset(&self, arn: &str) -> Result<()> {
        self.describe::<Dataset>(arn).await?;
        if let Some(j) =
            self.list::<DatasetImportJob>().await?.into_iter().find(|j| j.dataset_arn == arn && j.lifecycle.status.is_creating())
        {
            return Err(ServiceError::in_use(format!(
                "import job {} is writing to dataset {arn}; wait for it to finish",
                j.dataset_import_job_arn
            )));
        }
        self.store_dyn().delete_rows(arn).await?;
        self.store_dyn().delete_resource(arn).await?;
        self.inner.schemas.clear();
        Ok(())
    }

    /// Deletes an empty dataset group (no datasets, solutions or trackers).
    pub async fn delete_dataset_group(&self, arn: &str) -> Result<()> {
        self.describe::<DatasetGroup>(arn).await?;
        let blockers: Vec<String> = self
            .store_dyn()
            .list_resources()
            .await?
            .into_iter()
            .filter(|r| match r {
                travelrec_store::Resource::Dataset(d) => d.dataset_group_arn == arn,
                travelrec_store::Resource::Solution(s) => s.dataset_group_arn == arn,
                travelrec_store::Resource::EventTracker(t) => t.dataset_group_arn == arn,
                _ => false,
            })
            .map(|r| r.arn().to_string())
            .collect();
        if !blockers.is_empty() {
            return Err(ServiceError::in_use(format!("dataset group {arn} still has {}; delete them first", blockers.join(", "))));
        }
        self.store_dyn().delete_resource(arn).await?;
        Ok(())
    }

    /// Creates what the original deployment created (dataset group, schemas,
    /// datasets, the user-personalization solution), keeping what exists.
    pub async fn ensure_default_resources(&self) -> Result<DefaultResources> {
        let names = self.config().names.clone();
        let arns = &self.config().arns;
        let group_arn = arns.arn(ResourceKind::DatasetGroup, &names.dataset_group);
        if self.store_dyn().get_resource(&group_arn).await?.is_none() {
            self.create_dataset_group(&names.dataset_group).await?;
        }
        let mut dataset_arns = Vec::new();
        for (dataset_type, schema_name, avro, dataset_name) in [
            (DatasetType::Interactions, &names.interactions_schema, DEFAULT_INTERACTIONS_SCHEMA, "dataset-interactions"),
            (DatasetType::Items, &names.items_schema, DEFAULT_ITEMS_SCHEMA, "dataset-items"),
            (DatasetType::Users, &names.users_schema, DEFAULT_USERS_SCHEMA, "dataset-users"),
            (DatasetType::LocalEvents, &names.local_events_schema, DEFAULT_LOCAL_EVENTS_SCHEMA, "dataset-local-events"),
        ] {
            let schema_arn = arns.arn(ResourceKind::Schema, schema_name);
            if self.store_dyn().get_resource(&schema_arn).await?.is_none() {
                self.create_schema(schema_name, avro).await?;
            }
            let dataset = match self.dataset_of(&group_arn, dataset_type).await? {
                Some(d) => d,
                None => self.create_dataset(dataset_name, &group_arn, dataset_type, &schema_arn).await?,
            };
            dataset_arns.push(dataset.dataset_arn);
        }
        let solution_arn = arns.arn(ResourceKind::Solution, &names.solution);
        if self.store_dyn().get_resource(&solution_arn).await?.is_none() {
            self.create_solution(&names.solution, &group_arn, Recipe::UserPersonalization.name(), BTreeMap::new()).await?;
        }
        let [interactions, items, users, local_events]: [String; 4] = dataset_arns.try_into().expect("four dataset types");
        Ok(DefaultResources {
            dataset_group_arn: group_arn,
            interactions_dataset_arn: interactions,
            items_dataset_arn: items,
            users_dataset_arn: users,
            local_events_dataset_arn: local_events,
            solution_arn,
        })
    }

    /// Settles what a previous process left: jobs it was running fail with a
    /// reason (their partial writes were discarded by the store), campaigns
    /// are deployed again, deletions finish, trackers are reloaded.
    pub(crate) async fn recover(&self) -> Result<()> {
        const INTERRUPTED: &str = "interrupted because the server stopped while this job ran; start it again";
        for resource in self.store_dyn().list_resources().await? {
            match resource {
                travelrec_store::Resource::DatasetImportJob(mut job) if job.lifecycle.status.is_creating() => {
                    job.lifecycle.fail(INTERRUPTED);
                    self.store_dyn().put(job).await?;
                }
                travelrec_store::Resource::SolutionVersion(mut version) if version.lifecycle.status.is_creating() => {
                    version.lifecycle.fail(INTERRUPTED);
                    self.store_dyn().put(version).await?;
                }
                travelrec_store::Resource::Campaign(campaign) if campaign.lifecycle.status.is_deleting() => {
                    self.store_dyn().delete_resource(&campaign.campaign_arn).await?;
                }
                travelrec_store::Resource::Campaign(mut campaign)
                    if campaign.lifecycle.status.is_creating() || campaign.lifecycle.status == Status::Active =>
                {
                    if let Some(update) = campaign.latest_campaign_update.as_mut().filter(|u| u.lifecycle.status.is_creating()) {
                        update.lifecycle.fail(INTERRUPTED);
                        self.store_dyn().put(campaign.clone()).await?;
                    }
                    // Deploy before serving so an ACTIVE campaign answers at once after a restart.
                    self.run_deploy(campaign).await;
                }
                travelrec_store::Resource::EventTracker(tracker) if tracker.lifecycle.status.is_deleting() => {
                    self.store_dyn().delete_resource(&tracker.event_tracker_arn).await?;
                }
                travelrec_store::Resource::ApiKey(key) => self.load_api_key(key),
                travelrec_store::Resource::EventTracker(tracker) if tracker.lifecycle.status == Status::Active => {
                    self.inner
                        .trackers
                        .insert(tracker.tracking_id.clone(), (tracker.event_tracker_arn.clone(), tracker.dataset_group_arn.clone()));
                }
                _ => {}
            }
        }
        Ok(())
    }
}
