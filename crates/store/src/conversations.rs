//! Custom channels, conversations, and the end-user lifecycle they drive.

use async_trait::async_trait;
use endusers_core::{AgentId, Channel, Conversation, EndUserId, Timestamp};

use crate::{ConversationMutation, NewConversation, StartedConversation, StoreError};

#[async_trait]
pub trait ConversationStore: Send + Sync + 'static {
    async fn create_channel(&self, channel: Channel) -> Result<(), StoreError>;
    async fn get_channel(
        &self,
        agent: AgentId,
        id: EndUserId,
    ) -> Result<Option<Channel>, StoreError>;
    async fn list_channels(
        &self,
        agent: AgentId,
        from: Option<EndUserId>,
        limit: usize,
    ) -> Result<Vec<Channel>, StoreError>;
    /// Starts a conversation in one transaction: the channel must exist;
    /// an existing user must still exist and is claimed
    /// ([`endusers_core::OrphanRule::claim`]) in the same transaction, so
    /// the orphan sweep either deletes it before or never; a new user is
    /// stored with it; the events go to the outbox with it.
    async fn start_conversation(
        &self,
        new: NewConversation,
    ) -> Result<StartedConversation, StoreError>;
    async fn get_conversation(
        &self,
        agent: AgentId,
        id: EndUserId,
    ) -> Result<Option<Conversation>, StoreError>;
    /// Applies `mutation` and writes the events it returns, in one
    /// transaction; `Ok(None)` when the agent has no such conversation.
    async fn update_conversation(
        &self,
        agent: AgentId,
        id: EndUserId,
        mutation: ConversationMutation,
    ) -> Result<Option<Conversation>, StoreError>;
    /// Deletes up to `limit` end users that the orphan rule
    /// ([`endusers_core::OrphanRule::is_due`]) says are due at `now`, each
    /// with its sensitive values; returns how many.
    async fn delete_orphans(&self, now: Timestamp, limit: usize) -> Result<usize, StoreError>;
}
