//! Erasing a user: what travelrec holds of one user in a dataset group, gone
//! in one call, for a data subject's request.
//!
//! Gone: their interaction and user rows, tracked events and event ids (the
//! store); their real-time state; their history in every model snapshot of
//! the group, and in the campaigns serving those models, which swap in the
//! rewritten model (the user is served as a stranger at once); their events
//! in the archive's files; the analytics' memory of having seen them.
//!
//! Kept: the aggregates they contributed to (item popularity, item-to-item
//! weights, event counts) until the next training, and the event log's raw
//! records until retention deletes them (`--log-retention-days`). The store
//! writer and the archiver never read those again (their offsets are past
//! them); the analytics counts re-read them at a restart, without user ids
//! on show. An import job running during the erasure may write the user's
//! rows back: erase after imports finish.

use crate::Service;
use crate::error::{Result, ServiceError};
use serde::Serialize;
use std::collections::HashSet;
use travelrec_engine::Model;
use travelrec_store::{Campaign, Dataset, DatasetGroup, DatasetType, SolutionVersion, Status};

/// What an erasure removed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Erasure {
    /// Interaction and user rows.
    pub rows: u64,
    pub tracked_events: u64,
    /// Events dropped from the real-time state.
    pub realtime_events: u64,
    /// Model snapshots rewritten without the user's history.
    pub models: u64,
    /// Campaigns that swapped in a rewritten model.
    pub campaigns: u64,
    pub archived_events: u64,
    /// Archive files rewritten (or removed, when only the user's events were in them).
    pub archive_files: u64,
}

impl Service {
    /// Erases `user_id` from the dataset group. Waits for a running
    /// training (which would otherwise bring the user back in its model) and
    /// holds the training slot until done.
    pub async fn erase_user(&self, dataset_group_arn: &str, user_id: &str) -> Result<Erasure> {
        crate::serving::check_id("userId", user_id)?;
        self.describe::<DatasetGroup>(dataset_group_arn).await?;
        let _no_training = self.inner.training_slot.acquire().await.map_err(|e| ServiceError::internal(e.to_string()))?;
        let mut erased = Erasure::default();
        let realtime = self.inner.realtime.group(dataset_group_arn);
        erased.realtime_events += realtime.forget(user_id) as u64;

        // The store, once every acknowledged event is in it: no record read
        // before the erasure is written after it.
        let datasets: Vec<String> = self
            .list::<Dataset>()
            .await?
            .into_iter()
            .filter(|d| d.dataset_group_arn == dataset_group_arn)
            .filter(|d| matches!(d.dataset_type, DatasetType::Interactions | DatasetType::Users))
            .map(|d| d.dataset_arn)
            .collect();
        {
            let _writing = self.inner.store_writer_lock.lock().await;
            self.write_what_is_logged_locked().await?;
            let rows = self.store_dyn().erase_user(dataset_group_arn, &datasets, user_id).await?;
            (erased.rows, erased.tracked_events) = (rows.rows, rows.tracked_events);
        }
        // Events tracked while the store caught up went with it.
        erased.realtime_events += realtime.forget(user_id) as u64;
        // Their fields (USERS) are reloaded from the erased store on next use.
        self.inner.catalogues.remove(dataset_group_arn);

        // No campaign update swaps in a model read before these rewrites.
        let _no_swaps = self.inner.model_swap_lock.lock().await;
        let rewritten = self.forget_in_models(dataset_group_arn, user_id, &mut erased).await?;
        for campaign in self.list::<Campaign>().await? {
            let serving = self.inner.deployments.read().contains_key(&campaign.campaign_arn);
            if serving && campaign.lifecycle.status == Status::Active && rewritten.contains(&campaign.solution_version_arn) {
                let deployment = self.deploy(&campaign).await?;
                if self.swap_deployment(&campaign.campaign_arn, deployment) {
                    erased.campaigns += 1;
                }
            }
        }

        if let Some(root) = self.inner.archive_dir.clone() {
            // Open files close first, so every archived event is in a file.
            self.flush_archive().await;
            let (group, user) = (dataset_group_arn.to_string(), user_id.to_string());
            let (events, files) = tokio::task::spawn_blocking(move || -> std::result::Result<(u64, u64), String> {
                let (mut events, mut files) = (0, 0);
                for file in crate::archive::archive_files(&root).map_err(|e| format!("{}: {e}", root.display()))? {
                    let removed = crate::archive::remove_user(&file, &group, &user)?;
                    if removed > 0 {
                        events += removed as u64;
                        files += 1;
                    }
                }
                Ok((events, files))
            })
            .await
            .map_err(|e| ServiceError::internal(e.to_string()))?
            .map_err(|e| ServiceError::internal(format!("erasing from the archive: {e}")))?;
            (erased.archived_events, erased.archive_files) = (events, files);
        }
        self.inner.analytics.forget_user(dataset_group_arn, user_id);
        // Never the user id: logs hold no personal data.
        tracing::info!(group = dataset_group_arn, ?erased, "erased a user");
        Ok(erased)
    }

    /// Rewrites the group's model snapshots that hold the user's history;
    /// returns their solution version ARNs.
    async fn forget_in_models(&self, dataset_group_arn: &str, user_id: &str, erased: &mut Erasure) -> Result<HashSet<String>> {
        let mut rewritten = HashSet::new();
        for version in self.list::<SolutionVersion>().await? {
            if version.dataset_group_arn != dataset_group_arn || version.lifecycle.status != Status::Active {
                continue;
            }
            let Some(bytes) = self.store_dyn().get_model(&version.solution_version_arn).await? else { continue };
            let user = user_id.to_string();
            let without = tokio::task::spawn_blocking(move || -> std::result::Result<Option<Vec<u8>>, String> {
                let mut model = Model::from_bytes(&bytes).map_err(|e| e.to_string())?;
                Ok(model.forget_user(&user).then(|| model.to_bytes()))
            })
            .await
            .map_err(|e| ServiceError::internal(e.to_string()))?
            .map_err(|e| ServiceError::internal(format!("reading the model of {}: {e}", version.solution_version_arn)))?;
            if let Some(bytes) = without {
                self.store_dyn().put_model(&version.solution_version_arn, bytes).await?;
                erased.models += 1;
                rewritten.insert(version.solution_version_arn);
            }
        }
        Ok(rewritten)
    }
}
