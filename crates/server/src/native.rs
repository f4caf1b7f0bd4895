//! The native API under `/v1`: every resource with its full description
//! (status, timestamps, failure reason, progress), created with the managed
//! service's field names, addressed by the path that ends its ARN.

use crate::AppState;
use crate::body::LenientJson;
use crate::error::ApiResult;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use travelrec_store::{
    Campaign, Dataset, DatasetGroup, DatasetImportJob, DatasetType, EventTracker, Filter, ImportMode, ResourceKind, ResourceType, Schema,
    Solution, SolutionVersion,
};

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/v1/health", get(health))
        .route("/v1/dataset-groups", post(create_dataset_group).get(list::<DatasetGroup>))
        .route("/v1/dataset-groups/{name}", get(describe_dataset_group).delete(delete_dataset_group))
        .route("/v1/schemas", post(create_schema).get(list::<Schema>))
        .route("/v1/schemas/{name}", get(describe_schema))
        .route("/v1/datasets", post(create_dataset).get(list::<Dataset>))
        .route("/v1/datasets/{group}/{dataset_type}", get(describe_dataset).delete(delete_dataset))
        .route("/v1/dataset-import-jobs", post(create_import_job).get(list::<DatasetImportJob>))
        .route("/v1/dataset-import-jobs/{name}", get(describe_import_job))
        .route("/v1/solutions", post(create_solution).get(list::<Solution>))
        .route("/v1/solutions/{name}", get(describe_solution).delete(delete_solution))
        .route("/v1/solution-versions", post(create_solution_version).get(list::<SolutionVersion>))
        .route("/v1/solutions/{name}/versions/{version}", get(describe_solution_version).delete(delete_solution_version))
        .route("/v1/campaigns", post(create_campaign).get(list::<Campaign>))
        .route("/v1/campaigns/{name}", get(describe_campaign).delete(delete_campaign).patch(update_campaign))
        .route("/v1/campaigns/{name}/retrain", post(retrain_campaign))
        .route("/v1/event-trackers", post(create_event_tracker).get(list::<EventTracker>))
        .route("/v1/event-trackers/{id}", get(describe_event_tracker).delete(delete_event_tracker))
        .route("/v1/solutions/{name}/versions/{version}/metrics", get(solution_metrics))
        .route("/v1/filters", post(create_filter).get(list::<Filter>))
        .route("/v1/filters/{name}", get(describe_filter).delete(delete_filter))
        .route("/v1/recommendations", post(recommend))
        .route("/v1/personalized-ranking", post(personalized_ranking))
}

async fn health() -> Json<Value> {
    Json(json!({"status": "available"}))
}

fn arn(state: &AppState, kind: ResourceKind, path: &str) -> String {
    state.service.config().arns.arn(kind, path)
}

fn described<T: serde::Serialize>(resource: T) -> ApiResult<Json<Value>> {
    Ok(Json(serde_json::to_value(resource).expect("resources serialise")))
}

