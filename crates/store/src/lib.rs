//! Storage for endusers: the [`Store`] trait every backend implements, and
//! the embedded SQLite backend.
//!
//! Backends hold no business rules: a change to a user is computed by the
//! caller's mutation (pure domain code) and the backend only makes it
//! atomic and durable.

mod error;
mod model;
pub mod sqlite;
mod webhook_model;

use std::sync::Arc;

use async_trait::async_trait;
use endusers_core::{
    AgentHandle, AgentId, Change, Channel, Conversation, EndUser, EndUserId, ExternalId,
    FieldError, OutboxEvent, Timestamp,
};

pub use error::StoreError;
pub use model::{
    Agent, ApiKeyRecord, Created, NewApiKey, OwnedSealedValue, SealedValue, SensitiveChange,
    Updated,
};
pub use model::{
    AgentLimits, ConversationMutation, NewConversation, StartedConversation, WriteStats,
};
pub use webhook_model::{
    Attempt, AttemptRecord, Claim, Delivery, EndpointMutation, Lease, NextStep, SigningSecret,
    WebhookEndpoint,
};

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
pub trait Store: Send + Sync + 'static {
    /// Succeeds when the backend answers queries.
    async fn ping(&self) -> Result<(), StoreError>;

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

    async fn insert_api_key(&self, key: NewApiKey) -> Result<(), StoreError>;
    /// The key with this public id, revoked or not, with its agent's
    /// limits. Called on every request, so a backend may answer from
    /// memory, but a key or agent changed through any store on the same
    /// data (another process included) must show from the next call on.
    async fn find_api_key(&self, key_id: &str) -> Result<Option<Arc<ApiKeyRecord>>, StoreError>;
    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// Marks a key revoked; `false` when no active key has this id.
    async fn revoke_api_key(&self, key_id: &str, now: Timestamp) -> Result<bool, StoreError>;

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
    /// [`Store::get_end_user`]'s user ([`endusers_core::WriteJson`]). A
    /// backend may write it straight from its row, without building the
    /// [`EndUser`] (see [`endusers_core::EndUserView`]); this default
    /// builds it.
    async fn get_end_user_json(
        &self,
        agent: AgentId,
        id: EndUserId,
    ) -> Result<Option<String>, StoreError> {
        Ok(self.get_end_user(agent, id).await?.map(|user| {
            endusers_core::WriteJson::to_json_string(&user, endusers_core::json::ANSWER_CAPACITY)
        }))
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
    async fn update_webhook(
        &self,
        agent: AgentId,
        id: &str,
        mutation: EndpointMutation,
    ) -> Result<Option<WebhookEndpoint>, StoreError>;
    /// Deletes the endpoint with its pending deliveries and attempt log.
    async fn delete_webhook(&self, agent: AgentId, id: &str) -> Result<bool, StoreError>;
    /// Leases deliveries to enabled endpoints until `lease_until`, within
    /// the `claim`'s room: each endpoint's due retries, oldest due first,
    /// then, in the one process that reads the outbox, the messages after
    /// its cursor in commit order. Endpoints take turns from the one after
    /// `claim.after`. A delivery not recorded by the end of its lease is
    /// handed out again.
    async fn claim_deliveries(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        claim: Claim,
    ) -> Result<Vec<Delivery>, StoreError>;
    /// Records attempts and what follows from each (see [`NextStep`]),
    /// and moves the endpoints' cursors past the deliveries they settle.
    async fn record_attempts(
        &self,
        records: Vec<AttemptRecord>,
        disable_if_failing_since: Timestamp,
    ) -> Result<(), StoreError>;
    /// An endpoint's attempts, newest first, from attempt id `before` down.
    async fn list_attempts(
        &self,
        agent: AgentId,
        endpoint: &str,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Attempt>, StoreError>;
    /// Re-queues the endpoint's deliveries that failed for good since `since`.
    async fn recover_deliveries(
        &self,
        agent: AgentId,
        endpoint: &str,
        since: Timestamp,
        now: Timestamp,
    ) -> Result<usize, StoreError>;
    /// Deletes up to `limit` attempts and messages made before `before`
    /// (see the SQLite backend); returns how many rows went.
    async fn prune_webhook_history(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<usize, StoreError>;
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
    /// Starts a conversation (see the SQLite backend for the one-transaction rule).
    async fn start_conversation(
        &self,
        new: NewConversation,
    ) -> Result<StartedConversation, StoreError>;
    async fn get_conversation(
        &self,
        agent: AgentId,
        id: EndUserId,
    ) -> Result<Option<Conversation>, StoreError>;
    async fn update_conversation(
        &self,
        agent: AgentId,
        id: EndUserId,
        mutation: ConversationMutation,
    ) -> Result<Option<Conversation>, StoreError>;
    /// Deletes up to `limit` end users whose orphan deadline is past `now`.
    async fn delete_orphans(&self, now: Timestamp, limit: usize) -> Result<usize, StoreError>;
    /// (pending, delivered, failed) deliveries, for tests and metrics.
    async fn delivery_counts(&self) -> Result<(u64, u64, u64), StoreError>;
    /// What writing has cost so far; cheap enough to read on every scrape.
    fn write_stats(&self) -> WriteStats;

    /// Finishes queued writes and releases the backend. Calls made after
    /// it answer [`StoreError::Closed`].
    async fn close(&self);
}

/// Opens the backend a `database_url` names, runs its migrations, and makes
/// sure an agent `default` exists when there is none.
pub async fn open(database_url: &str, now: Timestamp) -> Result<Arc<dyn Store>, StoreError> {
    if let Some(path) = sqlite::path_from_url(database_url) {
        let store = sqlite::SqliteStore::open(&path, sqlite::Options::default(), now).await?;
        return Ok(Arc::new(store));
    }
    Err(StoreError::Config(unsupported_url(database_url)))
}

/// Why `database_url` names no backend this build has, naming only its
/// scheme: the rest of a URL may carry a password.
fn unsupported_url(database_url: &str) -> String {
    match database_url.split_once(':') {
        Some(("postgres" | "postgresql", _)) => {
            "database_url: the PostgreSQL backend is not built yet; use sqlite://PATH".to_owned()
        }
        Some((scheme, _)) => {
            format!("database_url must start with sqlite:// (got scheme {scheme:?})")
        }
        None => "database_url must start with sqlite:// (it has no scheme)".to_owned(),
    }
}

/// `database_url` as logs and messages may show it: a SQLite URL whole (a
/// path), any other without the user, password, query and fragment, which
/// may carry credentials. A password typed without percent-encoding may
/// hold `/`, `?`, `#` or `@`; where the credentials cannot be told from the
/// host for that reason, nothing after the scheme is shown.
pub fn shown_url(database_url: &str) -> std::borrow::Cow<'_, str> {
    if sqlite::path_from_url(database_url).is_some() {
        return database_url.into();
    }
    let Some((scheme, rest)) = database_url.split_once("://") else {
        return "(a database_url that is not a URL)".into();
    };
    let address = match rest.split_once('@') {
        None => rest,
        Some((credentials, address))
            if !credentials.contains(['/', '?', '#']) && !address.contains('@') =>
        {
            address
        }
        Some(_) => return format!("{scheme}://(address hidden: it may hold a password)").into(),
    };
    let address = address.split(['?', '#']).next().unwrap_or_default();
    format!("{scheme}://{address}").into()
}

#[cfg(test)]
mod url_tests {
    use super::unsupported_url;

    #[test]
    fn an_unsupported_url_is_named_by_its_scheme_only() {
        let postgres = unsupported_url("postgres://app:hunter2@db.internal/endusers");
        assert!(
            postgres.contains("PostgreSQL backend is not built yet"),
            "{postgres}"
        );
        let other = unsupported_url("mysql://app:hunter2@db/endusers");
        assert!(other.contains("\"mysql\""), "{other}");
        let bare = unsupported_url("hunter2");
        assert!(bare.contains("no scheme"), "{bare}");
        for message in [postgres, other, bare] {
            assert!(!message.contains("hunter2"), "{message}");
        }
    }

    #[test]
    fn a_shown_url_keeps_paths_and_hosts_and_drops_credentials() {
        use super::shown_url;
        assert_eq!(shown_url("sqlite://./data/x.db"), "sqlite://./data/x.db");
        assert_eq!(
            shown_url(
                "postgres://app:hunter2@db.internal:5432/endusers?sslmode=require&password=hunter2"
            ),
            "postgres://db.internal:5432/endusers"
        );
        assert_eq!(
            shown_url("postgres://db.internal"),
            "postgres://db.internal"
        );
        assert_eq!(
            shown_url("postgres://db.internal/endusers?password=hunter2"),
            "postgres://db.internal/endusers"
        );
        assert!(!shown_url("hunter2").contains("hunter2"));
        // Passwords typed without percent-encoding may hold the characters
        // that end a URL's authority, or an `@`: where the credentials
        // cannot be told from the host, nothing after the scheme is shown.
        for url in [
            "postgres://app:hunt/er2@db.internal/endusers",
            "postgres://app:hunt?er2@db.internal/endusers",
            "postgres://app:hunt#er2@db.internal/endusers",
            "postgres://app:hunt@er2@db.internal/endusers",
            "postgres://db.internal/endusers?user=app@corp&password=hunter2",
        ] {
            let shown = shown_url(url);
            assert!(!shown.contains("hunt"), "{url} shown as {shown}");
            assert!(shown.starts_with("postgres://"), "{shown}");
        }
    }
}
