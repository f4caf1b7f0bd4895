//! The analytics dashboard: one self-contained page (no external assets, so
//! it works offline) that polls `/v1/dashboard` for the service's snapshot.

use crate::AppState;
use crate::error::ApiResult;
use axum::Json;
use axum::extract::State;
use axum::response::{Html, Redirect};
use axum::routing::get;
use travelrec_service::Dashboard;

const PAGE: &str = include_str!("../assets/dashboard.html");

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/", get(|| async { Redirect::temporary("/dashboard") }))
        .route("/dashboard", get(|| async { Html(PAGE) }))
        .route("/v1/dashboard", get(snapshot))
}

async fn snapshot(State(state): State<AppState>) -> ApiResult<Json<Dashboard>> {
    Ok(Json(state.service.dashboard().await?))
}
