//! The original REST API, route by route (see ORIGINAL-API.md): same paths,
//! parameter names and success shapes; errors are 4xx JSON instead of 500/502.

use crate::AppState;
use crate::body::LenientJson;
use crate::error::{ApiError, ApiResult};
use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use travelrec_service::{DataRecord, RecommendationRequest};
use travelrec_store::{Campaign, SolutionVersion};

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/solutionVersion", post(create_solution_version))
        .route("/describeSolutionVersion", post(describe_solution_version))
        .route("/campaign", post(create_campaign))
        .route("/describeCampaign", post(describe_campaign))
        .route("/eventTracker", post(create_event_tracker))
        .route("/getRecommendations", get(get_recommendations))
        .route("/data", post(put_data))
        .route("/deleteResources", delete(delete_resources))
}

/// The AWS SDK's response metadata, which the original passed through.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    attempts: u32,
    http_status_code: u16,
    request_id: String,
    total_retry_delay: u32,
}

impl Metadata {
    pub fn new(status: StatusCode) -> Self {
        Self { attempts: 1, http_status_code: status.as_u16(), request_id: uuid::Uuid::new_v4().to_string(), total_retry_delay: 0 }
    }
}

pub fn metadata(status: StatusCode) -> Value {
    serde_json::to_value(Metadata::new(status)).expect("metadata serialises")
}

/// The original's getRecommendations answer (keys in its sorted maps' order).
#[derive(Serialize)]
struct RecommendationsResponse<'a> {
    #[serde(rename = "$metadata")]
    metadata: Metadata,
    #[serde(rename = "itemList")]
    item_list: Vec<crate::native::ListedItem<'a>>,
    #[serde(rename = "recommendationId")]
    recommendation_id: &'a str,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SolutionVersionRequest {
    solution_arn: String,
    version: String,
}

