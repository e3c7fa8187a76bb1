//! The behaviour every backend must have. A backend's tests run all of it
//! with [`contract_suite!`](crate::contract_suite), given a function that
//! makes a fresh, empty store:
//!
//! ```ignore
//! endusers_store::contract_suite!(fresh_store);
//! ```
//!
//! The fixtures and helpers are public for a backend's own tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use endusers_core::SensitiveKey;
use endusers_core::wire::{CreateEndUserRequest, UpdateEndUserRequest};
use endusers_core::{
    AgentHandle, AgentId, EndUser, EndUserChanges, EndUserId, ExternalId, FieldError, IdGenerator,
    ProfilePolicy, Standing, Timestamp,
};
use endusers_core::{EventType, OutboxEvent};
use serde_json::{Value, json};

use crate::{
    AttemptRecord, Claim, Created, Delivery, NextStep, SealedValue, SensitiveChange, SigningSecret,
    Store, StoreError, WebhookEndpoint,
};

pub const NOW: Timestamp = Timestamp::from_micros(1_795_773_600_000_000);

/// A fresh store for one case, with what keeps it alive (a temporary
/// directory, a database to drop) until the case ends.
pub struct Fixture {
    pub store: Arc<dyn Store>,
    pub ids: IdGenerator,
    _keep: Box<dyn std::any::Any + Send + Sync>,
}

impl Fixture {
    /// A fixture of `store`, keeping `keep` until it is dropped.
    pub fn new(store: Arc<dyn Store>, keep: impl std::any::Any + Send + Sync) -> Self {
        Self {
            store,
            ids: IdGenerator::new(),
            _keep: Box::new(keep),
        }
    }
}

impl Fixture {
    /// The stored user, which must exist.
    pub async fn stored(&self, agent: AgentId, id: EndUserId) -> EndUser {
        self.store
            .get_end_user(agent, id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no user {id:?}"))
    }

    pub async fn default_agent(&self) -> AgentId {
        self.store
            .find_agent(&AgentHandle::default_handle())
            .await
            .unwrap()
            .unwrap()
            .id
    }

    pub fn user(&self, agent: AgentId, body: Value) -> EndUser {
        let request: CreateEndUserRequest = serde_json::from_value(body).unwrap();
        let changes = EndUserChanges::from_create(request).unwrap();
        let id = self.ids.next(NOW, rand_u64());
        EndUser::create(agent, id, &changes, NOW, &ProfilePolicy::default()).unwrap()
    }

    pub async fn create(&self, agent: AgentId, body: Value) -> EndUser {
        match self
            .store
            .create_end_user(self.user(agent, body), Vec::new(), Vec::new())
            .await
            .unwrap()
        {
            Created::New(user) | Created::Existing(user) => user,
        }
    }

    /// Creates a second agent, beside the default one.
    pub async fn other_agent(&self) -> AgentId {
        self.store
            .create_agent(AgentHandle::parse("other").unwrap(), NOW)
            .await
            .unwrap()
            .id
    }

    /// Creates a channel of the agent's.
    pub async fn channel(&self, agent: AgentId) -> endusers_core::Channel {
        let channel = endusers_core::Channel {
            id: self.ids.next(NOW, rand_u64()),
            name: "web".to_owned(),
            description: String::new(),
            kind: "custom",
            modality: endusers_core::Modality::Messaging,
            metadata: Default::default(),
            created_at: NOW,
            updated_at: NOW,
            agent_id: agent,
        };
        self.store.create_channel(channel.clone()).await.unwrap();
        channel
    }

    /// A conversation of `user`'s on `channel`, started `at`, to be started.
    pub fn conversation(
        &self,
        channel: &endusers_core::Channel,
        user: EndUserId,
        at: Timestamp,
    ) -> crate::NewConversation {
        crate::NewConversation {
            conversation: endusers_core::Conversation {
                id: self.ids.next(at, rand_u64()),
                channel_id: channel.id,
                end_user_id: Some(user),
                status: endusers_core::ConversationStatus::Active,
                metadata: Default::default(),
                created_at: at,
                updated_at: at,
                agent_id: channel.agent_id,
            },
            new_end_user: None,
            events: Vec::new(),
        }
    }

    /// Creates an enabled endpoint `id` subscribed to `filters` (none: all).
    pub async fn webhook(&self, agent: AgentId, id: &str, filters: &[&str]) {
        self.store
            .create_webhook(endpoint(agent, id, filters))
            .await
            .unwrap();
    }

    /// Disables or enables endpoint `id`, which must exist.
    pub async fn set_enabled(&self, agent: AgentId, id: &str, enabled: bool) {
        let changed = self
            .store
            .update_webhook(agent, id, Box::new(move |e| e.standing.enabled = enabled))
            .await
            .unwrap();
        assert!(changed.is_some(), "no endpoint {id}");
    }

    /// [`crate::OutboxStore::claim_deliveries`], which must succeed.
    pub async fn claim(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        claim: Claim,
    ) -> Vec<Delivery> {
        self.store
            .claim_deliveries(now, lease_until, claim)
            .await
            .unwrap()
    }

    /// [`crate::OutboxStore::record_attempts`], which must succeed.
    pub async fn record(&self, records: Vec<AttemptRecord>, disable_if_failing_since: Timestamp) {
        self.store
            .record_attempts(records, disable_if_failing_since)
            .await
            .unwrap();
    }

    /// Creates a user whose creation writes the one event `message_id`.
    pub async fn user_with_event(&self, agent: AgentId, message_id: &str, event_type: EventType) {
        let events = vec![event(message_id, event_type, NOW)];
        self.store
            .create_end_user(self.user(agent, json!({})), Vec::new(), events)
            .await
            .unwrap();
    }

    /// Creates `count` users, each with one `end_user.created` event
    /// (`msg_0`, `msg_1`, …): as many deliveries to each endpoint.
    pub async fn users_with_events(&self, agent: AgentId, count: usize) {
        for n in 0..count {
            self.user_with_event(agent, &format!("msg_{n}"), EventType::EndUserCreated)
                .await;
        }
    }
}

pub fn rand_u64() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0x5eed);
    N.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
}

pub fn patch(body: Value) -> crate::Mutation {
    let request: UpdateEndUserRequest = serde_json::from_value(body).unwrap();
    let changes = EndUserChanges::from_update(request).unwrap();
    Box::new(move |user: &mut EndUser| {
        let change = user.apply(&changes, NOW, &ProfilePolicy::default())?;
        Ok(crate::Applied {
            change,
            events: Vec::new(),
        })
    })
}

pub async fn a_fresh_store_has_exactly_the_default_agent(f: Fixture) {
    let agents = f.store.list_agents().await.unwrap();
    assert_eq!(agents.len(), 1);
    assert_eq!(agents[0].handle.as_str(), "default");
    let err = f
        .store
        .create_agent(AgentHandle::default_handle(), NOW)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)));
}

