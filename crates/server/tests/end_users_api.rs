//! The End Users API v2 over real HTTP, held to the contract in
//! DESIGN.md sections 1.1 to 1.4. Every test runs its own server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use common::{TestApp, TestResponse, USERS, chunked_request};
use endusers_core::{Clock, SystemClock, Timestamp};
use endusers_server::ServerConfig;
use reqwest::Method;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// helpers

fn user_path(id: &str) -> String {
    TestApp::user_path(id)
}

fn id_of(user: &Value) -> String {
    user["end_user_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no end_user_id in {user}"))
        .to_owned()
}

fn keys_of(value: &Value) -> BTreeSet<&str> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect()
}

#[track_caller]
fn assert_timestamp(value: &Value) -> Timestamp {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("timestamp is not a string: {value}"));
    assert!(text.ends_with("+00:00"), "{text} must end with +00:00");
    assert_eq!(&text[10..11], "T", "{text}");
    Timestamp::parse_rfc3339(text).unwrap_or_else(|| panic!("{text} is not RFC 3339"))
}

/// The exact shape of an end user (section 1.3).
#[track_caller]
fn assert_user_shape(user: &Value) {
    assert_eq!(
        keys_of(user),
        BTreeSet::from([
            "end_user_id",
            "external_id",
            "profile",
            "created_at",
            "updated_at"
        ]),
        "{user}"
    );
    let id = id_of(user);
    assert_eq!(id.len(), 24, "{id}");
    assert!(
        id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        "{id} must be lowercase hex"
    );
    assert!(
        user["external_id"].is_null() || user["external_id"].is_string(),
        "{user}"
    );
    let profile = &user["profile"];
    assert_eq!(
        keys_of(profile),
        BTreeSet::from([
            "first_name",
            "last_name",
            "display_name",
            "avatar",
            "email",
            "language",
            "metadata",
            "system_properties"
        ]),
        "{user}"
    );
    assert!(profile["metadata"].is_object(), "{user}");
    assert_eq!(
        profile["system_properties"],
        json!({"sunshine_user_id": null, "last_conversation_at": null}),
        "{user}"
    );
    let created = assert_timestamp(&user["created_at"]);
    let updated = assert_timestamp(&user["updated_at"]);
    assert!(updated >= created, "{user}");
}

#[track_caller]
fn assert_blank(user: &Value) {
    assert_user_shape(user);
    assert_eq!(user["external_id"], Value::Null);
    assert_eq!(
        user["profile"],
        json!({
            "first_name": null, "last_name": null, "display_name": null,
            "avatar": null, "email": null, "language": null,
            "metadata": {},
            "system_properties": {"sunshine_user_id": null, "last_conversation_at": null}
        })
    );
    assert_eq!(user["created_at"], user["updated_at"]);
}

fn maria() -> Value {
    json!({
        "external_id": "CRM-42",
        "profile": {
            "first_name": "Maria",
            "last_name": "Santos",
            "display_name": "Maria S.",
            "avatar": "https://example.com/maria.png",
            "email": "maria@example.com",
            "language": "pt-BR",
            "metadata": {"region": "latam", "plan_type": "enterprise", "seats": 40, "vip": true}
        }
    })
}

async fn user_count(app: &TestApp) -> usize {
    app.list_all().await.len()
}

