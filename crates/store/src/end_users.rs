//! End users: their profiles, looked up by id or by the integrator's own id.

use async_trait::async_trait;
use endusers_core::{
    AgentId, Change, EndUser, EndUserId, ExternalId, FieldError, OutboxEvent, WriteJson,
};

use crate::{Created, SensitiveChange, StoreError, Updated};

/// A change to one stored user, computed by domain code inside the write
/// transaction so that read, change and write are one atomic step. It
/// returns what changed and the events the change causes, which are
/// written to the outbox in the same transaction.
pub type Mutation = Box<dyn FnOnce(&mut EndUser) -> Result<Applied, FieldError> + Send>;

/// What a [`Mutation`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Applied {
    pub change: Change,
    pub events: Vec<OutboxEvent>,
}

#[async_trait]
pub trait EndUserStore: Send + Sync + 'static {
    /// Stores a new user and its sensitive values in one transaction,
    /// unless its `external_id` already belongs to a user of the same agent:
    /// then that user is returned untouched and nothing is written. The
    /// `events` go to the outbox in the same transaction.
    async fn create_end_user(
        &self,
        user: EndUser,
        sensitive: Vec<SensitiveChange>,
        events: Vec<OutboxEvent>,
    ) -> Result<Created, StoreError>;
    async fn get_end_user(
        &self,
        agent: AgentId,
        id: EndUserId,
    ) -> Result<Option<EndUser>, StoreError>;
    /// The user as the API answers it: byte for byte the JSON text of
    /// [`EndUserStore::get_end_user`]'s user ([`WriteJson`]). A backend may
    /// write it straight from its row, without building the [`EndUser`]
    /// (see [`endusers_core::EndUserView`]); this default builds it.
    async fn get_end_user_json(
        &self,
        agent: AgentId,
        id: EndUserId,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .get_end_user(agent, id)
            .await?
            .map(|user| WriteJson::to_json_string(&user, endusers_core::json::ANSWER_CAPACITY)))
    }
    async fn find_end_user_by_external_id(
        &self,
        agent: AgentId,
        external_id: &ExternalId,
    ) -> Result<Option<EndUser>, StoreError>;
    /// Up to `limit` users of the agent in ascending id order, starting at
    /// `from` (inclusive) when given.
    async fn list_end_users(
        &self,
        agent: AgentId,
        from: Option<EndUserId>,
        limit: usize,
    ) -> Result<Vec<EndUser>, StoreError>;
    /// Applies `mutation` to the stored user and the sensitive changes in
    /// one transaction. `Ok(None)` when the agent has no such user;
    /// `Conflict` when the new `external_id` is taken.
    async fn update_end_user(
        &self,
        agent: AgentId,
        id: EndUserId,
        mutation: Mutation,
        sensitive: Vec<SensitiveChange>,
    ) -> Result<Option<Updated>, StoreError>;
    /// Erases the user and its sensitive values; `false` when the agent has
    /// no such user.
    async fn delete_end_user(&self, agent: AgentId, id: EndUserId) -> Result<bool, StoreError>;
}
