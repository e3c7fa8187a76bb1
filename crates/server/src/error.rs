//! The one place where failures become HTTP answers. Every non-2xx answer,
//! including the router's own 404/405 and the body limit's 413, leaves in
//! the contract's envelope:
//! `{"errors":[{"type":"…","message":"…","details":null}]}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use endusers_core::FieldError;
use endusers_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

use crate::answer::Json;

#[derive(Debug)]
pub enum ApiError {
    /// Validation, malformed JSON, unknown fields, bad query parameters.
    Invalid(String),
    Unauthorized(&'static str),
    NotFound(&'static str),
    MethodNotAllowed,
    Conflict(String),
    /// The limit in bytes, when the layer that refused knows it.
    PayloadTooLarge(Option<usize>),
    UnsupportedMediaType,
    /// Over a rate limit; retry after this many seconds.
    /// Seconds until a retry can pass, when the limiter said.
    RateLimited(Option<u64>),
    /// The server cannot serve right now (readiness, shutdown).
    Unavailable(&'static str),
    /// Details go to the log, never to the client.
    Internal,
}

/// The error body of every non-2xx answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorEnvelope {
    pub errors: Vec<ErrorItem>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorItem {
    /// One of `invalid_request`, `unauthorized`, `not_found`,
    /// `method_not_allowed`, `conflict`, `payload_too_large`,
    /// `unsupported_media_type`, `rate_limited`, `internal_error`.
    #[serde(rename = "type")]
    #[schema(example = "invalid_request")]
    pub kind: &'static str,
    /// Names the offending field by its JSON path.
    #[schema(example = "profile.metadata.plan: values must be a string, integer or boolean")]
    pub message: String,
    pub details: Option<String>,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Invalid(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid_request",
            Self::Unauthorized(_) => "unauthorized",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Conflict(_) => "conflict",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::RateLimited(_) => "rate_limited",
            Self::Unavailable(_) => "unavailable",
            Self::Internal => "internal_error",
        }
    }

    fn message(&self) -> String {
        match self {
            Self::Invalid(message) | Self::Conflict(message) => message.clone(),
            Self::Unauthorized(message) | Self::NotFound(message) | Self::Unavailable(message) => {
                (*message).to_owned()
            }
            Self::MethodNotAllowed => "this method is not allowed on this path".to_owned(),
            Self::PayloadTooLarge(Some(limit)) => {
                format!("the request body must be at most {limit} bytes")
            }
            Self::PayloadTooLarge(None) => "the request body is too large".to_owned(),
            Self::UnsupportedMediaType => {
                "the request body must be JSON (Content-Type: application/json)".to_owned()
            }
            Self::RateLimited(Some(seconds)) => {
                format!("too many requests: retry after {seconds} s")
            }
            Self::RateLimited(None) => "too many requests".to_owned(),
            Self::Internal => "the server failed to handle this request".to_owned(),
        }
    }

    /// The envelope for an answer some other layer already chose the status of.
    pub fn for_status(status: StatusCode) -> Self {
        match status {
            StatusCode::BAD_REQUEST => Self::Invalid("the request is not valid".to_owned()),
            StatusCode::UNAUTHORIZED => Self::Unauthorized("a valid API key is required"),
            StatusCode::NOT_FOUND => Self::NotFound("no such resource"),
            StatusCode::METHOD_NOT_ALLOWED => Self::MethodNotAllowed,
            StatusCode::CONFLICT => {
                Self::Conflict("the request conflicts with the current state".to_owned())
            }
            // Only what the status says: no limit or wait is made up.
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge(None),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType,
            StatusCode::TOO_MANY_REQUESTS => Self::RateLimited(None),
            StatusCode::SERVICE_UNAVAILABLE => Self::Unavailable("the server is not available"),
            // Another client error is still the client's, not the server's.
            other if other.is_client_error() => {
                Self::Invalid("the request is not valid".to_owned())
            }
            _ => Self::Internal,
        }
    }

    pub fn envelope(&self) -> ErrorEnvelope {
        ErrorEnvelope {
            errors: vec![ErrorItem {
                kind: self.kind(),
                message: self.message(),
                details: None,
            }],
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status(), Json(self.envelope())).into_response()
    }
}

impl From<FieldError> for ApiError {
    fn from(err: FieldError) -> Self {
        Self::Invalid(err.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Invalid(field) => field.into(),
            StoreError::Conflict(what) => {
                Self::Conflict(format!("{what}: already belongs to another end user"))
            }
            StoreError::State(message) => Self::Conflict(message.to_owned()),
            StoreError::Closed => Self::Unavailable("the server is shutting down"),
            StoreError::Config(_) | StoreError::Backend(_) => {
                tracing::error!(error = %err, "storage failed");
                Self::Internal
            }
        }
    }
}

/// Gives every error answer that left some layer without a JSON body (the
/// router's 404/405, a 413 from a limit) the envelope, keeping its status
/// and headers such as `Allow`; and logs every server error, whatever
/// made it.
pub fn ensure_envelope<B>(response: axum::http::Response<B>) -> Response
where
    B: axum::body::HttpBody<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let status = response.status();
    if status.is_server_error() {
        tracing::error!(status = status.as_u16(), "answered with a server error");
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response.map(axum::body::Body::new);
    }
    let (mut parts, _) = response.into_parts();
    let body = serde_json::to_vec(&ApiError::for_status(status).envelope()).unwrap_or_default();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body))
}

#[cfg(test)]
mod status_tests {
    use super::*;

    /// Log lines written while `f` runs, at INFO, as the default filter.
    fn logged_by(f: impl FnOnce()) -> String {
        use std::io::{Read, Seek};
        let mut lines = tempfile::tempfile().unwrap();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(lines.try_clone().unwrap())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let mut log = String::new();
        lines.rewind().unwrap();
        lines.read_to_string(&mut log).unwrap();
        log
    }

    #[test]
    fn every_server_error_is_logged_and_nothing_else() {
        for status in [
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::SERVICE_UNAVAILABLE,
        ] {
            let log = logged_by(|| {
                ensure_envelope(status.into_response());
            });
            assert!(
                log.contains("ERROR") && log.contains(&format!("status={}", status.as_u16())),
                "{status}: {log:?}"
            );
        }
        for status in [
            StatusCode::OK,
            StatusCode::NOT_FOUND,
            StatusCode::TOO_MANY_REQUESTS,
        ] {
            let log = logged_by(|| {
                ensure_envelope(status.into_response());
            });
            assert_eq!(log, "", "{status}");
        }
    }

    #[test]
    fn an_envelope_for_a_bare_status_invents_nothing() {
        let too_large = ApiError::for_status(StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(too_large.kind(), "payload_too_large");
        assert!(!too_large.message().chars().any(|c| c.is_ascii_digit()));
        let limited = ApiError::for_status(StatusCode::TOO_MANY_REQUESTS);
        assert!(!limited.message().chars().any(|c| c.is_ascii_digit()));
        // A client error the server has no name for stays a client error.
        assert_eq!(
            ApiError::for_status(StatusCode::URI_TOO_LONG).kind(),
            ApiError::Invalid(String::new()).kind()
        );
    }
}
