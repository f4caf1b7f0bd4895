//! Changing a campaign's model without downtime: UpdateCampaign (move to
//! another solution version) and retraining (train a new version of the
//! campaign's solution on what the dataset group holds now, then move to
//! it). The new model loads beside the one serving and replaces it in one
//! swap: no request waits for it, none fails, and the real-time state (the
//! events tracked since) carries over.

use crate::Service;
use crate::error::{ErrorKind, Result, ServiceError};
use std::time::Duration;
use travelrec_store::{Campaign, CampaignUpdate, Lifecycle, SolutionVersion, Status};

/// Retrained versions kept per solution, the newest: the one serving and one
/// to go back to. Older ones that no campaign serves are deleted, with their
/// model snapshots, after each retraining (versions trained by hand are
/// never touched).
pub const RETRAINED_KEPT: usize = 2;

/// Store calls recording a campaign's move are tried this many times, the
/// first wait [`RECORD_FIRST_WAIT`], each next one three times longer (2 s
/// in all).
pub const RECORD_ATTEMPTS: u32 = 5;
const RECORD_FIRST_WAIT: Duration = Duration::from_millis(50);

/// The name prefix of the versions retraining trains.
const RETRAINED_PREFIX: &str = "retrain-";

impl Service {
    /// UpdateCampaign: deploys `solution_version_arn` beside the serving
    /// model, then swaps it in; `latestCampaignUpdate` tells how it went.
    pub async fn update_campaign(&self, campaign_arn: &str, solution_version_arn: &str) -> Result<Campaign> {
        let campaign = self.start_update(campaign_arn, solution_version_arn).await?;
        let (service, started) = (self.clone(), campaign.clone());
        tokio::spawn(async move { service.run_update(started).await });
        Ok(campaign)
    }

    /// Trains a new version of the campaign's solution, then moves the
    /// campaign to it as [`Service::update_campaign`] does; returns the
    /// version being trained.
    pub async fn retrain_campaign(&self, campaign_arn: &str) -> Result<SolutionVersion> {
        let campaign = self.active_campaign(campaign_arn).await?;
        let current: SolutionVersion = self.describe(&campaign.solution_version_arn).await?;
        self.retrain_solution(&current.solution_arn, vec![campaign.campaign_arn]).await
    }

    /// Scheduled retraining: one new version of each solution an ACTIVE
    /// campaign serves (not one per campaign: campaigns sharing a solution
    /// share its retrained version), each of its campaigns then moved to it.
    /// Campaigns still moving to an earlier model are left for the next
    /// round. Returns the versions being trained.
    pub async fn retrain_active_campaigns(&self) -> Result<Vec<SolutionVersion>> {
        let mut by_solution: std::collections::BTreeMap<String, Vec<String>> = std::collections::BTreeMap::new();
        for campaign in
            self.list::<Campaign>().await?.into_iter().filter(|c| c.lifecycle.status == Status::Active && c.update_in_progress().is_none())
        {
            let serving: SolutionVersion = self.describe(&campaign.solution_version_arn).await?;
            by_solution.entry(serving.solution_arn).or_default().push(campaign.campaign_arn);
        }
        let mut started = Vec::new();
        for (solution_arn, campaigns) in by_solution {
            match self.retrain_solution(&solution_arn, campaigns).await {
                Ok(version) => started.push(version),
                Err(e) => tracing::warn!(solution = %solution_arn, "scheduled retraining did not start: {e}"),
            }
        }
        Ok(started)
    }

