//! The end user as the API shows it.

use crate::agent::AgentId;
use crate::external_id::ExternalId;
use crate::id::EndUserId;
use crate::metadata::Metadata;
use crate::time::Timestamp;
use crate::{AvatarUrl, Email, LanguageTag, ProfileText};

/// One end user. Serializes to exactly the API's shape.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EndUser {
    /// 24 lowercase hex characters; sorting by id sorts by creation.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "67a8b2c1d3f4e5a6b7c8d9e0"))]
    pub end_user_id: EndUserId,
    /// The integrator's identifier, in lower case, or `null`.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub external_id: Option<ExternalId>,
    pub profile: Profile,
    /// RFC 3339, UTC.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "2026-11-22T10:00:00.123456+00:00"))]
    pub created_at: Timestamp,
    /// RFC 3339, UTC; moves when a stored value changes.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "2026-11-22T10:00:00.123456+00:00"))]
    pub updated_at: Timestamp,
    /// Grows by one with each change; webhook payloads carry it.
    #[serde(skip)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub version: i64,
    /// A user made by `POST /v2/end-users/` is deleted at this time unless a
    /// conversation uses it first; `None` once one has. Never shown.
    #[serde(skip)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub orphan_until: Option<Timestamp>,
    /// The agent the user belongs to; never shown.
    #[serde(skip)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub agent_id: AgentId,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Profile {
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub first_name: Option<ProfileText>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub last_name: Option<ProfileText>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub display_name: Option<ProfileText>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub avatar: Option<AvatarUrl>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Email))]
    pub email: Option<Email>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub language: Option<LanguageTag>,
    /// String, integer and boolean values by key.
    #[cfg_attr(feature = "openapi", schema(value_type = HashMap<String, crate::metadata::MetadataValue>))]
    pub metadata: Metadata,
    pub system_properties: SystemProperties,
}

/// Values only the server sets.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SystemProperties {
    pub sunshine_user_id: Option<String>,
    /// When a conversation last used this user (RFC 3339), or `null`.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub last_conversation_at: Option<Timestamp>,
}

impl EndUser {
    /// A user with an empty profile, as `POST` with no body makes.
    pub fn blank(agent_id: AgentId, end_user_id: EndUserId, now: Timestamp) -> Self {
        Self {
            end_user_id,
            external_id: None,
            profile: Profile::default(),
            created_at: now,
            updated_at: now,
            version: 1,
            orphan_until: None,
            agent_id,
        }
    }
}
