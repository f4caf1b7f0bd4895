//! Deployed campaigns and getRecommendations.

use crate::Service;
use crate::catalogue::{Catalogue, Fields};
use crate::context::{city_centres, engine_context, parse_context};
use crate::error::{ErrorKind, Result, ServiceError};
use crate::filters::{ItemMasks, ParsedFilter, RequestFilter, RequestFilterContext, UserEvents};
use crate::realtime::{Cutoff, RecentEvent, after_cutoff, event_location};
use crate::training::item_meta;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use travelrec_engine::filter::ItemMask;
use travelrec_engine::{
    Candidate, HistoryEvent, ItemMeta, LocalEvent, Model, PromotedItems, Promotion, Query, RankedCandidate, ScoreFilter, ScoredItem,
};
use travelrec_store::{Campaign, SolutionVersion, Status};

fn known(r: RankedCandidate) -> Option<ScoredItem> {
    match r.candidate {
        Candidate::Known(item) => Some(ScoredItem { item, score: r.score }),
        Candidate::Extra(_) => None,
    }
}

/// An ACTIVE campaign with its model in memory. Immutable: a redeploy swaps
/// in a new one.
pub struct Deployment {
    pub dataset_group_arn: String,
    pub model: Arc<Model>,
    /// Tracked events up to here are inside the model.
    pub events_through: Cutoff,
    /// Items' fields by model index, as at deployment (what filters read).
    pub(crate) item_fields: Vec<Fields>,
    /// Verdicts of the filters on items' own fields this deployment has served.
    item_masks: parking_lot::Mutex<ItemMasks>,
    /// City name (lower case) → the middle of its attractions.
    cities: HashMap<String, (f64, f64)>,
    /// What the catalogue adds to the model, rebuilt when the catalogue changes.
    view: parking_lot::Mutex<Option<Arc<CatalogueView>>>,
}

/// The catalogue as this deployment's model sees it: items it does not know
/// (explored by content) and local events with their host items as indices.
/// Built once per catalogue change, not per request.
struct CatalogueView {
    catalogue: Arc<Catalogue>,
    extra_ids: Vec<String>,
    extra_metas: Vec<ItemMeta>,
    local_events: Vec<LocalEvent>,
}

impl Deployment {
    /// The mask already computed for the filter `parsed` (at `arn`) and `values`, if any.
    pub(crate) fn cached_item_mask(
        &self,
        parsed: &Arc<ParsedFilter>,
        arn: &str,
        values: &BTreeMap<String, String>,
    ) -> Option<Arc<ItemMask>> {
        self.item_masks.lock().get(parsed, arn, values)
    }

    /// The item mask of the filter `parsed` (at `arn`, bound to `values`), computed on first use.
    pub(crate) fn item_mask(
        &self,
        parsed: &Arc<ParsedFilter>,
        arn: &str,
        values: &BTreeMap<String, String>,
        compute: impl FnOnce() -> ItemMask,
    ) -> Arc<ItemMask> {
        self.item_masks.lock().get_or_insert(parsed, arn, values, compute)
    }

    fn view(&self, catalogue: Arc<Catalogue>) -> Arc<CatalogueView> {
        let mut cached = self.view.lock();
        if let Some(view) = cached.as_ref().filter(|v| Arc::ptr_eq(&v.catalogue, &catalogue)) {
            return view.clone();
        }
        let model = &self.model;
        let mut extra: Vec<(&String, &Fields)> = catalogue.items.iter().filter(|(id, _)| model.item_index(id).is_none()).collect();
        extra.sort_by(|a, b| a.0.cmp(b.0));
        let local_events = catalogue
            .local_events
            .iter()
            .map(|e| LocalEvent {
                item: e.item_id.as_deref().and_then(|id| model.item_index(id)),
                location: e.location,
                start: e.start,
                end: e.end,
            })
            .collect();
        let view = Arc::new(CatalogueView {
            extra_ids: extra.iter().map(|(id, _)| (*id).clone()).collect(),
            extra_metas: extra.iter().map(|(_, fields)| item_meta(fields)).collect(),
            local_events,
            catalogue: catalogue.clone(),
        });
        *cached = Some(view.clone());
        view
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RecommendedItem {
    pub item_id: String,
    /// Probability under a softmax over the whole catalogue.
    pub score: f64,
    /// The promotion that placed the item, if one did.
    pub promotion_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Recommendations {
    pub items: Vec<RecommendedItem>,
    pub recommendation_id: String,
}

/// Slots reserved for items a filter allows (GetRecommendations' `promotions`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PromotionRequest {
    pub name: String,
    pub percent_promoted_items: u32,
    pub filter_arn: String,
    pub filter_values: BTreeMap<String, String>,
}

/// Everything a GetRecommendations request can ask.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RecommendationRequest {
    pub campaign_arn: String,
    /// Who to recommend for (optional when `item_id` asks for similar items).
    pub user_id: Option<String>,
    /// Items similar to this one.
    pub item_id: Option<String>,
    pub num_results: usize,
    /// LOCATION, CITY, DATE, DEVICE.
    pub context: BTreeMap<String, String>,
    pub filter_arn: Option<String>,
    pub filter_values: BTreeMap<String, String>,
    pub promotions: Vec<PromotionRequest>,
}

/// GetPersonalizedRanking.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RankingRequest {
    pub campaign_arn: String,
    pub user_id: String,
    pub input_list: Vec<String>,
    pub context: BTreeMap<String, String>,
    pub filter_arn: Option<String>,
    pub filter_values: BTreeMap<String, String>,
}

