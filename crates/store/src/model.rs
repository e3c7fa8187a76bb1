use endusers_core::{AgentHandle, AgentId, Change, EndUser, Timestamp};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub id: AgentId,
    pub handle: AgentHandle,
    pub created_at: Timestamp,
}

/// An API key as stored: only a hash of its secret part is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiKey {
    /// The public part of the key, shown in listings and used to revoke.
    pub key_id: String,
    pub agent_id: AgentId,
    pub name: Option<String>,
    /// SHA-256 of the secret part.
    pub secret_hash: [u8; 32],
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub key_id: String,
    pub agent_id: AgentId,
    pub agent_handle: AgentHandle,
    pub name: Option<String>,
    pub secret_hash: [u8; 32],
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

/// The result of a create: a new user, or the one that already had the
/// requested `external_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    New(EndUser),
    Existing(EndUser),
}

/// A user after an update, with what the update changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Updated {
    pub user: EndUser,
    pub change: Change,
}
