//! Cursor pagination as the API does it: `limit` 1..=100 (default 100),
//! `cursor` = the id of the first record of the page, and an absolute
//! `next_page_url` built from the host the client used, `null` at the end.

use axum::http::{HeaderMap, header};
use endusers_core::{WriteJson, json};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 100;

/// One page of a listing.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub meta: PageMeta,
}

impl<T> Page<T> {
    /// The same page with each record turned into its API shape.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            data: self.data.into_iter().map(f).collect(),
            meta: self.meta,
        }
    }

    /// Fetches a page: `fetch` is asked for one record more than `limit`,
    /// which tells whether there is a next page and where it starts
    /// (`cursor_of` it); without one this page is the last.
    pub async fn fetch<Fut>(
        limit: usize,
        fetch: impl FnOnce(usize) -> Fut,
        cursor_of: impl Fn(&T) -> String,
        headers: &HeaderMap,
        path: &str,
    ) -> Result<Self, ApiError>
    where
        Fut: std::future::Future<Output = Result<Vec<T>, endusers_store::StoreError>>,
    {
        let data = fetch(limit + 1).await?;
        Ok(Self::cut(data, limit, headers, path, cursor_of))
    }

    /// Cuts records fetched one too many (`limit + 1`) down to a page; the
    /// next page starts at the extra record, and without one this page is
    /// the last (`next_page_url` is `null`).
    fn cut(
        mut data: Vec<T>,
        limit: usize,
        headers: &HeaderMap,
        path: &str,
        cursor_of: impl Fn(&T) -> String,
    ) -> Self {
        let next_page_url = (data.len() > limit)
            .then(|| data.split_off(limit))
            .and_then(|next| {
                next.first()
                    .map(|first| next_page_url(headers, path, &cursor_of(first), limit))
            });
        Self {
            data,
            meta: PageMeta { next_page_url },
        }
    }
}

/// `{"data":[…],"meta":{"next_page_url":…}}`, as serde writes it.
impl<T: WriteJson> WriteJson for Page<T> {
    fn write_json(&self, out: &mut String) {
        out.push_str("{\"data\":[");
        json::separated(out, &self.data, |out, record| record.write_json(out));
        out.push_str("],\"meta\":{\"next_page_url\":");
        json::optional_string(out, self.meta.next_page_url.as_deref());
        out.push_str("}}");
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PageMeta {
    /// The next page, or `null` when this page is the last.
    #[schema(
        example = "https://api.example.com/api/v2/end-users/?cursor=67a8b2c1d3f4e5a6b7c8d9e0&limit=100"
    )]
    pub next_page_url: Option<String>,
}

/// The `cursor` and `limit` of a paged listing.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Where the page starts, from `next_page_url`.
    pub cursor: Option<String>,
    /// Records per page, 1 to 100 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
}

pub fn parse_page_query(query: Option<&str>) -> Result<(Option<String>, usize), ApiError> {
    let query: PageQuery = serde_urlencoded::from_str(query.unwrap_or_default())
        .map_err(|e| query_error(&e.to_string(), "cursor or limit"))?;
    Ok((query.cursor, parse_limit(query.limit.as_deref())?))
}

/// Reads a `cursor` that is an id from a `next_page_url`.
pub fn cursor_id(raw: Option<&str>) -> Result<Option<endusers_core::EndUserId>, ApiError> {
    parse_cursor(raw, endusers_core::EndUserId::parse)
}

/// A `cursor` as `parse` reads it; one that does not parse did not come
/// from a `next_page_url`.
pub fn parse_cursor<T>(
    raw: Option<&str>,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<Option<T>, ApiError> {
    raw.map(|raw| {
        parse(raw)
            .ok_or_else(|| ApiError::Invalid("cursor: must come from a next_page_url".to_owned()))
    })
    .transpose()
}

/// Reads `limit`.
pub fn parse_limit(raw: Option<&str>) -> Result<usize, ApiError> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_LIMIT);
    };
    match raw.parse::<usize>() {
        Ok(limit @ 1..=MAX_LIMIT) => Ok(limit),
        _ => Err(ApiError::Invalid(format!(
            "limit: must be an integer from 1 to {MAX_LIMIT}"
        ))),
    }
}

