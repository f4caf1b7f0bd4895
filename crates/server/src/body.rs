//! Request bodies: JSON with errors that name the problem, and the original
//! API's leniency (trailing commas, no Content-Type).

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

/// A JSON body, accepted with or without a JSON Content-Type and with
/// trailing commas (the original runbook's example has them).
pub struct LenientJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for LenientJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes =
            Bytes::from_request(req, state).await.map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
        parse_json(&bytes).map(LenientJson)
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty; send a JSON object"));
    }
    let cleaned = strip_trailing_commas(bytes);
    // The path names the field that is wrong: `eventList[0].sentAt: invalid type ...`.
    let mut deserializer = serde_json::Deserializer::from_slice(&cleaned);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || inner.is_syntax() || inner.is_eof() {
            ApiError::bad_request(format!("invalid JSON body: {inner}"))
        } else {
            ApiError::bad_request(format!("invalid JSON body: {path}: {inner}"))
        }
    })?;
    deserializer.end().map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    Ok(value)
}

/// Removes commas that directly precede `}` or `]` (ignoring whitespace),
/// outside string literals.
fn strip_trailing_commas(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let (mut in_string, mut escaped) = (false, false);
    for (i, &b) in input.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
        } else if b == b',' && matches!(input[i + 1..].iter().find(|c| !c.is_ascii_whitespace()), Some(b'}' | b']')) {
            continue;
        }
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_commas_go_but_commas_in_strings_stay() {
        let v: serde_json::Value = parse_json(br#"{"a": [1, 2,], "b": "x,}", "c": {"d": 1,},}"#).unwrap();
        assert_eq!(v, serde_json::json!({"a": [1, 2], "b": "x,}", "c": {"d": 1}}));
        let v: serde_json::Value = parse_json(br#"{"a": "quote \" ,}"}"#).unwrap();
        assert_eq!(v["a"], "quote \" ,}");
    }

    #[test]
    fn errors_name_the_problem() {
        let err = parse_json::<serde_json::Value>(b"").unwrap_err();
        assert!(err.message.contains("empty"));
        let err = parse_json::<serde_json::Value>(b"{\"a\": }").unwrap_err();
        assert!(err.message.contains("invalid JSON body") && err.message.contains("line 1"), "{}", err.message);
    }
}
