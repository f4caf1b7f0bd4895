//! travelrec's HTTP layer: thin handlers over [`travelrec_service::Service`].
//!
//! - the original REST API at `/` and under the `/prod` stage prefix;
//! - the native API under `/v1`;
//! - the analytics dashboard at `/dashboard` (and `/`);
//! - API keys with scopes, required once a master key is set (`auth`);
//! - one JSON error shape (`{"message", "code", "type"}`), 4xx for bad input.

mod auth;
mod body;
mod dashboard;
mod error;
mod ingest;
mod native;
mod original;

pub use error::ApiError;

use axum::extract::{MatchedPath, Request};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use std::future::Future;
use tower_http::trace::TraceLayer;
use travelrec_service::Service;

#[derive(Clone)]
pub struct AppState {
    pub service: Service,
    /// SHA-256 of the master key; `None` leaves every route open.
    master_key_sha256: Option<String>,
}

/// How the HTTP layer runs.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Requires API keys on every route but the dashboard's page and health
    /// (see `auth`); this key holds every scope.
    pub master_key: Option<String>,
}

/// The whole HTTP surface.
pub fn router(service: Service, options: ServerOptions) -> axum::Router {
    let state = AppState { service, master_key_sha256: options.master_key.as_deref().map(travelrec_service::secret_sha256) };
    let original = original::routes();
    axum::Router::new()
        .merge(original.clone())
        .nest("/prod", original)
        .merge(native::routes())
        .merge(ingest::routes())
        .merge(dashboard::routes())
        .merge(auth::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::check))
        .layer(
            // Spans carry the route template, never the URI: query strings hold user ids.
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_default();
                tracing::debug_span!("request", method = %request.method(), route)
            }),
        )
        .with_state(state)
}

async fn not_found(request: Request) -> impl IntoResponse {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "route_not_found",
        format!("no route {} {}; see the README for the routes", request.method(), request.uri().path()),
    )
}

async fn method_not_allowed(request: Request) -> impl IntoResponse {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {}; see the README for the routes", request.method(), request.uri().path()),
    )
}

/// Serves on `listener` until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: Service,
    options: ServerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(service, options)).with_graceful_shutdown(shutdown).await
}
