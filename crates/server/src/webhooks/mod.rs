//! Webhooks: signing, the address filter, and the HTTP client that only
//! dials public addresses (the dispatcher that drains the outbox is a
//! worker: [`crate::workers::dispatcher`]).

pub mod client;
pub mod signature;
pub mod ssrf;

use std::time::Duration;

use endusers_core::RetrySchedule;

/// How deliveries are made; from configuration.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub retry_schedule: RetrySchedule,
    /// A delivery that has not answered 2xx by then has failed.
    pub timeout: Duration,
    /// An endpoint whose deliveries have all failed for this long is disabled.
    pub disable_after: Duration,
    /// Allows `http://` URLs and private, loopback and other non-public
    /// addresses. For local development and tests only.
    pub allow_insecure: bool,
    /// Deliveries in flight to one endpoint at most.
    pub per_endpoint_concurrency: usize,
    /// Deliveries in flight in all at most.
    pub concurrency: usize,
    /// How often the outbox is looked at when no write has signalled it.
    pub poll_interval: Duration,
    /// Attempts and finished messages older than this are deleted.
    pub retention: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            retry_schedule: RetrySchedule::standard(),
            timeout: Duration::from_secs(15),
            disable_after: Duration::from_secs(7 * 86_400),
            allow_insecure: false,
            per_endpoint_concurrency: 128,
            concurrency: 512,
            poll_interval: Duration::from_secs(1),
            retention: Duration::from_secs(30 * 86_400),
        }
    }
}
