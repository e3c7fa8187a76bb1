//! `/api/v2/end-users`: create, read, merge-patch, list, look up, delete.
//! Handlers only translate: parse the request, let the domain decide, let
//! the store persist, render the answer.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use endusers_core::wire::{CreateEndUserRequest, UpdateEndUserRequest};
use endusers_core::{
    AgentId, EndUser, EndUserChanges, EndUserId, EventType, ExternalId, OrphanRule, OutboxEvent,
    Timestamp, WriteJson,
};
use endusers_core::{Clock, ProfilePolicy};
use endusers_store::EndUserStore;
use endusers_store::{Applied, Created, Mutation, SensitiveChange};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::answer::{JsonText, Written};
use crate::api::part::{Part, PartOf};
use crate::auth::Caller;
use crate::body::JsonBody;
use crate::error::{ApiError, ErrorEnvelope};
use crate::ids::Ids;
use crate::pagination::{self, Page};
use crate::vault::Vault;

/// What the end-user handlers use.
pub struct EndUsers {
    pub store: Arc<dyn EndUserStore>,
    pub clock: Arc<dyn Clock>,
    pub ids: Ids,
    pub vault: Arc<Vault>,
    pub policy: Arc<ProfilePolicy>,
    /// Users made on their own are orphans until a conversation claims them.
    pub orphans: OrphanRule,
}

/// The handlers' [`EndUsers`].
pub type EndUsersApi = Part<EndUsers>;

impl PartOf for EndUsers {
    fn of(state: &AppState) -> &Part<Self> {
        &state.end_users
    }
}

pub(crate) const NOT_FOUND: &str = "end user not found";
const COLLECTION_PATH: &str = "/api/v2/end-users/";

fn parse_id(raw: &str) -> Result<EndUserId, ApiError> {
    super::known_id(raw, NOT_FOUND)
}

/// Seals the request's sensitive values for this user; they are stored in
/// the same transaction as the user.
fn sealed_changes(
    state: &EndUsersApi,
    changes: &EndUserChanges,
    agent: AgentId,
    id: EndUserId,
    now: Timestamp,
) -> Vec<SensitiveChange> {
    changes
        .sensitive
        .as_ref()
        .map(|patch| state.vault.changes(agent, id, patch, now))
        .unwrap_or_default()
}

/// Create an end user, or return the one that already has this `external_id`.
#[utoipa::path(
    post, path = "/api/v2/end-users", operation_id = "create-end-user", tag = "end-users",
    request_body(content = CreateEndUserRequest, description = "Optional: an empty body creates a blank user."),
    responses(
        (status = 201, description = "Created", body = EndUser),
        (status = 200, description = "A user already had this external_id; it is returned unchanged", body = EndUser),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 413, body = ErrorEnvelope), (status = 415, body = ErrorEnvelope),
    ),
    security(("bearerAuth" = []))
)]
pub async fn create(
    State(state): State<EndUsersApi>,
    caller: Caller,
    JsonBody(request): JsonBody<CreateEndUserRequest>,
) -> Result<Response, ApiError> {
    let changes = EndUserChanges::from_create(request)?;
    let now = state.clock.now();
    let id = state.ids.new_id(now);
    let mut user = EndUser::create(caller.agent, id, &changes, now, &state.policy)?;
    // It lives only if a conversation uses it in time.
    user.orphan_until = Some(state.orphans.deadline(now));
    let sensitive = sealed_changes(&state, &changes, caller.agent, id, now);
    let created = OutboxEvent::end_user(
        EventType::EndUserCreated,
        &user,
        state.ids.new_message_id(now),
        now,
    );
    Ok(
        match state
            .store
            .create_end_user(user, sensitive, vec![created])
            .await?
        {
            Created::New(user) => (StatusCode::CREATED, Written(user)).into_response(),
            Created::Existing(user) => (StatusCode::OK, Written(user)).into_response(),
        },
    )
}

