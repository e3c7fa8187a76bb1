//! Channels, conversations and the 24-hour end-user lifecycle over HTTP
//! (DESIGN 1.6 and 1.7): a real server with a real SQLite store, a real
//! webhook receiver, and a `ManualClock` where the orphan rule is driven.
//! Nothing is mocked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::receiver::{self, Received, Receiver};
use common::{TestApp, TestResponse, USERS};
use endusers_core::{Clock, ManualClock, SystemClock, Timestamp};
use endusers_server::ServerConfig;
use endusers_server::webhooks::WebhookSettings;
use endusers_server::workers::maintenance::Maintenance;
use reqwest::Method;
use serde_json::{Value, json};

const CHANNELS: &str = "/api/v2/channels/";
const CONVERSATIONS: &str = "/api/v2/conversations/";
const WEBHOOKS: &str = "/api/v2/webhooks/";

const USER_CREATED: &str = "v1.end_user.created";
const USER_UPDATED: &str = "v1.end_user.updated";
const CONVERSATION_CREATED: &str = "v1.conversation.created";
const CONVERSATION_ENDED: &str = "v1.conversation.ended";

/// How long a test waits for something that should happen promptly.
const PROMPTLY: Duration = Duration::from_secs(5);
/// How long to keep listening, after what was expected has arrived, for
/// deliveries that should not come.
const SETTLE: Duration = Duration::from_millis(300);

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);
const SECOND: Duration = Duration::from_secs(1);

/// 2026-11-27T10:00:00Z: where manual clocks start.
const START: Timestamp = Timestamp::from_micros(1_795_773_600_000_000);

// ------------------------------------------------------------------ helpers

/// Local `http://` receivers allowed, a short timeout and a 50 ms poll.
fn insecure_webhooks() -> WebhookSettings {
    WebhookSettings {
        allow_insecure: true,
        timeout: Duration::from_secs(2),
        poll_interval: Duration::from_millis(50),
        ..WebhookSettings::default()
    }
}

/// The 24 h orphan rule; background upkeep far apart, so only the
/// maintenance passes a test runs itself act on a manual clock.
fn lifecycle_config() -> ServerConfig {
    ServerConfig {
        orphan_ttl: DAY,
        maintenance_interval: Duration::from_secs(3600),
        webhooks: insecure_webhooks(),
        ..ServerConfig::default()
    }
}

async fn manual_app() -> (TestApp, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(START));
    let app = TestApp::spawn_with_clock(lifecycle_config(), clock.clone()).await;
    (app, clock)
}

fn is_hex24(id: &str) -> bool {
    id.len() == 24 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string {key:?} in {value}"))
}

fn id_of(value: &Value) -> String {
    str_of(value, "id").to_owned()
}

fn user_id_of(value: &Value) -> String {
    str_of(value, "end_user_id").to_owned()
}

/// An RFC 3339 UTC timestamp with an explicit `+00:00`.
#[track_caller]
fn timestamp(value: &Value, what: &str) -> Timestamp {
    let raw = value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {value}"));
    assert!(raw.ends_with("+00:00"), "{what} {raw:?} is not in +00:00");
    Timestamp::parse_rfc3339(raw).unwrap_or_else(|| panic!("{what} {raw:?} is not RFC 3339"))
}

#[track_caller]
fn assert_keys(value: &Value, keys: &[&str]) {
    let got: BTreeSet<&str> = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect();
    let expected: BTreeSet<&str> = keys.iter().copied().collect();
    assert_eq!(got, expected, "fields of {value}");
}

fn channel_path(id: &str) -> String {
    format!("{CHANNELS}{id}")
}

fn conversation_path(id: &str) -> String {
    format!("{CONVERSATIONS}{id}")
}

fn end_path(id: &str) -> String {
    format!("{CONVERSATIONS}{id}/end/")
}

/// POSTs a messaging channel as `key`, expects 201, returns its id.
async fn channel_as(app: &TestApp, key: &str, name: &str) -> String {
    let response = app
        .send_as(
            key,
            Method::POST,
            CHANNELS,
            Some(&json!({"name": name, "modality": "messaging"})),
        )
        .await;
    assert_eq!(
        response.status, 201,
        "creating a channel: {}",
        response.text
    );
    id_of(&response.body)
}

async fn channel(app: &TestApp) -> String {
    channel_as(app, &app.key, "web chat").await
}

/// POSTs a conversation, expects 201, returns it.
async fn start(app: &TestApp, body: &Value) -> Value {
    let response = app.post(CONVERSATIONS, body).await;
    assert_eq!(
        response.status, 201,
        "POST {CONVERSATIONS} {body}: {}",
        response.text
    );
    response.body
}

async fn get_conversation(app: &TestApp, id: &str) -> Value {
    let response = app.get(&conversation_path(id)).await;
    assert_eq!(response.status, 200, "GET conversation: {}", response.text);
    response.body
}

