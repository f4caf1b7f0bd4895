//! Who may call what. Without a master key every route is open (a laptop, a
//! test, a client of the original API that sends no key). With one, every
//! route except the dashboard's page and `/v1/health` needs a key, sent as
//! `Authorization: Bearer <key>` or `X-Api-Key: <key>`, whose scopes cover
//! the route ([`required_scope`]); the master key holds every scope and
//! creates the others (`POST /v1/api-keys`).

use crate::AppState;
use crate::body::LenientJson;
use crate::error::{ApiError, ApiResult};
use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use travelrec_store::{ApiKey, ApiScope, ResourceKind};

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/v1/api-keys", post(create_key).get(list_keys))
        .route("/v1/api-keys/{name}", get(describe_key).delete(delete_key))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KeyRequest {
    name: String,
    scopes: Vec<ApiScope>,
    #[serde(default)]
    description: String,
}

/// A key as described: everything but the secret's hash.
fn described(key: ApiKey) -> Value {
    let mut value = serde_json::to_value(key).expect("resources serialise");
    value.as_object_mut().expect("an object").remove("secretSha256");
    value
}

/// 201 with the key's description and, this once, its secret as `key`.
async fn create_key(State(state): State<AppState>, LenientJson(req): LenientJson<KeyRequest>) -> ApiResult<impl IntoResponse> {
    let (key, secret) = state.service.create_api_key(&req.name, &req.description, &req.scopes).await?;
    Ok((StatusCode::CREATED, Json(json!({"apiKey": described(key), "key": secret}))))
}

async fn list_keys(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let keys: Vec<Value> = state.service.list::<ApiKey>().await?.into_iter().map(described).collect();
    Ok(Json(json!({ "items": keys })))
}

fn key_arn(state: &AppState, name: &str) -> String {
    state.service.config().arns.arn(ResourceKind::ApiKey, name)
}

async fn describe_key(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(described(state.service.describe::<ApiKey>(&key_arn(&state, &name)).await?)))
}

async fn delete_key(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    state.service.delete_api_key(&key_arn(&state, &name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The scope a route needs, or `None` for a public one.
pub fn required_scope(method: &Method, path: &str) -> Option<ApiScope> {
    let path = path.strip_prefix("/prod").filter(|p| p.starts_with('/')).unwrap_or(path);
    match path {
        "/" | "/dashboard" | "/v1/health" => None,
        "/getRecommendations" | "/v1/recommendations" | "/v1/personalized-ranking" => Some(ApiScope::Recommend),
        "/data" | "/events" | "/items" | "/users" | "/local-events" => Some(ApiScope::Track),
        // The original API describes with POST.
        "/describeSolutionVersion" | "/describeCampaign" => Some(ApiScope::Read),
        _ if path.starts_with("/v1/api-keys") || path.starts_with("/v1/admin/") => Some(ApiScope::Admin),
        // A user's own events are personal data.
        _ if path.starts_with("/v1/dataset-groups/") && (path.ends_with("/events") || path.ends_with("/recent-events")) => {
            Some(ApiScope::Admin)
        }
        _ if method == Method::GET || method == Method::HEAD => Some(ApiScope::Read),
        _ => Some(ApiScope::Admin),
    }
}

/// The key a request carries, if any: a bearer token (the scheme in any
/// case), else `X-Api-Key`.
fn presented_key(request: &Request) -> Option<&str> {
    let headers = request.headers();
    let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|value| {
        let (scheme, token) = value.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    });
    bearer.or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim))
}

fn unauthorized(code: &'static str, message: String) -> Response {
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, code, message).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// Refuses a request whose key is missing, unknown or short of the route's scope.
pub async fn check(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(master_sha256) = &state.master_key_sha256 else { return next.run(request).await };
    let Some(scope) = required_scope(request.method(), request.uri().path()) else { return next.run(request).await };
    let Some(key) = presented_key(&request) else {
        return unauthorized(
            "missing_api_key",
            format!(
                "{} {} needs an API key with scope `{scope}`: send it as `Authorization: Bearer <key>` or `X-Api-Key: <key>`",
                request.method(),
                request.uri().path()
            ),
        );
    };
    let digest = travelrec_service::secret_sha256(key);
    if digest == *master_sha256 {
        return next.run(request).await;
    }
    let Some(grant) = state.service.api_key_grant(&digest) else {
        return unauthorized("invalid_api_key", "the API key is not known: mistyped, or deleted".to_string());
    };
    if !grant.allows(scope) {
        let scopes: Vec<&str> = grant.scopes.iter().map(|s| s.as_str()).collect();
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!(
                "the API key `{}` has scopes {}; {} {} needs `{scope}` (or `admin`)",
                grant.name,
                scopes.join(", "),
                request.method(),
                request.uri().path()
            ),
        )
        .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_need_the_scope_of_what_they_do() {
        let scope = |method: Method, path: &str| required_scope(&method, path);
        assert_eq!(scope(Method::GET, "/dashboard"), None);
        assert_eq!(scope(Method::GET, "/v1/health"), None);
        assert_eq!(scope(Method::GET, "/getRecommendations"), Some(ApiScope::Recommend));
        assert_eq!(scope(Method::GET, "/prod/getRecommendations"), Some(ApiScope::Recommend));
        assert_eq!(scope(Method::POST, "/v1/personalized-ranking"), Some(ApiScope::Recommend));
        assert_eq!(scope(Method::POST, "/prod/data"), Some(ApiScope::Track));
        assert_eq!(scope(Method::POST, "/events"), Some(ApiScope::Track));
        assert_eq!(scope(Method::POST, "/describeCampaign"), Some(ApiScope::Read));
        assert_eq!(scope(Method::GET, "/v1/dashboard"), Some(ApiScope::Read));
        assert_eq!(scope(Method::GET, "/v1/campaigns/c"), Some(ApiScope::Read));
        assert_eq!(scope(Method::GET, "/v1/dataset-groups/g/events"), Some(ApiScope::Admin));
        assert_eq!(scope(Method::GET, "/v1/dataset-groups/g/users/u/recent-events"), Some(ApiScope::Admin));
        assert_eq!(scope(Method::DELETE, "/v1/dataset-groups/g/users/u"), Some(ApiScope::Admin));
        assert_eq!(scope(Method::GET, "/v1/api-keys"), Some(ApiScope::Admin));
        assert_eq!(scope(Method::POST, "/campaign"), Some(ApiScope::Admin));
        assert_eq!(scope(Method::DELETE, "/v1/campaigns/c"), Some(ApiScope::Admin));
        assert_eq!(scope(Method::POST, "/producer"), Some(ApiScope::Admin), "/prod is a prefix only before a slash");
    }
}