/// The managed service's limit on numResults.
pub const MAX_RESULTS: usize = 500;

fn check_num_results(num_results: usize) -> Result<()> {
    if num_results == 0 || num_results > MAX_RESULTS {
        return Err(ServiceError::invalid(format!("numResults must be between 1 and {MAX_RESULTS}, got {num_results}")));
    }
    Ok(())
}

pub(crate) fn check_id(what: &str, value: &str) -> Result<()> {
    if value.is_empty() || value.chars().count() > 256 {
        return Err(ServiceError::invalid(format!("{what} must be 1 to 256 characters")));
    }
    Ok(())
}

fn new_recommendation_id() -> String {
    format!("RID-{}", uuid::Uuid::new_v4())
}

fn recommendations(model: &Model, scored: Vec<travelrec_engine::ScoredItem>) -> Recommendations {
    Recommendations {
        items: scored
            .into_iter()
            .map(|s| RecommendedItem { item_id: model.item_id(s.item).to_string(), score: s.score as f64, promotion_name: None })
            .collect(),
        recommendation_id: new_recommendation_id(),
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

    /// Puts `deployment` in place of the campaign's, if the campaign still
    /// serves (one deleted meanwhile stays deleted); returns whether it did.
    pub(crate) fn swap_deployment(&self, campaign_arn: &str, deployment: Deployment) -> bool {
        match self.inner.deployments.write().get_mut(campaign_arn) {
            Some(serving) => {
                *serving = Arc::new(deployment);
                true
            }
            None => false,
        }
    }

    pub(crate) async fn deploy(&self, campaign: &Campaign) -> Result<Deployment> {
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
        let catalogue = self.catalogue(&version.dataset_group_arn).await?;
        let no_fields: Fields = Arc::new(Vec::new());
        let item_fields =
            model.items.ids().iter().map(|id| catalogue.items.get(id).cloned().unwrap_or_else(|| no_fields.clone())).collect();
        let cities = city_centres(&model.item_meta);
        Ok(Deployment {
            dataset_group_arn: version.dataset_group_arn.clone(),
            model: Arc::new(model),
            events_through: version.events_through.clone(),
            item_fields,
            item_masks: Default::default(),
            cities,
            view: parking_lot::Mutex::new(None),
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
                    location: event_location(&row.fields),
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
        let request =
            RecommendationRequest { campaign_arn: campaign_arn.into(), user_id: Some(user_id.into()), num_results, ..Default::default() };
        self.get_recommendations(&request).await
    }

    /// Items like `item_id` ("people who visited X also visited"); an item
    /// the model does not know gets the most popular items.
    pub async fn recommend_similar(&self, campaign_arn: &str, item_id: &str, num_results: usize) -> Result<Recommendations> {
        let request =
            RecommendationRequest { campaign_arn: campaign_arn.into(), item_id: Some(item_id.into()), num_results, ..Default::default() };
        self.get_recommendations(&request).await
    }

    /// `item_ids` ordered for `user_id`, best first (GetPersonalizedRanking).
    pub async fn rank(&self, campaign_arn: &str, user_id: &str, item_ids: &[String]) -> Result<Recommendations> {
        let request = RankingRequest {
            campaign_arn: campaign_arn.into(),
            user_id: user_id.into(),
            input_list: item_ids.to_vec(),
            ..Default::default()
        };
        self.get_personalized_ranking(&request).await
    }

    /// GetRecommendations: for a user (with the request's context, a filter
    /// and promotions), or items similar to an item.
    pub async fn get_recommendations(&self, request: &RecommendationRequest) -> Result<Recommendations> {
        let started = std::time::Instant::now();
        let result = self.compute_recommendations(request).await;
        self.record_call(&request.campaign_arn, started, &result);
        result
    }

    /// GetPersonalizedRanking: the caller's items ordered for the user in the
    /// request's context; items the filter rejects are dropped, items the
    /// model does not know keep their order at the end with score 0.
    pub async fn get_personalized_ranking(&self, request: &RankingRequest) -> Result<Recommendations> {
        let started = std::time::Instant::now();
        let result = self.compute_ranking(request).await;
        self.record_call(&request.campaign_arn, started, &result);
        result
    }

    /// Counts a call in its campaign's activity (see [`crate::feedback`]);
    /// failures only for deployed campaigns, so unknown ARNs cost nothing.
    fn record_call(&self, campaign_arn: &str, started: std::time::Instant, result: &Result<Recommendations>) {
        let feedback = &self.inner.feedback;
        match result {
            Ok(served) => {
                feedback.served(campaign_arn, &served.recommendation_id, served.items.iter().map(|i| i.item_id.as_str()), started.elapsed())
            }
            Err(_) if self.inner.deployments.read().contains_key(campaign_arn) => feedback.failed(campaign_arn),
            Err(_) => {}
        }
    }

    async fn compute_recommendations(&self, request: &RecommendationRequest) -> Result<Recommendations> {
        check_num_results(request.num_results)?;
        if let Some(user) = &request.user_id {
            check_id("userId", user)?;
        }
        if let Some(item) = &request.item_id {
            check_id("itemId", item)?;
        }
        if request.user_id.is_none() && request.item_id.is_none() {
            return Err(ServiceError::invalid("give userId, or itemId for items similar to one"));
        }
        let requested_context = parse_context(&request.context)?;
        let deployment = self.serving(&request.campaign_arn).await?;
        let model = &deployment.model;
        let group = &deployment.dataset_group_arn;
        let user = request.user_id.as_deref().unwrap_or_default();
        let recent = self.recent_events(&deployment, user);
        let current_item = request.item_id.as_deref().and_then(|id| model.item_index(id));
        let filter = match &request.filter_arn {
            Some(arn) => Some(self.request_filter(&deployment, arn, &request.filter_values).await?),
            None => None,
        };
        let mut promotion_filters = Vec::with_capacity(request.promotions.len());
        for promotion in &request.promotions {
            if promotion.percent_promoted_items == 0 || promotion.percent_promoted_items > 100 {
                return Err(ServiceError::invalid(format!(
                    "promotion `{}`: percentPromotedItems must be between 1 and 100, got {}",
                    promotion.name, promotion.percent_promoted_items
                )));
            }
            promotion_filters.push(self.request_filter(&deployment, &promotion.filter_arn, &promotion.filter_values).await?);
        }
        // What filters look at costs a pass over the user's history: only when one needs it.
        let filter_context = if filter.iter().chain(&promotion_filters).any(RequestFilter::needs_request) {
            Some(self.filter_context(&deployment, user, &recent, current_item).await?)
        } else {
            None
        };
        let apply_filter = |scores: &mut [f32]| {
            if let Some(filter) = &filter {
                filter.apply(scores, filter_context.as_ref());
            }
        };

        if let (Some(_), None) = (&request.item_id, &request.user_id) {
            let scored = match current_item {
                Some(item) => model.similar_items_filtered(item, request.num_results, Some(&apply_filter)),
                None => model
                    .query(&Query { k: request.num_results, filter: Some(&apply_filter), ..Query::default() })
                    .into_iter()
                    .filter_map(known)
                    .collect(),
            };
            return Ok(recommendations(model, scored));
        }

        let filter_context = &filter_context;
        let promotion_appliers: Vec<_> =
            promotion_filters.iter().map(|f| move |scores: &mut [f32]| f.apply(scores, filter_context.as_ref())).collect();
        let promotions = request
            .promotions
            .iter()
            .zip(promotion_filters.iter().zip(&promotion_appliers))
            .map(|(p, (filter, apply))| Promotion {
                share: p.percent_promoted_items as f32 / 100.0,
                items: match filter {
                    RequestFilter::Items(mask) => PromotedItems::Mask(mask),
                    RequestFilter::Bound(_) => PromotedItems::Filter(apply),
                },
            })
            .collect();

        // Attractions added by PutItems since training are explored by content.
        let view = deployment.view(self.catalogue(group).await?);
        let last_location = self.last_known_location(group, user);
        let context = engine_context(&requested_context, &deployment.cities, last_location, &view.local_events)?;
        let query = Query {
            history: model.histories.get(user),
            recent: &recent,
            k: request.num_results,
            exclude_seen: false,
            context,
            extra: &view.extra_metas,
            filter: request.filter_arn.as_ref().map(|_| &apply_filter as ScoreFilter),
            promotions,
        };
        let ranked = model.query(&query);
        Ok(Recommendations {
            items: ranked
                .into_iter()
                .map(|r| RecommendedItem {
                    item_id: match r.candidate {
                        Candidate::Known(i) => model.item_id(i).to_string(),
                        Candidate::Extra(k) => view.extra_ids[k].clone(),
                    },
                    score: r.score as f64,
                    promotion_name: r.promotion.map(|p| request.promotions[p].name.clone()),
                })
                .collect(),
            recommendation_id: new_recommendation_id(),
        })
    }

    async fn compute_ranking(&self, request: &RankingRequest) -> Result<Recommendations> {
        check_id("userId", &request.user_id)?;
        if request.input_list.is_empty() || request.input_list.len() > MAX_RESULTS {
            return Err(ServiceError::invalid(format!(
                "inputList must hold 1 to {MAX_RESULTS} item ids, got {}",
                request.input_list.len()
            )));
        }
        let requested_context = parse_context(&request.context)?;
        let deployment = self.serving(&request.campaign_arn).await?;
        let model = &deployment.model;
        let group = &deployment.dataset_group_arn;
        let recent = self.recent_events(&deployment, &request.user_id);
        let mut known = Vec::new();
        let mut unknown = Vec::new();
        for id in &request.input_list {
            match model.item_index(id) {
                Some(item) if !known.contains(&item) => known.push(item),
                Some(_) => {}
                None if !unknown.contains(id) => unknown.push(id.clone()),
                None => {}
            }
        }
        if let Some(arn) = &request.filter_arn {
            let filter = self.request_filter(&deployment, arn, &request.filter_values).await?;
            let filter_context = match filter.needs_request() {
                true => Some(self.filter_context(&deployment, &request.user_id, &recent, None).await?),
                false => None,
            };
            known.retain(|&item| filter.allows(item, filter_context.as_ref()));
        }
        let view = deployment.view(self.catalogue(group).await?);
        let last_location = self.last_known_location(group, &request.user_id);
        let context = engine_context(&requested_context, &deployment.cities, last_location, &view.local_events)?;
        let mut result = recommendations(model, model.rank(model.histories.get(&request.user_id), &recent, &known, &context));
        result.items.extend(unknown.into_iter().map(|item_id| RecommendedItem { item_id, score: 0.0, promotion_name: None }));
        Ok(result)
    }

    /// What filters see of this request.
    async fn filter_context<'a>(
        &self,
        deployment: &'a Deployment,
        user_id: &str,
        recent: &[HistoryEvent],
        current_item: Option<u32>,
    ) -> Result<RequestFilterContext<'a>> {
        let model = &deployment.model;
        // Tracked events of a type the model has not seen are scored without
        // their type; a filter on that type (a first "book" after training)
        // still needs its name.
        let unseen: Vec<(u32, Arc<str>)> = if recent.iter().any(|e| e.event_type == HistoryEvent::UNKNOWN_TYPE) {
            self.inner
                .realtime
                .group(&deployment.dataset_group_arn)
                .recent(user_id, &deployment.events_through)
                .into_iter()
                .filter(|e| model.event_type_index(&e.event_type) == HistoryEvent::UNKNOWN_TYPE)
                .filter_map(|e| Some((model.item_index(&e.item_id)?, e.event_type)))
                .collect()
        } else {
            Vec::new()
        };
        let user_events = UserEvents::new(&model.event_types, model.histories.get(user_id).iter().chain(recent), &unseen);
        let user_fields =
            if user_id.is_empty() { None } else { self.catalogue(&deployment.dataset_group_arn).await?.users.get(user_id).cloned() };
        Ok(RequestFilterContext { model, item_fields: &deployment.item_fields, user_events, user_fields, current_item })
    }

    /// The location of the user's newest tracked event that has one.
    fn last_known_location(&self, group: &str, user_id: &str) -> Option<(f64, f64)> {
        if user_id.is_empty() {
            return None;
        }
        self.inner.realtime.group(group).last_location(user_id)
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