pub async fn users_round_trip_and_stay_within_their_agent(f: Fixture) {
    let a = f.default_agent().await;
    let b = f.other_agent().await;
    let user = f
        .create(a, json!({"external_id": "CRM-1", "profile": {"first_name": "Maria", "metadata": {"seats": 40}}}))
        .await;
    assert_eq!(
        f.store.get_end_user(a, user.end_user_id).await.unwrap(),
        Some(user.clone())
    );
    assert_eq!(
        f.store.get_end_user(b, user.end_user_id).await.unwrap(),
        None
    );
    let crm1 = ExternalId::parse("crm-1").unwrap();
    assert_eq!(
        f.store
            .find_end_user_by_external_id(a, &crm1)
            .await
            .unwrap(),
        Some(user.clone())
    );
    assert_eq!(
        f.store
            .find_end_user_by_external_id(b, &crm1)
            .await
            .unwrap(),
        None
    );
    assert!(
        f.store
            .update_end_user(
                b,
                user.end_user_id,
                patch(json!({"profile": {}})),
                Vec::new()
            )
            .await
            .unwrap()
            .is_none()
    );
    assert!(!f.store.delete_end_user(b, user.end_user_id).await.unwrap());
    // The same external id may exist once per agent.
    let other = f.create(b, json!({"external_id": "crm-1"})).await;
    assert_ne!(other.end_user_id, user.end_user_id);
}

/// A user answered as JSON straight from storage is byte for byte the JSON
/// of the user read: every field filled and every field empty, text that
/// needs escaping, metadata of every kind, a conversation time.
pub async fn a_user_is_answered_as_the_json_of_the_user_read(f: Fixture) {
    let a = f.default_agent().await;
    let full = f
        .create(
            a,
            json!({"external_id": "CRM-\"7\"", "profile": {
                "first_name": "Maria \"Mia\"", "last_name": "Santös\\",
                "display_name": "M 😀", "avatar": "https://example.com/a.png",
                "email": "maria@example.com", "language": "pt-BR",
                "metadata": {"plan": "pro \"x\"\n", "seats": -40, "trial": false, "é": "\\é"},
            }}),
        )
        .await;
    let blank = f.create(a, json!({})).await;
    let channel = f.channel(a).await;
    let talked = NOW.saturating_add(std::time::Duration::from_secs(5));
    f.store
        .start_conversation(f.conversation(&channel, full.end_user_id, talked))
        .await
        .unwrap();
    for id in [full.end_user_id, blank.end_user_id] {
        let user = f.stored(a, id).await;
        let answered = f.store.get_end_user_json(a, id).await.unwrap().unwrap();
        assert_eq!(answered, serde_json::to_string(&user).unwrap());
        assert_eq!(answered, endusers_core::WriteJson::to_json_string(&user, 0));
    }
    assert!(
        f.stored(a, full.end_user_id)
            .await
            .profile
            .system_properties
            .last_conversation_at
            .is_some(),
        "the conversation time is part of what is compared"
    );
    let b = f.other_agent().await;
    assert_eq!(
        f.store
            .get_end_user_json(b, full.end_user_id)
            .await
            .unwrap(),
        None
    );
    let unknown = f.ids.next(NOW, rand_u64());
    assert_eq!(f.store.get_end_user_json(a, unknown).await.unwrap(), None);
}

pub async fn an_existing_external_id_returns_the_existing_user_unchanged(f: Fixture) {
    let a = f.default_agent().await;
    let first = f
        .create(
            a,
            json!({"external_id": "X", "profile": {"first_name": "One"}}),
        )
        .await;
    let again = f
        .store
        .create_end_user(
            f.user(
                a,
                json!({"external_id": "x", "profile": {"first_name": "Two"}}),
            ),
            Vec::new(),
            Vec::new(),
        )
        .await;
    assert_eq!(again.unwrap(), Created::Existing(first));
}

pub async fn update_conflicts_on_a_taken_external_id_and_changes_nothing(f: Fixture) {
    let a = f.default_agent().await;
    let one = f.create(a, json!({"external_id": "one"})).await;
    let two = f.create(a, json!({"external_id": "two"})).await;
    let err = f
        .store
        .update_end_user(
            a,
            two.end_user_id,
            patch(json!({"external_id": "ONE", "profile": {"first_name": "x"}})),
            Vec::new(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict("external_id")),
        "{err:?}"
    );
    assert_eq!(
        f.store.get_end_user(a, two.end_user_id).await.unwrap(),
        Some(two.clone())
    );
    assert_eq!(
        f.store.get_end_user(a, one.end_user_id).await.unwrap(),
        Some(one)
    );
}

pub async fn lookup(f: &Fixture, agent: AgentId, external_id: &str) -> Option<EndUser> {
    let external_id = ExternalId::parse(external_id).unwrap();
    f.store
        .find_end_user_by_external_id(agent, &external_id)
        .await
        .unwrap()
}

pub async fn updates_keep_or_move_the_external_id_lookup(f: Fixture) {
    let a = f.default_agent().await;
    let user = f.create(a, json!({"external_id": "crm-7"})).await;
    let update = |body: Value| {
        f.store
            .update_end_user(a, user.end_user_id, patch(body), Vec::new())
    };
    // A change that leaves the external id alone: the lookup finds the
    // changed user.
    let changed = update(json!({"profile": {"first_name": "Kim"}}))
        .await
        .unwrap()
        .unwrap()
        .user;
    assert_eq!(lookup(&f, a, "crm-7").await, Some(changed));
    // Moving it: the old id finds nobody, the new one the user.
    let moved = update(json!({"external_id": "crm-8", "profile": {"metadata": {"seats": 3}}}))
        .await
        .unwrap()
        .unwrap()
        .user;
    assert_eq!(lookup(&f, a, "crm-7").await, None);
    assert_eq!(lookup(&f, a, "crm-8").await, Some(moved));
    // And left alone again.
    let last = update(json!({"profile": {"metadata": {"seats": 4}}}))
        .await
        .unwrap()
        .unwrap()
        .user;
    assert_eq!(
        last.external_id.as_ref().map(ExternalId::as_str),
        Some("crm-8")
    );
    assert_eq!(lookup(&f, a, "crm-8").await, Some(last.clone()));
    assert_eq!(
        f.store.get_end_user(a, user.end_user_id).await.unwrap(),
        Some(last)
    );
}

pub async fn a_failing_mutation_changes_nothing(f: Fixture) {
    let a = f.default_agent().await;
    let user = f.create(a, json!({"profile": {"first_name": "Ada"}})).await;
    let failing: crate::Mutation = Box::new(|user: &mut EndUser| {
        user.external_id = None;
        Err(FieldError::at_path("profile.metadata", "too large"))
    });
    let err = f
        .store
        .update_end_user(a, user.end_user_id, failing, Vec::new())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)));
    assert_eq!(
        f.store.get_end_user(a, user.end_user_id).await.unwrap(),
        Some(user)
    );
}

pub async fn listing_pages_in_id_order(f: Fixture) {
    let a = f.default_agent().await;
    let mut made = Vec::new();
    for n in 0..25 {
        made.push(
            f.create(a, json!({"profile": {"metadata": {"n": n}}}))
                .await
                .end_user_id,
        );
    }
    let all = f.store.list_end_users(a, None, 100).await.unwrap();
    let ids: Vec<EndUserId> = all.iter().map(|u| u.end_user_id).collect();
    assert_eq!(ids, made);
    let from_tenth = f.store.list_end_users(a, Some(made[10]), 5).await.unwrap();
    assert_eq!(
        from_tenth.iter().map(|u| u.end_user_id).collect::<Vec<_>>(),
        made[10..15]
    );
}

