//! The behaviour every backend must have, run against each backend.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use endusers_core::wire::{CreateEndUserRequest, UpdateEndUserRequest};
use endusers_core::{
    AgentHandle, AgentId, EndUser, EndUserChanges, EndUserId, ExternalId, FieldError, IdGenerator,
    ProfilePolicy, Timestamp,
};
use endusers_store::{Created, Store, StoreError};
use serde_json::{Value, json};

const NOW: Timestamp = Timestamp::from_micros(1_795_773_600_000_000);

struct Fixture {
    store: Arc<dyn Store>,
    ids: IdGenerator,
    _dir: tempfile::TempDir,
}

async fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("suite.db").display());
    Fixture {
        store: endusers_store::open(&url, NOW).await.unwrap(),
        ids: IdGenerator::new(),
        _dir: dir,
    }
}

impl Fixture {
    async fn default_agent(&self) -> AgentId {
        self.store
            .find_agent(&AgentHandle::default_handle())
            .await
            .unwrap()
            .unwrap()
            .id
    }

    fn user(&self, agent: AgentId, body: Value) -> EndUser {
        let request: CreateEndUserRequest = serde_json::from_value(body).unwrap();
        let changes = EndUserChanges::from_create(request).unwrap();
        let id = self.ids.next(NOW, rand_u64());
        EndUser::create(agent, id, &changes, NOW, &ProfilePolicy::default()).unwrap()
    }

    async fn create(&self, agent: AgentId, body: Value) -> EndUser {
        match self
            .store
            .create_end_user(self.user(agent, body))
            .await
            .unwrap()
        {
            Created::New(user) | Created::Existing(user) => user,
        }
    }
}

fn rand_u64() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0x5eed);
    N.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
}

fn patch(body: Value) -> endusers_store::Mutation {
    let request: UpdateEndUserRequest = serde_json::from_value(body).unwrap();
    let changes = EndUserChanges::from_update(request).unwrap();
    Box::new(move |user: &mut EndUser| user.apply(&changes, NOW, &ProfilePolicy::default()))
}

async fn a_fresh_store_has_exactly_the_default_agent(f: Fixture) {
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

async fn users_round_trip_and_stay_within_their_agent(f: Fixture) {
    let a = f.default_agent().await;
    let b = f
        .store
        .create_agent(AgentHandle::parse("other").unwrap(), NOW)
        .await
        .unwrap()
        .id;
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
            .update_end_user(b, user.end_user_id, patch(json!({"profile": {}})))
            .await
            .unwrap()
            .is_none()
    );
    assert!(!f.store.delete_end_user(b, user.end_user_id).await.unwrap());
    // The same external id may exist once per agent.
    let other = f.create(b, json!({"external_id": "crm-1"})).await;
    assert_ne!(other.end_user_id, user.end_user_id);
}

async fn an_existing_external_id_returns_the_existing_user_unchanged(f: Fixture) {
    let a = f.default_agent().await;
    let first = f
        .create(
            a,
            json!({"external_id": "X", "profile": {"first_name": "One"}}),
        )
        .await;
    let again = f
        .store
        .create_end_user(f.user(
            a,
            json!({"external_id": "x", "profile": {"first_name": "Two"}}),
        ))
        .await;
    assert_eq!(again.unwrap(), Created::Existing(first));
}

async fn update_conflicts_on_a_taken_external_id_and_changes_nothing(f: Fixture) {
    let a = f.default_agent().await;
    let one = f.create(a, json!({"external_id": "one"})).await;
    let two = f.create(a, json!({"external_id": "two"})).await;
    let err = f
        .store
        .update_end_user(
            a,
            two.end_user_id,
            patch(json!({"external_id": "ONE", "profile": {"first_name": "x"}})),
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

async fn a_failing_mutation_changes_nothing(f: Fixture) {
    let a = f.default_agent().await;
    let user = f.create(a, json!({"profile": {"first_name": "Ada"}})).await;
    let failing: endusers_store::Mutation = Box::new(|user: &mut EndUser| {
        user.external_id = None;
        Err(FieldError::at_path("profile.metadata", "too large"))
    });
    let err = f
        .store
        .update_end_user(a, user.end_user_id, failing)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)));
    assert_eq!(
        f.store.get_end_user(a, user.end_user_id).await.unwrap(),
        Some(user)
    );
}

async fn listing_pages_in_id_order(f: Fixture) {
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

async fn concurrent_writes_all_land(f: Fixture) {
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

async fn keys_are_found_listed_and_revoked(f: Fixture) {
    let a = f.default_agent().await;
    let key = endusers_store::NewApiKey {
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

async fn closing_refuses_later_calls(f: Fixture) {
    f.store.close().await;
    assert!(matches!(f.store.ping().await, Err(StoreError::Closed)));
    assert!(matches!(
        f.store
            .create_agent(AgentHandle::parse("x").unwrap(), NOW)
            .await,
        Err(StoreError::Closed)
    ));
}

macro_rules! suite {
    ($backend:ident: $($case:ident),* $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::$backend().await).await;
                }
            )*
        }
    };
}

suite!(sqlite:
    a_fresh_store_has_exactly_the_default_agent,
    users_round_trip_and_stay_within_their_agent,
    an_existing_external_id_returns_the_existing_user_unchanged,
    update_conflicts_on_a_taken_external_id_and_changes_nothing,
    a_failing_mutation_changes_nothing,
    listing_pages_in_id_order,
    concurrent_writes_all_land,
    keys_are_found_listed_and_revoked,
    closing_refuses_later_calls,
);

#[tokio::test]
async fn sqlite_data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("reopen.db").display());
    let store = endusers_store::open(&url, NOW).await.unwrap();
    let agent = store.list_agents().await.unwrap()[0].id;
    let fixture = Fixture {
        store,
        ids: IdGenerator::new(),
        _dir: tempfile::tempdir().unwrap(),
    };
    let user = fixture
        .create(agent, json!({"profile": {"email": "a@example.com"}}))
        .await;
    fixture.store.close().await;
    let reopened = endusers_store::open(&url, NOW).await.unwrap();
    assert_eq!(
        reopened
            .get_end_user(agent, user.end_user_id)
            .await
            .unwrap(),
        Some(user)
    );
    assert_eq!(
        reopened.list_agents().await.unwrap().len(),
        1,
        "no second default agent"
    );
}
