//! `/api/v2/webhooks`: endpoints that receive signed events, their secrets,
//! the event catalog, and (extensions) attempt logs and recovery.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use endusers_core::{Clock, EventType, Standing, Timestamp};
use endusers_store::{Attempt, EndpointStore, SigningSecret, WebhookEndpoint};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::answer::Json;
use crate::api::part::{Part, PartOf};
use crate::auth::Caller;
use crate::body::JsonBody;
use crate::error::{ApiError, ErrorEnvelope};
use crate::ids::Ids;
use crate::pagination::{self, Page, PageQuery};
use crate::webhooks::signature::EndpointSecret;
use crate::webhooks::ssrf;

/// What the webhook management handlers use.
pub struct Webhooks {
    pub store: Arc<dyn EndpointStore>,
    pub clock: Arc<dyn Clock>,
    pub ids: Ids,
    /// `webhooks_allow_insecure`: plain `http://` and private addresses.
    pub allow_insecure: bool,
}

/// The handlers' [`Webhooks`].
pub type WebhooksApi = Part<Webhooks>;

impl PartOf for Webhooks {
    fn of(state: &AppState) -> &Part<Self> {
        &state.webhooks
    }
}

const NOT_FOUND: &str = "webhook not found";
const COLLECTION_PATH: &str = "/api/v2/webhooks/";
/// How long the secret before a rotation keeps signing beside the new one.
const ROTATION_GRACE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// A webhook endpoint as the API shows it (never with its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct Webhook {
    #[schema(example = "ep_01a2019fccbb9f9943bdf4bc")]
    pub id: String,
    pub url: String,
    pub description: String,
    /// Event types delivered; empty means every type.
    pub event_filters: Vec<String>,
    pub enabled: bool,
    pub created_at: String,
    pub updated_at: String,
    /// Why the server disabled the endpoint, or `null`.
    pub disabled_reason: Option<String>,
    /// When the current run of failed deliveries began, or `null`.
    pub failing_since: Option<String>,
}

