//! Deployed campaigns and getRecommendations.

use crate::Service;
use crate::error::{ErrorKind, Result, ServiceError};
use crate::realtime::{Cutoff, RecentEvent, after_cutoff};
use std::sync::Arc;
use travelrec_engine::{Candidate, HistoryEvent, Model};
use travelrec_store::{Campaign, SolutionVersion, Status};

/// An ACTIVE campaign with its model in memory. Immutable: a redeploy swaps
/// in a new one.
pub struct Deployment {
    pub dataset_group_arn: String,
    pub model: Arc<Model>,
    /// Tracked events up to here are inside the model.
    pub events_through: Cutoff,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RecommendedItem {
    pub item_id: String,
    /// Probability under a softmax over the whole catalogue.
    pub score: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Recommendations {
    pub items: Vec<RecommendedItem>,
    pub recommendation_id: String,
}

/// The managed service's limit on numResults.
pub const MAX_RESULTS: usize = 500;

fn check_num_results(num_results: usize) -> Result<()> {
    if num_results == 0 || num_results > MAX_RESULTS {
        return Err(ServiceError::invalid(format!("numResults must be between 1 and {MAX_RESULTS}, got {num_results}")));
    }
    Ok(())
}

fn check_user(user_id: &str) -> Result<()> {
    if user_id.is_empty() || user_id.chars().count() > 256 {
        return Err(ServiceError::invalid("userId must be 1 to 256 characters"));
    }
    Ok(())
}

fn recommendations(model: &Model, scored: Vec<travelrec_engine::ScoredItem>) -> Recommendations {
    Recommendations {
        items: scored.into_iter().map(|s| RecommendedItem { item_id: model.item_id(s.item).to_string(), score: s.score as f64 }).collect(),
        recommendation_id: format!("RID-{}", uuid::Uuid::new_v4()),
    }
}

impl Service {
    pub(crate) async fn run_deploy(&self, mut campaign: Campaign) {
        if campaign.lifecycle.status != Status::Active {
            campaign.lifecycle.set(Status::CreateInProgress);
            if let Err(e) = self.store_dyn().put(campaign.clone()).await {
                tracing::error!("deployment could not start: {e}");
                return;
            }
        }
        match self.deploy(&campaign).await {
            Ok(deployment) => {
                self.inner.deployments.write().insert(campaign.campaign_arn.clone(), Arc::new(deployment));
                if campaign.lifecycle.status != Status::Active {
                    campaign.lifecycle.set(Status::Active);
                } else {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!("deploying a campaign failed: {e}");
                campaign.lifecycle.fail(e.message);
            }
        }
        if let Err(e) = self.store_dyn().put(campaign).await {
            tracing::error!("recording the deployment outcome failed: {e}");
        }
    }

    async fn deploy(&self, campaign: &Campaign) -> Result<Deployment> {
        let version: SolutionVersion = self.describe(&campaign.solution_version_arn).await?;
        let bytes = self.store_dyn().get_model(&version.solution_version_arn).await?.ok_or_else(|| {
            ServiceError::internal(format!(
                "the model of {} is missing from storage; train a new solution version",
                version.solution_version_arn
            ))
        })?;
        let model = tokio::task::spawn_blocking(move || Model::from_bytes(&bytes))
            .await
            .map_err(|e| ServiceError::internal(e.to_string()))?
            .map_err(|e| ServiceError::internal(e.to_string()))?;
        self.load_recent_events(&version.dataset_group_arn, &version.events_through).await?;
        Ok(Deployment {
            dataset_group_arn: version.dataset_group_arn.clone(),
            model: Arc::new(model),
            events_through: version.events_through.clone(),
        })
    }

    /// Makes sure the real-time state holds every stored event newer than
    /// `cutoff` (live events are recorded as they arrive).
    async fn load_recent_events(&self, dataset_group_arn: &str, cutoff: &Cutoff) -> Result<()> {
        let group = self.inner.realtime.group(dataset_group_arn);
        if group.covers(cutoff) {
            return Ok(());
        }
        let mut cursor = None;
        loop {
            let page = self.store_dyn().read_events(dataset_group_arn, cursor, 10_000).await?;
            let Some((last, _)) = page.last() else { break };
            cursor = Some(*last);
            for (position, tracked) in page.into_iter().filter(|(p, _)| after_cutoff(*p, cutoff)) {
                let row = tracked.interaction;
                let event = RecentEvent {
                    position,
                    item_id: row.item_id.into(),
                    event_type: row.event_type.into(),
                    timestamp: row.timestamp,
                    value: row.event_value,
                    received_at: tracked.received_at,
                };
                group.record(&row.user_id, [event]);
            }
        }
        group.mark_loaded(cutoff);
        Ok(())
    }

    fn deployment(&self, campaign_arn: &str) -> Option<Arc<Deployment>> {
        self.inner.deployments.read().get(campaign_arn).cloned()
    }

    /// The top `num_results` items for `user_id` from an ACTIVE campaign,
    /// reflecting every event tracked for the user so far.
    pub async fn recommend(&self, campaign_arn: &str, user_id: &str, num_results: usize) -> Result<Recommendations> {
        check_num_results(num_results)?;
        check_user(user_id)?;
        let deployment = self.serving(campaign_arn).await?;
        let model = &deployment.model;
        let recent = self.recent_events(&deployment, user_id);
        // Attractions added by PutItems since training are explored by content.
        let extra: Vec<(String, travelrec_engine::ItemMeta)> = self
            .inner
            .new_items
            .get(&deployment.dataset_group_arn)
            .map(|items| {
                items.iter().filter(|i| model.item_index(i.key()).is_none()).map(|i| (i.key().clone(), i.value().clone())).collect()
            })
            .unwrap_or_default();
        if extra.is_empty() {
            let scored = model.recommend(model.histories.get(user_id), &recent, num_results);
            return Ok(recommendations(model, scored));
        }
        let metas: Vec<travelrec_engine::ItemMeta> = extra.iter().map(|(_, m)| m.clone()).collect();
        let ranked = model.recommend_extended(model.histories.get(user_id), &recent, num_results, false, &metas);
        Ok(Recommendations {
            items: ranked
                .into_iter()
                .map(|r| RecommendedItem {
                    item_id: match r.candidate {
                        Candidate::Known(i) => model.item_id(i).to_string(),
                        Candidate::Extra(k) => extra[k].0.clone(),
                    },
                    score: r.score as f64,
                })
                .collect(),
            recommendation_id: format!("RID-{}", uuid::Uuid::new_v4()),
        })
    }

    /// Items like `item_id` ("people who visited X also visited"); an item
    /// the model does not know gets the most popular items.
    pub async fn recommend_similar(&self, campaign_arn: &str, item_id: &str, num_results: usize) -> Result<Recommendations> {
        check_num_results(num_results)?;
        if item_id.is_empty() || item_id.chars().count() > 256 {
            return Err(ServiceError::invalid("itemId must be 1 to 256 characters"));
        }
        let deployment = self.serving(campaign_arn).await?;
        let model = &deployment.model;
        let scored = match model.item_index(item_id) {
            Some(item) => model.similar_items(item, num_results),
            None => model.recommend(&[], &[], num_results),
        };
        Ok(recommendations(model, scored))
    }

    /// `item_ids` ordered for `user_id`, best first (GetPersonalizedRanking).
    /// Items the model does not know keep their order at the end, with score 0.
    pub async fn rank(&self, campaign_arn: &str, user_id: &str, item_ids: &[String]) -> Result<Recommendations> {
        check_user(user_id)?;
        if item_ids.is_empty() || item_ids.len() > MAX_RESULTS {
            return Err(ServiceError::invalid(format!("inputList must hold 1 to {MAX_RESULTS} item ids, got {}", item_ids.len())));
        }
        let deployment = self.serving(campaign_arn).await?;
        let model = &deployment.model;
        let recent = self.recent_events(&deployment, user_id);
        let mut known = Vec::new();
        let mut unknown = Vec::new();
        for id in item_ids {
            match model.item_index(id) {
                Some(item) if !known.contains(&item) => known.push(item),
                Some(_) => {}
                None if !unknown.contains(id) => unknown.push(id.clone()),
                None => {}
            }
        }
        let mut result = recommendations(model, model.rank(model.histories.get(user_id), &recent, &known));
        result.items.extend(unknown.into_iter().map(|item_id| RecommendedItem { item_id, score: 0.0 }));
        Ok(result)
    }

    async fn serving(&self, campaign_arn: &str) -> Result<Arc<Deployment>> {
        match self.deployment(campaign_arn) {
            Some(deployment) => Ok(deployment),
            None => Err(self.why_not_serving(campaign_arn).await),
        }
    }

    /// The user's events tracked since the campaign's model was trained.
    fn recent_events(&self, deployment: &Deployment, user_id: &str) -> Vec<HistoryEvent> {
        let model = &deployment.model;
        self.inner
            .realtime
            .group(&deployment.dataset_group_arn)
            .recent(user_id, &deployment.events_through)
            .into_iter()
            .filter_map(|e| {
                // Items the model has never seen cannot be scored from yet.
                let item = model.item_index(&e.item_id)?;
                let timestamp = e.timestamp.max(e.received_at);
                Some(HistoryEvent {
                    item,
                    event_type: model.event_type_index(&e.event_type),
                    timestamp,
                    value: e.value.unwrap_or(f32::NAN),
                })
            })
            .collect()
    }

    async fn why_not_serving(&self, campaign_arn: &str) -> ServiceError {
        match self.store_dyn().get::<Campaign>(campaign_arn).await {
            Ok(Some(c)) if c.lifecycle.status == Status::CreateFailed => ServiceError::in_use(format!(
                "campaign {campaign_arn} failed to deploy: {}",
                c.lifecycle.failure_reason.unwrap_or_default()
            )),
            Ok(Some(c)) => ServiceError::new(
                ErrorKind::ResourceInUse,
                format!("campaign {campaign_arn} is {}; it serves recommendations once ACTIVE", c.lifecycle.status),
            ),
            Ok(None) => ServiceError::not_found(format!("campaign `{campaign_arn}` does not exist; create it with POST /campaign")),
            Err(e) => e.into(),
        }
    }
}
