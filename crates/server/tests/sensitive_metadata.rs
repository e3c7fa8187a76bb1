//! `profile.sensitive_metadata` over HTTP: validation, write-only storage,
//! expiry with a driven clock, deletion, and master-key rotation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{TestApp, USERS};
use endusers_core::{ManualClock, SensitiveValue, Timestamp};
use endusers_server::ServerConfig;
use endusers_server::workers::maintenance::Maintenance;
use serde_json::{Value, json};

fn s(text: &str) -> SensitiveValue {
    SensitiveValue::String(text.to_owned())
}

async fn manual_app() -> (TestApp, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(Timestamp::from_micros(
        1_795_773_600_000_000,
    )));
    // Users here outlive the orphan rule, so only the sensitive TTL acts.
    let config = ServerConfig {
        orphan_ttl: Duration::from_secs(365 * 86_400),
        ..ServerConfig::default()
    };
    let app = TestApp::spawn_with_clock(config, clock.clone()).await;
    (app, clock)
}

#[tokio::test]
async fn values_are_stored_encrypted_and_never_returned() {
    let app = TestApp::spawn().await;
    let body = json!({"profile": {"first_name": "Ada", "metadata": {"plan": "pro"},
        "sensitive_metadata": {"fields": {"auth_token": "tok-123", "tries": 3, "verified": true}}}});
    let response = app.post(USERS, &body).await;
    assert_eq!(response.status, 201);
    assert!(!response.text.contains("sensitive") && !response.text.contains("tok-123"));
    let id = response.body["end_user_id"].as_str().unwrap().to_owned();
    let expected = BTreeMap::from([
        ("auth_token".to_owned(), s("tok-123")),
        ("tries".to_owned(), SensitiveValue::Integer(3)),
        ("verified".to_owned(), SensitiveValue::Boolean(true)),
    ]);
    assert_eq!(app.sensitive_values(&id).await, expected);
    let get = app.get(&TestApp::user_path(&id)).await;
    assert!(!get.text.contains("tok-123") && !get.text.contains("auth_token"));
}

#[tokio::test]
async fn patch_sets_replaces_and_null_removes_without_touching_the_profile() {
    let app = TestApp::spawn().await;
    let user = app
        .create_user(&json!({"profile": {"sensitive_metadata": {"fields": {"a": "1", "b": "2"}}}}))
        .await;
    let id = user["end_user_id"].as_str().unwrap();
    let response = app
        .patch(
            &TestApp::user_path(id),
            &json!({"profile": {"sensitive_metadata": {"fields": {"a": null, "b": "two", "c": 7}}}}),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text);
    // A sensitive-only change changes nothing visible: same user, same updated_at.
    assert_eq!(response.body, user);
    assert_eq!(app.get_user(id).await, user);
    let expected = BTreeMap::from([
        ("b".to_owned(), s("two")),
        ("c".to_owned(), SensitiveValue::Integer(7)),
    ]);
    assert_eq!(app.sensitive_values(id).await, expected);
    // PATCH may reuse a metadata key name (the overlap rule is POST's only).
    let response = app
        .patch(
            &TestApp::user_path(id),
            &json!({"profile": {"metadata": {"c": "shown"}, "sensitive_metadata": {"fields": {"c": 8}}}}),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(
        app.sensitive_values(id).await["c"],
        SensitiveValue::Integer(8)
    );
}

#[tokio::test]
async fn every_rule_is_a_400_naming_the_key_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    let existing = app
        .create_user(&json!({"profile": {"sensitive_metadata": {"fields": {"keep": "v"}}}}))
        .await;
    let id = existing["end_user_id"].as_str().unwrap();
    let too_many: serde_json::Map<String, Value> =
        (0..21).map(|i| (format!("k{i}"), json!("v"))).collect();
    let cases = [
        (
            json!({"sensitive_metadata": {}}),
            "profile.sensitive_metadata.fields",
        ),
        (
            json!({"sensitive_metadata": {"fields": too_many}}),
            "profile.sensitive_metadata.fields",
        ),
        (
            json!({"sensitive_metadata": {"fields": {"bad key": "v"}}}),
            "profile.sensitive_metadata.fields.bad key",
        ),
        (
            json!({"sensitive_metadata": {"fields": {"dots.no": "v"}}}),
            "profile.sensitive_metadata.fields.dots.no",
        ),
        (
            json!({"sensitive_metadata": {"fields": {"empty": ""}}}),
            "profile.sensitive_metadata.fields.empty",
        ),
        (
            json!({"sensitive_metadata": {"fields": {"f": 1.5}}}),
            "profile.sensitive_metadata.fields.f",
        ),
        (
            json!({"sensitive_metadata": {"fields": {"f": ["x"]}}}),
            "profile.sensitive_metadata.fields.f",
        ),
        (
            json!({"sensitive_metadata": {"fields": {"f": {"x": 1}}}}),
            "profile.sensitive_metadata.fields.f",
        ),
        (
            json!({"sensitive_metadata": {"fields": {"ok": "v"}, "extra": 1}}),
            "profile.sensitive_metadata.extra",
        ),
        (
            json!({"sensitive_metadata": "v"}),
            "profile.sensitive_metadata",
        ),
    ];
    for (profile, path) in cases {
        // Each bad request also carries a valid change, which must not land.
        let mut profile = profile;
        profile["first_name"] = json!("Changed");
        let patch = app
            .patch(
                &TestApp::user_path(id),
                &json!({"profile": profile.clone()}),
            )
            .await;
        patch.assert_error(400, "invalid_request", path);
        let post = app.post(USERS, &json!({"profile": profile})).await;
        post.assert_error(400, "invalid_request", path);
    }
    // POST only: a key may not be both metadata and sensitive.
    let overlap = json!({"profile": {"metadata": {"token": "a"}, "sensitive_metadata": {"fields": {"token": "b"}}}});
    app.post(USERS, &overlap).await.assert_error(
        400,
        "invalid_request",
        "profile.sensitive_metadata.fields.token",
    );
    assert_eq!(app.get_user(id).await, existing);
    assert_eq!(
        app.sensitive_values(id).await,
        BTreeMap::from([("keep".to_owned(), s("v"))])
    );
    assert_eq!(
        app.list_all().await.len(),
        1,
        "no refused POST created a user"
    );
    // Twenty keys is the limit, not an error.
    let twenty: serde_json::Map<String, Value> =
        (0..20).map(|i| (format!("k{i}"), json!(i))).collect();
    let ok = app
        .post(
            USERS,
            &json!({"profile": {"sensitive_metadata": {"fields": twenty}}}),
        )
        .await;
    assert_eq!(ok.status, 201, "{}", ok.text);
}

