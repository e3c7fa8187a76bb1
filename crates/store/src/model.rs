use endusers_core::{
    AgentHandle, AgentId, Change, EndUser, EndUserId, RatePolicy, SensitiveKey, Timestamp,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub id: AgentId,
    pub handle: AgentHandle,
    pub created_at: Timestamp,
}

/// An agent's own rate limits; `None` uses the default. Parsed when read
/// from the database, not on every request that applies them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentLimits {
    pub end_user: Option<RatePolicy>,
    pub global: Option<RatePolicy>,
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
    /// The agent's rate-limit overrides, read with the key so they apply
    /// from the next request on.
    pub agent_limits: AgentLimits,
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

/// One encrypted sensitive value as stored. The store never sees plaintext.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedValue {
    pub name: SensitiveKey,
    /// Which master key sealed it.
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub expires_at: Timestamp,
}

impl std::fmt::Debug for SealedValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedValue")
            .field("name", &self.name)
            .field("key_id", &self.key_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// What one request does to a user's sensitive values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SensitiveChange {
    Set(SealedValue),
    Remove(SensitiveKey),
}

/// A stored value with the user it belongs to, for re-encryption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedSealedValue {
    pub agent_id: AgentId,
    pub end_user_id: EndUserId,
    pub value: SealedValue,
}

/// A conversation to start, with the user it makes when the request named
/// none, and its events.
#[derive(Debug, Clone, PartialEq)]
pub struct NewConversation {
    pub conversation: endusers_core::Conversation,
    pub new_end_user: Option<EndUser>,
    pub events: Vec<endusers_core::OutboxEvent>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StartedConversation {
    Started(endusers_core::Conversation),
    UnknownChannel,
    UnknownEndUser,
}

/// A change to one conversation inside the write transaction; returns the
/// events it causes. `StoreError::Invalid` or `StoreError::State` refuse it.
pub type ConversationMutation = Box<
    dyn FnOnce(
            &mut endusers_core::Conversation,
        ) -> Result<Vec<endusers_core::OutboxEvent>, crate::StoreError>
        + Send,
>;

/// What writing has cost the store since it opened: counters that only
/// grow, for `/metrics` and the bench. Two readings taken a while apart
/// tell how many writes shared a transaction and how much of the time the
/// writing was busy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Transactions run (a commit that failed counts too).
    pub transactions: u64,
    /// Writes those transactions carried: one per store call that writes.
    pub writes: u64,
    /// Wall-clock time from each transaction's start to its commit's
    /// return, in microseconds: waiting for the disk, and for a core,
    /// included.
    pub busy_micros: u64,
}
