//! Ingestion routes with the managed service's paths and shapes —
//! PutEvents (`POST /events`), PutItems (`POST /items`), PutUsers
//! (`POST /users`) — and views of what ingestion did.

use crate::AppState;
use crate::body::LenientJson;
use crate::error::{ApiError, ApiResult};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use travelrec_service::NewEvent;
use travelrec_store::ResourceKind;

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/events", post(put_events))
        .route("/items", post(put_items))
        .route("/users", post(put_users))
        .route("/local-events", post(put_local_events))
        .route("/v1/dataset-groups/{name}/analytics", get(analytics))
        .route("/v1/dataset-groups/{name}/events", get(stored_events))
        .route("/v1/dataset-groups/{name}/users/{user_id}/recent-events", get(recent_events))
        .route("/v1/dataset-groups/{name}/users/{user_id}", delete(erase_user))
        .route("/v1/admin/flush", post(flush))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PutEventsRequest {
    tracking_id: String,
    user_id: String,
    #[serde(default)]
    session_id: Option<String>,
    event_list: Vec<EventRequest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EventRequest {
    #[serde(default)]
    event_id: Option<String>,
    event_type: String,
    #[serde(default)]
    event_value: Option<f32>,
    item_id: String,
    /// Unix seconds (fractions allowed), as the AWS SDKs send timestamps.
    sent_at: f64,
    /// A JSON object, or a string holding one (as the managed service takes it).
    #[serde(default)]
    properties: Option<Value>,
    #[serde(default)]
    impression: Vec<String>,
    #[serde(default)]
    recommendation_id: Option<String>,
}

/// `properties` as `(name, value)` pairs; values may be strings, numbers or booleans.
fn properties(field: &str, value: Option<Value>) -> ApiResult<Vec<(String, String)>> {
    let object = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(text)) if text.trim().is_empty() => return Ok(Vec::new()),
        Some(Value::String(text)) => {
            serde_json::from_str::<Value>(&text).map_err(|e| ApiError::bad_request(format!("{field}: not a JSON object: {e}")))?
        }
        Some(other) => other,
    };
    let Value::Object(map) = object else {
        return Err(ApiError::bad_request(format!("{field}: expected a JSON object of field values, got {object}")));
    };
    map.into_iter()
        .map(|(name, value)| match value {
            Value::String(s) => Ok((name, s)),
            Value::Number(n) => Ok((name, n.to_string())),
            Value::Bool(b) => Ok((name, b.to_string())),
            other => Err(ApiError::bad_request(format!("{field}.{name}: expected a string, number or boolean, got {other}"))),
        })
        .collect()
}

const MAX_PER_CALL: usize = travelrec_service::tracking_limits::MAX_PER_CALL;

