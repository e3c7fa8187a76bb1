//! `/api/v2/channels`: custom channels conversations arrive on.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use endusers_core::Clock;
use endusers_core::wire::Patch;
use endusers_core::{Channel, Modality, ScalarMap};
use endusers_store::ConversationStore;
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::AppState;
use crate::answer::Json;
use crate::api::part::{Part, PartOf};
use crate::auth::Caller;
use crate::body::JsonBody;
use crate::error::{ApiError, ErrorEnvelope};
use crate::ids::Ids;
use crate::pagination::{self, Page, PageQuery};

/// What the channel handlers use.
pub struct Channels {
    pub store: Arc<dyn ConversationStore>,
    pub clock: Arc<dyn Clock>,
    pub ids: Ids,
}

/// The handlers' [`Channels`].
pub type ChannelsApi = Part<Channels>;

impl PartOf for Channels {
    fn of(state: &AppState) -> &Part<Self> {
        &state.channels
    }
}

pub(crate) const NOT_FOUND: &str = "channel not found";
const COLLECTION_PATH: &str = "/api/v2/channels/";

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateChannelRequest {
    /// 1 to 255 characters.
    #[serde(default)]
    pub name: Option<String>,
    /// At most 1024 characters.
    #[serde(default)]
    pub description: Option<String>,
    /// `messaging`, `email` or `voice`.
    #[serde(default)]
    #[schema(value_type = Option<Modality>)]
    pub modality: Option<String>,
    /// Strings, numbers and booleans by key; at most 4 KB serialized.
    #[serde(default)]
    #[schema(value_type = Option<HashMap<String, endusers_core::ScalarValue>>)]
    pub metadata: Patch<Map<String, Value>>,
}

/// Create a custom channel.
#[utoipa::path(
    post, path = "/api/v2/channels", operation_id = "create-channel", tag = "channels",
    request_body = CreateChannelRequest,
    responses((status = 201, body = Channel), (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope)),
    security(("bearerAuth" = []))
)]
pub async fn create(
    State(state): State<ChannelsApi>,
    caller: Caller,
    JsonBody(request): JsonBody<CreateChannelRequest>,
) -> Result<(StatusCode, Json<Channel>), ApiError> {
    let name = request
        .name
        .ok_or_else(|| ApiError::Invalid("name: is required".to_owned()))?;
    if name.trim().is_empty() || name.chars().count() > 255 {
        return Err(ApiError::Invalid(
            "name: must be 1 to 255 characters".to_owned(),
        ));
    }
    let description = super::check_description(request.description.unwrap_or_default())?;
    let modality = request
        .modality
        .ok_or_else(|| ApiError::Invalid("modality: is required".to_owned()))?;
    let modality = Modality::parse(&modality).ok_or_else(|| {
        ApiError::Invalid("modality: must be messaging, email or voice".to_owned())
    })?;
    let metadata = ScalarMap::parse(request.metadata).map_err(|e| e.at("metadata"))?;
    let now = state.clock.now();
    let channel = Channel {
        id: state.ids.new_id(now),
        name,
        description,
        kind: "custom",
        modality,
        metadata,
        created_at: now,
        updated_at: now,
        agent_id: caller.agent,
    };
    state.store.create_channel(channel.clone()).await?;
    Ok((StatusCode::CREATED, Json(channel)))
}

/// Get one channel.
#[utoipa::path(
    get, path = "/api/v2/channels/{id}", operation_id = "get-channel", tag = "channels",
    params(("id" = String, Path, description = "The channel's id")),
    responses((status = 200, body = Channel), (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearerAuth" = []))
)]
pub async fn get(
    State(state): State<ChannelsApi>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Channel>, ApiError> {
    let id = super::known_id(&id, NOT_FOUND)?;
    let channel = state.store.get_channel(caller.agent, id).await?;
    channel.map(Json).ok_or(ApiError::NotFound(NOT_FOUND))
}

/// List the agent's channels in creation order.
#[utoipa::path(
    get, path = "/api/v2/channels", operation_id = "get-channels", tag = "channels", params(PageQuery),
    responses((status = 200, body = Page<Channel>), (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope)),
    security(("bearerAuth" = []))
)]
pub async fn list(
    State(state): State<ChannelsApi>,
    caller: Caller,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Page<Channel>>, ApiError> {
    let (cursor, limit) = pagination::parse_page_query(query.as_deref())?;
    let from = pagination::cursor_id(cursor.as_deref())?;
    let page = Page::fetch(
        limit,
        |n| state.store.list_channels(caller.agent, from, n),
        |c| c.id.to_string(),
        &headers,
        COLLECTION_PATH,
    )
    .await?;
    Ok(Json(page))
}