#[tokio::test]
async fn a_post_that_finds_an_existing_external_id_stores_no_values() {
    let app = TestApp::spawn().await;
    let user = app.create_user(&json!({"external_id": "crm-9"})).await;
    let again = app
        .post(USERS, &json!({"external_id": "CRM-9", "profile": {"sensitive_metadata": {"fields": {"t": "x"}}}}))
        .await;
    assert_eq!(again.status, 200);
    assert!(
        app.sensitive_values(user["end_user_id"].as_str().unwrap())
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn values_expire_after_the_ttl_even_before_the_sweeper_runs() {
    let (app, clock) = manual_app().await;
    let user = app
        .create_user(&json!({"profile": {"sensitive_metadata": {"fields": {"old": "v"}}}}))
        .await;
    let id = user["end_user_id"].as_str().unwrap();
    clock.advance(Duration::from_secs(12 * 3600));
    app.patch(
        &TestApp::user_path(id),
        &json!({"profile": {"sensitive_metadata": {"fields": {"new": "v"}}}}),
    )
    .await;
    clock.advance(Duration::from_secs(12 * 3600 - 1));
    assert_eq!(
        app.sensitive_values(id).await.len(),
        2,
        "one second before the first expires"
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        app.sensitive_values(id).await.keys().collect::<Vec<_>>(),
        ["new"],
        "24 h after its write"
    );

    let report = Maintenance::new().run_once(&app.state.upkeep()).await;
    assert_eq!(report.expired_deleted, 1);
    clock.advance(Duration::from_secs(12 * 3600));
    assert!(app.sensitive_values(id).await.is_empty());
    assert_eq!(
        Maintenance::new()
            .run_once(&app.state.upkeep())
            .await
            .expired_deleted,
        1
    );
    assert!(
        app.store
            .count_sensitive_values_by_key()
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn the_sweeper_works_through_a_large_backlog_in_batches() {
    let (app, clock) = manual_app().await;
    let fields: serde_json::Map<String, Value> =
        (0..20).map(|i| (format!("k{i}"), json!("v"))).collect();
    for _ in 0..60 {
        app.create_user(&json!({"profile": {"sensitive_metadata": {"fields": fields.clone()}}}))
            .await;
    }
    clock.advance(Duration::from_secs(24 * 3600));
    let report = Maintenance::new().run_once(&app.state.upkeep()).await;
    assert_eq!(report.expired_deleted, 1200, "more than one batch of 1000");
}

#[tokio::test]
async fn deleting_a_user_deletes_its_values() {
    let app = TestApp::spawn().await;
    let user = app
        .create_user(&json!({"profile": {"sensitive_metadata": {"fields": {"t": "x"}}}}))
        .await;
    let id = user["end_user_id"].as_str().unwrap();
    assert_eq!(app.delete(&TestApp::user_path(id)).await.status, 204);
    assert!(
        app.store
            .count_sensitive_values_by_key()
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn rotation_while_values_exist_reseals_them_and_retires_the_old_key() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for n in 0..30 {
        let user = app
            .create_user(
                &json!({"profile": {"sensitive_metadata": {"fields": {"token": format!("t{n}")}}}}),
            )
            .await;
        ids.push(user["end_user_id"].as_str().unwrap().to_owned());
    }
    let key_file = app.state.config.key_file.clone().unwrap();
    let old = app.state.vault.keyring().active().id().to_owned();
    let mut maintenance = Maintenance::new();
    // The file's timestamp must visibly change for the server to notice.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let rotated = key_file.rotate().unwrap();
    let new = rotated.active().id().to_owned();
    assert_ne!(old, new);

    let report = maintenance.run_once(&app.state.upkeep()).await;
    assert!(report.keyring_reloaded);
    assert_eq!(report.resealed, 30);
    assert_eq!(
        app.store.count_sensitive_values_by_key().await.unwrap(),
        vec![(new.clone(), 30)]
    );
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(app.sensitive_values(id).await["token"], s(&format!("t{n}")));
    }
    // New writes use the new key; the retired key can now go.
    app.create_user(&json!({"profile": {"sensitive_metadata": {"fields": {"x": 1}}}}))
        .await;
    assert_eq!(
        app.store.count_sensitive_values_by_key().await.unwrap(),
        vec![(new.clone(), 31)]
    );
    let (kept, dropped) = key_file.drop_retired(|_| false).unwrap();
    assert_eq!(dropped, [old]);
    assert!(kept.retired().is_empty());
    tokio::time::sleep(Duration::from_millis(20)).await;
    maintenance.run_once(&app.state.upkeep()).await;
    assert_eq!(app.sensitive_values(&ids[0]).await["token"], s("t0"));
}