async fn put_events(State(state): State<AppState>, LenientJson(req): LenientJson<PutEventsRequest>) -> ApiResult<Json<Value>> {
    if req.event_list.is_empty() || req.event_list.len() > MAX_PER_CALL {
        return Err(ApiError::bad_request(format!("eventList must hold 1 to {MAX_PER_CALL} events, got {}", req.event_list.len())));
    }
    let mut events = Vec::with_capacity(req.event_list.len());
    for (i, e) in req.event_list.into_iter().enumerate() {
        if !e.sent_at.is_finite() {
            return Err(ApiError::bad_request(format!("eventList[{i}].sentAt must be a number of seconds since 1970")));
        }
        events.push(NewEvent {
            event_id: e.event_id,
            item_id: e.item_id,
            event_type: e.event_type,
            timestamp: e.sent_at.floor() as i64,
            event_value: e.event_value,
            session_id: req.session_id.clone(),
            fields: properties(&format!("eventList[{i}].properties"), e.properties)?,
            recommendation_id: e.recommendation_id,
            impression: e.impression,
        });
    }
    state.service.track_events(&req.tracking_id, &req.user_id, None, events).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PutItemsRequest {
    dataset_arn: String,
    items: Vec<ItemRequest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ItemRequest {
    item_id: String,
    #[serde(default)]
    properties: Option<Value>,
}

async fn put_items(State(state): State<AppState>, LenientJson(req): LenientJson<PutItemsRequest>) -> ApiResult<Json<Value>> {
    let items = entries("items", req.items.into_iter().map(|item| (item.item_id, item.properties)))?;
    state.service.put_items(&req.dataset_arn, items).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PutUsersRequest {
    dataset_arn: String,
    users: Vec<UserRequest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UserRequest {
    user_id: String,
    #[serde(default)]
    properties: Option<Value>,
}

async fn put_users(State(state): State<AppState>, LenientJson(req): LenientJson<PutUsersRequest>) -> ApiResult<Json<Value>> {
    let users = entries("users", req.users.into_iter().map(|user| (user.user_id, user.properties)))?;
    state.service.put_users(&req.dataset_arn, users).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PutLocalEventsRequest {
    dataset_arn: String,
    local_events: Vec<LocalEventRequest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LocalEventRequest {
    local_event_id: String,
    #[serde(default)]
    properties: Option<Value>,
}

/// Local events (festivals, markets…) of a LOCAL_EVENTS dataset; they shape
/// recommendations for their dates at once.
async fn put_local_events(State(state): State<AppState>, LenientJson(req): LenientJson<PutLocalEventsRequest>) -> ApiResult<Json<Value>> {
    let events = entries("localEvents", req.local_events.into_iter().map(|event| (event.local_event_id, event.properties)))?;
    state.service.put_local_events(&req.dataset_arn, events).await?;
    Ok(Json(json!({})))
}

/// An item, user or local event: its id and its fields.
type Entry = (String, Vec<(String, String)>);

/// `(id, properties)` pairs of a Put* list, each properties object as
/// fields, problems named by their place in `list`.
fn entries(list: &str, rows: impl Iterator<Item = (String, Option<Value>)>) -> ApiResult<Vec<Entry>> {
    rows.enumerate().map(|(i, (id, props))| Ok((id, properties(&format!("{list}[{i}].properties"), props)?))).collect()
}

fn group_arn(state: &AppState, name: &str) -> String {
    state.service.config().arns.arn(ResourceKind::DatasetGroup, name)
}

async fn analytics(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let arn = group_arn(&state, &name);
    state.service.describe::<travelrec_store::DatasetGroup>(&arn).await?;
    Ok(Json(serde_json::to_value(state.service.analytics(&arn)).expect("plain data")))
}

async fn stored_events(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let user = query.get("userId").filter(|u| !u.is_empty()).ok_or_else(|| ApiError::bad_request("query parameter userId is required"))?;
    let arn = group_arn(&state, &name);
    state.service.describe::<travelrec_store::DatasetGroup>(&arn).await?;
    let events: Vec<Value> = state
        .service
        .stored_events(&arn, user)
        .await?
        .into_iter()
        .map(|(position, e)| {
            json!({
                "sequenceNumber": travelrec_service::sequence_number(position),
                "eventId": e.event_id,
                "itemId": e.interaction.item_id,
                "eventType": e.interaction.event_type,
                "eventValue": e.interaction.event_value,
                "sentAt": e.interaction.timestamp,
                "receivedAt": e.received_at,
                "properties": e.interaction.fields.into_iter().collect::<HashMap<_, _>>(),
                "recommendationId": e.recommendation_id,
                "impression": e.impression,
            })
        })
        .collect();
    Ok(Json(json!({ "events": events })))
}

async fn recent_events(State(state): State<AppState>, Path((name, user)): Path<(String, String)>) -> ApiResult<Json<Value>> {
    let arn = group_arn(&state, &name);
    state.service.describe::<travelrec_store::DatasetGroup>(&arn).await?;
    let events: Vec<Value> = state
        .service
        .realtime_events(&arn, &user)
        .into_iter()
        .map(|e| {
            json!({
                "sequenceNumber": travelrec_service::sequence_number(e.position),
                "itemId": &*e.item_id,
                "eventType": &*e.event_type,
                "sentAt": e.timestamp,
                "receivedAt": e.received_at,
            })
        })
        .collect();
    Ok(Json(json!({ "events": events })))
}

/// Erases everything held of a user in the dataset group (see the service's `erasure`).
async fn erase_user(State(state): State<AppState>, Path((name, user)): Path<(String, String)>) -> ApiResult<Json<Value>> {
    let arn = group_arn(&state, &name);
    let erased = state.service.erase_user(&arn, &user).await?;
    Ok(Json(json!({ "erased": erased })))
}

/// Closes every open archive file now (they close on their own every minute and at shutdown).
async fn flush(State(state): State<AppState>) -> Json<Value> {
    state.service.flush_archive().await;
    Json(json!({"flushed": true}))
}
