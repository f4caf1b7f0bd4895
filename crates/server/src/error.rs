//! One JSON error shape everywhere: `{"message", "code", "type"}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use travelrec_service::{ErrorKind, ServiceError};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

#[derive(Serialize)]
struct Body<'a> {
    message: &'a str,
    code: &'a str,
    #[serde(rename = "type")]
    error_type: &'a str,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, code: "invalid_request", message: message.into() }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self { status: StatusCode::NOT_FOUND, code: "resource_not_found", message: message.into() }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::to_value(Body { message: &self.message, code: self.code, error_type: self.error_type() }).expect("plain struct")
    }

    fn error_type(&self) -> &'static str {
        if self.status.is_server_error() { "internal" } else { "invalid_request" }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let (status, code) = match e.kind {
            ErrorKind::InvalidInput => (StatusCode::BAD_REQUEST, "invalid_input"),
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, "resource_not_found"),
            ErrorKind::AlreadyExists => (StatusCode::CONFLICT, "resource_already_exists"),
            ErrorKind::ResourceInUse => (StatusCode::CONFLICT, "resource_in_use"),
            ErrorKind::LimitExceeded => (StatusCode::TOO_MANY_REQUESTS, "limit_exceeded"),
            ErrorKind::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "service_unavailable"),
            ErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        Self { status, code, message: e.message }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, "{}", self.message);
        }
        (self.status, axum::Json(self.json())).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
