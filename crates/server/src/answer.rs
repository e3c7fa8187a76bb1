//! JSON answers.
//!
//! axum's own `Json` writes through a `BytesMut` that starts at 128 bytes,
//! so an end user (about 400 bytes) is copied twice as the buffer grows and
//! every fragment serde writes goes through the `BufMut` writer. These
//! write into a `Vec` sized for a typical answer up front: [`Json`] through
//! serde, [`Written`] through the value's own [`WriteJson`] (end users and
//! pages of them, the most frequent answers).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use endusers_core::WriteJson;
use endusers_core::json::ANSWER_CAPACITY;
use serde::Serialize;

/// A value answered as `application/json`, written by serde.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        let mut body = Vec::with_capacity(ANSWER_CAPACITY);
        match serde_json::to_writer(&mut body, &self.0) {
            Ok(()) => json_response(body),
            // Only a map with keys that are not strings fails, and no
            // answer holds one; should that change, the log says why and
            // the client gets a bare 500, which the envelope layer every
            // answer passes through fills in. (Answering `ApiError` here
            // would come back to this function with the envelope.)
            Err(error) => {
                tracing::error!(%error, "an answer could not be written as JSON");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }
}

/// A value answered as `application/json`, written by its own
/// [`WriteJson`]: the same bytes serde would write, in fewer steps.
#[derive(Debug, Clone, Copy, Default)]
pub struct Written<T>(pub T);

impl<T: WriteJson> IntoResponse for Written<T> {
    fn into_response(self) -> Response {
        JsonText(self.0.to_json_string(ANSWER_CAPACITY)).into_response()
    }
}

/// JSON text already written (by a [`WriteJson`] elsewhere, such as a
/// store writing a user straight from its row), answered as
/// `application/json`.
#[derive(Debug, Clone, Default)]
pub struct JsonText(pub String);

impl IntoResponse for JsonText {
    fn into_response(self) -> Response {
        json_response(self.0.into_bytes())
    }
}

fn json_response(body: Vec<u8>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_the_same_bytes_as_serde_json_with_a_json_content_type() {
        let value = serde_json::json!({"a": [1, 2, "three"], "b": {"c": null}, "d": "é\"\n"});
        let response = Json(&value).into_response();
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE).unwrap(),
            "application/json"
        );
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(body, serde_json::to_vec(&value).unwrap());
    }

    #[tokio::test]
    async fn a_value_json_cannot_hold_is_a_500_that_the_envelope_layer_fills_in() {
        // Keys that are not strings are the one thing serde_json refuses.
        let unwritable: std::collections::BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into();
        let response = Json(unwritable).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let response = crate::error::ensure_envelope(response);
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["errors"][0]["type"], "internal_error", "{body}");
    }
}
