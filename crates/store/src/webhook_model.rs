//! Webhook endpoints, deliveries and attempts as the store keeps them.

use std::fmt;

pub use endusers_core::NextStep;
use endusers_core::{AgentId, Standing, Timestamp};

/// An endpoint's signing secret (`whsec_…`). `Debug` never shows it, so an
/// endpoint or a delivery can be logged whole.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret(String);

impl SigningSecret {
    pub fn new(whsec: String) -> Self {
        Self(whsec)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(<redacted>)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEndpoint {
    /// `ep_…`
    pub id: String,
    pub agent_id: AgentId,
    pub url: String,
    pub description: String,
    /// Event type names; empty means every type.
    pub event_filters: Vec<String>,
    /// Enabled or not, the failing streak, and why it was disabled: what
    /// the delivery rules decide ([`Standing`]).
    pub standing: Standing,
    /// `whsec_…`
    pub secret: SigningSecret,
    pub previous_secret: Option<SigningSecret>,
    pub previous_secret_until: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A change to one endpoint, computed inside the write transaction.
pub type EndpointMutation = Box<dyn FnOnce(&mut WebhookEndpoint) + Send>;

/// A delivery a dispatcher has leased, with all it needs to send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub agent_id: AgentId,
    pub endpoint_id: String,
    pub message_id: String,
    pub event_type: String,
    pub payload: String,
    pub url: String,
    pub secret: SigningSecret,
    /// The pre-rotation secret while it still signs.
    pub previous_secret: Option<SigningSecret>,
    /// Attempts made before this one.
    pub attempts: u32,
    pub message_created_at: Timestamp,
    /// The backend's hold on this delivery, handed back with its attempt.
    pub lease: Lease,
}

/// A backend's hold on one delivery it handed out. The dispatcher hands it
/// back in the attempt's record and never looks inside: what it holds
/// (a place in an outbox, a row) is the backend's own business.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lease(i64);

impl Lease {
    /// For backends: a lease carrying `token`.
    pub const fn from_backend(token: i64) -> Self {
        Self(token)
    }

    /// For backends: the token the lease was made with.
    pub const fn backend_token(self) -> i64 {
        self.0
    }
}

/// What became of one attempt, as the dispatcher decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    pub agent_id: AgentId,
    pub endpoint_id: String,
    pub message_id: String,
    pub event_type: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: u64,
    pub at: Timestamp,
    pub next: NextStep,
    /// The delivery's [`Delivery::lease`].
    pub lease: Lease,
}

/// One row of an endpoint's attempt log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub id: i64,
    pub message_id: String,
    pub event_type: String,
    pub attempt: u32,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: u64,
    pub created_at: Timestamp,
}

/// How many deliveries a dispatcher can take on now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Claim {
    /// At most this many in all.
    pub limit: usize,
    /// Free slots of an endpoint with nothing in flight.
    pub default_slots: usize,
    /// Free slots of endpoints with deliveries in flight, or held back.
    pub free_slots: std::collections::HashMap<String, usize>,
    /// Free slots of an agent with nothing in flight.
    pub default_agent_slots: usize,
    /// Free slots of agents with deliveries in flight: what they may take
    /// across all their endpoints together.
    pub agent_slots: std::collections::HashMap<AgentId, usize>,
    /// The endpoint the previous claim served last: endpoints are visited
    /// in id order starting after it, wrapping around, so that when the
    /// room runs out, the endpoints passed over get the next turn instead
    /// of the same first few every time.
    pub after: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_a_signing_secret() {
        let endpoint = WebhookEndpoint {
            id: "ep_1".into(),
            agent_id: AgentId(1),
            url: "https://example.com/".into(),
            description: String::new(),
            event_filters: Vec::new(),
            standing: Standing::enabled(),
            secret: SigningSecret::new("whsec_TOPSECRET".into()),
            previous_secret: Some(SigningSecret::new("whsec_OLDSECRET".into())),
            previous_secret_until: None,
            created_at: Timestamp::from_micros(0),
            updated_at: Timestamp::from_micros(0),
        };
        let shown = format!("{endpoint:?}");
        assert!(
            !shown.contains("TOPSECRET") && !shown.contains("OLDSECRET"),
            "{shown}"
        );
        assert_eq!(endpoint.secret.expose(), "whsec_TOPSECRET");
    }
}
