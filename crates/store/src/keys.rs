//! Agents and their API keys.

use std::sync::Arc;

use async_trait::async_trait;
use endusers_core::{AgentHandle, Timestamp};

use crate::{Agent, AgentLimits, ApiKeyRecord, NewApiKey, StoreError};

#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// Creates an agent; `Conflict` when the handle is taken.
    async fn create_agent(&self, handle: AgentHandle, now: Timestamp) -> Result<Agent, StoreError>;
    async fn find_agent(&self, handle: &AgentHandle) -> Result<Option<Agent>, StoreError>;
    async fn list_agents(&self) -> Result<Vec<Agent>, StoreError>;

    /// Sets an agent's rate-limit overrides; `false` when no agent has the handle.
    async fn set_agent_limits(
        &self,
        handle: &AgentHandle,
        limits: AgentLimits,
    ) -> Result<bool, StoreError>;
    async fn agent_limits(&self, handle: &AgentHandle) -> Result<Option<AgentLimits>, StoreError>;

    /// Stores a new key; `Conflict` when its id is taken.
    async fn insert_api_key(&self, key: NewApiKey) -> Result<(), StoreError>;
    /// The key with this public id, revoked or not, with its agent's
    /// limits. Called on every request, so a backend may answer from
    /// memory, but a key or agent changed through any store on the same
    /// data (another process or node included) must show within a second.
    async fn find_api_key(&self, key_id: &str) -> Result<Option<Arc<ApiKeyRecord>>, StoreError>;
    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// Marks a key revoked; `false` when no active key has this id.
    async fn revoke_api_key(&self, key_id: &str, now: Timestamp) -> Result<bool, StoreError>;
}