/// The user's status code on GET.
async fn user_status(app: &TestApp, id: &str) -> u16 {
    app.get(&TestApp::user_path(id)).await.status
}

/// Subscribes `url` (to `filters`, empty = everything); returns the secret.
async fn subscribe(app: &TestApp, url: &str, filters: &[&str]) -> String {
    let response = app
        .post(WEBHOOKS, &json!({"url": url, "event_filters": filters}))
        .await;
    assert_eq!(response.status, 201, "subscribing: {}", response.text);
    let id = id_of(&response.body);
    let secret = app.get(&format!("{WEBHOOKS}{id}/secret/")).await;
    assert_eq!(secret.status, 200, "GET secret: {}", secret.text);
    str_of(&secret.body, "key").to_owned()
}

/// What an event is about: the conversation for conversation events, the
/// end user for end-user events.
fn subject(event: &Received) -> String {
    let json = event.json();
    let data = &json["data"];
    data["conversation_id"]
        .as_str()
        .or_else(|| data["end_user_id"].as_str())
        .unwrap_or("")
        .to_owned()
}

/// Deliveries to `path`, one per `webhook-id` (delivery is at-least-once).
fn distinct(receiver: &Receiver, path: &str) -> Vec<Received> {
    let mut seen = HashSet::new();
    receiver
        .received(path)
        .into_iter()
        .filter(|r| seen.insert(r.id().to_owned()))
        .collect()
}

/// Waits until `path` has had `n` distinct deliveries, then listens a
/// little longer for any that should not come; returns them all.
async fn settle(receiver: &Receiver, path: &str, n: usize) -> Vec<Received> {
    let deadline = Instant::now() + PROMPTLY;
    while distinct(receiver, path).len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(SETTLE).await;
    let got = distinct(receiver, path);
    assert!(
        got.len() >= n,
        "expected {n} deliveries to {path} within {PROMPTLY:?}, got {:?}",
        summaries(&got)
    );
    got
}

fn summaries(events: &[Received]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = events
        .iter()
        .map(|e| (e.event_type(), subject(e)))
        .collect();
    out.sort();
    out
}

fn sorted(mut pairs: Vec<(&str, &str)>) -> Vec<(String, String)> {
    pairs.sort_unstable();
    pairs
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect()
}

#[track_caller]
fn assert_verifies(secret: &str, event: &Received) {
    if let Err(why) = receiver::verify(secret, event) {
        panic!("delivery {} does not verify: {why}", event.id());
    }
}

/// Follows `next_page_url` from `first`; returns the ids of every page.
async fn channel_pages(app: &TestApp, first: &str) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut url = app.url(first);
    loop {
        assert!(pages.len() <= 20, "pagination does not end");
        let page = app.get_url(&url).await;
        assert_eq!(page.status, 200, "GET {url}: {}", page.text);
        let data = page.body["data"]
            .as_array()
            .unwrap_or_else(|| panic!("no data in {}", page.text));
        pages.push(data.iter().map(id_of).collect());
        match &page.body["meta"]["next_page_url"] {
            Value::Null => return pages,
            Value::String(next) => {
                assert!(
                    next.starts_with(&app.base_url),
                    "next_page_url {next:?} is not absolute on {}",
                    app.base_url
                );
                url.clone_from(next);
            }
            other => panic!("next_page_url is neither a URL nor null: {other}"),
        }
    }
}

// -------------------------------------------------------------------- tests

