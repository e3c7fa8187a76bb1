//! Sensitive values: sealed by the server, stored as they come, read only
//! to be used and re-sealed under a new master key.

use async_trait::async_trait;
use endusers_core::{AgentId, EndUserId, Timestamp};

use crate::{OwnedSealedValue, SealedValue, StoreError};

#[async_trait]
pub trait SensitiveStore: Send + Sync + 'static {
    /// The user's sensitive values that have not expired at `now`.
    async fn live_sensitive_values(
        &self,
        agent: AgentId,
        id: EndUserId,
        now: Timestamp,
    ) -> Result<Vec<SealedValue>, StoreError>;
    /// Deletes at most `limit` values expired at `now`; returns how many.
    async fn delete_expired_sensitive_values(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<usize, StoreError>;
    /// At most `limit` values sealed under a key other than `active_key_id`.
    async fn sensitive_values_under_other_keys(
        &self,
        active_key_id: &str,
        limit: usize,
    ) -> Result<Vec<OwnedSealedValue>, StoreError>;
    /// Stores re-sealed values in place of old ones that were not rewritten
    /// meanwhile; returns how many were replaced.
    async fn replace_sealed_values(
        &self,
        replacements: Vec<(OwnedSealedValue, SealedValue)>,
    ) -> Result<usize, StoreError>;
    /// How many values each master key id seals.
    async fn count_sensitive_values_by_key(&self) -> Result<Vec<(String, u64)>, StoreError>;
}
