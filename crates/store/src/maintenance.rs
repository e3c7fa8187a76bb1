//! What the upkeep of a store needs: health, history pruning, costs, and
//! closing.

use async_trait::async_trait;
use endusers_core::Timestamp;

use crate::{StoreError, WriteStats};

#[async_trait]
pub trait Maintenance: Send + Sync + 'static {
    /// Succeeds when the backend answers queries.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Deletes up to `limit` attempts and messages made before `before`,
    /// keeping every message a delivery still waits for; returns how many
    /// rows went.
    async fn prune_webhook_history(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<usize, StoreError>;
    /// What writing has cost so far; cheap enough to read on every scrape.
    fn write_stats(&self) -> WriteStats;
    /// Finishes queued writes and releases the backend. Calls made after
    /// it answer [`StoreError::Closed`].
    async fn close(&self);
}