/// Creates `n` users: the first few one after another (checking that ids
/// grow with creation), the rest concurrently. Returns their ids.
async fn create_many(app: &TestApp, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    let sequential = n.min(10);
    for i in 0..sequential {
        let user = app
            .create_user(&json!({"profile": {"metadata": {"n": i}}}))
            .await;
        let id = id_of(&user);
        if let Some(previous) = ids.last() {
            assert!(
                &id > previous,
                "ids must grow with creation: {id} after {previous}"
            );
        }
        ids.push(id);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for i in sequential..n {
        let client = app.client.clone();
        let url = app.url(USERS);
        let key = app.key.clone();
        tasks.spawn(async move {
            let response = client
                .post(url)
                .bearer_auth(key)
                .json(&json!({"profile": {"metadata": {"n": i}}}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 201);
            let user: Value = response.json().await.unwrap();
            id_of(&user)
        });
    }
    while let Some(id) = tasks.join_next().await {
        ids.push(id.unwrap());
    }
    ids
}

/// Follows `next_page_url` from the first page with `limit` (or none).
async fn walk_pages(app: &TestApp, limit: Option<usize>) -> (Vec<String>, Vec<usize>) {
    let mut url = match limit {
        Some(limit) => app.url(&format!("{USERS}?limit={limit}")),
        None => app.url(USERS),
    };
    let mut ids = Vec::new();
    let mut page_sizes = Vec::new();
    loop {
        let page = app.get_url(&url).await;
        assert_eq!(page.status, 200, "{url}: {}", page.text);
        assert_eq!(keys_of(&page.body), BTreeSet::from(["data", "meta"]));
        assert_eq!(
            keys_of(&page.body["meta"]),
            BTreeSet::from(["next_page_url"])
        );
        let data = page.body["data"].as_array().unwrap();
        page_sizes.push(data.len());
        for user in data {
            assert_user_shape(user);
            ids.push(id_of(user));
        }
        match &page.body["meta"]["next_page_url"] {
            Value::Null => return (ids, page_sizes),
            Value::String(next) => {
                assert!(
                    next.starts_with(&format!("{}/api/v2/end-users", app.base_url)),
                    "next_page_url {next} must be absolute on {}",
                    app.base_url
                );
                assert!(page_sizes.len() < 1000, "pagination does not end");
                url = next.clone();
            }
            other => panic!("next_page_url must be a string or null, got {other}"),
        }
    }
}

// ---------------------------------------------------------------------------
// 1. POST

#[tokio::test]
async fn post_creates_a_user_with_the_full_shape() {
    let app = TestApp::spawn().await;
    let before = SystemClock.now();
    let response = app.post(USERS, &maria()).await;
    assert_eq!(response.status, 201, "{}", response.text);
    assert!(
        response
            .header("content-type")
            .is_some_and(|ct| ct.starts_with("application/json"))
    );
    let user = &response.body;
    assert_user_shape(user);
    assert_eq!(user["external_id"], "crm-42", "external ids are lowercased");
    assert_eq!(
        user["profile"],
        json!({
            "first_name": "Maria",
            "last_name": "Santos",
            "display_name": "Maria S.",
            "avatar": "https://example.com/maria.png",
            "email": "maria@example.com",
            "language": "pt-BR",
            "metadata": {"region": "latam", "plan_type": "enterprise", "seats": 40, "vip": true},
            "system_properties": {"sunshine_user_id": null, "last_conversation_at": null}
        })
    );
    assert_eq!(user["created_at"], user["updated_at"]);
    let created = assert_timestamp(&user["created_at"]);
    let after = SystemClock.now();
    assert!(
        created >= before.saturating_sub(std::time::Duration::from_secs(1))
            && created <= after.saturating_add(std::time::Duration::from_secs(1)),
        "created_at {created:?} is not now"
    );
    // What was answered is what is stored.
    assert_eq!(app.get_user(&id_of(user)).await, *user);
}

#[tokio::test]
async fn post_without_a_body_or_with_an_empty_object_creates_blank_users() {
    let app = TestApp::spawn().await;
    let auth = format!("Bearer {}", app.key);

    let no_body = app
        .raw(Method::POST, USERS, &[("authorization", &auth)], None)
        .await;
    assert_eq!(no_body.status, 201, "{}", no_body.text);
    assert_blank(&no_body.body);

    let empty = app.post(USERS, &json!({})).await;
    assert_eq!(empty.status, 201, "{}", empty.text);
    assert_blank(&empty.body);

    assert_ne!(id_of(&no_body.body), id_of(&empty.body));
    assert_eq!(user_count(&app).await, 2);
}

#[tokio::test]
async fn post_with_a_known_external_id_returns_the_existing_user_unchanged() {
    let app = TestApp::spawn().await;
    let first = app.create_user(&maria()).await;

    let again = app
        .post(
            USERS,
            &json!({
                "external_id": "Crm-42",
                "profile": {"first_name": "Someone", "email": "else@example.com",
                            "metadata": {"region": "emea"}}
            }),
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.body, first, "the existing user, unchanged");
    assert_eq!(app.get_user(&id_of(&first)).await, first);
    assert_eq!(user_count(&app).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_posts_with_one_external_id_make_one_user() {
    let app = TestApp::spawn().await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..24 {
        let client = app.client.clone();
        let url = app.url(USERS);
        let key = app.key.clone();
        let external_id = if i % 2 == 0 { "Race-1" } else { "race-1" };
        tasks.spawn(async move {
            let response = client
                .post(url)
                .bearer_auth(key)
                .json(&json!({"external_id": external_id, "profile": {"first_name": format!("n{i}")}}))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            (status, body)
        });
    }
    let mut created = 0;
    let mut ids = BTreeSet::new();
    while let Some(result) = tasks.join_next().await {
        let (status, body) = result.unwrap();
        assert!(status == 201 || status == 200, "{status}: {body}");
        if status == 201 {
            created += 1;
        }
        ids.insert(id_of(&body));
    }
    assert_eq!(created, 1, "exactly one POST creates the user");
    assert_eq!(ids.len(), 1, "every answer is the same user");
    assert_eq!(user_count(&app).await, 1);
}

// ---------------------------------------------------------------------------
// 2. GET

#[tokio::test]
async fn get_returns_the_user_and_404s_unknown_or_malformed_ids() {
    let app = TestApp::spawn().await;
    let user = app.create_user(&maria()).await;

    let found = app.get(&user_path(&id_of(&user))).await;
    assert_eq!(found.status, 200, "{}", found.text);
    assert_user_shape(&found.body);
    assert_eq!(found.body, user);

    let unknown = app.get(&user_path("000000000000000000000000")).await;
    unknown.assert_error(404, "not_found", "");

    for malformed in [
        "not-an-id",
        "123",
        &id_of(&user).to_uppercase(),
        &format!("{}0", id_of(&user)),
        &id_of(&user)[..23],
        "zzzzzzzzzzzzzzzzzzzzzzzz",
    ] {
        let response = app.get(&user_path(malformed)).await;
        response.assert_error(404, "not_found", "");
        let response = app
            .patch(&user_path(malformed), &json!({"profile": {}}))
            .await;
        response.assert_error(404, "not_found", "");
        let response = app.delete(&user_path(malformed)).await;
        response.assert_error(404, "not_found", "");
    }
    let unknown_patch = app
        .patch(
            &user_path("000000000000000000000000"),
            &json!({"profile": {"first_name": "x"}}),
        )
        .await;
    unknown_patch.assert_error(404, "not_found", "");
    assert_eq!(user_count(&app).await, 1);
}

// ---------------------------------------------------------------------------
// 3. PATCH

#[tokio::test]
async fn patch_is_a_json_merge_patch_of_the_profile() {
    let app = TestApp::spawn().await;
    let user = app.create_user(&maria()).await;
    let path = user_path(&id_of(&user));

    // An absent field is unchanged; a present one is set.
    let response = app
        .patch(&path, &json!({"profile": {"first_name": "Ana"}}))
        .await;
    assert_eq!(response.status, 200, "{}", response.text);
    assert_user_shape(&response.body);
    let mut expected = user.clone();
    expected["profile"]["first_name"] = json!("Ana");
    expected["updated_at"] = response.body["updated_at"].clone();
    assert_eq!(response.body, expected);
    assert_eq!(app.get_user(&id_of(&user)).await, expected);

    // `null` clears a field.
    let response = app
        .patch(
            &path,
            &json!({"profile": {"last_name": null, "avatar": null}}),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text);
    expected["profile"]["last_name"] = Value::Null;
    expected["profile"]["avatar"] = Value::Null;
    expected["updated_at"] = response.body["updated_at"].clone();
    assert_eq!(response.body, expected);
    assert_eq!(app.get_user(&id_of(&user)).await, expected);

    // Metadata merges per key; a `null` value removes only that key.
    let response = app
        .patch(
            &path,
            &json!({"profile": {"metadata": {"seats": null, "region": "emea", "tier": "gold"}}}),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(
        response.body["profile"]["metadata"],
        json!({"region": "emea", "plan_type": "enterprise", "vip": true, "tier": "gold"})
    );
    expected["profile"]["metadata"] = response.body["profile"]["metadata"].clone();
    expected["updated_at"] = response.body["updated_at"].clone();
    assert_eq!(response.body, expected);
    assert_eq!(app.get_user(&id_of(&user)).await, expected);

    // An empty metadata object changes nothing.
    let response = app
        .patch(&path, &json!({"profile": {"metadata": {}}}))
        .await;
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.body, expected);

    // `"metadata": null` clears every key.
    let response = app
        .patch(&path, &json!({"profile": {"metadata": null}}))
        .await;
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.body["profile"]["metadata"], json!({}));
    expected["profile"]["metadata"] = json!({});
    expected["updated_at"] = response.body["updated_at"].clone();
    assert_eq!(response.body, expected);
    assert_eq!(app.get_user(&id_of(&user)).await, expected);

    // The id, the external id and created_at never move.
    assert_eq!(expected["end_user_id"], user["end_user_id"]);
    assert_eq!(expected["external_id"], "crm-42");
    assert_eq!(expected["created_at"], user["created_at"]);
}

#[tokio::test]
async fn patch_moves_updated_at_only_on_a_real_change() {
    let app = TestApp::spawn().await;
    let user = app.create_user(&maria()).await;
    let path = user_path(&id_of(&user));

    for same in [
        json!({"profile": {}}),
        json!({"profile": {"first_name": "Maria", "language": "pt-BR"}}),
        json!({"profile": {"metadata": {"seats": 40, "vip": true}}}),
        json!({"external_id": "CRM-42", "profile": {"email": "maria@example.com"}}),
        json!({"profile": {"metadata": {"never-set": null}}}),
    ] {
        let response = app.patch(&path, &same).await;
        assert_eq!(response.status, 200, "{same}: {}", response.text);
        assert_eq!(response.body, user, "{same} changed the user");
        assert_eq!(app.get_user(&id_of(&user)).await, user);
    }

    let response = app
        .patch(&path, &json!({"profile": {"metadata": {"seats": 41}}}))
        .await;
    assert_eq!(response.status, 200, "{}", response.text);
    let before = assert_timestamp(&user["updated_at"]);
    let after = assert_timestamp(&response.body["updated_at"]);
    assert!(after > before, "updated_at must move on a change");
    assert_eq!(response.body["created_at"], user["created_at"]);
    assert_eq!(app.get_user(&id_of(&user)).await, response.body);
}

#[tokio::test]
async fn patch_requires_a_profile() {
    let app = TestApp::spawn().await;
    let user = app.create_user(&maria()).await;
    let path = user_path(&id_of(&user));

    for body in [
        json!({}),
        json!({"external_id": "crm-99"}),
        json!({"profile": null}),
    ] {
        let response = app.patch(&path, &body).await;
        response.assert_error(400, "invalid_request", "profile");
    }
    // No body at all is no profile either.
    let auth = format!("Bearer {}", app.key);
    let response = app
        .raw(Method::PATCH, &path, &[("authorization", &auth)], None)
        .await;
    response.assert_error(400, "invalid_request", "profile");

    assert_eq!(app.get_user(&id_of(&user)).await, user);
}

#[tokio::test]
async fn patch_to_an_external_id_another_user_has_is_409_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let a = app.create_user(&maria()).await;
    let b = app
        .create_user(&json!({"external_id": "crm-43", "profile": {"first_name": "Bea"}}))
        .await;

    for taken in ["crm-42", "CRM-42", "Crm-42"] {
        let response = app
            .patch(
                &user_path(&id_of(&b)),
                &json!({"external_id": taken, "profile": {"first_name": "Changed"}}),
            )
            .await;
        response.assert_error(409, "conflict", "external_id");
    }
    assert_eq!(app.get_user(&id_of(&a)).await, a);
    assert_eq!(app.get_user(&id_of(&b)).await, b);
    let lookup = app.get(&format!("{USERS}?external_id=crm-42")).await;
    assert_eq!(lookup.status, 200, "{}", lookup.text);
    assert_eq!(lookup.body, a);
}

#[tokio::test]
async fn patch_external_id_null_frees_the_mapping() {
    let app = TestApp::spawn().await;
    let a = app.create_user(&maria()).await;
    let b = app.create_user(&json!({})).await;

    let response = app
        .patch(
            &user_path(&id_of(&a)),
            &json!({"external_id": null, "profile": {}}),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.body["external_id"], Value::Null);
    assert_eq!(response.body["profile"], a["profile"]);
    assert_eq!(app.get_user(&id_of(&a)).await, response.body);

    let lookup = app.get(&format!("{USERS}?external_id=crm-42")).await;
    lookup.assert_error(404, "not_found", "");

    let response = app
        .patch(
            &user_path(&id_of(&b)),
            &json!({"external_id": "CRM-42", "profile": {}}),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.body["external_id"], "crm-42");

    let lookup = app.get(&format!("{USERS}?external_id=crm-42")).await;
    assert_eq!(lookup.status, 200, "{}", lookup.text);
    assert_eq!(id_of(&lookup.body), id_of(&b));

    // A POST with that external id now finds b.
    let again = app.post(USERS, &json!({"external_id": "crm-42"})).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(id_of(&again.body), id_of(&b));
}

// ---------------------------------------------------------------------------
// 4. Validation

/// (what, body as sent, the path the message must start with). Every body
/// also carries a valid change, which must not be applied either.
fn invalid_bodies() -> Vec<(&'static str, String, &'static str)> {
    let ok = r#""last_name": "Changed""#;
    vec![
        (
            "first_name of 256 chars",
            format!(
                r#"{{"profile": {{{ok}, "first_name": "{}"}}}}"#,
                "a".repeat(256)
            ),
            "profile.first_name",
        ),
        (
            "last_name of 256 chars",
            format!(
                r#"{{"profile": {{"first_name": "Changed", "last_name": "{}"}}}}"#,
                "é".repeat(256)
            ),
            "profile.last_name",
        ),
        (
            "display_name of 256 chars",
            format!(
                r#"{{"profile": {{{ok}, "display_name": "{}"}}}}"#,
                "a".repeat(256)
            ),
            "profile.display_name",
        ),
        (
            "email that is not an address",
            format!(r#"{{"profile": {{{ok}, "email": "not-an-email"}}}}"#),
            "profile.email",
        ),
        (
            "avatar that is not http(s)",
            format!(r#"{{"profile": {{{ok}, "avatar": "ftp://x/y"}}}}"#),
            "profile.avatar",
        ),
        (
            "language en_US",
            format!(r#"{{"profile": {{{ok}, "language": "en_US"}}}}"#),
            "profile.language",
        ),
        (
            "first_name of the wrong type",
            format!(r#"{{"profile": {{{ok}, "first_name": 42}}}}"#),
            "profile.first_name",
        ),
        (
            "metadata float",
            format!(r#"{{"profile": {{{ok}, "metadata": {{"plan": 1.5}}}}}}"#),
            "profile.metadata.plan",
        ),
        (
            "metadata array",
            format!(r#"{{"profile": {{{ok}, "metadata": {{"plan": ["a"]}}}}}}"#),
            "profile.metadata.plan",
        ),
        (
            "metadata object",
            format!(r#"{{"profile": {{{ok}, "metadata": {{"plan": {{"a": 1}}}}}}}}"#),
            "profile.metadata.plan",
        ),
        (
            "metadata integer above i64::MAX",
            format!(r#"{{"profile": {{{ok}, "metadata": {{"big": 18446744073709551615}}}}}}"#),
            "profile.metadata.big",
        ),
        (
            "metadata empty key",
            format!(r#"{{"profile": {{{ok}, "metadata": {{"": "x"}}}}}}"#),
            "profile.metadata",
        ),
        (
            "metadata key of 129 chars",
            format!(
                r#"{{"profile": {{{ok}, "metadata": {{"{}": "x"}}}}}}"#,
                "k".repeat(129)
            ),
            "profile.metadata",
        ),
        (
            "metadata that is not an object",
            format!(r#"{{"profile": {{{ok}, "metadata": "plan"}}}}"#),
            "profile.metadata",
        ),
        (
            "profile.system_properties sent",
            format!(r#"{{"profile": {{{ok}, "system_properties": {{"sunshine_user_id": "x"}}}}}}"#),
            "profile.system_properties",
        ),
        (
            "profile.system_properties sent as null",
            format!(r#"{{"profile": {{{ok}, "system_properties": null}}}}"#),
            "profile.system_properties",
        ),
        (
            "unknown top-level field",
            format!(r#"{{"profile": {{{ok}}}, "nickname": "x"}}"#),
            "nickname",
        ),
        (
            "unknown profile field",
            format!(r#"{{"profile": {{{ok}, "nickname": "x"}}}}"#),
            "profile.nickname",
        ),
        (
            "external_id of 37 chars",
            format!(
                r#"{{"external_id": "{}", "profile": {{{ok}}}}}"#,
                "a".repeat(37)
            ),
            "external_id",
        ),
        (
            "external_id with <",
            format!(r#"{{"external_id": "a<b", "profile": {{{ok}}}}}"#),
            "external_id",
        ),
        (
            "external_id with >",
            format!(r#"{{"external_id": "a>b", "profile": {{{ok}}}}}"#),
            "external_id",
        ),
        (
            "profile that is an array",
            r#"{"profile": ["Maria"]}"#.to_owned(),
            "profile",
        ),
        ("malformed JSON", format!(r#"{{"profile": {{{ok}"#), "body"),
        (
            "trailing data after the JSON value",
            format!(r#"{{"profile": {{{ok}}}}} {{}}"#),
            "body",
        ),
        (
            "a JSON array body",
            format!(r#"[{{"profile": {{{ok}}}}}]"#),
            "body",
        ),
        ("a JSON string body", r#""hello""#.to_owned(), "body"),
    ]
}

async fn send_json_text(app: &TestApp, method: Method, path: &str, body: &str) -> TestResponse {
    let auth = format!("Bearer {}", app.key);
    app.raw(
        method,
        path,
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        Some(body.as_bytes().to_vec()),
    )
    .await
}

#[tokio::test]
async fn invalid_patches_are_400_naming_the_field_and_change_nothing() {
    let app = TestApp::spawn().await;
    let user = app.create_user(&maria()).await;
    let path = user_path(&id_of(&user));

    for (what, body, field) in invalid_bodies() {
        let response = send_json_text(&app, Method::PATCH, &path, &body).await;
        assert_eq!(response.status, 400, "{what}: {}", response.text);
        response.assert_error(400, "invalid_request", field);
        assert_eq!(
            app.get_user(&id_of(&user)).await,
            user,
            "{what} changed the stored user"
        );
    }
}

#[tokio::test]
async fn invalid_posts_are_400_naming_the_field_and_create_nothing() {
    let app = TestApp::spawn().await;
    let user = app.create_user(&maria()).await;

    for (what, body, field) in invalid_bodies() {
        let response = send_json_text(&app, Method::POST, USERS, &body).await;
        assert_eq!(response.status, 400, "{what}: {}", response.text);
        response.assert_error(400, "invalid_request", field);
    }
    assert_eq!(app.list_all().await, vec![user]);
}

#[tokio::test]
async fn valid_edge_values_are_accepted() {
    let app = TestApp::spawn().await;
    let body = json!({
        "external_id": "a".repeat(36),
        "profile": {
            "first_name": "é".repeat(255),
            "avatar": "http://example.com/a.png",
            "language": "zh-Hant-TW",
            "metadata": {
                "k".repeat(128): i64::MAX,
                "min": i64::MIN,
                "flag": false,
                "empty": ""
            }
        }
    });
    let user = app.create_user(&body).await;
    assert_user_shape(&user);
    assert_eq!(
        user["profile"]["metadata"]["k".repeat(128)],
        json!(i64::MAX)
    );
    assert_eq!(user["profile"]["metadata"]["min"], json!(i64::MIN));
    assert_eq!(user["profile"]["language"], "zh-Hant-TW");
}

#[tokio::test]
async fn metadata_above_its_size_limit_is_refused_even_when_reached_in_steps() {
    let app = TestApp::spawn().await;
    let user = app.create_user(&json!({})).await;
    let path = user_path(&id_of(&user));

    // Three keys of 3300 characters: `{"k1":"…","k2":"…","k3":"…"}` is
    // 3 * (6 + 3300 + 1) + 2 commas + 2 braces = 9925 bytes.
    for key in ["k1", "k2", "k3"] {
        let body = json!({"profile": {"metadata": {key: "v".repeat(3300)}}});
        assert!(serde_json::to_vec(&body).unwrap().len() < 4096);
        let response = app.patch(&path, &body).await;
        assert_eq!(response.status, 200, "{key}: {}", response.text);
    }
    // `,"k4":"…"` with 307 characters brings it to exactly 10240: allowed.
    let response = app
        .patch(
            &path,
            &json!({"profile": {"metadata": {"k4": "v".repeat(307)}}}),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text);
    let serialized = serde_json::to_string(&response.body["profile"]["metadata"]).unwrap();
    assert_eq!(serialized.len(), 10_240);
    let at_limit = app.get_user(&id_of(&user)).await;
    assert_eq!(at_limit, response.body);

    // One more key goes over: refused, nothing stored.
    let response = app
        .patch(
            &path,
            &json!({"profile": {"first_name": "Changed", "metadata": {"k5": "v"}}}),
        )
        .await;
    response.assert_error(400, "invalid_request", "profile.metadata");
    assert_eq!(app.get_user(&id_of(&user)).await, at_limit);

    // Growing an existing value is refused the same way.
    let response = app
        .patch(
            &path,
            &json!({"profile": {"metadata": {"k4": "v".repeat(308)}}}),
        )
        .await;
    response.assert_error(400, "invalid_request", "profile.metadata");
    assert_eq!(app.get_user(&id_of(&user)).await, at_limit);

    // Removing a key in the same patch makes room again.
    let response = app
        .patch(
            &path,
            &json!({"profile": {"metadata": {"k1": null, "k5": "v"}}}),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text);
}

// ---------------------------------------------------------------------------
// 5. List

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn list_pages_visit_every_user_once_in_ascending_id_order() {
    let app = TestApp::spawn().await;

    let empty = app.get(USERS).await;
    assert_eq!(empty.status, 200, "{}", empty.text);
    assert_eq!(
        empty.body,
        json!({"data": [], "meta": {"next_page_url": null}})
    );

    let mut created = create_many(&app, 250).await;
    created.sort();
    assert_eq!(created.iter().collect::<BTreeSet<_>>().len(), 250);

    for limit in [Some(1), Some(7), Some(50), Some(100), None] {
        let (ids, sizes) = walk_pages(&app, limit).await;
        assert_eq!(ids, created, "limit {limit:?}: every user once, ascending");
        let per_page = limit.unwrap_or(100);
        let pages = 250usize.div_ceil(per_page);
        assert_eq!(sizes.len(), pages, "limit {limit:?}: pages {sizes:?}");
        assert!(
            sizes[..pages - 1].iter().all(|&s| s == per_page),
            "limit {limit:?}: {sizes:?}"
        );
        assert_eq!(sizes[pages - 1], 250 - per_page * (pages - 1));
    }

    // The default limit is 100, and next_page_url keeps paging by 100.
    let first = app.get(USERS).await;
    assert_eq!(first.body["data"].as_array().unwrap().len(), 100);
    let next = first.body["meta"]["next_page_url"].as_str().unwrap();
    let second = app.get_url(next).await;
    assert_eq!(second.status, 200, "{}", second.text);
    assert_eq!(second.body["data"].as_array().unwrap().len(), 100);
    assert_eq!(id_of(&second.body["data"][0]), created[100]);

    // Without the trailing slash, the same.
    let no_slash = app.get("/api/v2/end-users?limit=7").await;
    assert_eq!(no_slash.status, 200, "{}", no_slash.text);
    let ids: Vec<String> = no_slash.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(ids, created[..7]);
}

#[tokio::test]
async fn next_page_url_is_built_from_the_host_the_client_used() {
    let app = TestApp::spawn().await;
    let first = app.create_user(&json!({})).await;
    let second = app.create_user(&json!({})).await;
    let auth = format!("Bearer {}", app.key);

    let page = app
        .raw(
            Method::GET,
            &format!("{USERS}?limit=1"),
            &[("authorization", &auth), ("host", "api.example.com:8443")],
            None,
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert_eq!(id_of(&page.body["data"][0]), id_of(&first));
    let next = page.body["meta"]["next_page_url"].as_str().unwrap();
    assert!(
        next.starts_with("http://api.example.com:8443/api/v2/end-users"),
        "{next}"
    );
    // The cursor in it is the first record of the next page.
    let path = next.trim_start_matches("http://api.example.com:8443");
    let page = app.get(path).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert_eq!(page.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(id_of(&page.body["data"][0]), id_of(&second));
    assert_eq!(page.body["meta"]["next_page_url"], Value::Null);
}

#[tokio::test]
async fn list_rejects_bad_queries() {
    let app = TestApp::spawn().await;
    app.create_user(&json!({})).await;

    for limit in ["0", "101", "abc", "-1", "1.5", ""] {
        let response = app.get(&format!("{USERS}?limit={limit}")).await;
        response.assert_error(400, "invalid_request", "limit");
    }
    for cursor in [
        "xyz",
        "ZZZZZZZZZZZZZZZZZZZZZZZZ",
        "00000000000000000000000",
        "",
    ] {
        let response = app.get(&format!("{USERS}?cursor={cursor}")).await;
        response.assert_error(400, "invalid_request", "cursor");
    }
    let response = app.get(&format!("{USERS}?page=2")).await;
    response.assert_error(400, "invalid_request", "page");
    let response = app.get(&format!("{USERS}?limit=1&limit=2")).await;
    response.assert_error(400, "invalid_request", "limit");
}

// ---------------------------------------------------------------------------
// 6. Lookup by external_id

#[tokio::test]
async fn lookup_by_external_id_is_case_insensitive_and_returns_one_user() {
    let app = TestApp::spawn().await;
    app.create_user(&json!({"external_id": "crm-6"})).await;
    let user = app
        .create_user(&json!({"external_id": "crm-7", "profile": {"first_name": "Seven"}}))
        .await;
    app.create_user(&json!({})).await;

    for asked in ["CRM-7", "crm-7", "Crm-7"] {
        let response = app.get(&format!("{USERS}?external_id={asked}")).await;
        assert_eq!(response.status, 200, "{asked}: {}", response.text);
        assert_user_shape(&response.body);
        assert_eq!(response.body, user, "a single user object, not a list");
    }

    let unmapped = app.get(&format!("{USERS}?external_id=crm-8")).await;
    unmapped.assert_error(404, "not_found", "");

    for combined in [
        format!("{USERS}?external_id=crm-7&limit=10"),
        format!("{USERS}?external_id=crm-7&cursor={}", id_of(&user)),
        format!("{USERS}?limit=10&external_id=crm-7"),
    ] {
        let response = app.get(&combined).await;
        response.assert_error(400, "invalid_request", "");
    }

    let too_long = app
        .get(&format!("{USERS}?external_id={}", "a".repeat(37)))
        .await;
    too_long.assert_error(400, "invalid_request", "external_id");
}

// ---------------------------------------------------------------------------
// 7. DELETE

#[tokio::test]
async fn delete_erases_the_user() {
    let app = TestApp::spawn().await;
    let user = app.create_user(&maria()).await;
    let other = app.create_user(&json!({})).await;
    let path = user_path(&id_of(&user));

    let response = app.delete(&path).await;
    assert_eq!(response.status, 204, "{}", response.text);
    assert!(
        response.text.is_empty(),
        "204 has no body: {}",
        response.text
    );

    app.get(&path).await.assert_error(404, "not_found", "");
    app.delete(&path).await.assert_error(404, "not_found", "");
    app.patch(&path, &json!({"profile": {}}))
        .await
        .assert_error(404, "not_found", "");
    assert_eq!(app.list_all().await, vec![other]);
    app.get(&format!("{USERS}?external_id=crm-42"))
        .await
        .assert_error(404, "not_found", "");

    // Its external id is free again: a POST makes a new user.
    let again = app.post(USERS, &json!({"external_id": "crm-42"})).await;
    assert_eq!(again.status, 201, "{}", again.text);
    assert_ne!(id_of(&again.body), id_of(&user));
}

// ---------------------------------------------------------------------------
// 8. Auth

#[tokio::test]
async fn requests_without_a_valid_key_are_401() {
    let app = TestApp::spawn().await;
    let user = app.create_user(&maria()).await;
    let item = user_path(&id_of(&user));

    // A well-formed token whose key id exists but whose secret is wrong.
    let mut wrong_secret = app.key.clone();
    let last = wrong_secret.pop().unwrap();
    wrong_secret.push(if last == 'A' { 'B' } else { 'A' });
    // A well-formed token nobody issued.
    let never_issued = endusers_server::auth::issue_key().token;

    let bad_headers: Vec<Option<String>> = vec![
        None,
        Some(String::new()),
        Some("Bearer".to_owned()),
        Some("Bearer ".to_owned()),
        Some(app.key.clone()),
        Some(format!("Basic {}", app.key)),
        Some(format!("Token {}", app.key)),
        Some("Bearer not-a-key".to_owned()),
        Some(format!("Bearer {}x", app.key)),
        Some(format!("Bearer {}", &app.key[..app.key.len() - 1])),
        Some(format!("Bearer {}", app.key.to_uppercase())),
        Some(format!("Bearer {wrong_secret}")),
        Some(format!("Bearer {never_issued}")),
    ];
    let requests: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, USERS.to_owned(), None),
        (Method::GET, format!("{USERS}?external_id=crm-42"), None),
        (Method::POST, USERS.to_owned(), Some(json!({}))),
        (Method::GET, item.clone(), None),
        (
            Method::PATCH,
            item.clone(),
            Some(json!({"profile": {"first_name": "Hacked"}})),
        ),
        (Method::DELETE, item.clone(), None),
    ];
    for header in &bad_headers {
        for (method, path, body) in &requests {
            let mut headers: Vec<(&str, &str)> = Vec::new();
            if let Some(value) = header {
                headers.push(("authorization", value));
            }
            if body.is_some() {
                headers.push(("content-type", "application/json"));
            }
            let bytes = body.as_ref().map(|b| serde_json::to_vec(b).unwrap());
            let response = app.raw(method.clone(), path, &headers, bytes).await;
            assert_eq!(
                response.status, 401,
                "{method} {path} with {header:?}: {}",
                response.text
            );
            response.assert_error(401, "unauthorized", "");
        }
    }
    // Nothing happened.
    assert_eq!(app.list_all().await, vec![user.clone()]);
    assert_eq!(app.get_user(&id_of(&user)).await, user);
}

#[tokio::test]
async fn several_keys_of_one_agent_work_and_a_revoked_one_does_not() {
    let app = TestApp::spawn().await;
    let second = app.new_default_key().await;
    assert_ne!(second, app.key);

    let created = app
        .send_as(
            &second,
            Method::POST,
            USERS,
            Some(&json!({"external_id": "k2"})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    // Both keys see the same agent's data.
    assert_eq!(app.get_user(&id_of(&created.body)).await, created.body);
    let seen = app
        .send_as(
            &second,
            Method::GET,
            &user_path(&id_of(&created.body)),
            None,
        )
        .await;
    assert_eq!(seen.status, 200, "{}", seen.text);

    // Revoke the second key: the key id is the 16 hex chars after "eu_".
    let key_id = &second[3..19];
    assert!(
        app.store
            .revoke_api_key(key_id, SystemClock.now())
            .await
            .unwrap()
    );
    for (method, path) in [
        (Method::GET, USERS.to_owned()),
        (Method::GET, user_path(&id_of(&created.body))),
        (Method::POST, USERS.to_owned()),
    ] {
        let response = app.send_as(&second, method, &path, None).await;
        response.assert_error(401, "unauthorized", "");
    }
    // The first key still works.
    let response = app.get(USERS).await;
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.body["data"].as_array().unwrap().len(), 1);
}

// ---------------------------------------------------------------------------
// 9. Tenancy

#[tokio::test]
async fn another_agents_users_are_invisible() {
    let app = TestApp::spawn().await;
    let b_key = app.new_agent_key("agent-b").await;
    let a_user = app.create_user(&maria()).await;
    let a_path = user_path(&id_of(&a_user));

    let as_b = |method: Method, path: String, body: Option<Value>| {
        let key = b_key.clone();
        let app = &app;
        async move { app.send_as(&key, method, &path, body.as_ref()).await }
    };

    as_b(Method::GET, a_path.clone(), None)
        .await
        .assert_error(404, "not_found", "");
    as_b(
        Method::PATCH,
        a_path.clone(),
        Some(json!({"profile": {"first_name": "Stolen"}})),
    )
    .await
    .assert_error(404, "not_found", "");
    as_b(Method::DELETE, a_path.clone(), None)
        .await
        .assert_error(404, "not_found", "");
    let list = as_b(Method::GET, USERS.to_owned(), None).await;
    assert_eq!(list.status, 200, "{}", list.text);
    assert_eq!(
        list.body,
        json!({"data": [], "meta": {"next_page_url": null}})
    );
    as_b(Method::GET, format!("{USERS}?external_id=crm-42"), None)
        .await
        .assert_error(404, "not_found", "");

    // B may use the same external id for its own, distinct user.
    let b_user = as_b(
        Method::POST,
        USERS.to_owned(),
        Some(json!({"external_id": "CRM-42", "profile": {"first_name": "Bruno"}})),
    )
    .await;
    assert_eq!(b_user.status, 201, "{}", b_user.text);
    assert_ne!(id_of(&b_user.body), id_of(&a_user));
    assert_eq!(b_user.body["profile"]["first_name"], "Bruno");

    // And A's world is unchanged, and does not see B's user.
    assert_eq!(app.get_user(&id_of(&a_user)).await, a_user);
    assert_eq!(app.list_all().await, vec![a_user.clone()]);
    app.get(&user_path(&id_of(&b_user.body)))
        .await
        .assert_error(404, "not_found", "");
    let lookup = app.get(&format!("{USERS}?external_id=crm-42")).await;
    assert_eq!(lookup.body, a_user);
    let lookup_b = as_b(Method::GET, format!("{USERS}?external_id=crm-42"), None).await;
    assert_eq!(lookup_b.status, 200, "{}", lookup_b.text);
    assert_eq!(lookup_b.body, b_user.body);
}

// ---------------------------------------------------------------------------
// 10. Body errors

fn oversized_body() -> Vec<u8> {
    let body = serde_json::to_vec(&json!({
        "external_id": "big",
        "profile": {"first_name": "Big", "metadata": {"blob": "x".repeat(4200)}}
    }))
    .unwrap();
    assert!(body.len() > 4096);
    body
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_and_creates_nothing() {
    let app = TestApp::spawn().await;
    let auth = format!("Bearer {}", app.key);
    let response = app
        .raw(
            Method::POST,
            USERS,
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            Some(oversized_body()),
        )
        .await;
    response.assert_error(413, "payload_too_large", "");
    assert_eq!(user_count(&app).await, 0);

    // On PATCH too, and the user stays as it was.
    let user = app.create_user(&maria()).await;
    let response = app
        .raw(
            Method::PATCH,
            &user_path(&id_of(&user)),
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            Some(oversized_body()),
        )
        .await;
    response.assert_error(413, "payload_too_large", "");
    assert_eq!(app.get_user(&id_of(&user)).await, user);

    // Exactly 4096 bytes is within the limit.
    let mut body = serde_json::to_vec(&json!({"profile": {"metadata": {"pad": ""}}})).unwrap();
    let pad = 4096 - body.len();
    body = serde_json::to_vec(&json!({"profile": {"metadata": {"pad": "p".repeat(pad)}}})).unwrap();
    assert_eq!(body.len(), 4096);
    let response = app
        .raw(
            Method::POST,
            USERS,
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            Some(body),
        )
        .await;
    assert_eq!(response.status, 201, "{}", response.text);
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_413_and_creates_nothing() {
    let app = TestApp::spawn().await;
    let host = app.addr.to_string();

    // The raw path itself works: a small chunked body creates a user.
    let small = serde_json::to_vec(&json!({"profile": {"first_name": "Chunky"}})).unwrap();
    let response = app
        .raw_tcp(chunked_request(
            "POST",
            USERS,
            &host,
            &app.key,
            "application/json",
            &small,
            8,
        ))
        .await;
    assert_eq!(response.status, 201, "{}", response.text);
    assert_eq!(response.body["profile"]["first_name"], "Chunky");

    let response = app
        .raw_tcp(chunked_request(
            "POST",
            USERS,
            &host,
            &app.key,
            "application/json",
            &oversized_body(),
            1000,
        ))
        .await;
    response.assert_error(413, "payload_too_large", "");
    let users = app.list_all().await;
    assert_eq!(users.len(), 1, "{users:?}");
}

#[tokio::test]
async fn the_body_limit_is_configurable() {
    let app = TestApp::spawn_with(ServerConfig {
        max_body_bytes: 1000,
        ..ServerConfig::default()
    })
    .await;
    let big = json!({"profile": {"metadata": {"blob": "x".repeat(1100)}}});
    app.post(USERS, &big)
        .await
        .assert_error(413, "payload_too_large", "");
    let fits = json!({"profile": {"metadata": {"blob": "x".repeat(900)}}});
    let response = app.post(USERS, &fits).await;
    assert_eq!(response.status, 201, "{}", response.text);
    assert_eq!(user_count(&app).await, 1);
}

#[tokio::test]
async fn a_body_that_is_not_declared_json_is_415() {
    let app = TestApp::spawn().await;
    let auth = format!("Bearer {}", app.key);
    let body = serde_json::to_vec(&json!({"profile": {"first_name": "Maria"}})).unwrap();

    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("text/json"),
        None,
    ] {
        let mut headers = vec![("authorization", auth.as_str())];
        if let Some(ct) = content_type {
            headers.push(("content-type", ct));
        }
        let response = app
            .raw(Method::POST, USERS, &headers, Some(body.clone()))
            .await;
        assert_eq!(response.status, 415, "{content_type:?}: {}", response.text);
        response.assert_error(415, "unsupported_media_type", "");
    }
    assert_eq!(user_count(&app).await, 0);

    // PATCH too.
    let user = app.create_user(&maria()).await;
    let response = app
        .raw(
            Method::PATCH,
            &user_path(&id_of(&user)),
            &[("authorization", &auth), ("content-type", "text/plain")],
            Some(serde_json::to_vec(&json!({"profile": {"first_name": "X"}})).unwrap()),
        )
        .await;
    response.assert_error(415, "unsupported_media_type", "");
    assert_eq!(app.get_user(&id_of(&user)).await, user);
}

#[tokio::test]
async fn json_with_a_charset_is_accepted() {
    let app = TestApp::spawn().await;
    let auth = format!("Bearer {}", app.key);
    let body = serde_json::to_vec(&json!({"profile": {"first_name": "Maria"}})).unwrap();
    for content_type in [
        "application/json; charset=utf-8",
        "application/json;charset=UTF-8",
        "Application/JSON",
    ] {
        let response = app
            .raw(
                Method::POST,
                USERS,
                &[("authorization", &auth), ("content-type", content_type)],
                Some(body.clone()),
            )
            .await;
        assert_eq!(response.status, 201, "{content_type}: {}", response.text);
        assert_eq!(response.body["profile"]["first_name"], "Maria");
    }
}

// ---------------------------------------------------------------------------
// 11. Envelope on router errors, trailing slashes

#[tokio::test]
async fn unknown_routes_and_wrong_methods_answer_in_the_envelope() {
    let app = TestApp::spawn().await;
    let user = app.create_user(&json!({})).await;
    let extra = format!("{}/nope", user_path(&id_of(&user)));

    for path in [
        "/api/v2/nope",
        "/api/v2/nope/",
        "/nope",
        "/api/v3/end-users/",
        extra.as_str(),
    ] {
        app.get(path).await.assert_error(404, "not_found", "");
    }
    for (method, path) in [
        (Method::PUT, USERS.to_owned()),
        (Method::PUT, "/api/v2/end-users".to_owned()),
        (Method::DELETE, USERS.to_owned()),
        (Method::PATCH, USERS.to_owned()),
        (Method::PUT, user_path(&id_of(&user))),
        (Method::POST, user_path(&id_of(&user))),
        (Method::OPTIONS, USERS.to_owned()),
    ] {
        let response = app.send(method.clone(), &path, Some(&json!({}))).await;
        assert_eq!(response.status, 405, "{method} {path}: {}", response.text);
        response.assert_error(405, "method_not_allowed", "");
    }
}

#[tokio::test]
async fn paths_work_with_and_without_a_trailing_slash() {
    let app = TestApp::spawn().await;

    let created = app.post("/api/v2/end-users", &json!({})).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let created_slash = app.post("/api/v2/end-users/", &json!({})).await;
    assert_eq!(created_slash.status, 201, "{}", created_slash.text);

    for path in ["/api/v2/end-users", "/api/v2/end-users/"] {
        let list = app.get(path).await;
        assert_eq!(list.status, 200, "{path}: {}", list.text);
        assert_eq!(list.body["data"].as_array().unwrap().len(), 2);
    }

    let id = id_of(&created.body);
    for path in [
        format!("/api/v2/end-users/{id}"),
        format!("/api/v2/end-users/{id}/"),
    ] {
        let got = app.get(&path).await;
        assert_eq!(got.status, 200, "{path}: {}", got.text);
        assert_eq!(got.body["end_user_id"], id.as_str());
        let patched = app
            .patch(&path, &json!({"profile": {"first_name": path.clone()}}))
            .await;
        assert_eq!(patched.status, 200, "{path}: {}", patched.text);
        assert_eq!(patched.body["profile"]["first_name"], path.as_str());
    }
    let deleted = app.delete(&format!("/api/v2/end-users/{id}/")).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    let id2 = id_of(&created_slash.body);
    let deleted = app.delete(&format!("/api/v2/end-users/{id2}")).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    assert_eq!(user_count(&app).await, 0);
}

// ---------------------------------------------------------------------------
// 12. Operations and documentation

#[tokio::test]
async fn health_readiness_openapi_and_docs_are_served() {
    let app = TestApp::spawn().await;

    let health = app.raw(Method::GET, "/healthz", &[], None).await;
    assert_eq!(health.status, 200, "{}", health.text);
    let ready = app.raw(Method::GET, "/readyz", &[], None).await;
    assert_eq!(ready.status, 200, "{}", ready.text);

    let openapi = app.raw(Method::GET, "/api/openapi.json", &[], None).await;
    assert_eq!(openapi.status, 200, "{}", openapi.text);
    assert!(
        openapi
            .header("content-type")
            .is_some_and(|ct| ct.starts_with("application/json"))
    );
    let version = openapi.body["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1"), "openapi version {version:?}");
    let paths = openapi.body["paths"]
        .as_object()
        .unwrap_or_else(|| panic!("no paths in {}", openapi.text));
    let collection = paths
        .get("/api/v2/end-users")
        .or_else(|| paths.get("/api/v2/end-users/"))
        .unwrap_or_else(|| panic!("no collection path in {:?}", paths.keys()));
    for method in ["get", "post"] {
        assert!(
            collection.get(method).is_some(),
            "collection lacks {method}"
        );
    }
    let item = paths
        .get("/api/v2/end-users/{end_user_id}")
        .unwrap_or_else(|| panic!("no item path in {:?}", paths.keys()));
    for method in ["get", "patch", "delete"] {
        assert!(item.get(method).is_some(), "item lacks {method}");
    }

    let docs = app.raw(Method::GET, "/api/docs/", &[], None).await;
    assert_eq!(docs.status, 200, "{}", docs.text);
    assert!(
        docs.header("content-type")
            .is_some_and(|ct| ct.starts_with("text/html")),
        "{:?}",
        docs.header("content-type")
    );
    assert!(
        docs.text.to_lowercase().contains("swagger"),
        "{}",
        docs.text
    );
}
