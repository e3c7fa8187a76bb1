//! Reading JSON request bodies: size first (413 before anything is
//! parsed), then media type (415), then the JSON itself (400 naming the
//! field by its path).

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, header};
use endusers_core::wire::ObjectsAsMaps;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::error::ApiError;

/// A JSON body; an empty body reads as `T::default()`.
pub struct JsonBody<T>(pub T);

impl<T> FromRequest<AppState> for JsonBody<T>
where
    T: DeserializeOwned + Default,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let limit = state.config.max_body_bytes;
        let declared_json = json_content_type(request.headers());
        if declared_json == Some(false) {
            return Err(ApiError::UnsupportedMediaType);
        }
        if content_length(request.headers()).is_some_and(|length| length > limit) {
            return Err(ApiError::PayloadTooLarge(Some(limit)));
        }
        let bytes = axum::body::to_bytes(request.into_body(), limit)
            .await
            .map_err(|_| ApiError::PayloadTooLarge(Some(limit)))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        if declared_json.is_none() {
            return Err(ApiError::UnsupportedMediaType);
        }
        parse(&bytes).map(Self)
    }
}

/// `Some(true)` for `application/json` or any `+json` type, `Some(false)`
/// for another type, `None` when the header is missing.
fn json_content_type(headers: &HeaderMap) -> Option<bool> {
    let value = headers.get(header::CONTENT_TYPE)?;
    let essence = value
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    Some(
        essence == "application/json"
            || (essence.starts_with("application/") && essence.ends_with("+json")),
    )
}

fn content_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Parses JSON, turning serde's errors into messages that name the field
/// and never quote the rejected value (it may be a secret).
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value: T =
        serde_path_to_error::deserialize(ObjectsAsMaps(&mut deserializer)).map_err(|err| {
            let path = err.path().to_string();
            describe(&path, err.inner())
        })?;
    deserializer
        .end()
        .map_err(|_| ApiError::Invalid("body: unexpected data after the JSON value".to_owned()))?;
    Ok(value)
}

fn describe(path: &str, err: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match err.classify() {
        Category::Syntax | Category::Eof | Category::Io => ApiError::Invalid(format!(
            "body: malformed JSON at line {}, column {}",
            err.line(),
            err.column()
        )),
        Category::Data => {
            let message = data_message(&err.to_string());
            let root = path == "." || path.is_empty();
            // serde reports a missing field at its parent; name the field.
            if let Some(field) = message
                .strip_prefix("missing field `")
                .and_then(|r| r.strip_suffix('`'))
            {
                let full = if root {
                    field.to_owned()
                } else {
                    format!("{path}.{field}")
                };
                return ApiError::Invalid(format!("{full}: is required"));
            }
            ApiError::Invalid(format!("{}: {message}", if root { "body" } else { path }))
        }
    }
}

/// serde's data errors read `invalid type: string "…", expected …` and end
/// with ` at line L column C`. Keeps the kinds, drops the value and position.
fn data_message(raw: &str) -> String {
    let message = raw.rfind(" at line ").map_or(raw, |at| &raw[..at]);
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            let (found, expected) = rest
                .split_once(", expected ")
                .unwrap_or((rest, "another value"));
            const KINDS: [&str; 10] = [
                "floating point",
                "byte array",
                "string",
                "integer",
                "boolean",
                "map",
                "sequence",
                "null",
                "unit",
                "character",
            ];
            let kind = KINDS
                .iter()
                .find(|k| found.starts_with(*k))
                .copied()
                .unwrap_or("value");
            let expected = match expected {
                e if e.starts_with("struct ") || e == "a map" => "an object",
                e => e,
            };
            return format!("expected {expected}, found {kind}");
        }
    }
    message.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use endusers_core::wire::CreateEndUserRequest;

    fn message_of(body: &str) -> String {
        match parse::<CreateEndUserRequest>(body.as_bytes()) {
            Err(ApiError::Invalid(message)) => message,
            other => panic!("expected a 400, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn names_the_field_and_never_the_value() {
        let message = message_of(r#"{"profile": {"sensitive_metadata": "hunter2"}}"#);
        assert_eq!(
            message,
            "profile.sensitive_metadata: expected an object, found string"
        );
        let message = message_of(r#"{"profile": {"first_name": 42}}"#);
        assert_eq!(
            message,
            "profile.first_name: expected a string, found integer"
        );
    }

    #[test]
    fn unknown_fields_are_named() {
        let message = message_of(r#"{"profile": {"nickname": "x"}}"#);
        assert!(
            message.starts_with("profile.nickname: unknown field `nickname`"),
            "{message}"
        );
        let message = message_of(r#"{"extra": 1}"#);
        assert!(
            message.starts_with("extra: unknown field `extra`"),
            "{message}"
        );
    }

    #[test]
    fn missing_fields_are_named_by_their_own_path() {
        let message = message_of(r#"{"profile": {"sensitive_metadata": {}}}"#);
        assert_eq!(message, "profile.sensitive_metadata.fields: is required");
    }

    #[test]
    fn malformed_json_says_where() {
        assert_eq!(
            message_of(r#"{"profile": "#),
            "body: malformed JSON at line 1, column 12"
        );
        assert_eq!(
            message_of("[1]"),
            "body: expected an object, found sequence"
        );
        assert_eq!(
            message_of("{} {}"),
            "body: unexpected data after the JSON value"
        );
        assert_eq!(
            message_of(r#"{"profile": ["Maria"]}"#),
            "profile: expected an object, found sequence"
        );
        assert_eq!(
            message_of(r#"{"profile": {"sensitive_metadata": {"fields": ["x"]}}}"#),
            "profile.sensitive_metadata.fields: expected an object, found sequence"
        );
    }
}
