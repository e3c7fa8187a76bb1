//! `/api/v2/conversations`: starting, reading, annotating and ending
//! conversations. Starting one is also how most end users come to be, and
//! what keeps a user made by `POST /v2/end-users/` from being deleted.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use endusers_core::wire::Patch;
use endusers_core::{Clock, ProfilePolicy};
use endusers_core::{
    Conversation, ConversationStatus, EndUser, EndUserChanges, EndUserId, EventType, OutboxEvent,
    ScalarMap,
};
use endusers_store::ConversationStore;
use endusers_store::{ConversationMutation, NewConversation, StartedConversation, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::AppState;
use crate::answer::Json;
use crate::api::part::{Part, PartOf};
use crate::auth::Caller;
use crate::body::JsonBody;
use crate::error::{ApiError, ErrorEnvelope};
use crate::ids::Ids;

/// What the conversation handlers use.
pub struct Conversations {
    pub store: Arc<dyn ConversationStore>,
    pub clock: Arc<dyn Clock>,
    pub ids: Ids,
    pub policy: Arc<ProfilePolicy>,
}

/// The handlers' [`Conversations`].
pub type ConversationsApi = Part<Conversations>;

impl PartOf for Conversations {
    fn of(state: &AppState) -> &Part<Self> {
        &state.conversations
    }
}

const NOT_FOUND: &str = "conversation not found";

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConversationRequest {
    /// A custom channel of this agent (required).
    #[serde(default)]
    pub channel_id: Option<String>,
    /// An existing end user; without it a new end user is made.
    #[serde(default)]
    pub end_user_id: Option<String>,
    /// Strings, numbers and booleans by key; at most 4 KB serialized.
    #[serde(default)]
    #[schema(value_type = Option<HashMap<String, endusers_core::ScalarValue>>)]
    pub metadata: Patch<Map<String, Value>>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateConversationRequest {
    /// Merged key by key; `null` removes a key, `null` for the whole object
    /// removes every key.
    #[serde(default)]
    #[schema(value_type = HashMap<String, endusers_core::ScalarValue>)]
    pub metadata: Patch<Map<String, Value>>,
}

/// Start a conversation, with an existing end user or a new one.
#[utoipa::path(
    post, path = "/api/v2/conversations", operation_id = "create-conversation", tag = "conversations",
    request_body = CreateConversationRequest,
    responses(
        (status = 201, body = Conversation), (status = 400, body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope),
        (status = 404, description = "Unknown channel or end user", body = ErrorEnvelope),
    ),
    security(("bearerAuth" = []))
)]
pub async fn create(
    State(state): State<ConversationsApi>,
    caller: Caller,
    JsonBody(request): JsonBody<CreateConversationRequest>,
) -> Result<(StatusCode, Json<Conversation>), ApiError> {
    let channel = request
        .channel_id
        .ok_or_else(|| ApiError::Invalid("channel_id: is required".to_owned()))?;
    let channel_id = super::known_id(&channel, super::channels::NOT_FOUND)?;
    let metadata = ScalarMap::parse(request.metadata).map_err(|e| e.at("metadata"))?;
    let now = state.clock.now();
    let mut events = Vec::with_capacity(2);
    let (end_user_id, new_end_user) = match request.end_user_id {
        Some(raw) => (super::known_id(&raw, super::end_users::NOT_FOUND)?, None),
        None => {
            // A user made by a conversation is never an orphan.
            let id = state.ids.new_id(now);
            let mut user = EndUser::create(
                caller.agent,
                id,
                &EndUserChanges::default(),
                now,
                &state.policy,
            )?;
            user.profile.system_properties.last_conversation_at = Some(now);
            let message_id = state.ids.new_message_id(now);
            events.push(OutboxEvent::end_user(
                EventType::EndUserCreated,
                &user,
                message_id,
                now,
            ));
            (id, Some(user))
        }
    };
    let conversation = Conversation {
        id: state.ids.new_id(now),
        channel_id,
        end_user_id: Some(end_user_id),
        status: ConversationStatus::Active,
        metadata,
        created_at: now,
        updated_at: now,
        agent_id: caller.agent,
    };
    let message_id = state.ids.new_message_id(now);
    events.push(OutboxEvent::conversation(
        EventType::ConversationCreated,
        &conversation,
        message_id,
        now,
    ));
    let new = NewConversation {
        conversation,
        new_end_user,
        events,
    };
    match state.store.start_conversation(new).await? {
        StartedConversation::Started(conversation) => Ok((StatusCode::CREATED, Json(conversation))),
        StartedConversation::UnknownChannel => Err(ApiError::NotFound(super::channels::NOT_FOUND)),
        StartedConversation::UnknownEndUser => Err(ApiError::NotFound(super::end_users::NOT_FOUND)),
    }
}