async fn create_solution_version(
    State(state): State<AppState>,
    LenientJson(req): LenientJson<SolutionVersionRequest>,
) -> ApiResult<Json<Value>> {
    let version = state.service.create_solution_version(&req.solution_arn, &req.version).await?;
    Ok(Json(json!({"$metadata": metadata(StatusCode::OK), "solutionVersionArn": version.solution_version_arn})))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DescribeSolutionVersionRequest {
    solution_version_arn: String,
}

/// Answers the bare status string the original's clients parse.
async fn describe_solution_version(
    State(state): State<AppState>,
    LenientJson(req): LenientJson<DescribeSolutionVersionRequest>,
) -> ApiResult<Json<Value>> {
    let version: SolutionVersion = state.service.describe(&req.solution_version_arn).await?;
    Ok(Json(Value::String(version.lifecycle.status.as_str().to_string())))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CampaignRequest {
    solution_version_arn: String,
    name: String,
}

async fn create_campaign(State(state): State<AppState>, LenientJson(req): LenientJson<CampaignRequest>) -> ApiResult<Json<Value>> {
    let campaign = state.service.create_campaign(&req.name, &req.solution_version_arn).await?;
    Ok(Json(json!({"$metadata": metadata(StatusCode::OK), "campaignArn": campaign.campaign_arn})))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DescribeCampaignRequest {
    campaign_arn: String,
}

/// The bare status string; a missing campaign is the plain text the
/// original's clients poll for after a delete, now with a 404.
async fn describe_campaign(State(state): State<AppState>, LenientJson(req): LenientJson<DescribeCampaignRequest>) -> Response {
    match state.service.describe::<Campaign>(&req.campaign_arn).await {
        Ok(campaign) => Json(Value::String(campaign.lifecycle.status.as_str().to_string())).into_response(),
        Err(e) if e.kind == travelrec_service::ErrorKind::NotFound => {
            (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "Campaign is deleted or does not exist")
                .into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EventTrackerRequest {
    name: String,
    dataset_group_arn: String,
}

async fn create_event_tracker(State(state): State<AppState>, LenientJson(req): LenientJson<EventTrackerRequest>) -> ApiResult<Json<Value>> {
    let tracker = state.service.create_event_tracker(&req.name, &req.dataset_group_arn).await?;
    Ok(Json(json!({
        "$metadata": metadata(StatusCode::OK),
        "eventTrackerArn": tracker.event_tracker_arn,
        "trackingId": tracker.tracking_id
    })))
}

/// Query parameters of getRecommendations, parsed by hand so that every
/// problem gets its own message (the original answered 502 to all of them).
/// Context keys (`LOCATION`, `CITY`, `DATE`, `DEVICE`) and `filterArn` /
/// `filterValues` (a JSON object) are travelrec's additions.
const QUERY_KEYS: &[&str] =
    &["campaignArn", "userId", "itemId", "numResults", "filterArn", "filterValues", "LOCATION", "CITY", "DATE", "DEVICE"];

pub(crate) fn parse_recommendation_query(raw: Option<&str>) -> ApiResult<RecommendationRequest> {
    // `+` is a space and `%XX` a byte; an unencoded ARN (as the original's
    // Postman collection sends) passes unchanged.
    let pairs = form_urlencoded::parse(raw.unwrap_or("").as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned()));
    let mut campaign_arn = None;
    let mut user_id = None;
    let mut num_results = None;
    let mut item_id = None;
    let mut context = BTreeMap::new();
    let mut filter_arn = None;
    let mut filter_values = BTreeMap::new();
    for (key, value) in pairs {
        match key.as_str() {
            "campaignArn" => campaign_arn = Some(value),
            "userId" => user_id = Some(value),
            "itemId" => item_id = Some(value),
            "numResults" => num_results = Some(value),
            "filterArn" => filter_arn = Some(value).filter(|v| !v.is_empty()),
            "filterValues" => {
                filter_values = serde_json::from_str(&value).map_err(|e| {
                    ApiError::bad_request(format!(
                        "filterValues must be a JSON object of strings, e.g. {{\"CITY\":\"\\\"Lisbon\\\"\"}}: {e}"
                    ))
                })?
            }
            other if travelrec_service::context::CONTEXT_KEYS.iter().any(|k| k.eq_ignore_ascii_case(other)) => {
                context.insert(other.to_ascii_uppercase(), value);
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter `{other}`; known parameters: {}",
                    QUERY_KEYS.join(", ")
                )));
            }
        }
    }
    let campaign_arn =
        campaign_arn.filter(|v| !v.is_empty()).ok_or_else(|| ApiError::bad_request("query parameter campaignArn is required"))?;
    let user_id = user_id.filter(|v| !v.is_empty());
    let item_id = item_id.filter(|v| !v.is_empty());
    if user_id.is_none() && item_id.is_none() {
        return Err(ApiError::bad_request("query parameter userId is required (or itemId, for items similar to one)"));
    }
    let num_results = match num_results {
        None => 25,
        Some(v) => v
            .trim()
            .parse::<usize>()
            .map_err(|_| ApiError::bad_request(format!("numResults `{v}` is not a whole number between 1 and 500")))?,
    };
    Ok(RecommendationRequest { campaign_arn, user_id, item_id, num_results, context, filter_arn, filter_values, promotions: Vec::new() })
}

async fn get_recommendations(State(state): State<AppState>, RawQuery(raw): RawQuery) -> ApiResult<Response> {
    let request = parse_recommendation_query(raw.as_deref())?;
    let recommendations = state.service.get_recommendations(&request).await?;
    let response = RecommendationsResponse {
        metadata: Metadata::new(StatusCode::OK),
        item_list: crate::native::item_list(&recommendations),
        recommendation_id: &recommendations.recommendation_id,
    };
    Ok(Json(response).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DataRequest {
    #[serde(rename = "stream-name")]
    stream_name: String,
    #[serde(rename = "Data")]
    data: DataFields,
    #[serde(rename = "PartitionKey", default)]
    partition_key: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DataFields {
    user_id: Value,
    interactions: Value,
    item_id: Value,
    tracking_id: String,
    event_type: String,
    date_from: String,
    date_to: String,
}

/// Ids may arrive as JSON numbers or strings (the original's examples use both).
fn id_text(field: &str, value: &Value) -> ApiResult<String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(ApiError::bad_request(format!("Data.{field} must be a string or a number, got {other}"))),
    }
}

async fn put_data(State(state): State<AppState>, LenientJson(req): LenientJson<DataRequest>) -> ApiResult<Json<Value>> {
    let interactions = match &req.data.interactions {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| ApiError::bad_request(format!("Data.interactions must be a whole number, got {}", req.data.interactions)))?;
    let record = DataRecord {
        stream_name: req.stream_name,
        partition_key: req.partition_key.as_ref().map(|k| id_text("PartitionKey", k)).transpose()?,
        user_id: id_text("userId", &req.data.user_id)?,
        item_id: id_text("itemId", &req.data.item_id)?,
        tracking_id: req.data.tracking_id,
        event_type: req.data.event_type,
        interactions,
        date_from: req.data.date_from,
        date_to: req.data.date_to,
    };
    let result = state.service.put_data(record).await?;
    Ok(Json(json!({
        "Message": "Event sent successfully",
        "data": {"EncryptionType": "NONE", "SequenceNumber": result.sequence_number, "ShardId": result.shard_id}
    })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DeleteResourcesRequest {
    campaign_arn: String,
    event_tracker_arn: String,
}

/// Deletes both; answers 200 with both results when both succeed, otherwise
/// the first failure's status with both results.
async fn delete_resources(State(state): State<AppState>, LenientJson(req): LenientJson<DeleteResourcesRequest>) -> Response {
    let campaign = state.service.delete_campaign(&req.campaign_arn).await;
    let tracker = state.service.delete_event_tracker(&req.event_tracker_arn).await;
    let mut status = StatusCode::OK;
    let mut part = |result: Result<(), travelrec_service::ServiceError>| match result {
        Ok(()) => json!({"$metadata": metadata(StatusCode::OK)}),
        Err(e) => {
            let e = ApiError::from(e);
            if status == StatusCode::OK {
                status = e.status;
            }
            json!({"error": e.json()})
        }
    };
    let body = json!({
        "deleteCampaignResponse": part(campaign.map(|_| ())),
        "deleteEventTrackerResponse": part(tracker.map(|_| ())),
    });
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_accepts_raw_and_encoded_arns() {
        let raw = "campaignArn=arn:aws:personalize:local:000000000000:campaign/my-campaign&userId=429&numResults=5";
        let q = parse_recommendation_query(Some(raw)).unwrap();
        assert_eq!(q.campaign_arn, "arn:aws:personalize:local:000000000000:campaign/my-campaign");
        assert_eq!((q.user_id.as_deref(), q.num_results), (Some("429"), 5));
        let encoded = "campaignArn=arn%3Aaws%3Apersonalize%3Alocal%3A000000000000%3Acampaign%2Fmy-campaign&userId=a+b";
        let q = parse_recommendation_query(Some(encoded)).unwrap();
        assert_eq!(q.campaign_arn, "arn:aws:personalize:local:000000000000:campaign/my-campaign");
        assert_eq!((q.user_id.as_deref(), q.num_results), (Some("a b"), 25));
        let q = parse_recommendation_query(Some("campaignArn=x&itemId=185")).unwrap();
        assert_eq!((q.user_id, q.item_id.as_deref()), (None, Some("185")));
        let q = parse_recommendation_query(Some(
            "campaignArn=x&userId=1&LOCATION=38.71,-9.14&date=2026-07-14&filterArn=f&filterValues=%7B%22CITY%22%3A%22%5C%22Lisbon%5C%22%22%7D",
        ))
        .unwrap();
        assert_eq!(q.context.get("LOCATION").map(String::as_str), Some("38.71,-9.14"));
        assert_eq!(q.context.get("DATE").map(String::as_str), Some("2026-07-14"));
        assert_eq!(q.filter_arn.as_deref(), Some("f"));
        assert_eq!(q.filter_values.get("CITY").map(String::as_str), Some("\"Lisbon\""));
    }

    #[test]
    fn query_problems_are_named() {
        let msg = |raw: &str| parse_recommendation_query(Some(raw)).err().unwrap().message;
        assert!(msg("campaignArn=x").contains("userId is required"));
        assert!(msg("userId=1").contains("campaignArn is required"));
        assert!(msg("campaignArn=x&userId=1&numResults=ten").contains("numResults `ten`"));
        assert!(msg("campaignArn=x&userId=1&colour=red").contains("unknown query parameter `colour`"));
        assert!(msg("campaignArn=x&userId=1&filterValues=nope").contains("filterValues must be a JSON object"));
    }
}