#[tokio::test]
async fn channels_are_created_validated_read_and_listed_per_agent() {
    let app = TestApp::spawn().await;

    // Create, with float metadata.
    let metadata = json!({"weight": 0.25, "seats": 3, "region": "eu", "beta": true});
    let body = json!({"name": "Help widget", "description": "On the pricing page",
        "modality": "email", "metadata": metadata});
    let created = app.post(CHANNELS, &body).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let channel = created.body.clone();
    assert_keys(
        &channel,
        &[
            "id",
            "name",
            "description",
            "type",
            "modality",
            "metadata",
            "created_at",
            "updated_at",
        ],
    );
    let id = id_of(&channel);
    assert!(is_hex24(&id), "channel id {id:?} is not 24 lowercase hex");
    assert_eq!(channel["name"], "Help widget");
    assert_eq!(channel["description"], "On the pricing page");
    assert_eq!(channel["type"], "custom");
    assert_eq!(channel["modality"], "email");
    assert_eq!(channel["metadata"], metadata);
    timestamp(&channel["created_at"], "created_at");
    timestamp(&channel["updated_at"], "updated_at");

    // Without a description, on the no-slash path, each modality.
    for modality in ["messaging", "voice"] {
        let response = app
            .post(
                "/api/v2/channels",
                &json!({"name": format!("{modality} line"), "modality": modality}),
            )
            .await;
        assert_eq!(response.status, 201, "{modality}: {}", response.text);
        assert_eq!(response.body["modality"], modality);
        assert_eq!(response.body["type"], "custom");
    }

    // Validation, naming the field.
    app.post(CHANNELS, &json!({"modality": "messaging"}))
        .await
        .assert_error(400, "invalid_request", "name");
    app.post(CHANNELS, &json!({"name": "x"}))
        .await
        .assert_error(400, "invalid_request", "modality");
    app.post(CHANNELS, &json!({"name": "x", "modality": "sms"}))
        .await
        .assert_error(400, "invalid_request", "modality");
    app.post(
        CHANNELS,
        &json!({"name": "x", "modality": "voice", "metadata": {"tags": ["a", "b"]}}),
    )
    .await
    .assert_error(400, "invalid_request", "metadata.");

    // Read one, with and without the slash.
    for path in [channel_path(&id), format!("{}/", channel_path(&id))] {
        let response = app.get(&path).await;
        assert_eq!(response.status, 200, "GET {path}: {}", response.text);
        assert_eq!(response.body, channel, "GET {path}");
    }
    for unknown in [
        "0123456789abcdef01234567",
        "not-an-id",
        "0123456789ABCDEF01234567",
        "0123",
    ] {
        app.get(&channel_path(unknown))
            .await
            .assert_error(404, "not_found", "");
    }

    // Ten more, then every page size visits each once, in id order.
    for n in 0..7 {
        channel_as(&app, &app.key, &format!("channel {n}")).await;
    }
    let all = channel_pages(&app, CHANNELS).await;
    assert_eq!(all.len(), 1, "the default limit holds 10 on one page");
    let all = all.concat();
    assert_eq!(all.len(), 10, "{all:?}");
    let mut in_order = all.clone();
    in_order.sort();
    assert_eq!(all, in_order, "the list is in id order");
    for (limit, pages) in [(1, 10), (7, 2)] {
        let got = channel_pages(&app, &format!("{CHANNELS}?limit={limit}")).await;
        assert_eq!(got.len(), pages, "limit {limit}: {got:?}");
        assert!(
            got.iter().all(|p| p.len() <= limit && !p.is_empty()),
            "limit {limit}: {got:?}"
        );
        assert_eq!(got.concat(), all, "limit {limit} visits each once in order");
    }

    // Another agent's channel is invisible.
    let other = app.new_agent_key("other").await;
    let theirs = channel_as(&app, &other, "theirs").await;
    app.get(&channel_path(&theirs))
        .await
        .assert_error(404, "not_found", "");
    app.send_as(&other, Method::GET, &channel_path(&id), None)
        .await
        .assert_error(404, "not_found", "");
    let ours = channel_pages(&app, CHANNELS).await.concat();
    assert_eq!(ours, all, "another agent's channel is absent from the list");
    let list = app.send_as(&other, Method::GET, CHANNELS, None).await;
    assert_eq!(list.status, 200, "{}", list.text);
    let listed: Vec<String> = list.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(listed, [theirs]);
}