/// Get one end user.
#[utoipa::path(
    get, path = "/api/v2/end-users/{end_user_id}", operation_id = "get-end-user-by-id", tag = "end-users",
    params(("end_user_id" = String, Path, description = "The user's id")),
    responses(
        (status = 200, body = EndUser),
        (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
    ),
    security(("bearerAuth" = []))
)]
pub async fn get(
    State(state): State<EndUsersApi>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<JsonText, ApiError> {
    let id = parse_id(&id)?;
    let user = state.store.get_end_user_json(caller.agent, id).await?;
    user.map(JsonText).ok_or(ApiError::NotFound(NOT_FOUND))
}

/// Update an end user with a JSON Merge Patch of its profile.
#[utoipa::path(
    patch, path = "/api/v2/end-users/{end_user_id}", operation_id = "patch-end-user-by-id", tag = "end-users",
    params(("end_user_id" = String, Path, description = "The user's id")),
    request_body(content = UpdateEndUserRequest),
    responses(
        (status = 200, description = "The whole user after the change", body = EndUser),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope),
        (status = 409, description = "The external_id belongs to another user", body = ErrorEnvelope),
        (status = 413, body = ErrorEnvelope), (status = 415, body = ErrorEnvelope),
    ),
    security(("bearerAuth" = []))
)]
pub async fn update(
    State(state): State<EndUsersApi>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<UpdateEndUserRequest>,
) -> Result<Written<EndUser>, ApiError> {
    let id = parse_id(&id)?;
    let changes = EndUserChanges::from_update(request)?;
    let now = state.clock.now();
    let sensitive = sealed_changes(&state, &changes, caller.agent, id, now);
    let policy = Arc::clone(&state.policy);
    let message_id = state.ids.new_message_id(now);
    let mutation: Mutation = Box::new(move |user: &mut EndUser| {
        let change = user.apply(&changes, now, &policy)?;
        // Only a change integrators can see is announced.
        let events = if change.notify {
            vec![OutboxEvent::end_user(
                EventType::EndUserUpdated,
                user,
                message_id,
                now,
            )]
        } else {
            Vec::new()
        };
        Ok(Applied { change, events })
    });
    let updated = state
        .store
        .update_end_user(caller.agent, id, mutation, sensitive)
        .await?
        .ok_or(ApiError::NotFound(NOT_FOUND))?;
    Ok(Written(updated.user))
}

/// Delete an end user (an extension to Ada's API).
#[utoipa::path(
    delete, path = "/api/v2/end-users/{end_user_id}", operation_id = "delete-end-user", tag = "end-users",
    params(("end_user_id" = String, Path, description = "The user's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
    ),
    security(("bearerAuth" = []))
)]
pub async fn delete(
    State(state): State<EndUsersApi>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    if state.store.delete_end_user(caller.agent, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(NOT_FOUND))
    }
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Look up the one user with this external id (no paging then).
    external_id: Option<String>,
    /// The id of the first user of the page, from `next_page_url`.
    cursor: Option<String>,
    /// Users per page, 1 to 100 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
}

/// A page of users, or the single user an `external_id` names.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ListEndUsersResponse {
    Page(Page<EndUser>),
    Single(Box<EndUser>),
}

impl WriteJson for ListEndUsersResponse {
    fn write_json(&self, out: &mut String) {
        match self {
            Self::Page(page) => page.write_json(out),
            Self::Single(user) => user.write_json(out),
        }
    }
}

/// List end users in creation order, or look one up by `external_id`.
#[utoipa::path(
    get, path = "/api/v2/end-users", operation_id = "get-end-users", tag = "end-users",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of users, or with external_id the one user", body = ListEndUsersResponse),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 404, description = "No user has this external_id", body = ErrorEnvelope),
    ),
    security(("bearerAuth" = []))
)]
pub async fn list(
    State(state): State<EndUsersApi>,
    caller: Caller,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Written<ListEndUsersResponse>, ApiError> {
    let query: ListQuery = serde_urlencoded::from_str(query.as_deref().unwrap_or_default())
        .map_err(|e| pagination::query_error(&e.to_string(), "external_id, cursor or limit"))?;
    if let Some(raw) = query.external_id {
        if query.cursor.is_some() || query.limit.is_some() {
            return Err(ApiError::Invalid(
                "external_id: cannot be combined with cursor or limit".to_owned(),
            ));
        }
        let external_id = ExternalId::parse(&raw).map_err(|e| e.at("external_id"))?;
        let user = state
            .store
            .find_end_user_by_external_id(caller.agent, &external_id)
            .await?;
        let user = user.ok_or(ApiError::NotFound("no end user has this external_id"))?;
        return Ok(Written(ListEndUsersResponse::Single(Box::new(user))));
    }
    let limit = pagination::parse_limit(query.limit.as_deref())?;
    let from = pagination::cursor_id(query.cursor.as_deref())?;
    let page = Page::fetch(
        limit,
        |n| state.store.list_end_users(caller.agent, from, n),
        |u| u.end_user_id.to_string(),
        &headers,
        COLLECTION_PATH,
    )
    .await?;
    Ok(Written(ListEndUsersResponse::Page(page)))
}
