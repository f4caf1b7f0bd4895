//! travelrec's HTTP layer: thin handlers over [`travelrec_service::Service`].
//!
//! - the original REST API at `/` and under the `/prod` stage prefix;
//! - the native API under `/v1`;
//! - the analytics dashboard at `/dashboard` (and `/`);
//! - one JSON error shape (`{"message", "code", "type"}`), 4xx for bad input.

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
}

/// The whole HTTP surface.
pub fn router(service: Service) -> axum::Router {
    let original = original::routes();
    axum::Router::new()
        .merge(original.clone())
        .nest("/prod", original)
        .merge(native::routes())
        .merge(ingest::routes())
        .merge(dashboard::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(
            // Spans carry the route template, never the URI: query strings hold user ids.
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_default();
                tracing::debug_span!("request", method = %request.method(), route)
            }),
        )
        .with_state(AppState { service })
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
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(service)).with_graceful_shutdown(shutdown).await
}