#[tokio::test]
async fn conversations_start_read_merge_metadata_and_end() {
    let app = TestApp::spawn().await;
    let channel_id = channel(&app).await;

    // With an existing user.
    let user = app
        .create_user(&json!({"profile": {"first_name": "Ada"}}))
        .await;
    let user_id = user_id_of(&user);
    assert!(
        user["profile"]["system_properties"]["last_conversation_at"].is_null(),
        "{user}"
    );
    let metadata = json!({"topic": "billing", "priority": 2, "score": 0.5});
    let conversation = start(
        &app,
        &json!({"channel_id": channel_id, "end_user_id": user_id, "metadata": metadata}),
    )
    .await;
    assert_keys(
        &conversation,
        &[
            "id",
            "channel_id",
            "end_user_id",
            "status",
            "metadata",
            "created_at",
            "updated_at",
        ],
    );
    let id = id_of(&conversation);
    assert!(is_hex24(&id), "conversation id {id:?}");
    assert_eq!(conversation["channel_id"], channel_id.as_str());
    assert_eq!(conversation["end_user_id"], user_id.as_str());
    assert_eq!(conversation["status"], "active");
    assert_eq!(conversation["metadata"], metadata);
    timestamp(&conversation["created_at"], "created_at");
    timestamp(&conversation["updated_at"], "updated_at");

    // The user now shows when, and its updated_at did not move.
    let after = app.get_user(&user_id).await;
    let last = timestamp(
        &after["profile"]["system_properties"]["last_conversation_at"],
        "last_conversation_at",
    );
    let user_created = timestamp(&user["created_at"], "the user's created_at");
    assert!(
        user_created <= last && last <= SystemClock.now(),
        "last_conversation_at {last:?} is not between the user's creation and now"
    );
    assert_eq!(
        after["updated_at"], user["updated_at"],
        "last_conversation_at is a system property: updated_at must not move"
    );
    assert_eq!(after["profile"]["first_name"], "Ada");

    // Without a user: a new one, with last_conversation_at.
    let made = start(&app, &json!({"channel_id": channel_id})).await;
    let made_user = str_of(&made, "end_user_id").to_owned();
    assert!(is_hex24(&made_user), "{made}");
    assert_ne!(made_user, user_id);
    let new_user = app.get_user(&made_user).await;
    timestamp(
        &new_user["profile"]["system_properties"]["last_conversation_at"],
        "last_conversation_at of a user made by a conversation",
    );
    assert_eq!(made["status"], "active");
    assert_eq!(made["metadata"], json!({}));

    // Refusals change nothing.
    let users_before = app.list_all().await.len();
    assert_eq!(users_before, 2);
    let unknown = "0123456789abcdef01234567";
    for (body, status, kind, prefix) in [
        (json!({"channel_id": unknown}), 404, "not_found", ""),
        (
            json!({"channel_id": unknown, "end_user_id": user_id}),
            404,
            "not_found",
            "",
        ),
        (
            json!({"channel_id": channel_id, "end_user_id": unknown}),
            404,
            "not_found",
            "",
        ),
        (json!({"channel_id": "nope"}), 404, "not_found", ""),
        (
            json!({"channel_id": channel_id, "end_user_id": "not-a-user"}),
            404,
            "not_found",
            "",
        ),
        (
            json!({"channel_id": channel_id.to_uppercase(), "end_user_id": user_id}),
            404,
            "not_found",
            "",
        ),
        (
            json!({"end_user_id": user_id}),
            400,
            "invalid_request",
            "channel_id",
        ),
        (json!({}), 400, "invalid_request", "channel_id"),
    ] {
        app.post(CONVERSATIONS, &body)
            .await
            .assert_error(status, kind, prefix);
    }
    assert_eq!(
        app.list_all().await.len(),
        users_before,
        "a refused conversation made no user"
    );

    // Read it, with and without the slash.
    for path in [
        conversation_path(&id),
        format!("{}/", conversation_path(&id)),
    ] {
        let response = app.get(&path).await;
        assert_eq!(response.status, 200, "GET {path}: {}", response.text);
        assert_eq!(response.body, conversation, "GET {path}");
    }
    for malformed in [unknown, "nope", "0123456789ABCDEF01234567"] {
        app.get(&conversation_path(malformed))
            .await
            .assert_error(404, "not_found", "");
    }

    // PATCH merges; null removes a key; floats are fine.
    let patched = app
        .patch(
            &conversation_path(&id),
            &json!({"metadata": {"priority": null, "score": 0.75, "lang": "en"}}),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    let merged = json!({"topic": "billing", "score": 0.75, "lang": "en"});
    assert_eq!(patched.body["metadata"], merged, "{}", patched.text);
    assert_eq!(patched.body["id"], id.as_str());
    assert_eq!(patched.body["status"], "active");
    assert_eq!(get_conversation(&app, &id).await["metadata"], merged);

    // Refused patches change nothing: no metadata, a nested value, a
    // merge that would pass 4 KB (each request under the body cap).
    let before = get_conversation(&app, &id).await;
    app.patch(&conversation_path(&id), &json!({}))
        .await
        .assert_error(400, "invalid_request", "metadata");
    app.patch(
        &conversation_path(&id),
        &json!({"metadata": {"topic": null, "bad": [1]}}),
    )
    .await
    .assert_error(400, "invalid_request", "metadata.");
    assert_eq!(get_conversation(&app, &id).await, before);
    let big = app
        .patch(
            &conversation_path(&id),
            &json!({"metadata": {"a": "x".repeat(3000)}}),
        )
        .await;
    assert_eq!(big.status, 200, "a 3 KB merge fits: {}", big.text);
    let before = get_conversation(&app, &id).await;
    app.patch(
        &conversation_path(&id),
        &json!({"metadata": {"topic": null, "b": "y".repeat(1500)}}),
    )
    .await
    .assert_error(400, "invalid_request", "metadata");
    assert_eq!(
        get_conversation(&app, &id).await,
        before,
        "a merge over 4 KB changes nothing"
    );

    // "metadata": null clears; the no-slash path works.
    let cleared = app
        .patch(
            &format!("/api/v2/conversations/{id}"),
            &json!({"metadata": null}),
        )
        .await;
    assert_eq!(cleared.status, 200, "{}", cleared.text);
    assert_eq!(cleared.body["metadata"], json!({}));
    assert_eq!(get_conversation(&app, &id).await["metadata"], json!({}));

    // Another agent: 404 for everything, and nothing changes.
    let other = app.new_agent_key("other").await;
    let theirs = channel_as(&app, &other, "theirs").await;
    let before = get_conversation(&app, &id).await;
    for (method, path, body) in [
        (Method::GET, conversation_path(&id), None),
        (
            Method::PATCH,
            conversation_path(&id),
            Some(json!({"metadata": {"x": 1}})),
        ),
        (Method::POST, end_path(&id), None),
        (
            Method::POST,
            CONVERSATIONS.to_owned(),
            Some(json!({"channel_id": channel_id})),
        ),
        (
            Method::POST,
            CONVERSATIONS.to_owned(),
            Some(json!({"channel_id": channel_id, "end_user_id": user_id})),
        ),
        (
            Method::POST,
            CONVERSATIONS.to_owned(),
            Some(json!({"channel_id": theirs, "end_user_id": user_id})),
        ),
    ] {
        let response = app
            .send_as(&other, method.clone(), &path, body.as_ref())
            .await;
        assert_eq!(
            response.status, 404,
            "{method} {path} {body:?} as another agent: {}",
            response.text
        );
        response.assert_error(404, "not_found", "");
    }
    assert_eq!(get_conversation(&app, &id).await, before);
    assert_eq!(
        app.get_user(&user_id).await["profile"]["system_properties"],
        after["profile"]["system_properties"],
        "another agent's refused conversation did not touch the user"
    );
    let other_users = app.send_as(&other, Method::GET, USERS, None).await;
    assert_eq!(other_users.status, 200, "{}", other_users.text);
    assert_eq!(
        other_users.body["data"],
        json!([]),
        "refused conversations made no user for the other agent"
    );

    // End it; ending again is a conflict.
    let ended = app.send(Method::POST, &end_path(&id), None).await;
    assert_eq!(ended.status, 200, "{}", ended.text);
    assert_eq!(
        ended.body,
        json!({"message": "Conversation ended successfully."})
    );
    let now = get_conversation(&app, &id).await;
    assert_eq!(now["status"], "ended");
    assert_eq!(now["end_user_id"], user_id.as_str());
    app.send(Method::POST, &end_path(&id), None)
        .await
        .assert_error(409, "conflict", "");
    assert_eq!(get_conversation(&app, &id).await["status"], "ended");

    // The no-slash paths: start and end.
    let plain = app
        .post(
            "/api/v2/conversations",
            &json!({"channel_id": channel_id, "end_user_id": user_id}),
        )
        .await;
    assert_eq!(plain.status, 201, "{}", plain.text);
    let plain_id = id_of(&plain.body);
    let ended = app
        .send(
            Method::POST,
            &format!("/api/v2/conversations/{plain_id}/end"),
            None,
        )
        .await;
    assert_eq!(ended.status, 200, "{}", ended.text);
    assert_eq!(get_conversation(&app, &plain_id).await["status"], "ended");
    app.send(Method::POST, &end_path(unknown), None)
        .await
        .assert_error(404, "not_found", "");
    app.patch(&conversation_path(unknown), &json!({"metadata": {}}))
        .await
        .assert_error(404, "not_found", "");
}

#[tokio::test]
async fn conversation_events_are_delivered_and_filtered() {
    let app = TestApp::spawn_with(ServerConfig {
        webhooks: insecure_webhooks(),
        ..ServerConfig::default()
    })
    .await;
    let receiver = Receiver::start().await;
    let all_secret = subscribe(&app, &receiver.url("/ok/all"), &[]).await;
    let ended_secret = subscribe(&app, &receiver.url("/ok/ended"), &[CONVERSATION_ENDED]).await;

    // The catalog has all four.
    let types = app.get(&format!("{WEBHOOKS}event-types/")).await;
    assert_eq!(types.status, 200, "{}", types.text);
    let listed = types.body["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data in {}", types.text));
    for name in [
        USER_CREATED,
        USER_UPDATED,
        CONVERSATION_CREATED,
        CONVERSATION_ENDED,
    ] {
        let entry = listed
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("{name} is not listed: {}", types.text));
        assert!(
            entry["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{entry}"
        );
    }

    let channel_id = channel(&app).await;
    let user = app
        .create_user(&json!({"profile": {"first_name": "Ada"}}))
        .await;
    let user_id = user_id_of(&user);

    // With an existing user: conversation.created only.
    let first = start(
        &app,
        &json!({"channel_id": channel_id, "end_user_id": user_id, "metadata": {"topic": "billing", "w": 1.5}}),
    )
    .await;
    let first_id = id_of(&first);
    // A metadata change is not an event.
    let patched = app
        .patch(
            &conversation_path(&first_id),
            &json!({"metadata": {"topic": "refund"}}),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    // Without a user: end_user.created and conversation.created.
    let second = start(&app, &json!({"channel_id": channel_id})).await;
    let second_id = id_of(&second);
    let made_user = str_of(&second, "end_user_id").to_owned();
    // Ending.
    let ended = app.send(Method::POST, &end_path(&first_id), None).await;
    assert_eq!(ended.status, 200, "{}", ended.text);
    // A last event, so that anything queued before it has had its chance.
    let sentinel = user_id_of(&app.create_user(&json!({})).await);

    let expected = sorted(vec![
        (USER_CREATED, &user_id),
        (CONVERSATION_CREATED, &first_id),
        (USER_CREATED, &made_user),
        (CONVERSATION_CREATED, &second_id),
        (CONVERSATION_ENDED, &first_id),
        (USER_CREATED, &sentinel),
    ]);
    let got = settle(&receiver, "/ok/all", expected.len()).await;
    assert_eq!(
        summaries(&got),
        expected,
        "exactly these events (no v1.end_user.updated for last_conversation_at, none for a metadata PATCH)"
    );
    for event in &got {
        assert_verifies(&all_secret, event);
    }

    let payload = |kind: &str, subject_id: &str| {
        got.iter()
            .find(|e| e.event_type() == kind && subject(e) == subject_id)
            .unwrap()
            .json()
    };
    let created = payload(CONVERSATION_CREATED, &first_id);
    assert_eq!(
        created["data"],
        json!({
            "conversation_id": first_id,
            "channel_id": channel_id,
            "end_user_id": user_id,
            "metadata": {"topic": "billing", "w": 1.5},
            "created_at": first["created_at"],
        }),
        "v1.conversation.created data"
    );
    let created = payload(CONVERSATION_CREATED, &second_id);
    assert_eq!(
        created["data"],
        json!({
            "conversation_id": second_id,
            "channel_id": channel_id,
            "end_user_id": made_user,
            "metadata": {},
            "created_at": second["created_at"],
        }),
        "v1.conversation.created data for a new user"
    );
    let made = payload(USER_CREATED, &made_user);
    assert_eq!(made["data"]["end_user_id"], made_user.as_str());
    assert_eq!(made["tags"], json!([made_user]));
    let end = payload(CONVERSATION_ENDED, &first_id);
    assert_eq!(end["data"]["conversation_id"], first_id.as_str());
    assert_eq!(end["data"]["channel_id"], channel_id.as_str());
    assert_eq!(end["data"]["end_user_id"], user_id.as_str());

    // The filtered endpoint got the ended event only.
    let filtered = settle(&receiver, "/ok/ended", 1).await;
    assert_eq!(
        summaries(&filtered),
        sorted(vec![(CONVERSATION_ENDED, &first_id)]),
        "an endpoint filtered to {CONVERSATION_ENDED} gets only that"
    );
    assert_verifies(&ended_secret, &filtered[0]);
}

#[tokio::test]
async fn users_no_conversation_claims_within_24_hours_are_deleted() {
    let (app, clock) = manual_app().await;
    let receiver = Receiver::start().await;
    subscribe(&app, &receiver.url("/ok/all"), &[]).await;
    let channel_id = channel(&app).await;
    let mut maintenance = Maintenance::new();

    // t = 0: an orphan-to-be with sensitive metadata; one that a
    // conversation will claim at 23 h; one made by a conversation; one
    // with an external id, claimed at 1 h.
    let orphan = user_id_of(
        &app.create_user(&json!({"profile": {"first_name": "Orphan",
            "sensitive_metadata": {"fields": {"auth_token": "tok-orphan-1"}}}}))
            .await,
    );
    let late = user_id_of(&app.create_user(&json!({})).await);
    let by_conversation = str_of(
        &start(&app, &json!({"channel_id": channel_id})).await,
        "end_user_id",
    )
    .to_owned();
    let external = user_id_of(&app.create_user(&json!({"external_id": "ext-kept"})).await);
    assert_eq!(
        app.sensitive_values(&orphan)
            .await
            .keys()
            .collect::<Vec<_>>(),
        ["auth_token"]
    );

    // 1 h: the external-id user gets a conversation; POSTing its
    // external id again returns it unchanged.
    clock.advance(HOUR);
    start(
        &app,
        &json!({"channel_id": channel_id, "end_user_id": external}),
    )
    .await;
    let again = app.post(USERS, &json!({"external_id": "ext-kept"})).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(user_id_of(&again.body), external);
    assert_eq!(again.body, app.get_user(&external).await);

    // 23 h: the late user is claimed; the orphan gets a fresh sensitive
    // value (expiring at 47 h), which must not keep it alive.
    clock.advance(22 * HOUR);
    start(
        &app,
        &json!({"channel_id": channel_id, "end_user_id": late}),
    )
    .await;
    let patched = app
        .patch(
            &TestApp::user_path(&orphan),
            &json!({"profile": {"sensitive_metadata": {"fields": {"late_token": "tok-late-2"}}}}),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(
        maintenance
            .run_once(&app.state.upkeep())
            .await
            .orphans_deleted,
        0
    );

    // 24 h − 1 s: everyone is still here.
    clock.advance(HOUR - SECOND);
    let report = maintenance.run_once(&app.state.upkeep()).await;
    assert_eq!(report.orphans_deleted, 0, "{report:?}");
    for id in [&orphan, &late, &by_conversation, &external] {
        assert_eq!(user_status(&app, id).await, 200, "{id} at 24h-1s");
    }
    assert_eq!(
        app.sensitive_values(&orphan)
            .await
            .keys()
            .collect::<Vec<_>>(),
        ["auth_token", "late_token"]
    );

    // 24 h + 1 s: the orphan goes, with every sensitive value, including
    // the one that would live until 47 h.
    clock.advance(2 * SECOND);
    assert!(
        !app.store
            .count_sensitive_values_by_key()
            .await
            .unwrap()
            .is_empty(),
        "the late value is still stored before the pass"
    );
    let report = maintenance.run_once(&app.state.upkeep()).await;
    assert_eq!(report.orphans_deleted, 1, "{report:?}");
    app.get(&TestApp::user_path(&orphan))
        .await
        .assert_error(404, "not_found", "");
    assert!(app.sensitive_values(&orphan).await.is_empty());
    assert!(
        app.store
            .count_sensitive_values_by_key()
            .await
            .unwrap()
            .is_empty(),
        "the orphan's sensitive values are deleted with it"
    );
    for id in [&late, &by_conversation, &external] {
        assert_eq!(user_status(&app, id).await, 200, "{id} at 24h+1s");
    }

    // 48 h + 1 s: the claimed users stay.
    clock.advance(DAY);
    let report = maintenance.run_once(&app.state.upkeep()).await;
    assert_eq!(report.orphans_deleted, 0, "{report:?}");
    for id in [&late, &by_conversation, &external] {
        assert_eq!(user_status(&app, id).await, 200, "{id} at 48h+1s");
    }
    let again = app.post(USERS, &json!({"external_id": "ext-kept"})).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(user_id_of(&again.body), external);
    let left: BTreeSet<String> = app.list_all().await.iter().map(user_id_of).collect();
    let expected: BTreeSet<String> = [&late, &by_conversation, &external]
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(left, expected);

    // No event for the deletion (nor for the sensitive change or the
    // claims): a conversation on the late user is the last event.
    let last = id_of(
        &start(
            &app,
            &json!({"channel_id": channel_id, "end_user_id": late}),
        )
        .await,
    );
    // Four users created, four conversations started.
    let got = settle(&receiver, "/ok/all", 8).await;
    assert!(
        got.iter().any(|e| subject(e) == last),
        "the last conversation's event arrived: {:?}",
        summaries(&got)
    );
    let updated: Vec<_> = got
        .iter()
        .filter(|e| e.event_type() == USER_UPDATED)
        .map(Received::json)
        .collect();
    assert!(updated.is_empty(), "unexpected updated events: {updated:?}");
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for event in &got {
        *kinds.entry(event.event_type()).or_default() += 1;
    }
    assert_eq!(
        kinds,
        BTreeMap::from([
            (USER_CREATED.to_owned(), 4),
            (CONVERSATION_CREATED.to_owned(), 4)
        ]),
        "events: {:?}",
        summaries(&got)
    );
    assert!(
        got.iter()
            .filter(|e| e.end_user_id() == orphan)
            .all(|e| e.event_type() == USER_CREATED),
        "the orphan's deletion is not announced"
    );
}

/// What one conversation request answered.
struct Attempt {
    user: String,
    status: u16,
    body: Value,
    text: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sweeper_and_conversations_racing_for_the_same_users_never_both_win() {
    const USERS_N: usize = 300;
    const WORKERS: usize = 8;
    /// The sweeper starts once this many conversations have answered.
    const HEAD_START: usize = 100;

    let clock = Arc::new(ManualClock::new(START));
    let app = Arc::new(TestApp::spawn_with_clock(lifecycle_config(), clock.clone()).await);
    let channel_id = channel(&app).await;
    let mut users = Vec::with_capacity(USERS_N);
    for n in 0..USERS_N {
        let user = app
            .create_user(&json!({"profile": {"first_name": format!("u{n}")}}))
            .await;
        users.push(user_id_of(&user));
    }
    clock.advance(DAY + SECOND);
    let started = Instant::now();

    // Conversations for every user, WORKERS at a time, in order.
    let users = Arc::new(users);
    let next = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (app, users, next, answered) = (
            Arc::clone(&app),
            Arc::clone(&users),
            Arc::clone(&next),
            Arc::clone(&answered),
        );
        let channel_id = channel_id.clone();
        workers.push(tokio::spawn(async move {
            let mut attempts = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(user) = users.get(i) else {
                    return attempts;
                };
                let response: TestResponse = app
                    .post(
                        CONVERSATIONS,
                        &json!({"channel_id": channel_id, "end_user_id": user}),
                    )
                    .await;
                answered.fetch_add(1, Ordering::SeqCst);
                attempts.push(Attempt {
                    user: user.clone(),
                    status: response.status,
                    body: response.body,
                    text: response.text,
                });
            }
        }));
    }
    // The sweeper, once the conversations are under way, until a pass
    // deletes nothing.
    let sweeper = {
        let (state, answered) = (app.state.clone(), Arc::clone(&answered));
        tokio::spawn(async move {
            let deadline = Instant::now() + PROMPTLY;
            while answered.load(Ordering::SeqCst) < HEAD_START && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let mut maintenance = Maintenance::new();
            let (mut deleted, mut passes) = (0, 0);
            loop {
                let report = maintenance.run_once(&state.upkeep()).await;
                passes += 1;
                deleted += report.orphans_deleted;
                if report.orphans_deleted == 0 {
                    return (deleted, passes);
                }
            }
        })
    };
    let mut attempts = Vec::new();
    for worker in workers {
        attempts.extend(worker.await.expect("a conversation worker"));
    }
    let (swept, passes) = sweeper.await.expect("the sweeper");
    let raced_for = started.elapsed();
    assert_eq!(attempts.len(), USERS_N);

    // Every answer is 201 or 404, and agrees with what is stored.
    let mut started_ok = 0;
    let mut refused = 0;
    let mut breaches = Vec::new();
    for attempt in &attempts {
        let status = user_status(&app, &attempt.user).await;
        match attempt.status {
            201 => {
                started_ok += 1;
                let id = id_of(&attempt.body);
                let stored = get_conversation(&app, &id).await;
                if status != 200 {
                    breaches.push(format!(
                        "conversation {id} answered 201 for user {} but GET user is {status}",
                        attempt.user
                    ));
                }
                if stored["end_user_id"] != attempt.user.as_str() {
                    breaches.push(format!(
                        "conversation {id} points to {} instead of {}",
                        stored["end_user_id"], attempt.user
                    ));
                }
            }
            404 => {
                refused += 1;
                let message = attempt.body["errors"][0]["message"].as_str().unwrap_or("");
                if attempt.body["errors"][0]["type"] != "not_found" || !message.contains("end user")
                {
                    breaches.push(format!(
                        "user {}: a 404 that is not 'end user not found': {}",
                        attempt.user, attempt.text
                    ));
                }
                if status != 404 {
                    breaches.push(format!(
                        "user {}: conversation refused with 404 but GET user is {status}",
                        attempt.user
                    ));
                }
            }
            other => breaches.push(format!(
                "user {}: conversation answered {other}: {}",
                attempt.user, attempt.text
            )),
        }
    }
    eprintln!(
        "race: {started_ok} conversations started, {refused} refused, {swept} users swept \
         in {passes} passes, in {raced_for:?}"
    );
    assert!(
        breaches.is_empty(),
        "{} breaches: {breaches:#?}",
        breaches.len()
    );
    assert_eq!(
        started_ok + swept,
        USERS_N,
        "each user is either claimed or deleted ({started_ok} started, {swept} swept)"
    );
    assert_eq!(refused, swept, "every refusal is a deleted user");
    let left: BTreeSet<String> = app.list_all().await.iter().map(user_id_of).collect();
    let claimed: BTreeSet<String> = attempts
        .iter()
        .filter(|a| a.status == 201)
        .map(|a| a.user.clone())
        .collect();
    assert_eq!(left, claimed, "exactly the claimed users remain");

    // The claimed users are no orphans: a day later nothing more goes.
    clock.advance(DAY);
    let report = Maintenance::new().run_once(&app.state.upkeep()).await;
    assert_eq!(report.orphans_deleted, 0, "{report:?}");
    assert_eq!(app.list_all().await.len(), claimed.len());
}

#[tokio::test]
async fn deleting_a_user_unlinks_its_conversations() {
    let app = TestApp::spawn().await;
    let channel_id = channel(&app).await;
    let user_id = user_id_of(&app.create_user(&json!({})).await);
    let conversation = start(
        &app,
        &json!({"channel_id": channel_id, "end_user_id": user_id}),
    )
    .await;
    let id = id_of(&conversation);
    let deleted = app.delete(&TestApp::user_path(&user_id)).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    app.get(&TestApp::user_path(&user_id))
        .await
        .assert_error(404, "not_found", "");
    let now = get_conversation(&app, &id).await;
    assert!(
        now.get("end_user_id").is_some_and(Value::is_null),
        "end_user_id must be present and null: {now}"
    );
    assert_eq!(now["channel_id"], channel_id.as_str());
    assert_eq!(now["status"], "active");
    // The conversation still ends normally.
    let ended = app.send(Method::POST, &end_path(&id), None).await;
    assert_eq!(ended.status, 200, "{}", ended.text);
}
