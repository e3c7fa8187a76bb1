//! Storage for endusers: the traits every backend implements, one per
//! concern, the models they pass, and (with the `contract` feature) the
//! contract suite every backend runs.
//!
//! Backends hold no business rules: a change is computed by domain code
//! (`endusers-core`) and the backend makes it atomic and durable. A write
//! is one transaction that holds the change and the events it causes.

mod changes;
#[cfg(feature = "contract")]
pub mod contract;
mod conversations;
mod end_users;
mod endpoints;
mod error;
mod keys;
mod maintenance;
mod model;
mod outbox;
mod sensitive;
mod webhook_model;

pub use changes::Changes;
pub use conversations::ConversationStore;
pub use end_users::{Applied, EndUserStore, Mutation};
pub use endpoints::EndpointStore;
pub use error::StoreError;
pub use keys::KeyStore;
pub use maintenance::Maintenance;
pub use model::{
    Agent, AgentLimits, ApiKeyRecord, ConversationMutation, Created, NewApiKey, NewConversation,
    OwnedSealedValue, SealedValue, SensitiveChange, StartedConversation, Updated, WriteStats,
};
pub use outbox::OutboxStore;
pub use sensitive::SensitiveStore;
pub use webhook_model::{
    Attempt, AttemptRecord, Claim, Delivery, EndpointMutation, Lease, NextStep, SigningSecret,
    WebhookEndpoint,
};

/// Everything a server needs of its storage: every role at once. Each part
/// of the server asks for the roles it uses (an `Arc<dyn Store>` converts
/// to an `Arc<dyn OutboxStore>`, say), not for the whole.
pub trait Store:
    KeyStore
    + EndUserStore
    + SensitiveStore
    + ConversationStore
    + EndpointStore
    + OutboxStore
    + Maintenance
{
}

impl<T> Store for T where
    T: KeyStore
        + EndUserStore
        + SensitiveStore
        + ConversationStore
        + EndpointStore
        + OutboxStore
        + Maintenance
{
}
