//! Webhook endpoints as their agents manage them, with their attempt logs.

use async_trait::async_trait;
use endusers_core::{AgentId, Timestamp};

use crate::{Attempt, EndpointMutation, StoreError, WebhookEndpoint};

#[async_trait]
pub trait EndpointStore: Send + Sync + 'static {
    async fn create_webhook(&self, endpoint: WebhookEndpoint) -> Result<(), StoreError>;
    async fn get_webhook(
        &self,
        agent: AgentId,
        id: &str,
    ) -> Result<Option<WebhookEndpoint>, StoreError>;
    /// Up to `limit` endpoints in id order from `from` (inclusive).
    async fn list_webhooks(
        &self,
        agent: AgentId,
        from: Option<&str>,
        limit: usize,
    ) -> Result<Vec<WebhookEndpoint>, StoreError>;
    /// Applies `mutation` in one transaction, and to the endpoint's queue
    /// what [`endusers_core::QueueTransition`] says a change of `enabled`
    /// does.
    async fn update_webhook(
        &self,
        agent: AgentId,
        id: &str,
        mutation: EndpointMutation,
    ) -> Result<Option<WebhookEndpoint>, StoreError>;
    /// Deletes the endpoint with its pending deliveries and attempt log.
    async fn delete_webhook(&self, agent: AgentId, id: &str) -> Result<bool, StoreError>;
    /// An endpoint's attempts, newest first, from attempt id `before` down.
    async fn list_attempts(
        &self,
        agent: AgentId,
        endpoint: &str,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Attempt>, StoreError>;
    /// Queues again, due at `now`, the endpoint's deliveries that failed
    /// for good since `since`; returns how many.
    async fn recover_deliveries(
        &self,
        agent: AgentId,
        endpoint: &str,
        since: Timestamp,
        now: Timestamp,
    ) -> Result<usize, StoreError>;
}
