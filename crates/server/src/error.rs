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
    /// Sent as `Retry-After` (whole seconds, at least 1).
    pub retry_after: Option<std::time::Duration>,
}

#[derive(Serialize)]
struct Body<'a> {
    message: &'a str,
    code: &'a str,
    #[serde(rename = "type")]
    error_type: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after: None }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "resource_not_found", message)
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
        Self { status, code, message: e.message, retry_after: e.retry_after }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, "{}", self.message);
        }
        let mut response = (self.status, axum::Json(self.json())).into_response();
        if let Some(delay) = self.retry_after {
            let seconds = delay.as_secs_f64().ceil().max(1.0) as u64;
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_become_429_with_retry_after_in_whole_seconds() {
        let e = ServiceError::new(ErrorKind::LimitExceeded, "slow down").with_retry_after(std::time::Duration::from_millis(1_200));
        let response = ApiError::from(e).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[axum::http::header::RETRY_AFTER], "2");
    }
}