fn parse_id(raw: &str) -> Result<EndUserId, ApiError> {
    super::known_id(raw, NOT_FOUND)
}

/// Get one conversation.
#[utoipa::path(
    get, path = "/api/v2/conversations/{id}", operation_id = "get-conversation-by-id", tag = "conversations",
    params(("id" = String, Path, description = "The conversation's id")),
    responses((status = 200, body = Conversation), (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearerAuth" = []))
)]
pub async fn get(
    State(state): State<ConversationsApi>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Conversation>, ApiError> {
    let conversation = state
        .store
        .get_conversation(caller.agent, parse_id(&id)?)
        .await?;
    conversation.map(Json).ok_or(ApiError::NotFound(NOT_FOUND))
}

async fn change(
    state: &ConversationsApi,
    caller: Caller,
    id: &str,
    mutation: ConversationMutation,
) -> Result<Conversation, ApiError> {
    let updated = state
        .store
        .update_conversation(caller.agent, parse_id(id)?, mutation)
        .await?;
    let updated = updated.ok_or(ApiError::NotFound(NOT_FOUND))?;
    Ok(updated)
}

/// Merge metadata into a conversation.
#[utoipa::path(
    patch, path = "/api/v2/conversations/{id}", operation_id = "patch-conversation-by-id", tag = "conversations",
    params(("id" = String, Path, description = "The conversation's id")),
    request_body = UpdateConversationRequest,
    responses(
        (status = 200, body = Conversation), (status = 400, body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
    ),
    security(("bearerAuth" = []))
)]
pub async fn update(
    State(state): State<ConversationsApi>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<UpdateConversationRequest>,
) -> Result<Json<Conversation>, ApiError> {
    let patch = match request.metadata {
        Patch::Absent => return Err(ApiError::Invalid("metadata: is required".to_owned())),
        Patch::Null => None,
        Patch::Value(object) => Some(object),
    };
    let now = state.clock.now();
    let mutation: ConversationMutation = Box::new(move |c: &mut Conversation| {
        match patch {
            None => c.metadata = ScalarMap::default(),
            Some(object) => c
                .metadata
                .merge(object)
                .map_err(|e| StoreError::Invalid(e.at("metadata")))?,
        }
        c.updated_at = now;
        Ok(Vec::new())
    });
    Ok(Json(change(&state, caller, &id, mutation).await?))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Ended {
    #[schema(example = "Conversation ended successfully.")]
    pub message: &'static str,
}

/// End a conversation.
#[utoipa::path(
    post, path = "/api/v2/conversations/{id}/end", operation_id = "end-conversation", tag = "conversations",
    params(("id" = String, Path, description = "The conversation's id")),
    responses(
        (status = 200, body = Ended), (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, description = "The conversation has already ended", body = ErrorEnvelope),
    ),
    security(("bearerAuth" = []))
)]
pub async fn end(
    State(state): State<ConversationsApi>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Ended>, ApiError> {
    let now = state.clock.now();
    let message_id = state.ids.new_message_id(now);
    let mutation: ConversationMutation = Box::new(move |c: &mut Conversation| {
        c.end(now)?;
        Ok(vec![OutboxEvent::conversation(
            EventType::ConversationEnded,
            c,
            message_id,
            now,
        )])
    });
    change(&state, caller, &id, mutation).await?;
    Ok(Json(Ended {
        message: "Conversation ended successfully.",
    }))
}
