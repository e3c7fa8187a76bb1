//! The outbox as dispatchers see it: leases on due deliveries, and the
//! record of each attempt.

use async_trait::async_trait;
use endusers_core::Timestamp;

use crate::{AttemptRecord, Changes, Claim, Delivery, StoreError};

#[async_trait]
pub trait OutboxStore: Send + Sync + 'static {
    /// Leases due deliveries to enabled endpoints until `lease_until`,
    /// within the `claim`'s room (per endpoint and in all), endpoints
    /// taking turns from the one after `claim.after`. A delivery is handed
    /// out to one dispatcher at a time; one not recorded by the end of its
    /// lease is handed out again (at least once, never lost).
    async fn claim_deliveries(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        claim: Claim,
    ) -> Result<Vec<Delivery>, StoreError>;
    /// Records attempts and what follows from each in one transaction:
    /// each delivery's next state ([`endusers_core::DeliveryState`]) and
    /// each endpoint's standing ([`endusers_core::Standing::record`], with
    /// `disable_if_failing_since` as its threshold). Attempts at endpoints
    /// deleted meanwhile leave nothing behind.
    async fn record_attempts(
        &self,
        records: Vec<AttemptRecord>,
        disable_if_failing_since: Timestamp,
    ) -> Result<(), StoreError>;
    /// The store's announcements of commits a dispatcher may want (see
    /// [`Changes`]).
    fn changes(&self) -> Changes;
    /// (pending, delivered, failed) deliveries, for tests and metrics.
    async fn delivery_counts(&self) -> Result<(u64, u64, u64), StoreError>;
}