pub async fn concurrent_writes_all_land(f: Fixture) {
    let a = f.default_agent().await;
    let f = Arc::new(f);
    let mut tasks = Vec::new();
    for n in 0..200 {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            f.create(a, json!({"profile": {"metadata": {"n": n}}}))
                .await
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(
        f.store.list_end_users(a, None, 1000).await.unwrap().len(),
        200
    );
}

/// A patch that sets metadata key `key` to `value`.
pub fn set_metadata(key: &str, value: u64) -> crate::Mutation {
    let mut metadata = serde_json::Map::new();
    metadata.insert(key.to_owned(), json!(value));
    patch(json!({"profile": {"metadata": metadata}}))
}

/// Updates of one user that all start at once: each must see the ones
/// written before it, or it would write its change over theirs.
pub async fn concurrent_updates_of_one_user_all_land(f: Fixture) {
    let a = f.default_agent().await;
    let user = f.create(a, json!({})).await;
    let f = Arc::new(f);
    let mut tasks = Vec::new();
    for n in 0..100 {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            f.store
                .update_end_user(
                    a,
                    user.end_user_id,
                    set_metadata(&format!("k{n}"), n),
                    Vec::new(),
                )
                .await
                .unwrap()
                .unwrap()
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let stored = f.stored(a, user.end_user_id).await;
    let metadata = serde_json::to_value(&stored.profile.metadata).unwrap();
    for n in 0..100 {
        assert_eq!(metadata[format!("k{n}")], json!(n), "{metadata}");
    }
    assert_eq!(stored.version, user.version + 100);
}

/// Writes queued together commit together, each in a savepoint of its
/// own: one that fails (here on a taken external id, after its statement
/// ran) undoes only itself, and the others around it land.
pub async fn a_failing_write_among_concurrent_ones_undoes_only_itself(f: Fixture) {
    let a = f.default_agent().await;
    let taken = f.create(a, json!({"external_id": "taken"})).await;
    let mut users = Vec::new();
    for _ in 0..60 {
        users.push(f.create(a, json!({})).await);
    }
    let f = Arc::new(f);
    let mut tasks = Vec::new();
    for (n, user) in users.iter().enumerate() {
        let (f, id) = (f.clone(), user.end_user_id);
        tasks.push(tokio::spawn(async move {
            let mutation = if n % 2 == 0 {
                patch(json!({"external_id": "TAKEN", "profile": {"first_name": "x"}}))
            } else {
                set_metadata("n", n as u64)
            };
            f.store.update_end_user(a, id, mutation, Vec::new()).await
        }));
    }
    for (n, task) in tasks.into_iter().enumerate() {
        let outcome = task.await.unwrap();
        if n % 2 == 0 {
            assert!(
                matches!(outcome, Err(StoreError::Conflict("external_id"))),
                "{outcome:?}"
            );
        } else {
            assert!(matches!(outcome, Ok(Some(_))), "{outcome:?}");
        }
    }
    for (n, user) in users.iter().enumerate() {
        let stored = f.stored(a, user.end_user_id).await;
        if n % 2 == 0 {
            assert_eq!(&stored, user, "a failed write changed nothing");
        } else {
            assert_eq!(
                serde_json::to_value(&stored.profile.metadata).unwrap(),
                json!({"n": n}),
                "a write beside failed ones landed"
            );
        }
    }
    assert_eq!(f.stored(a, taken.end_user_id).await, taken);
}

/// Starting a conversation writes the user's `last_conversation_at`
/// without a new version; an update of the user racing it must not write
/// the time it read back over the new one.
pub async fn an_update_keeps_a_conversation_time_written_meanwhile(f: Fixture) {
    let a = f.default_agent().await;
    let user = f.create(a, json!({})).await;
    let channel = f.channel(a).await;
    let f = Arc::new(f);
    for round in 0..40_u64 {
        let at = NOW.saturating_add(std::time::Duration::from_secs(round + 1));
        let conversation = f.conversation(&channel, user.end_user_id, at);
        let started = {
            let f = f.clone();
            tokio::spawn(async move { f.store.start_conversation(conversation).await.unwrap() })
        };
        let updated = {
            let f = f.clone();
            tokio::spawn(async move {
                f.store
                    .update_end_user(
                        a,
                        user.end_user_id,
                        set_metadata("round", round),
                        Vec::new(),
                    )
                    .await
                    .unwrap()
                    .unwrap()
            })
        };
        assert!(matches!(
            started.await.unwrap(),
            crate::StartedConversation::Started(_)
        ));
        updated.await.unwrap();
        let stored = f.stored(a, user.end_user_id).await;
        assert_eq!(
            stored.profile.system_properties.last_conversation_at,
            Some(at),
            "round {round}"
        );
    }
}

pub async fn keys_are_found_listed_and_revoked(f: Fixture) {
    let a = f.default_agent().await;
    let key = crate::NewApiKey {
        key_id: "k1".into(),
        agent_id: a,
        name: Some("ci".into()),
        secret_hash: [7; 32],
        created_at: NOW,
    };
    f.store.insert_api_key(key.clone()).await.unwrap();
    assert!(matches!(
        f.store.insert_api_key(key).await,
        Err(StoreError::Conflict(_))
    ));
    let found = f.store.find_api_key("k1").await.unwrap().unwrap();
    assert_eq!(
        (
            found.secret_hash,
            found.agent_handle.as_str(),
            found.revoked_at
        ),
        ([7; 32], "default", None)
    );
    assert!(f.store.revoke_api_key("k1", NOW).await.unwrap());
    assert!(!f.store.revoke_api_key("k1", NOW).await.unwrap());
    assert_eq!(
        f.store
            .find_api_key("k1")
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(NOW)
    );
    assert_eq!(f.store.list_api_keys().await.unwrap().len(), 1);
}

pub fn sealed(name: &str, key_id: &str, byte: u8, expires_at: Timestamp) -> SealedValue {
    SealedValue {
        name: SensitiveKey::parse(name).unwrap(),
        key_id: key_id.to_owned(),
        nonce: vec![byte; 24],
        ciphertext: vec![byte; 40],
        expires_at,
    }
}

pub fn names(values: &[SealedValue]) -> Vec<&str> {
    values.iter().map(|v| v.name.as_str()).collect()
}

pub async fn sensitive_values_are_written_with_the_user_and_expire(f: Fixture) {
    let a = f.default_agent().await;
    let later = NOW.saturating_add(std::time::Duration::from_secs(3600));
    let user = match f
        .store
        .create_end_user(
            f.user(a, json!({})),
            vec![
                SensitiveChange::Set(sealed("token", "k1", 1, later)),
                SensitiveChange::Set(sealed("soon", "k1", 2, NOW)),
            ],
            Vec::new(),
        )
        .await
        .unwrap()
    {
        Created::New(user) => user,
        Created::Existing(_) => panic!("a new user"),
    };
    let id = user.end_user_id;
    // Expired values are never served, even before the sweeper runs.
    let live = f.store.live_sensitive_values(a, id, NOW).await.unwrap();
    assert_eq!(names(&live), ["token"]);
    assert_eq!(live[0], sealed("token", "k1", 1, later));
    // Another agent sees nothing of them.
    let b = f.other_agent().await;
    assert!(
        f.store
            .live_sensitive_values(b, id, NOW)
            .await
            .unwrap()
            .is_empty()
    );

    // A patch sets and removes values in the same transaction as the user.
    let changes = vec![
        SensitiveChange::Remove(SensitiveKey::parse("token").unwrap()),
        SensitiveChange::Set(sealed("session", "k1", 3, later)),
    ];
    f.store
        .update_end_user(a, id, patch(json!({"profile": {}})), changes)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        names(&f.store.live_sensitive_values(a, id, NOW).await.unwrap()),
        ["session"]
    );

    // A refused mutation writes no sensitive value either.
    let failing: crate::Mutation =
        Box::new(|_: &mut EndUser| Err(FieldError::at_path("profile", "no")));
    let refused = vec![SensitiveChange::Set(sealed("other", "k1", 4, later))];
    assert!(
        f.store
            .update_end_user(a, id, failing, refused)
            .await
            .is_err()
    );
    assert_eq!(
        names(&f.store.live_sensitive_values(a, id, NOW).await.unwrap()),
        ["session"]
    );

    // The sweeper deletes expired rows in bounded batches.
    assert_eq!(
        f.store
            .delete_expired_sensitive_values(NOW, 10)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        f.store
            .delete_expired_sensitive_values(later, 10)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        f.store.count_sensitive_values_by_key().await.unwrap(),
        Vec::<(String, u64)>::new()
    );
}

pub async fn an_existing_external_id_stores_no_sensitive_values(f: Fixture) {
    let a = f.default_agent().await;
    let later = NOW.saturating_add(std::time::Duration::from_secs(60));
    let first = f.create(a, json!({"external_id": "dup"})).await;
    let again = f
        .store
        .create_end_user(
            f.user(a, json!({"external_id": "dup"})),
            vec![SensitiveChange::Set(sealed("t", "k1", 1, later))],
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(again, Created::Existing(first.clone()));
    assert!(
        f.store
            .live_sensitive_values(a, first.end_user_id, NOW)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn deleting_a_user_deletes_its_sensitive_values(f: Fixture) {
    let a = f.default_agent().await;
    let later = NOW.saturating_add(std::time::Duration::from_secs(60));
    let user = f.create(a, json!({})).await;
    let set = vec![SensitiveChange::Set(sealed("t", "k1", 1, later))];
    f.store
        .update_end_user(a, user.end_user_id, patch(json!({"profile": {}})), set)
        .await
        .unwrap();
    assert!(f.store.delete_end_user(a, user.end_user_id).await.unwrap());
    assert!(
        f.store
            .live_sensitive_values(a, user.end_user_id, NOW)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        f.store
            .count_sensitive_values_by_key()
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn resealing_replaces_only_values_not_rewritten_meanwhile(f: Fixture) {
    let a = f.default_agent().await;
    let later = NOW.saturating_add(std::time::Duration::from_secs(60));
    let user = f.create(a, json!({})).await;
    let id = user.end_user_id;
    let set = vec![
        SensitiveChange::Set(sealed("a", "old", 1, later)),
        SensitiveChange::Set(sealed("b", "old", 2, later)),
        SensitiveChange::Set(sealed("c", "new", 3, later)),
    ];
    f.store
        .update_end_user(a, id, patch(json!({"profile": {}})), set)
        .await
        .unwrap();
    let stale = f
        .store
        .sensitive_values_under_other_keys("new", 10)
        .await
        .unwrap();
    assert_eq!(stale.len(), 2);
    // "b" is rewritten by a request after the re-sealer read it.
    let rewrite = vec![SensitiveChange::Set(sealed("b", "new", 9, later))];
    f.store
        .update_end_user(a, id, patch(json!({"profile": {}})), rewrite)
        .await
        .unwrap();
    let replacements = stale
        .into_iter()
        .map(|old| {
            let byte = old.value.nonce[0] + 100;
            let new = sealed(old.value.name.as_str(), "new", byte, later);
            (old, new)
        })
        .collect();
    assert_eq!(
        f.store.replace_sealed_values(replacements).await.unwrap(),
        1
    );
    let live = f.store.live_sensitive_values(a, id, NOW).await.unwrap();
    let nonces: Vec<u8> = live.iter().map(|v| v.nonce[0]).collect();
    assert_eq!(
        nonces,
        [101, 9, 3],
        "a re-sealed, b kept its newer write, c untouched"
    );
    assert_eq!(
        f.store.count_sensitive_values_by_key().await.unwrap(),
        vec![("new".to_owned(), 3)]
    );
}

pub fn endpoint(agent: AgentId, id: &str, filters: &[&str]) -> WebhookEndpoint {
    WebhookEndpoint {
        id: id.to_owned(),
        agent_id: agent,
        url: format!("https://hooks.example.com/{id}"),
        description: String::new(),
        event_filters: filters.iter().map(|f| (*f).to_owned()).collect(),
        standing: Standing::enabled(),
        secret: SigningSecret::new("whsec_c2VjcmV0".to_owned()),
        previous_secret: None,
        previous_secret_until: None,
        created_at: NOW,
        updated_at: NOW,
    }
}

pub fn event(id: &str, event_type: EventType, at: Timestamp) -> OutboxEvent {
    OutboxEvent {
        id: id.to_owned(),
        event_type,
        payload: format!("{{\"id\":\"{id}\"}}"),
        created_at: at,
    }
}

pub fn room(limit: usize, busy: &[&str]) -> Claim {
    Claim {
        limit,
        default_slots: limit,
        free_slots: busy.iter().map(|b| ((*b).to_owned(), 0)).collect(),
        default_agent_slots: limit,
        agent_slots: Default::default(),
        after: None,
    }
}

pub fn record(d: &Delivery, next: NextStep, at: Timestamp) -> AttemptRecord {
    AttemptRecord {
        agent_id: d.agent_id,
        endpoint_id: d.endpoint_id.clone(),
        message_id: d.message_id.clone(),
        event_type: d.event_type.clone(),
        attempt: d.attempts + 1,
        status_code: Some(match next {
            NextStep::Delivered => 200,
            NextStep::DisableEndpoint(_) => 410,
            NextStep::RetryAt(_) | NextStep::GiveUp => 500,
        }),
        error: None,
        duration_ms: 3,
        at,
        next,
        lease: d.lease,
    }
}

pub async fn events_fan_out_to_matching_enabled_endpoints_in_the_same_transaction(f: Fixture) {
    let a = f.default_agent().await;
    let b = f.other_agent().await;
    f.webhook(a, "ep_all", &[]).await;
    f.webhook(a, "ep_created", &["v1.end_user.created"]).await;
    let mut off = endpoint(a, "ep_off", &[]);
    off.standing.enabled = false;
    f.store.create_webhook(off).await.unwrap();
    f.webhook(b, "ep_b", &[]).await;

    let user = f.user(a, json!({}));
    let created = event("msg_1", EventType::EndUserCreated, NOW);
    f.store
        .create_end_user(user.clone(), Vec::new(), vec![created])
        .await
        .unwrap();
    let updated = event("msg_2", EventType::EndUserUpdated, NOW);
    let mutation: crate::Mutation = Box::new(move |_: &mut EndUser| {
        Ok(crate::Applied {
            change: Default::default(),
            events: vec![updated],
        })
    });
    f.store
        .update_end_user(a, user.end_user_id, mutation, Vec::new())
        .await
        .unwrap();
    // A refused change writes no event.
    let refused: crate::Mutation =
        Box::new(|_: &mut EndUser| Err(FieldError::at_path("profile", "no")));
    assert!(
        f.store
            .update_end_user(a, user.end_user_id, refused, Vec::new())
            .await
            .is_err()
    );

    let later = NOW.saturating_add(std::time::Duration::from_secs(60));
    let mut claimed = f.claim(NOW, later, room(100, &[])).await;
    claimed.sort_by(|x, y| (&x.endpoint_id, &x.message_id).cmp(&(&y.endpoint_id, &y.message_id)));
    let pairs: Vec<(&str, &str)> = claimed
        .iter()
        .map(|d| (d.endpoint_id.as_str(), d.message_id.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("ep_all", "msg_1"),
            ("ep_all", "msg_2"),
            ("ep_created", "msg_1")
        ]
    );
    assert_eq!(claimed[0].payload, "{\"id\":\"msg_1\"}");
    assert_eq!(claimed[0].attempts, 0);
    // Leased: not handed out again until the lease runs out.
    assert!(f.claim(NOW, later, room(100, &[])).await.is_empty());
    assert_eq!(f.claim(later, later, room(100, &[])).await.len(), 3);
    assert_eq!(f.store.delivery_counts().await.unwrap(), (3, 0, 0));
}

pub async fn attempts_move_deliveries_and_track_the_failing_streak(f: Fixture) {
    let a = f.default_agent().await;
    f.webhook(a, "ep_1", &[]).await;
    f.webhook(a, "ep_busy", &[]).await;
    let user = f.user(a, json!({}));
    let events = vec![event("msg_1", EventType::EndUserCreated, NOW)];
    f.store
        .create_end_user(user, Vec::new(), events)
        .await
        .unwrap();
    let week = std::time::Duration::from_secs(7 * 86_400);
    let lease = NOW.saturating_add(std::time::Duration::from_secs(30));

    // Busy endpoints are skipped.
    let claimed = f.claim(NOW, lease, room(10, &["ep_busy"])).await;
    assert_eq!(claimed.len(), 1);
    let d = &claimed[0];
    let retry_at = NOW.saturating_add(std::time::Duration::from_secs(5));
    f.record(
        vec![record(d, NextStep::RetryAt(retry_at), NOW)],
        NOW.saturating_sub(week),
    )
    .await;
    let ep = f.store.get_webhook(a, "ep_1").await.unwrap().unwrap();
    assert_eq!(
        (ep.standing.failing_since, ep.standing.enabled),
        (Some(NOW), true)
    );
    assert!(
        f.claim(NOW, lease, room(10, &["ep_busy"])).await.is_empty(),
        "not due yet"
    );
    let again = f.claim(retry_at, lease, room(10, &["ep_busy"])).await;
    assert_eq!(again[0].attempts, 1);

    // A success clears the streak.
    f.record(vec![record(&again[0], NextStep::Delivered, retry_at)], NOW)
        .await;
    assert_eq!(
        f.store
            .get_webhook(a, "ep_1")
            .await
            .unwrap()
            .unwrap()
            .standing
            .failing_since,
        None
    );
    assert_eq!(
        f.store.delivery_counts().await.unwrap(),
        (1, 1, 0),
        "ep_busy's delivery still waits"
    );

    let attempts = f.store.list_attempts(a, "ep_1", None, 10).await.unwrap();
    assert_eq!(
        attempts.iter().map(|x| x.attempt).collect::<Vec<_>>(),
        [2, 1],
        "newest first"
    );
    assert!(
        f.store
            .list_attempts(AgentId(999), "ep_1", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Within one batch of records, each outcome counts in order: the last one
/// for an endpoint decides whether it is failing, however many successes
/// came before.
pub async fn the_last_attempt_of_a_batch_decides_the_failing_streak(f: Fixture) {
    let a = f.default_agent().await;
    f.webhook(a, "ep_1", &[]).await;
    f.users_with_events(a, 5).await;
    let lease = NOW.saturating_add(std::time::Duration::from_secs(30));
    let d = f.claim(NOW, lease, room(10, &[])).await;
    assert_eq!(d.len(), 5);
    let retry = NextStep::RetryAt(NOW.saturating_add(std::time::Duration::from_secs(60)));
    let failing_since = async || {
        f.store
            .get_webhook(a, "ep_1")
            .await
            .unwrap()
            .unwrap()
            .standing
            .failing_since
    };
    // Delivered, failed, delivered: healthy.
    let batch = vec![
        record(&d[0], NextStep::Delivered, NOW),
        record(&d[1], retry.clone(), NOW),
        record(&d[2], NextStep::Delivered, NOW),
    ];
    f.record(batch, NOW).await;
    assert_eq!(failing_since().await, None);
    // Delivered, failed: failing since the failure.
    let later = NOW.saturating_add(std::time::Duration::from_secs(1));
    let batch = vec![
        record(&d[3], NextStep::Delivered, later),
        record(&d[4], retry, later),
    ];
    f.record(batch, NOW).await;
    assert_eq!(failing_since().await, Some(later));
}

pub async fn backlogged_endpoints_take_turns_when_room_runs_out(f: Fixture) {
    let a = f.default_agent().await;
    for id in ["ep_a", "ep_b", "ep_c"] {
        f.webhook(a, id, &[]).await;
    }
    // Three events, each a delivery to every endpoint.
    f.users_with_events(a, 3).await;
    let lease = NOW.saturating_add(std::time::Duration::from_secs(30));
    // Room for two at a time; every delivery is answered at once, so each
    // claim finds every endpoint with free slots again.
    let mut after = None;
    let mut turns = Vec::new();
    for _ in 0..3 {
        let claim = Claim {
            after: after.clone(),
            ..room(2, &[])
        };
        let claimed = f.claim(NOW, lease, claim).await;
        assert_eq!(claimed.len(), 2);
        after = claimed.last().map(|d| d.endpoint_id.clone());
        turns.push(
            claimed
                .iter()
                .map(|d| d.endpoint_id.as_str())
                .collect::<Vec<_>>()
                .join(","),
        );
        let done = claimed
            .iter()
            .map(|d| record(d, NextStep::Delivered, NOW))
            .collect();
        f.record(done, NOW).await;
    }
    assert_eq!(
        turns,
        ["ep_a,ep_a", "ep_b,ep_b", "ep_c,ep_c"],
        "each endpoint gets a turn before any gets a second"
    );
    // The next claim wraps around to the first endpoint.
    let claim = Claim {
        after,
        ..room(3, &[])
    };
    let claimed = f.claim(NOW, lease, claim).await;
    let order: Vec<&str> = claimed.iter().map(|d| d.endpoint_id.as_str()).collect();
    assert_eq!(order, ["ep_a", "ep_b", "ep_c"]);
}

pub async fn a_week_of_failures_disables_the_endpoint_and_recover_requeues(f: Fixture) {
    let a = f.default_agent().await;
    f.webhook(a, "ep_1", &[]).await;
    let events = vec![
        event("msg_1", EventType::EndUserCreated, NOW),
        event("msg_2", EventType::EndUserUpdated, NOW),
    ];
    f.store
        .create_end_user(f.user(a, json!({})), Vec::new(), events)
        .await
        .unwrap();
    let week = std::time::Duration::from_secs(7 * 86_400);
    let lease = NOW.saturating_add(week);
    let claimed = f.claim(NOW, lease, room(10, &[])).await;
    // msg_1 fails for good at NOW: the streak starts.
    f.record(
        vec![record(&claimed[0], NextStep::GiveUp, NOW)],
        NOW.saturating_sub(week),
    )
    .await;
    assert!(
        f.store
            .get_webhook(a, "ep_1")
            .await
            .unwrap()
            .unwrap()
            .standing
            .enabled
    );
    // A week later msg_2 fails too: every delivery failed for a week.
    let later = NOW.saturating_add(week);
    let retry = NextStep::RetryAt(later.saturating_add(week));
    f.record(
        vec![record(&claimed[1], retry, later)],
        later.saturating_sub(week),
    )
    .await;
    let ep = f.store.get_webhook(a, "ep_1").await.unwrap().unwrap();
    assert!(!ep.standing.enabled);
    assert!(
        ep.standing
            .disabled_reason
            .unwrap()
            .starts_with("every delivery has failed since")
    );
    // Disabled endpoints get nothing.
    let far = later.saturating_add(week).saturating_add(week);
    assert!(f.claim(far, far, room(10, &[])).await.is_empty());

    // Re-enabled, and the failed message re-queued.
    let enable: crate::EndpointMutation = Box::new(|e| {
        e.standing.enabled = true;
        e.standing.disabled_reason = None;
        e.standing.failing_since = None;
    });
    f.store.update_webhook(a, "ep_1", enable).await.unwrap();
    assert_eq!(
        f.store
            .recover_deliveries(a, "ep_1", NOW, far)
            .await
            .unwrap(),
        1
    );
    let requeued = f.claim(far, far, room(10, &[])).await;
    assert_eq!(requeued.len(), 2, "the recovered one and the pending retry");
}

pub async fn gone_disables_at_once_and_deleting_an_endpoint_drops_its_queue(f: Fixture) {
    let a = f.default_agent().await;
    f.webhook(a, "ep_1", &[]).await;
    f.user_with_event(a, "m", EventType::EndUserCreated).await;
    let claimed = f.claim(NOW, NOW, room(10, &[])).await;
    let gone = NextStep::DisableEndpoint("the endpoint answered 410 Gone".into());
    f.record(vec![record(&claimed[0], gone, NOW)], NOW).await;
    let ep = f.store.get_webhook(a, "ep_1").await.unwrap().unwrap();
    assert_eq!(
        (ep.standing.enabled, ep.standing.disabled_reason.as_deref()),
        (false, Some("the endpoint answered 410 Gone"))
    );
    assert!(f.store.delete_webhook(a, "ep_1").await.unwrap());
    assert_eq!(f.store.delivery_counts().await.unwrap(), (0, 0, 0));
    assert!(f.store.list_webhooks(a, None, 10).await.unwrap().is_empty());
}

/// Disabling an endpoint keeps the queue it had; enabling it again does
/// not queue what happened in between.
pub async fn a_disabled_endpoint_keeps_its_queue_and_collects_nothing_more(f: Fixture) {
    let a = f.default_agent().await;
    f.webhook(a, "ep_1", &[]).await;
    // Keeps events flowing while ep_1 is disabled.
    f.webhook(a, "ep_2", &[]).await;
    f.users_with_events(a, 4).await;
    let lease = NOW.saturating_add(std::time::Duration::from_secs(30));
    let claim = Claim {
        free_slots: [("ep_2".to_owned(), 0)].into(),
        ..room(3, &[])
    };
    let out = f.claim(NOW, lease, claim).await;
    let ids: Vec<&str> = out.iter().map(|d| d.message_id.as_str()).collect();
    assert_eq!(ids, ["msg_0", "msg_1", "msg_2"], "msg_3 not read yet");
    f.record(vec![record(&out[0], NextStep::Delivered, NOW)], NOW)
        .await;
    f.set_enabled(a, "ep_1", false).await;
    // While disabled: msg_x happens, msg_1's attempt comes back failed and
    // msg_2's delivered.
    f.user_with_event(a, "msg_x", EventType::EndUserCreated)
        .await;
    let retry_at = NOW.saturating_add(std::time::Duration::from_secs(5));
    f.record(
        vec![
            record(&out[1], NextStep::RetryAt(retry_at), NOW),
            record(&out[2], NextStep::Delivered, NOW),
        ],
        NOW,
    )
    .await;
    let only_ep_1 = || Claim {
        free_slots: [("ep_2".to_owned(), 0)].into(),
        ..room(10, &[])
    };
    assert!(
        f.claim(retry_at, retry_at, only_ep_1()).await.is_empty(),
        "disabled: nothing is sent"
    );
    f.set_enabled(a, "ep_1", true).await;
    f.user_with_event(a, "msg_y", EventType::EndUserUpdated)
        .await;
    let mut queue: Vec<(String, u32)> = f
        .claim(retry_at, retry_at, only_ep_1())
        .await
        .into_iter()
        .map(|d| (d.message_id, d.attempts))
        .collect();
    queue.sort();
    assert_eq!(
        queue,
        [
            ("msg_1".to_owned(), 1),
            ("msg_3".to_owned(), 0),
            ("msg_y".to_owned(), 0)
        ],
        "msg_1 on its schedule and msg_3 from the queue it had, msg_y read after; \
         msg_0 and msg_2 arrived, and msg_x happened while disabled"
    );
}

pub async fn closing_refuses_later_calls(f: Fixture) {
    f.store.close().await;
    assert!(matches!(f.store.ping().await, Err(StoreError::Closed)));
    assert!(matches!(
        f.store
            .create_agent(AgentHandle::parse("x").unwrap(), NOW)
            .await,
        Err(StoreError::Closed)
    ));
}

/// Disabling and enabling an endpoint while deliveries to it are out
/// sends none of them again before its attempt has answered; the answer
/// then settles the copy its queue kept: an arrival drops it, a failure
/// puts it on its schedule.
pub async fn toggling_an_endpoint_while_deliveries_are_out_sends_none_of_them_twice(f: Fixture) {
    let a = f.default_agent().await;
    f.webhook(a, "ep_1", &[]).await;
    f.users_with_events(a, 3).await;
    let secs = |n| NOW.saturating_add(std::time::Duration::from_secs(n));
    let out = f.claim(NOW, secs(30), room(10, &[])).await;
    assert_eq!(out.len(), 3);
    f.set_enabled(a, "ep_1", false).await;
    f.set_enabled(a, "ep_1", true).await;
    assert!(
        f.claim(secs(1), secs(31), room(10, &[])).await.is_empty(),
        "every message is out until its lease ends"
    );
    f.record(
        vec![
            record(&out[0], NextStep::Delivered, secs(2)),
            record(&out[1], NextStep::RetryAt(secs(5)), secs(2)),
            record(&out[2], NextStep::GiveUp, secs(2)),
        ],
        NOW,
    )
    .await;
    let again: Vec<(String, u32)> = f
        .claim(secs(60), secs(90), room(10, &[]))
        .await
        .into_iter()
        .map(|d| (d.message_id, d.attempts))
        .collect();
    assert_eq!(
        again,
        [("msg_1".to_owned(), 1)],
        "only the failed one, on its schedule: msg_0 arrived and msg_2 failed for good"
    );
    assert_eq!(f.store.delivery_counts().await.unwrap(), (1, 1, 1));
}

/// An endpoint deleted while its deliveries are out or waiting keeps
/// nothing: the attempts that come back after it went leave no rows that
/// nothing would send and nothing would prune.
pub async fn attempts_at_a_deleted_endpoint_leave_nothing_behind(f: Fixture) {
    let a = f.default_agent().await;
    f.webhook(a, "ep_1", &[]).await;
    f.users_with_events(a, 2).await;
    // Failing since long before: not a failure long enough to disable.
    let long_before = Timestamp::from_micros(0);
    let out = f.claim(NOW, NOW, room(1, &[])).await;
    f.record(
        vec![record(&out[0], NextStep::RetryAt(NOW), NOW)],
        long_before,
    )
    .await;
    // One delivery from a row (the retry), one read from the outbox.
    let mut out = f.claim(NOW, NOW, room(10, &[])).await;
    out.sort_by(|x, y| x.message_id.cmp(&y.message_id));
    let ids: Vec<(&str, u32)> = out
        .iter()
        .map(|d| (d.message_id.as_str(), d.attempts))
        .collect();
    assert_eq!(ids, [("msg_0", 1), ("msg_1", 0)]);
    assert!(f.store.delete_webhook(a, "ep_1").await.unwrap());
    let retry = NextStep::RetryAt(NOW);
    f.record(
        out.iter().map(|d| record(d, retry.clone(), NOW)).collect(),
        long_before,
    )
    .await;
    assert_eq!(f.store.delivery_counts().await.unwrap(), (0, 0, 0));
    assert!(
        f.store
            .list_attempts(a, "ep_1", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // A new endpoint of the same name starts with nothing.
    f.webhook(a, "ep_1", &[]).await;
    let far = NOW.saturating_add(std::time::Duration::from_secs(3600));
    assert!(f.claim(far, far, room(10, &[])).await.is_empty());
}

/// A claim gives an agent no more than its slots across all its
/// endpoints, and others what is left.
pub async fn an_agent_takes_no_more_than_its_slots_across_its_endpoints(f: Fixture) {
    let a = f.default_agent().await;
    let b = f.other_agent().await;
    f.webhook(a, "ep_a1", &[]).await;
    f.webhook(a, "ep_a2", &[]).await;
    f.webhook(b, "ep_b", &[]).await;
    f.users_with_events(a, 3).await;
    for n in 0..3 {
        f.user_with_event(b, &format!("msg_b{n}"), EventType::EndUserCreated)
            .await;
    }
    let claim = Claim {
        agent_slots: [(a, 2)].into(),
        ..room(100, &[])
    };
    let lease = NOW.saturating_add(std::time::Duration::from_secs(30));
    let claimed = f.claim(NOW, lease, claim).await;
    let of = |agent: AgentId| claimed.iter().filter(|d| d.agent_id == agent).count();
    assert_eq!((of(a), of(b)), (2, 3), "{claimed:?}");
    let none_for_b = Claim {
        agent_slots: [(b, 0)].into(),
        default_agent_slots: 1,
        ..room(100, &[])
    };
    let next = f.claim(NOW, lease, none_for_b).await;
    assert_eq!(next.len(), 1, "a newcomer's default share: {next:?}");
    assert_eq!(next[0].agent_id, a);
}

pub async fn write_stats_count_writes_and_the_transactions_they_shared(f: Fixture) {
    let a = f.default_agent().await;
    let start = f.store.write_stats();
    // One at a time: each write is its own transaction.
    let mut made = Vec::new();
    for n in 0..3 {
        made.push(
            f.create(a, json!({"profile": {"metadata": {"n": n}}}))
                .await,
        );
    }
    let alone = f.store.write_stats();
    assert_eq!(alone.writes - start.writes, 3, "{start:?} then {alone:?}");
    assert_eq!(
        alone.transactions - start.transactions,
        3,
        "{start:?} then {alone:?}"
    );
    assert!(
        alone.busy_micros > start.busy_micros,
        "{start:?} then {alone:?}"
    );
    // Reads cost the writer nothing.
    f.stored(a, made[0].end_user_id).await;
    assert_eq!(f.store.write_stats(), alone);
    // Together: every write counted, in at most as many transactions.
    let f = Arc::new(f);
    let tasks: Vec<_> = (0..100)
        .map(|n| {
            let f = f.clone();
            tokio::spawn(async move {
                f.create(a, json!({"profile": {"metadata": {"n": n}}}))
                    .await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let together = f.store.write_stats();
    assert_eq!(
        together.writes - alone.writes,
        100,
        "{alone:?} then {together:?}"
    );
    let transactions = together.transactions - alone.transactions;
    assert!(
        (1..=100).contains(&transactions),
        "{alone:?} then {together:?}"
    );
}

/// Old attempts and messages are pruned; a message a delivery still waits
/// for is kept. Returns what only a backend's own tests can judge: the rows
/// each pruning removed and the counts in between.
pub async fn old_history_is_pruned_but_pending_deliveries_are_kept(
    f: Fixture,
) -> (usize, (u64, u64, u64), usize) {
    let a = f.default_agent().await;
    f.webhook(a, "ep_1", &[]).await;
    f.webhook(a, "ep_2", &["v1.end_user.updated"]).await;
    // msg_z is made an hour after the others: newer than any cut below.
    let an_hour_on = NOW.saturating_add(std::time::Duration::from_secs(3600));
    let events = vec![
        event("msg_a", EventType::EndUserCreated, NOW),
        event("msg_b", EventType::EndUserUpdated, NOW),
        event("msg_z", EventType::EndUserCreated, an_hour_on),
    ];
    f.store
        .create_end_user(f.user(a, json!({})), Vec::new(), events)
        .await
        .unwrap();
    let claimed = f.claim(NOW, NOW, room(10, &[])).await;
    // Everything delivered except msg_b to ep_2, which stays pending, and
    // msg_a to ep_1, which is delivered on its second attempt (and so has
    // a delivery row).
    let is = |d: &Delivery, endpoint: &str, message: &str| {
        d.endpoint_id == endpoint && d.message_id == message
    };
    let records: Vec<AttemptRecord> = claimed
        .iter()
        .filter(|d| !is(d, "ep_2", "msg_b"))
        .map(|d| match is(d, "ep_1", "msg_a") {
            true => record(d, NextStep::RetryAt(NOW), NOW),
            false => record(d, NextStep::Delivered, NOW),
        })
        .collect();
    assert_eq!(records.len(), 3);
    // Failing since long before: not a failure long enough to disable.
    let long_before = Timestamp::from_micros(0);
    f.record(records, long_before).await;
    let retried: Vec<AttemptRecord> = f
        .claim(NOW, NOW, room(10, &[]))
        .await
        .iter()
        .filter(|d| is(d, "ep_1", "msg_a"))
        .map(|d| record(d, NextStep::Delivered, NOW))
        .collect();
    assert_eq!(retried.len(), 1);
    f.record(retried, NOW).await;
    let later = NOW.saturating_add(std::time::Duration::from_secs(1));
    // msg_a and msg_b are old, msg_z is not.
    let pruned = f.store.prune_webhook_history(later, 100).await.unwrap();
    assert!(
        f.store
            .list_attempts(a, "ep_1", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let counts = f.store.delivery_counts().await.unwrap();
    // msg_b's lease ran out: it is handed out again, and fails.
    let still_due = f.claim(later, later, room(10, &[])).await;
    assert_eq!(still_due.len(), 1);
    assert_eq!(
        still_due[0].message_id, "msg_b",
        "its message survives the pruning"
    );
    let retry = NextStep::RetryAt(later);
    f.record(vec![record(&still_due[0], retry, later)], long_before)
        .await;
    let even_later = later.saturating_add(std::time::Duration::from_secs(1));
    let pruned_later = f
        .store
        .prune_webhook_history(even_later, 100)
        .await
        .unwrap();
    let retried = f.claim(even_later, even_later, room(10, &[])).await;
    assert_eq!(
        retried
            .iter()
            .map(|d| (d.message_id.as_str(), d.attempts))
            .collect::<Vec<_>>(),
        [("msg_b", 1)]
    );
    (pruned, counts, pruned_later)
}

/// A pruned message is never confused with a later one: after the newest
/// is pruned, the endpoint that read up to it and an endpoint made since
/// both get the next message. Returns how many rows the pruning removed.
pub async fn a_pruned_newest_message_keeps_its_number_to_itself(f: Fixture) -> usize {
    let a = f.default_agent().await;
    f.webhook(a, "ep_1", &[]).await;
    f.users_with_events(a, 2).await;
    let sent = f.claim(NOW, NOW, room(10, &[])).await;
    assert_eq!(sent.len(), 2);
    let delivered = sent
        .iter()
        .map(|d| record(d, NextStep::Delivered, NOW))
        .collect();
    f.record(delivered, NOW).await;
    let later = NOW.saturating_add(std::time::Duration::from_secs(1));
    let pruned = f.store.prune_webhook_history(later, 100).await.unwrap();
    // An endpoint made now starts after the pruned numbers too.
    f.webhook(a, "ep_2", &[]).await;
    f.user_with_event(a, "msg_next", EventType::EndUserCreated)
        .await;
    let next = f.claim(later, later, room(10, &[])).await;
    let mut got: Vec<(&str, &str)> = next
        .iter()
        .map(|d| (d.endpoint_id.as_str(), d.message_id.as_str()))
        .collect();
    got.sort_unstable();
    assert_eq!(got, [("ep_1", "msg_next"), ("ep_2", "msg_next")]);
    pruned
}

/// Deliveries that finish out of order: a claim after them reads on from
/// where the last one stopped, each message once, and nothing comes back
/// once every attempt is recorded. Returns the counts while the oldest was
/// still out, which depend on how a backend counts what is pending.
pub async fn the_cursor_moves_past_finished_deliveries_only(f: Fixture) -> (u64, u64, u64) {
    let a = f.default_agent().await;
    f.webhook(a, "ep_1", &[]).await;
    f.users_with_events(a, 4).await;
    let lease = NOW.saturating_add(std::time::Duration::from_secs(30));
    let first = f.claim(NOW, lease, room(3, &[])).await;
    let ids: Vec<&str> = first.iter().map(|d| d.message_id.as_str()).collect();
    assert_eq!(ids, ["msg_0", "msg_1", "msg_2"], "in commit order");
    // msg_1 and msg_2 done, msg_0 still out.
    let done = vec![
        record(&first[1], NextStep::Delivered, NOW),
        record(&first[2], NextStep::Delivered, NOW),
    ];
    f.record(done, NOW).await;
    let while_out = f.store.delivery_counts().await.unwrap();
    let next = f.claim(NOW, lease, room(10, &[])).await;
    let ids: Vec<&str> = next.iter().map(|d| d.message_id.as_str()).collect();
    assert_eq!(ids, ["msg_3"], "nothing handed out twice");
    let done = vec![
        record(&first[0], NextStep::Delivered, NOW),
        record(&next[0], NextStep::Delivered, NOW),
    ];
    f.record(done, NOW).await;
    assert_eq!(f.store.delivery_counts().await.unwrap(), (0, 4, 0));
    let later = lease.saturating_add(std::time::Duration::from_secs(1));
    assert!(
        f.claim(later, later, room(10, &[])).await.is_empty(),
        "every delivery recorded: nothing comes back when the leases run out"
    );
    while_out
}

/// Runs every case of the contract against the store `$fresh` makes:
/// `$fresh` is an `async fn() -> Fixture` in scope where the macro is
/// used. Each case is a `#[tokio::test]` of its own.
#[macro_export]
macro_rules! contract_suite {
    ($fresh:ident) => {
        $crate::contract_suite!(@cases $fresh:
            a_fresh_store_has_exactly_the_default_agent,
            users_round_trip_and_stay_within_their_agent,
            a_user_is_answered_as_the_json_of_the_user_read,
            an_existing_external_id_returns_the_existing_user_unchanged,
            update_conflicts_on_a_taken_external_id_and_changes_nothing,
            updates_keep_or_move_the_external_id_lookup,
            a_failing_mutation_changes_nothing,
            listing_pages_in_id_order,
            concurrent_writes_all_land,
            concurrent_updates_of_one_user_all_land,
            a_failing_write_among_concurrent_ones_undoes_only_itself,
            an_update_keeps_a_conversation_time_written_meanwhile,
            keys_are_found_listed_and_revoked,
            closing_refuses_later_calls,
            sensitive_values_are_written_with_the_user_and_expire,
            an_existing_external_id_stores_no_sensitive_values,
            deleting_a_user_deletes_its_sensitive_values,
            resealing_replaces_only_values_not_rewritten_meanwhile,
            events_fan_out_to_matching_enabled_endpoints_in_the_same_transaction,
            attempts_move_deliveries_and_track_the_failing_streak,
            the_last_attempt_of_a_batch_decides_the_failing_streak,
            backlogged_endpoints_take_turns_when_room_runs_out,
            a_week_of_failures_disables_the_endpoint_and_recover_requeues,
            gone_disables_at_once_and_deleting_an_endpoint_drops_its_queue,
            a_disabled_endpoint_keeps_its_queue_and_collects_nothing_more,
            toggling_an_endpoint_while_deliveries_are_out_sends_none_of_them_twice,
            attempts_at_a_deleted_endpoint_leave_nothing_behind,
            an_agent_takes_no_more_than_its_slots_across_its_endpoints,
            write_stats_count_writes_and_the_transactions_they_shared,
            old_history_is_pruned_but_pending_deliveries_are_kept,
            a_pruned_newest_message_keeps_its_number_to_itself,
            the_cursor_moves_past_finished_deliveries_only
        );
    };
    (@cases $fresh:ident: $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                // Some cases return what only a backend's own tests judge.
                let _ = $crate::contract::$case($fresh().await).await;
            }
        )*
    };
}