    /// Trains a new version of `solution_arn` in the background, then moves
    /// each of `campaigns` to it, one after the other.
    async fn retrain_solution(&self, solution_arn: &str, campaigns: Vec<String>) -> Result<SolutionVersion> {
        let name = format!("{RETRAINED_PREFIX}{}", chrono::Utc::now().format("%Y%m%d-%H%M%S-%3f"));
        let version = self.create_solution_version(solution_arn, &name).await?;
        let (service, version_arn) = (self.clone(), version.solution_version_arn.clone());
        tokio::spawn(async move {
            let trained = loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                match service.describe::<SolutionVersion>(&version_arn).await {
                    Ok(v) if v.lifecycle.status.is_creating() => continue,
                    Ok(v) => break v,
                    Err(e) => {
                        tracing::warn!("retraining {version_arn}: {e}");
                        return;
                    }
                }
            };
            if trained.lifecycle.status != Status::Active {
                let reason = trained.lifecycle.failure_reason.unwrap_or_default();
                tracing::warn!("retraining: {version_arn} is {}: {reason}", trained.lifecycle.status);
                return;
            }
            for campaign_arn in campaigns {
                match service.start_update(&campaign_arn, &version_arn).await {
                    Ok(campaign) => service.run_update(campaign).await,
                    Err(e) => tracing::warn!("retraining {campaign_arn}: moving to {version_arn}: {e}"),
                }
            }
            service.prune_retrained(&trained.solution_arn).await;
        });
        Ok(version)
    }

    /// Deletes the solution's retrained versions beyond the newest
    /// [`RETRAINED_KEPT`] that no campaign serves or is moving to.
    async fn prune_retrained(&self, solution_arn: &str) {
        let Ok(versions) = self.list::<SolutionVersion>().await else { return };
        let mut retrained: Vec<SolutionVersion> = versions
            .into_iter()
            .filter(|v| v.solution_arn == solution_arn && v.name.starts_with(RETRAINED_PREFIX) && !v.lifecycle.status.is_creating())
            .collect();
        retrained.sort_by_key(|v| std::cmp::Reverse(v.lifecycle.creation_date_time));
        for old in retrained.into_iter().skip(RETRAINED_KEPT) {
            match self.delete_solution_version(&old.solution_version_arn).await {
                Ok(()) => tracing::info!(version = %old.solution_version_arn, "deleted an old retrained version"),
                Err(e) if e.kind == ErrorKind::ResourceInUse => {}
                Err(e) => tracing::warn!("deleting the old retrained version {}: {e}", old.solution_version_arn),
            }
        }
    }

    async fn active_campaign(&self, campaign_arn: &str) -> Result<Campaign> {
        let campaign: Campaign = self.describe(campaign_arn).await?;
        if campaign.lifecycle.status != Status::Active {
            return Err(ServiceError::in_use(format!(
                "campaign {campaign_arn} is {}; only an ACTIVE campaign changes model",
                campaign.lifecycle.status
            )));
        }
        Ok(campaign)
    }

    /// Checks the move and records it as in progress.
    async fn start_update(&self, campaign_arn: &str, solution_version_arn: &str) -> Result<Campaign> {
        let _record = self.inner.campaign_records_lock.lock().await;
        let mut campaign = self.active_campaign(campaign_arn).await?;
        if let Some(update) = campaign.update_in_progress() {
            return Err(ServiceError::in_use(format!(
                "campaign {campaign_arn} is already moving to {}; wait until its latestCampaignUpdate is ACTIVE or CREATE FAILED",
                update.solution_version_arn
            )));
        }
        let version: SolutionVersion = self.describe(solution_version_arn).await?;
        if version.lifecycle.status != Status::Active {
            return Err(ServiceError::in_use(format!(
                "solution version {solution_version_arn} is {}; a campaign needs an ACTIVE one",
                version.lifecycle.status
            )));
        }
        let current: SolutionVersion = self.describe(&campaign.solution_version_arn).await?;
        if version.dataset_group_arn != current.dataset_group_arn {
            return Err(ServiceError::invalid(format!(
                "solution version {solution_version_arn} belongs to {}, not to the campaign's {}",
                version.dataset_group_arn, current.dataset_group_arn
            )));
        }
        campaign.latest_campaign_update = Some(CampaignUpdate {
            solution_version_arn: solution_version_arn.to_string(),
            lifecycle: Lifecycle::new(Status::CreateInProgress),
        });
        self.store_dyn().put(campaign.clone()).await?;
        Ok(campaign)
    }

    /// Loads the new model while the old one serves, records the move, then
    /// swaps. Recording first keeps what serves and what the store says
    /// serves the same: a record that cannot be written (after
    /// [`RECORD_ATTEMPTS`]) fails the move and the old model stays.
    async fn run_update(&self, campaign: Campaign) {
        let Some(update) = campaign.latest_campaign_update.clone() else { return };
        let target = Campaign { solution_version_arn: update.solution_version_arn.clone(), ..campaign.clone() };
        let _swapping = self.inner.model_swap_lock.lock().await;
        let deployment = match self.deploy(&target).await {
            Ok(deployment) => deployment,
            Err(e) => return self.record_failed_update(&campaign, update, e.message).await,
        };
        let records = self.inner.campaign_records_lock.lock().await;
        // A campaign deleted meanwhile is not written back.
        let mut stored = match self.stored_active_campaign(&campaign.campaign_arn).await {
            Ok(Some(stored)) => stored,
            Ok(None) => return,
            Err(e) => {
                // Nothing was written: the next start marks the move failed.
                tracing::error!(campaign = %campaign.campaign_arn, "moving to {}: reading the campaign failed: {e}; the old model serves on", update.solution_version_arn);
                return;
            }
        };
        if !self.inner.deployments.read().contains_key(&campaign.campaign_arn) {
            drop(records);
            return self.record_failed_update(&campaign, update, "the campaign stopped serving while the new model loaded".into()).await;
        }
        stored.solution_version_arn = update.solution_version_arn.clone();
        let mut moved = update.clone();
        moved.lifecycle.set(Status::Active);
        stored.latest_campaign_update = Some(moved);
        if let Err(e) = self.with_retries("recording a campaign's new model", || self.store_dyn().put(stored.clone())).await {
            drop(records);
            return self.record_failed_update(&campaign, update, format!("recording the move failed: {e}")).await;
        }
        // Deleting a campaign takes the records lock too: it still serves.
        self.swap_deployment(&campaign.campaign_arn, deployment);
        drop(records);
        tracing::info!(campaign = %campaign.campaign_arn, version = %update.solution_version_arn, "campaign moved to a new model");
    }

    /// Marks the campaign's move failed with `reason`; the model it served
    /// when the move began serves on and the record names it again (a write
    /// that failed may still have stored the move).
    async fn record_failed_update(&self, campaign: &Campaign, mut update: CampaignUpdate, reason: String) {
        let (campaign_arn, serving) = (campaign.campaign_arn.as_str(), campaign.solution_version_arn.as_str());
        tracing::warn!(campaign = %campaign_arn, "moving to {} failed: {reason}", update.solution_version_arn);
        let _record = self.inner.campaign_records_lock.lock().await;
        let Ok(Some(mut stored)) = self.stored_active_campaign(campaign_arn).await else { return };
        update.lifecycle.fail(reason);
        stored.solution_version_arn = serving.to_string();
        stored.latest_campaign_update = Some(update);
        if let Err(e) = self.with_retries("recording a failed campaign update", || self.store_dyn().put(stored.clone())).await {
            // The next start marks a move left in progress failed.
            tracing::error!(campaign = %campaign_arn, "recording a failed campaign update: {e}; it shows as in progress until the next start");
        }
    }

    /// The campaign's record, with retries; `None` once it is no longer
    /// ACTIVE (deleted meanwhile: nothing is written back).
    async fn stored_active_campaign(&self, campaign_arn: &str) -> std::result::Result<Option<Campaign>, travelrec_store::StoreError> {
        let stored = self.with_retries("reading the campaign", || self.store_dyn().get::<Campaign>(campaign_arn)).await?;
        Ok(stored.filter(|c| c.lifecycle.status == Status::Active))
    }

    /// Runs a store call up to [`RECORD_ATTEMPTS`] times, waiting longer
    /// after each failure: a database that drops its connections for a moment
    /// does not leave a campaign's record behind what serves.
    async fn with_retries<T, F, Fut>(&self, what: &str, mut call: F) -> std::result::Result<T, travelrec_store::StoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, travelrec_store::StoreError>>,
    {
        let mut wait = RECORD_FIRST_WAIT;
        for attempt in 1.. {
            match call().await {
                Ok(value) => return Ok(value),
                Err(e) if attempt < RECORD_ATTEMPTS => {
                    tracing::warn!("{what} failed (attempt {attempt} of {RECORD_ATTEMPTS}), trying again in {wait:?}: {e}");
                    tokio::time::sleep(wait).await;
                    wait *= 3;
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!("the loop returns by the last attempt")
    }
}