async fn list<T: ResourceType + serde::Serialize>(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let items = state.service.list::<T>().await?;
    Ok(Json(json!({ "items": items })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NameRequest {
    name: String,
}

async fn create_dataset_group(State(state): State<AppState>, LenientJson(req): LenientJson<NameRequest>) -> ApiResult<impl IntoResponse> {
    let group = state.service.create_dataset_group(&req.name).await?;
    Ok((StatusCode::CREATED, described(group)?))
}

async fn describe_dataset_group(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    described(state.service.describe::<DatasetGroup>(&arn(&state, ResourceKind::DatasetGroup, &name)).await?)
}

async fn delete_dataset_group(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    state.service.delete_dataset_group(&arn(&state, ResourceKind::DatasetGroup, &name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SchemaRequest {
    name: String,
    /// The Avro schema, as JSON text or as a JSON object.
    schema: Value,
}

async fn create_schema(State(state): State<AppState>, LenientJson(req): LenientJson<SchemaRequest>) -> ApiResult<impl IntoResponse> {
    let text = match req.schema {
        Value::String(s) => s,
        other => other.to_string(),
    };
    Ok((StatusCode::CREATED, described(state.service.create_schema(&req.name, &text).await?)?))
}

async fn describe_schema(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    described(state.service.describe::<Schema>(&arn(&state, ResourceKind::Schema, &name)).await?)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DatasetRequest {
    name: String,
    dataset_group_arn: String,
    dataset_type: String,
    schema_arn: String,
}

fn dataset_type(value: &str) -> ApiResult<DatasetType> {
    DatasetType::parse(value).ok_or_else(|| {
        crate::error::ApiError::bad_request(format!("datasetType `{value}` is not one of INTERACTIONS, ITEMS, USERS, LOCAL_EVENTS"))
    })
}

async fn create_dataset(State(state): State<AppState>, LenientJson(req): LenientJson<DatasetRequest>) -> ApiResult<impl IntoResponse> {
    let t = dataset_type(&req.dataset_type)?;
    let dataset = state.service.create_dataset(&req.name, &req.dataset_group_arn, t, &req.schema_arn).await?;
    Ok((StatusCode::CREATED, described(dataset)?))
}

async fn describe_dataset(State(state): State<AppState>, Path((group, t)): Path<(String, String)>) -> ApiResult<Json<Value>> {
    let t = dataset_type(&t)?;
    described(state.service.describe::<Dataset>(&arn(&state, ResourceKind::Dataset, &format!("{group}/{}", t.as_str()))).await?)
}

async fn delete_dataset(State(state): State<AppState>, Path((group, t)): Path<(String, String)>) -> ApiResult<StatusCode> {
    let t = dataset_type(&t)?;
    state.service.delete_dataset(&arn(&state, ResourceKind::Dataset, &format!("{group}/{}", t.as_str()))).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DataSourceRequest {
    data_location: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ImportJobRequest {
    job_name: String,
    dataset_arn: String,
    data_source: DataSourceRequest,
    #[serde(default)]
    import_mode: ImportMode,
}

async fn create_import_job(State(state): State<AppState>, LenientJson(req): LenientJson<ImportJobRequest>) -> ApiResult<impl IntoResponse> {
    let job = state.service.create_import_job(&req.job_name, &req.dataset_arn, &req.data_source.data_location, req.import_mode).await?;
    Ok((StatusCode::ACCEPTED, described(job)?))
}

async fn describe_import_job(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    described(state.service.describe::<DatasetImportJob>(&arn(&state, ResourceKind::DatasetImportJob, &name)).await?)
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SolutionConfigRequest {
    #[serde(default)]
    algorithm_hyper_parameters: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SolutionRequest {
    name: String,
    dataset_group_arn: String,
    #[serde(default = "default_recipe")]
    recipe_arn: String,
    #[serde(default)]
    solution_config: SolutionConfigRequest,
}

fn default_recipe() -> String {
    "arn:aws:personalize:::recipe/aws-user-personalization".into()
}

async fn create_solution(State(state): State<AppState>, LenientJson(req): LenientJson<SolutionRequest>) -> ApiResult<impl IntoResponse> {
    let solution = state
        .service
        .create_solution(&req.name, &req.dataset_group_arn, &req.recipe_arn, req.solution_config.algorithm_hyper_parameters)
        .await?;
    Ok((StatusCode::CREATED, described(solution)?))
}

async fn describe_solution(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    described(state.service.describe::<Solution>(&arn(&state, ResourceKind::Solution, &name)).await?)
}

async fn delete_solution(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    state.service.delete_solution(&arn(&state, ResourceKind::Solution, &name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SolutionVersionRequest {
    solution_arn: String,
    name: String,
}

async fn create_solution_version(
    State(state): State<AppState>,
    LenientJson(req): LenientJson<SolutionVersionRequest>,
) -> ApiResult<impl IntoResponse> {
    let version = state.service.create_solution_version(&req.solution_arn, &req.name).await?;
    Ok((StatusCode::ACCEPTED, described(version)?))
}

async fn describe_solution_version(State(state): State<AppState>, Path((name, version)): Path<(String, String)>) -> ApiResult<Json<Value>> {
    described(state.service.describe::<SolutionVersion>(&arn(&state, ResourceKind::Solution, &format!("{name}/{version}"))).await?)
}

async fn delete_solution_version(State(state): State<AppState>, Path((name, version)): Path<(String, String)>) -> ApiResult<StatusCode> {
    state.service.delete_solution_version(&arn(&state, ResourceKind::Solution, &format!("{name}/{version}"))).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CampaignRequest {
    name: String,
    solution_version_arn: String,
}

async fn create_campaign(State(state): State<AppState>, LenientJson(req): LenientJson<CampaignRequest>) -> ApiResult<impl IntoResponse> {
    let campaign = state.service.create_campaign(&req.name, &req.solution_version_arn).await?;
    Ok((StatusCode::ACCEPTED, described(campaign)?))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpdateCampaignRequest {
    solution_version_arn: String,
    /// Accepted as the managed service's clients send them; travelrec has no
    /// provisioned capacity or campaign configuration to change.
    #[serde(default, rename = "minProvisionedTPS")]
    _min_provisioned_tps: Option<u32>,
    #[serde(default, rename = "campaignConfig")]
    _campaign_config: Option<Value>,
}

/// UpdateCampaign: 202; the campaign serves its model until the new one is
/// loaded (`latestCampaignUpdate`).
async fn update_campaign(
    State(state): State<AppState>,
    Path(name): Path<String>,
    LenientJson(req): LenientJson<UpdateCampaignRequest>,
) -> ApiResult<impl IntoResponse> {
    let campaign = state.service.update_campaign(&arn(&state, ResourceKind::Campaign, &name), &req.solution_version_arn).await?;
    Ok((StatusCode::ACCEPTED, described(campaign)?))
}

/// 202 with the solution version being trained; the campaign moves to it once ACTIVE.
async fn retrain_campaign(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<impl IntoResponse> {
    let version = state.service.retrain_campaign(&arn(&state, ResourceKind::Campaign, &name)).await?;
    Ok((StatusCode::ACCEPTED, described(version)?))
}

async fn describe_campaign(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    described(state.service.describe::<Campaign>(&arn(&state, ResourceKind::Campaign, &name)).await?)
}

async fn delete_campaign(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<impl IntoResponse> {
    let campaign = state.service.delete_campaign(&arn(&state, ResourceKind::Campaign, &name)).await?;
    Ok((StatusCode::ACCEPTED, described(campaign)?))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EventTrackerRequest {
    name: String,
    dataset_group_arn: String,
}

async fn create_event_tracker(
    State(state): State<AppState>,
    LenientJson(req): LenientJson<EventTrackerRequest>,
) -> ApiResult<impl IntoResponse> {
    let tracker = state.service.create_event_tracker(&req.name, &req.dataset_group_arn).await?;
    Ok((StatusCode::CREATED, described(tracker)?))
}

async fn describe_event_tracker(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    described(state.service.describe::<EventTracker>(&arn(&state, ResourceKind::EventTracker, &id)).await?)
}

async fn delete_event_tracker(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<impl IntoResponse> {
    let tracker = state.service.delete_event_tracker(&arn(&state, ResourceKind::EventTracker, &id)).await?;
    Ok((StatusCode::ACCEPTED, described(tracker)?))
}

/// GetSolutionMetrics: the offline metrics computed when the version was trained.
async fn solution_metrics(State(state): State<AppState>, Path((name, version)): Path<(String, String)>) -> ApiResult<Json<Value>> {
    let version: SolutionVersion = state.service.describe(&arn(&state, ResourceKind::Solution, &format!("{name}/{version}"))).await?;
    Ok(Json(json!({"solutionVersionArn": version.solution_version_arn, "metrics": version.metrics.unwrap_or_default()})))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FilterRequest {
    name: String,
    dataset_group_arn: String,
    filter_expression: String,
}

/// CreateFilter: the expression is parsed now, so mistakes are reported with their position.
async fn create_filter(State(state): State<AppState>, LenientJson(req): LenientJson<FilterRequest>) -> ApiResult<impl IntoResponse> {
    let filter = state.service.create_filter(&req.name, &req.dataset_group_arn, &req.filter_expression).await?;
    Ok((StatusCode::CREATED, described(filter)?))
}

async fn describe_filter(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    described(state.service.describe::<Filter>(&arn(&state, ResourceKind::Filter, &name)).await?)
}

async fn delete_filter(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    state.service.delete_filter(&arn(&state, ResourceKind::Filter, &name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RecommendationRequest {
    campaign_arn: String,
    #[serde(default)]
    user_id: Option<String>,
    /// Items similar to this one (similar-items campaigns and others).
    #[serde(default)]
    item_id: Option<String>,
    #[serde(default = "default_num_results")]
    num_results: usize,
    /// LOCATION, CITY, DATE, DEVICE.
    #[serde(default)]
    context: BTreeMap<String, String>,
    #[serde(default)]
    filter_arn: Option<String>,
    #[serde(default)]
    filter_values: BTreeMap<String, String>,
    #[serde(default)]
    promotions: Vec<PromotionRequest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PromotionRequest {
    name: String,
    percent_promoted_items: u32,
    filter_arn: String,
    #[serde(default)]
    filter_values: BTreeMap<String, String>,
}

fn default_num_results() -> usize {
    25
}

async fn recommend(
    State(state): State<AppState>,
    LenientJson(req): LenientJson<RecommendationRequest>,
) -> ApiResult<axum::response::Response> {
    let request = travelrec_service::RecommendationRequest {
        campaign_arn: req.campaign_arn,
        user_id: req.user_id,
        item_id: req.item_id,
        num_results: req.num_results,
        context: req.context,
        filter_arn: req.filter_arn,
        filter_values: req.filter_values,
        promotions: req
            .promotions
            .into_iter()
            .map(|p| travelrec_service::PromotionRequest {
                name: p.name,
                percent_promoted_items: p.percent_promoted_items,
                filter_arn: p.filter_arn,
                filter_values: p.filter_values,
            })
            .collect(),
    };
    let recommendations = state.service.get_recommendations(&request).await?;
    Ok(Json(RecommendationsResponse { item_list: item_list(&recommendations), recommendation_id: &recommendations.recommendation_id })
        .into_response())
}

/// `{itemId, score}` per item, with `promotionName` on items a promotion
/// placed. Typed, not a `serde_json::Value`: on the hottest route a map per
/// item cost allocations and a tree insert per key.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListedItem<'a> {
    item_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    promotion_name: Option<&'a str>,
    score: f64,
}

pub(crate) fn item_list(recommendations: &travelrec_service::Recommendations) -> Vec<ListedItem<'_>> {
    recommendations
        .items
        .iter()
        .map(|i| ListedItem { item_id: &i.item_id, promotion_name: i.promotion_name.as_deref(), score: i.score })
        .collect()
}

/// What getRecommendations answers (keys in the order the original's sorted maps wrote them).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RecommendationsResponse<'a> {
    item_list: Vec<ListedItem<'a>>,
    recommendation_id: &'a str,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RankingRequest {
    campaign_arn: String,
    user_id: String,
    input_list: Vec<String>,
    #[serde(default)]
    context: BTreeMap<String, String>,
    #[serde(default)]
    filter_arn: Option<String>,
    #[serde(default)]
    filter_values: BTreeMap<String, String>,
}

/// GetPersonalizedRanking: the caller's items, ordered for the user.
async fn personalized_ranking(State(state): State<AppState>, LenientJson(req): LenientJson<RankingRequest>) -> ApiResult<Json<Value>> {
    let request = travelrec_service::RankingRequest {
        campaign_arn: req.campaign_arn,
        user_id: req.user_id,
        input_list: req.input_list,
        context: req.context,
        filter_arn: req.filter_arn,
        filter_values: req.filter_values,
    };
    let ranked = state.service.get_personalized_ranking(&request).await?;
    Ok(Json(json!({"personalizedRanking": item_list(&ranked), "recommendationId": ranked.recommendation_id})))
}