/// A query string the route's parameters do not accept, named by the
/// offending parameter where serde says which one it is.
pub fn query_error(serde_message: &str, accepted: &str) -> ApiError {
    let named = |prefix: &str| {
        serde_message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned)
    };
    if let Some(name) = named("unknown field `") {
        return ApiError::Invalid(format!(
            "{name}: is not a query parameter here (use {accepted})"
        ));
    }
    if let Some(name) = named("duplicate field `") {
        return ApiError::Invalid(format!("{name}: must be given at most once"));
    }
    ApiError::Invalid(format!("query: {serde_message}"))
}

/// The absolute URL of the page starting at `cursor`.
pub fn next_page_url(headers: &HeaderMap, path: &str, cursor: &str, limit: usize) -> String {
    format!("{}?cursor={cursor}&limit={limit}", origin(headers) + path)
}

/// `scheme://host[:port]` as the client addressed us. The scheme honours
/// `X-Forwarded-Proto` from a TLS-terminating proxy.
fn origin(headers: &HeaderMap) -> String {
    let scheme = match headers.get("x-forwarded-proto").map(|v| v.as_bytes()) {
        Some(b"https") => "https",
        _ => "http",
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                })
        })
        .unwrap_or("localhost");
    format!("{scheme}://{host}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn a_page_is_written_as_serde_json_writes_it() {
        use endusers_core::{AgentId, EndUser, IdGenerator, MetadataValue, ProfileText, Timestamp};
        let now = Timestamp::from_micros(1_795_773_600_123_456);
        let ids = IdGenerator::new();
        let mut second = EndUser::blank(AgentId(1), ids.next(now, 2), now);
        second.profile.first_name = Some(ProfileText::from_stored("Zoë \"Z\"".to_owned()));
        second
            .profile
            .metadata
            .insert("plan".to_owned(), MetadataValue::String("pro".to_owned()));
        let users = vec![EndUser::blank(AgentId(1), ids.next(now, 1), now), second];
        for (data, next_page_url) in [
            (
                users.clone(),
                Some("https://h/api/v2/end-users?cursor=x&limit=2".to_owned()),
            ),
            (users, None),
            (Vec::new(), None),
        ] {
            let page = Page {
                data,
                meta: PageMeta { next_page_url },
            };
            assert_eq!(
                page.to_json_string(0),
                serde_json::to_string(&page).unwrap()
            );
        }
    }

    #[test]
    fn limits() {
        assert_eq!(parse_limit(None).ok(), Some(100));
        assert_eq!(parse_limit(Some("7")).ok(), Some(7));
        for bad in ["0", "101", "-1", "x", ""] {
            assert!(parse_limit(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn query_errors_name_the_parameter() {
        let message = |e: ApiError| match e {
            ApiError::Invalid(m) => m,
            other => format!("{other:?}"),
        };
        let unknown = query_error("unknown field `page`, expected one of `cursor`", "cursor");
        assert_eq!(
            message(unknown),
            "page: is not a query parameter here (use cursor)"
        );
        assert_eq!(
            message(query_error("duplicate field `limit`", "x")),
            "limit: must be given at most once"
        );
    }

    #[test]
    fn next_url_uses_the_clients_host_and_scheme() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::HOST,
            HeaderValue::from_static("api.example.com:8443"),
        );
        assert_eq!(
            next_page_url(&headers, "/api/v2/end-users/", "abc", 7),
            "http://api.example.com:8443/api/v2/end-users/?cursor=abc&limit=7"
        );
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        headers.insert(header::HOST, HeaderValue::from_static("evil.com/path?"));
        assert_eq!(
            next_page_url(&headers, "/p/", "c", 1),
            "https://localhost/p/?cursor=c&limit=1"
        );
    }
}