impl From<WebhookEndpoint> for Webhook {
    fn from(e: WebhookEndpoint) -> Self {
        Self {
            id: e.id,
            url: e.url,
            description: e.description,
            event_filters: e.event_filters,
            enabled: e.standing.enabled,
            created_at: e.created_at.to_rfc3339(),
            updated_at: e.updated_at.to_rfc3339(),
            disabled_reason: e.standing.disabled_reason,
            failing_since: e.standing.failing_since.map(Timestamp::to_rfc3339),
        }
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookRequest {
    /// An `https://` URL that resolves only to public addresses.
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Event type names; empty or absent subscribes to every type.
    #[serde(default)]
    pub event_filters: Option<Vec<String>>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhookRequest {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub event_filters: Option<Vec<String>>,
    /// `true` re-enables an endpoint the server disabled.
    #[serde(default)]
    pub enabled: Option<bool>,
}

async fn check_url(state: &WebhooksApi, url: &str) -> Result<String, ApiError> {
    let allow_insecure = state.allow_insecure;
    let lookup = ssrf::resolve_target(url, allow_insecure);
    match tokio::time::timeout(std::time::Duration::from_secs(10), lookup).await {
        Ok(Ok(_)) => Ok(url.to_owned()),
        Ok(Err(err)) => Err(ApiError::Invalid(format!("url: {err}"))),
        Err(_) => Err(ApiError::Invalid(
            "url: resolving the host timed out".to_owned(),
        )),
    }
}

fn check_filters(filters: Vec<String>) -> Result<Vec<String>, ApiError> {
    for (i, name) in filters.iter().enumerate() {
        if EventType::parse(name).is_none() {
            return Err(ApiError::Invalid(format!(
                "event_filters[{i}]: unknown event type (see GET /api/v2/webhooks/event-types/)"
            )));
        }
    }
    let mut filters = filters;
    filters.sort();
    filters.dedup();
    Ok(filters)
}

async fn find(state: &WebhooksApi, caller: Caller, id: &str) -> Result<WebhookEndpoint, ApiError> {
    state
        .store
        .get_webhook(caller.agent, id)
        .await?
        .ok_or(ApiError::NotFound(NOT_FOUND))
}

/// Subscribe an endpoint to events.
#[utoipa::path(
    post, path = "/api/v2/webhooks", operation_id = "create-webhook", tag = "webhooks",
    request_body = CreateWebhookRequest,
    responses(
        (status = 201, body = Webhook),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
    ),
    security(("bearerAuth" = []))
)]
pub async fn create(
    State(state): State<WebhooksApi>,
    caller: Caller,
    JsonBody(request): JsonBody<CreateWebhookRequest>,
) -> Result<(StatusCode, Json<Webhook>), ApiError> {
    let url = request
        .url
        .ok_or_else(|| ApiError::Invalid("url: is required".to_owned()))?;
    let url = check_url(&state, &url).await?;
    let event_filters = check_filters(request.event_filters.unwrap_or_default())?;
    let description = super::check_description(request.description.unwrap_or_default())?;
    let now = state.clock.now();
    let endpoint = WebhookEndpoint {
        id: state.ids.new_prefixed_id("ep_", now),
        agent_id: caller.agent,
        url,
        description,
        event_filters,
        standing: Standing {
            enabled: request.enabled.unwrap_or(true),
            ..Standing::enabled()
        },
        secret: SigningSecret::new(EndpointSecret::generate().to_string_whsec()),
        previous_secret: None,
        previous_secret_until: None,
        created_at: now,
        updated_at: now,
    };
    state.store.create_webhook(endpoint.clone()).await?;
    Ok((StatusCode::CREATED, Json(endpoint.into())))
}

/// List the agent's webhook endpoints.
#[utoipa::path(
    get, path = "/api/v2/webhooks", operation_id = "list-webhooks", tag = "webhooks", params(PageQuery),
    responses((status = 200, body = Page<Webhook>), (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope)),
    security(("bearerAuth" = []))
)]
pub async fn list(
    State(state): State<WebhooksApi>,
    caller: Caller,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Page<Webhook>>, ApiError> {
    let (cursor, limit) = pagination::parse_page_query(query.as_deref())?;
    let page = Page::fetch(
        limit,
        |n| {
            state
                .store
                .list_webhooks(caller.agent, cursor.as_deref(), n)
        },
        |e| e.id.clone(),
        &headers,
        COLLECTION_PATH,
    )
    .await?;
    Ok(Json(page.map(Webhook::from)))
}

/// Get one webhook endpoint.
#[utoipa::path(
    get, path = "/api/v2/webhooks/{id}", operation_id = "get-webhook", tag = "webhooks",
    params(("id" = String, Path, description = "The webhook's id")),
    responses((status = 200, body = Webhook), (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearerAuth" = []))
)]
pub async fn get(
    State(state): State<WebhooksApi>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Webhook>, ApiError> {
    Ok(Json(find(&state, caller, &id).await?.into()))
}

/// Change a webhook endpoint; only the fields given change.
#[utoipa::path(
    patch, path = "/api/v2/webhooks/{id}", operation_id = "update-webhook", tag = "webhooks",
    params(("id" = String, Path, description = "The webhook's id")),
    request_body = UpdateWebhookRequest,
    responses(
        (status = 200, body = Webhook), (status = 400, body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
    ),
    security(("bearerAuth" = []))
)]
pub async fn update(
    State(state): State<WebhooksApi>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<UpdateWebhookRequest>,
) -> Result<Json<Webhook>, ApiError> {
    let url = match request.url {
        Some(url) => Some(check_url(&state, &url).await?),
        None => None,
    };
    let event_filters = request.event_filters.map(check_filters).transpose()?;
    let description = request
        .description
        .map(super::check_description)
        .transpose()?;
    let enabled = request.enabled;
    let now = state.clock.now();
    let mutation = Box::new(move |e: &mut WebhookEndpoint| {
        if let Some(url) = url {
            e.url = url;
        }
        if let Some(filters) = event_filters {
            e.event_filters = filters;
        }
        if let Some(description) = description {
            e.description = description;
        }
        if let Some(enabled) = enabled {
            e.standing.set_enabled(enabled);
        }
        e.updated_at = now;
    });
    let updated = state
        .store
        .update_webhook(caller.agent, &id, mutation)
        .await?;
    let updated = updated.ok_or(ApiError::NotFound(NOT_FOUND))?;
    Ok(Json(updated.into()))
}

/// Delete a webhook endpoint and its queue.
#[utoipa::path(
    delete, path = "/api/v2/webhooks/{id}", operation_id = "delete-webhook", tag = "webhooks",
    params(("id" = String, Path, description = "The webhook's id")),
    responses((status = 204, description = "Deleted"), (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearerAuth" = []))
)]
pub async fn delete(
    State(state): State<WebhooksApi>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.store.delete_webhook(caller.agent, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(NOT_FOUND))
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookSecret {
    /// `whsec_…`: the key signatures are made with.
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    pub key: String,
}

/// Get the endpoint's signing secret.
#[utoipa::path(
    get, path = "/api/v2/webhooks/{id}/secret", operation_id = "get-webhook-secret", tag = "webhooks",
    params(("id" = String, Path, description = "The webhook's id")),
    responses((status = 200, body = WebhookSecret), (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearerAuth" = []))
)]
pub async fn secret(
    State(state): State<WebhooksApi>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<WebhookSecret>, ApiError> {
    Ok(Json(WebhookSecret {
        key: find(&state, caller, &id).await?.secret.expose().to_owned(),
    }))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecretRequest {
    /// A key of your own (`whsec_` + base64 of 24 to 75 bytes); a random
    /// one is made when absent.
    #[serde(default)]
    pub key: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Empty {}

/// Rotate the signing secret. For 24 hours deliveries carry signatures by
/// both the new and the old secret.
#[utoipa::path(
    post, path = "/api/v2/webhooks/{id}/secret/rotate", operation_id = "rotate-webhook-secret", tag = "webhooks",
    params(("id" = String, Path, description = "The webhook's id")),
    request_body = RotateSecretRequest,
    responses(
        (status = 200, body = Empty), (status = 400, body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
    ),
    security(("bearerAuth" = []))
)]
pub async fn rotate_secret(
    State(state): State<WebhooksApi>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<RotateSecretRequest>,
) -> Result<Json<Empty>, ApiError> {
    let new = match request.key {
        Some(key) => {
            EndpointSecret::parse(&key).map_err(|e| ApiError::Invalid(format!("key: {e}")))?
        }
        None => EndpointSecret::generate(),
    }
    .to_string_whsec();
    let now = state.clock.now();
    let mutation = Box::new(move |e: &mut WebhookEndpoint| {
        e.previous_secret = Some(std::mem::replace(&mut e.secret, SigningSecret::new(new)));
        e.previous_secret_until = Some(now.saturating_add(ROTATION_GRACE));
        e.updated_at = now;
    });
    state
        .store
        .update_webhook(caller.agent, &id, mutation)
        .await?
        .ok_or(ApiError::NotFound(NOT_FOUND))?;
    Ok(Json(Empty {}))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventTypeInfo {
    #[schema(example = "v1.end_user.updated")]
    pub name: &'static str,
    pub description: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventTypeList {
    pub data: Vec<EventTypeInfo>,
}

/// The event types an endpoint can subscribe to.
#[utoipa::path(
    get, path = "/api/v2/webhooks/event-types", operation_id = "list-webhook-event-types", tag = "webhooks",
    responses((status = 200, body = EventTypeList), (status = 401, body = ErrorEnvelope)),
    security(("bearerAuth" = []))
)]
pub async fn event_types(_caller: Caller) -> Json<EventTypeList> {
    Json(EventTypeList {
        data: EventType::ALL
            .into_iter()
            .map(|t| EventTypeInfo {
                name: t.name(),
                description: t.description(),
            })
            .collect(),
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptInfo {
    /// The attempt's own id (the cursor of the attempts list).
    pub id: i64,
    /// The `webhook-id` the delivery carried.
    pub message_id: String,
    pub event_type: String,
    /// The receiver's status code, or `null` when there was no answer.
    pub status_code: Option<u16>,
    /// Why the attempt failed, or `null`.
    pub error: Option<String>,
    pub duration_ms: u64,
    /// 1 for the first attempt of a message.
    pub attempt: u32,
    pub created_at: String,
}

impl From<Attempt> for AttemptInfo {
    fn from(a: Attempt) -> Self {
        Self {
            id: a.id,
            message_id: a.message_id,
            event_type: a.event_type,
            status_code: a.status_code,
            error: a.error,
            duration_ms: a.duration_ms,
            attempt: a.attempt,
            created_at: a.created_at.to_rfc3339(),
        }
    }
}

/// The endpoint's delivery attempts, newest first (an extension).
#[utoipa::path(
    get, path = "/api/v2/webhooks/{id}/attempts", operation_id = "list-webhook-attempts", tag = "webhooks",
    params(("id" = String, Path, description = "The webhook's id"), PageQuery),
    responses(
        (status = 200, body = Page<AttemptInfo>), (status = 400, body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
    ),
    security(("bearerAuth" = []))
)]
pub async fn attempts(
    State(state): State<WebhooksApi>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Page<AttemptInfo>>, ApiError> {
    let (cursor, limit) = pagination::parse_page_query(query.as_deref())?;
    let before = pagination::parse_cursor(cursor.as_deref(), |raw| raw.parse::<i64>().ok())?;
    find(&state, caller, &id).await?;
    let path = format!("{COLLECTION_PATH}{id}/attempts/");
    let page = Page::fetch(
        limit,
        |n| state.store.list_attempts(caller.agent, &id, before, n),
        |a| a.id.to_string(),
        &headers,
        &path,
    )
    .await?;
    Ok(Json(page.map(AttemptInfo::from)))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverRequest {
    /// RFC 3339: failed messages created at or after this are sent again.
    #[serde(default)]
    pub since: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Recovered {
    /// How many failed deliveries were queued again.
    pub recovered: usize,
}

/// Send again every message that failed for good since a time (an extension).
#[utoipa::path(
    post, path = "/api/v2/webhooks/{id}/recover", operation_id = "recover-webhook-messages", tag = "webhooks",
    params(("id" = String, Path, description = "The webhook's id")),
    request_body = RecoverRequest,
    responses(
        (status = 200, body = Recovered), (status = 400, body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
    ),
    security(("bearerAuth" = []))
)]
pub async fn recover(
    State(state): State<WebhooksApi>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<RecoverRequest>,
) -> Result<Json<Recovered>, ApiError> {
    let since = request
        .since
        .ok_or_else(|| ApiError::Invalid("since: is required".to_owned()))?;
    let since = Timestamp::parse_rfc3339(&since)
        .ok_or_else(|| ApiError::Invalid("since: must be an RFC 3339 date-time".to_owned()))?;
    find(&state, caller, &id).await?;
    let now = state.clock.now();
    let recovered = state
        .store
        .recover_deliveries(caller.agent, &id, since, now)
        .await?;
    Ok(Json(Recovered { recovered }))
}
