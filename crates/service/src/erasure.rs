//! Erasing a user: what travelrec holds of one user in a dataset group, gone
//! in one call, for a data subject's request.
//!
//! Gone: their interaction and user rows, tracked events and event ids (the
//! store); their real-time state; their history in every model snapshot of
//! the group, and in the campaigns serving those models, which swap in the
//! rewritten model (the user is served as a stranger at once); their events
//! in the archive's files; the analytics' memory of having seen them.
//!
//! Their records in the event log are written over in place: the records of
//! their tracked events become empty, and their rows leave the user-row
//! records they share with others (a record's sequence stays, so the
//! consumers' positions hold).
//!
//! Kept: the aggregates they contributed to (item popularity, item-to-item
//! weights, event counts) until the next training, and the analytics'
//! counts of their events until a restart recounts from the log. An import
//! job running during the erasure may write the user's rows back: erase
//! after imports finish.

use crate::Service;
use crate::error::{Result, ServiceError};
use crate::tracking::LogRecord;
use serde::Serialize;
use std::collections::HashSet;
use travelrec_engine::Model;
use travelrec_store::{Campaign, Dataset, DatasetGroup, DatasetType, RowBatch, SolutionVersion, Status};

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
    /// Event log records written over (emptied, or without the user's rows).
    pub log_records: u64,
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
            // The store holds every logged record now; the archiver, behind, finds these empty.
            erased.log_records = self.erase_from_log(dataset_group_arn, user_id).await?;
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

    /// Writes over the event log's records of the user in the group, in
    /// every partition (a record's partition key need not be its user).
    async fn erase_from_log(&self, dataset_group_arn: &str, user_id: &str) -> Result<u64> {
        let mut rewritten = 0;
        // Events logged after the store caught up are emptied before the
        // store writer reads them: their ids, reserved until stored, are let go.
        let unstored_ids = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        for partition in 0..self.log().partitions() {
            let (group, user, ids) = (dataset_group_arn.to_string(), user_id.to_string(), unstored_ids.clone());
            rewritten += self
                .log()
                .rewrite_in_place(partition, move |record| {
                    let left = without_user(&record.payload, &group, &user)?;
                    if let Ok(LogRecord::Events { events, .. }) = LogRecord::decode(&record.payload) {
                        ids.lock().expect("not poisoned").extend(events.into_iter().map(|e| e.event_id));
                    }
                    Some(left.encode())
                })
                .await
                .map_err(crate::tracking::log_error)?;
        }
        for id in unstored_ids.lock().expect("not poisoned").iter() {
            self.inner.pending_event_ids.remove(&crate::tracking::pending_key(dataset_group_arn, id));
        }
        Ok(rewritten)
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

/// What is left of a log record once `user` is erased from `group`, if the
/// record held anything of theirs. It is never longer than the record.
fn without_user(payload: &[u8], group: &str, user: &str) -> Option<LogRecord> {
    match LogRecord::decode(payload).ok()? {
        LogRecord::Events { dataset_group_arn, user_id, .. } if dataset_group_arn == group && user_id == user => Some(LogRecord::Erased),
        LogRecord::Rows { dataset_group_arn, dataset_arn, rows: RowBatch::Users(rows) }
            if dataset_group_arn == group && rows.iter().any(|r| r.user_id == user) =>
        {
            let others: Vec<_> = rows.into_iter().filter(|r| r.user_id != user).collect();
            if others.is_empty() {
                Some(LogRecord::Erased)
            } else {
                Some(LogRecord::Rows { dataset_group_arn, dataset_arn, rows: RowBatch::Users(others) })
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use travelrec_store::UserRow;

    #[test]
    fn a_log_record_loses_the_users_part_and_never_grows() {
        let row = |user: &str| UserRow { user_id: user.into(), fields: vec![("HOME_CITY".into(), "Lisbon".into())] };
        let rows = |users: &[&str]| LogRecord::Rows {
            dataset_group_arn: "g".into(),
            dataset_arn: "d".into(),
            rows: RowBatch::Users(users.iter().map(|u| row(u)).collect()),
        };
        let events =
            |group: &str, user: &str| LogRecord::Events { dataset_group_arn: group.into(), user_id: user.into(), events: Vec::new() };

        let shared = rows(&["ana", "bo"]).encode();
        let left = without_user(&shared, "g", "ana").expect("ana's row is in it");
        assert_eq!(left, rows(&["bo"]));
        assert!(left.encode().len() < shared.len());
        let mut written_over = left.encode();
        written_over.resize(shared.len(), 0);
        assert_eq!(LogRecord::decode(&written_over), Ok(left.clone()));
        assert_eq!(without_user(&rows(&["ana"]).encode(), "g", "ana"), Some(LogRecord::Erased));
        assert_eq!(without_user(&events("g", "ana").encode(), "g", "ana"), Some(LogRecord::Erased));
        // Another user, another group, an emptied record: nothing to do.
        assert_eq!(without_user(&shared, "g", "cy"), None);
        assert_eq!(without_user(&events("h", "ana").encode(), "g", "ana"), None);
        assert_eq!(without_user(&LogRecord::Erased.encode(), "g", "ana"), None);
        // An emptied record reads back as empty whatever padding follows it.
        let mut padded = LogRecord::Erased.encode();
        padded.resize(64, 0);
        assert_eq!(LogRecord::decode(&padded), Ok(LogRecord::Erased));
    }
}
