//! Webhook delivery over HTTP, end to end: a real server with a real SQLite
//! store delivers to a real receiver (`common::receiver`) that records what
//! arrives and answers as each test programs it. Nothing is mocked; only
//! the timings (retry schedule, timeout, poll) are shrunk by configuration.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use base64::Engine;
use common::receiver::{self, Received, Receiver, Reply};
use common::untrusted_tls::UntrustedTls;
use common::{TestApp, USERS};
use endusers_core::{Clock, RetrySchedule, SystemClock, Timestamp};
use endusers_server::ServerConfig;
use endusers_server::webhooks::WebhookSettings;
use reqwest::Method;
use serde_json::{Value, json};

const WEBHOOKS: &str = "/api/v2/webhooks/";
const CREATED: &str = "v1.end_user.created";
const UPDATED: &str = "v1.end_user.updated";
/// How long a test waits for something that should happen promptly.
const PROMPTLY: Duration = Duration::from_secs(5);
/// Scheduling slack allowed on top of a retry's jittered wait: the
/// dispatcher's poll (50 ms here), the recording of the previous attempt,
/// and a loaded test machine.
const SLACK: Duration = Duration::from_millis(400);
/// Clock granularity between the server's clock and the receiver's
/// `Instant`s, for lower bounds.
const EPSILON: Duration = Duration::from_millis(5);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Local `http://` receivers allowed, a 1 s timeout, a 50 ms poll, and
/// this retry schedule (milliseconds).
fn settings(schedule_ms: &[u64]) -> WebhookSettings {
    WebhookSettings {
        allow_insecure: true,
        timeout: Duration::from_secs(1),
        retry_schedule: RetrySchedule::new(schedule_ms.iter().map(|&n| ms(n)).collect()),
        poll_interval: ms(50),
        ..WebhookSettings::default()
    }
}

async fn spawn(webhooks: WebhookSettings) -> TestApp {
    TestApp::spawn_with(ServerConfig {
        webhooks,
        ..ServerConfig::default()
    })
    .await
}

fn webhook_path(id: &str) -> String {
    format!("{WEBHOOKS}{id}")
}

fn id_of(value: &Value) -> String {
    value["id"]
        .as_str()
        .or_else(|| value["end_user_id"].as_str())
        .unwrap_or_else(|| panic!("no id in {value}"))
        .to_owned()
}

/// POSTs an endpoint, expects 201, returns it.
async fn create_endpoint(app: &TestApp, body: &Value) -> Value {
    let response = app.post(WEBHOOKS, body).await;
    assert_eq!(response.status, 201, "creating {body}: {}", response.text);
    response.body
}

async fn secret(app: &TestApp, id: &str) -> String {
    let response = app.get(&format!("{WEBHOOKS}{id}/secret/")).await;
    assert_eq!(response.status, 200, "GET secret: {}", response.text);
    let key = response.body["key"]
        .as_str()
        .unwrap_or_else(|| panic!("no key in {}", response.text))
        .to_owned();
    assert!(key.starts_with("whsec_"), "{key}");
    key
}

/// An endpoint for every event type at `url`: (id, secret).
async fn endpoint(app: &TestApp, url: &str) -> (String, String) {
    let created = create_endpoint(app, &json!({ "url": url })).await;
    let id = id_of(&created);
    let secret = secret(app, &id).await;
    (id, secret)
}

async fn get_webhook(app: &TestApp, id: &str) -> Value {
    let response = app.get(&webhook_path(id)).await;
    assert_eq!(response.status, 200, "GET webhook: {}", response.text);
    response.body
}

/// Polls the endpoint every 10 ms until `done` holds; panics with the last
/// state seen when `timeout` passes first.
async fn wait_webhook(
    app: &TestApp,
    id: &str,
    timeout: Duration,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let hook = get_webhook(app, id).await;
        if done(&hook) {
            return hook;
        }
        assert!(
            Instant::now() < deadline,
            "the endpoint never became {what} within {timeout:?}; last seen: {hook}"
        );
        tokio::time::sleep(ms(10)).await;
    }
}

/// The endpoint's attempt log, newest first (first page).
async fn attempts(app: &TestApp, id: &str) -> Vec<Value> {
    let response = app.get(&format!("{WEBHOOKS}{id}/attempts/")).await;
    assert_eq!(response.status, 200, "GET attempts: {}", response.text);
    response.body["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data in {}", response.text))
        .clone()
}

/// Waits until the attempt log has at least `n` entries.
async fn wait_attempts(app: &TestApp, id: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + PROMPTLY;
    loop {
        let log = attempts(app, id).await;
        if log.len() >= n {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "expected {n} attempts in the log within {PROMPTLY:?}, got {log:?}"
        );
        tokio::time::sleep(ms(10)).await;
    }
}

/// An event's `data` without the `version` extension: the user as the API
/// shows it.
fn user_in(event: &Received) -> Value {
    let mut data = event.json()["data"].clone();
    if let Some(object) = data.as_object_mut() {
        object.remove("version");
    }
    data
}

fn version_in(event: &Received) -> i64 {
    event.json()["data"]["version"]
        .as_i64()
        .unwrap_or_else(|| panic!("no integer data.version in {}", event.json()))
}

/// The space-separated entries of `webhook-signature`.
fn signatures(event: &Received) -> Vec<String> {
    event
        .header("webhook-signature")
        .unwrap_or("")
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A copy of `event` whose signature headers carry only `signature`.
fn with_only_signature(event: &Received, signature: &str) -> Received {
    let mut copy = event.clone();
    for name in ["webhook-signature", "svix-signature"] {
        copy.headers.insert(name, signature.parse().unwrap());
    }
    copy
}

#[track_caller]
fn assert_verifies(secret: &str, event: &Received) {
    if let Err(why) = receiver::verify(secret, event) {
        panic!(
            "delivery {} does not verify: {why}; headers {:?}",
            event.id(),
            event.headers
        );
    }
}

/// Time between consecutive arrivals.
fn gaps(events: &[Received]) -> Vec<Duration> {
    events.windows(2).map(|w| w[1].at - w[0].at).collect()
}

/// A retry's wait `base`, jittered ±20 %, plus scheduling slack.
#[track_caller]
fn assert_gap(gap: Duration, base: Duration, what: &str) {
    let low = base.mul_f64(0.8).saturating_sub(EPSILON);
    let high = base.mul_f64(1.2) + SLACK;
    assert!(
        gap >= low && gap <= high,
        "{what}: {gap:?} between attempts, expected {low:?}..={high:?} (wait {base:?} ±20 % + slack)"
    );
}

// ---------------------------------------------------------------------------
// 1. Signatures and the payload

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_is_signed_and_carries_the_user_as_the_api_shows_it() {
    let receiver = Receiver::start().await;
    let app = spawn(settings(&[0])).await;
    let path = "/ok/signed";
    let (_, secret) = endpoint(&app, &receiver.url(path)).await;

    let before = SystemClock.now();
    let user = app
        .create_user(&json!({
            "external_id": "Crm-1",
            "profile": {
                "first_name": "Maria", "email": "maria@example.com", "language": "pt-BR",
                "metadata": {"plan": "pro", "seats": 40, "vip": true},
                "sensitive_metadata": {"fields": {"auth_token": "tok-never-sent-42"}}
            }
        }))
        .await;
    let user_id = id_of(&user);
    let got = receiver.wait_count(path, 1, PROMPTLY).await;
    let after = SystemClock.now();
    let event = &got[0];

    assert_verifies(&secret, event);
    // The check can fail: a changed body or another secret does not verify.
    let mut tampered = event.clone();
    tampered.body = event.body.iter().copied().chain([b' ']).collect();
    assert!(receiver::verify(&secret, &tampered).is_err());
    let other = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode([9u8; 24])
    );
    assert!(receiver::verify(&other, event).is_err());

    assert!(
        event.id().starts_with("msg_"),
        "webhook-id {:?} should start with msg_",
        event.id()
    );
    assert!(
        event
            .header("content-type")
            .is_some_and(|ct| ct.starts_with("application/json")),
        "content-type {:?}",
        event.header("content-type")
    );
    // Host names the receiver as its URL does: the port is not http's own.
    let authority = receiver.url("").trim_start_matches("http://").to_owned();
    assert_eq!(event.header("host"), Some(authority.as_str()));
    let sent_at: i64 = event.header("webhook-timestamp").unwrap().parse().unwrap();
    let now_secs = SystemClock.now().as_micros() / 1_000_000;
    assert!(
        (sent_at - now_secs).abs() <= 60,
        "webhook-timestamp {sent_at} is far from now ({now_secs})"
    );
    assert_eq!(signatures(event).len(), 1, "one secret, one signature");
    assert!(signatures(event)[0].starts_with("v1,"));

    let body = event.json();
    let mut keys: Vec<&str> = body
        .as_object()
        .expect("a JSON object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["data", "tags", "timestamp", "type"], "{body}");
    assert_eq!(body["type"], CREATED);
    assert_eq!(body["tags"], json!([user_id]));
    let mut expected = app.get_user(&user_id).await;
    expected["version"] = json!(1);
    assert_eq!(
        body["data"], expected,
        "data = the user as GET shows it + version"
    );

    let timestamp = body["timestamp"].as_str().expect("a string timestamp");
    let fraction = timestamp
        .get(19..)
        .and_then(|rest| rest.strip_prefix('.'))
        .unwrap_or("");
    let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
    let offset = &fraction[digits..];
    assert!(
        digits == 3 && (offset == "+00:00" || offset == "Z"),
        "timestamp {timestamp:?}: RFC 3339 in UTC with millisecond precision"
    );
    let parsed = Timestamp::parse_rfc3339(timestamp).expect("an RFC 3339 timestamp");
    assert!(
        parsed.as_millis() >= before.as_millis() && parsed <= after,
        "timestamp {timestamp} is not the time of the change ({} .. {})",
        before.to_rfc3339(),
        after.to_rfc3339()
    );

    let text = String::from_utf8_lossy(&event.body);
    assert!(
        !text.contains("tok-never-sent-42") && !text.contains("auth_token"),
        "sensitive metadata leaked into a webhook: {text}"
    );
}

// ---------------------------------------------------------------------------
// 2. Secret rotation

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_rotation_deliveries_are_signed_by_the_new_and_the_old_secret() {
    let receiver = Receiver::start().await;
    let app = spawn(settings(&[0])).await;
    let path = "/ok/rotate";
    let (id, first) = endpoint(&app, &receiver.url(path)).await;
    let rotate = format!("{WEBHOOKS}{id}/secret/rotate/");

    app.create_user(&json!({})).await;
    let got = receiver.wait_count(path, 1, PROMPTLY).await;
    assert_eq!(signatures(&got[0]).len(), 1, "no rotation yet");
    assert_verifies(&first, &got[0]);

    // Rotation without a body: a random new secret.
    let response = app.send(Method::POST, &rotate, None).await;
    assert_eq!(response.status, 200, "rotate: {}", response.text);
    assert_eq!(response.body, json!({}), "{}", response.text);
    let second = secret(&app, &id).await;
    assert_ne!(second, first, "GET secret returns the new key");

    app.create_user(&json!({})).await;
    let got = receiver.wait_count(path, 2, PROMPTLY).await;
    let event = &got[1];
    let entries = signatures(event);
    assert_eq!(
        entries.len(),
        2,
        "two space-separated signatures during the grace period: {:?}",
        event.header("webhook-signature")
    );
    assert!(entries.iter().all(|s| s.starts_with("v1,")), "{entries:?}");
    assert_verifies(&second, event);
    assert_verifies(&first, event);
    // One entry is the new secret's, the other the old one's.
    let by = |secret: &str| {
        entries
            .iter()
            .filter(|s| receiver::verify(secret, &with_only_signature(event, s)).is_ok())
            .count()
    };
    assert_eq!((by(&second), by(&first)), (1, 1), "{entries:?}");

    // A key of one's own: 24 bytes is the shortest accepted.
    let own = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode((1u8..=24).collect::<Vec<_>>())
    );
    let response = app.post(&rotate, &json!({ "key": own })).await;
    assert_eq!(response.status, 200, "rotate with a key: {}", response.text);
    assert_eq!(response.body, json!({}));
    assert_eq!(secret(&app, &id).await, own);

    app.create_user(&json!({})).await;
    let got = receiver.wait_count(path, 3, PROMPTLY).await;
    let event = &got[2];
    assert_eq!(signatures(event).len(), 2, "{:?}", signatures(event));
    assert_verifies(&own, event);
    assert_verifies(&second, event);

    // Bad keys: 400 naming `key`, and the secret stays.
    let short = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode([7u8; 23])
    );
    for bad in [
        json!({"key": short}),
        json!({"key": "whsec_c2hvcnQ="}),
        json!({"key": "whsec_not*base64*at*all*not*base64*"}),
        json!({"key": ""}),
        json!({"key": 42}),
    ] {
        app.post(&rotate, &bad)
            .await
            .assert_error(400, "invalid_request", "key");
    }
    assert_eq!(
        secret(&app, &id).await,
        own,
        "a refused rotation changes nothing"
    );
}

// ---------------------------------------------------------------------------
// 3. Which changes emit which events, to which endpoints

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_sent_for_visible_changes_only_and_only_to_subscribed_endpoints() {
    let receiver = Receiver::start().await;
    let app = spawn(settings(&[0])).await;
    let (all, created_only, disabled, other) =
        ("/ok/all", "/ok/created-only", "/ok/disabled", "/ok/other");
    create_endpoint(&app, &json!({"url": receiver.url(all)})).await;
    let hook = create_endpoint(
        &app,
        &json!({"url": receiver.url(created_only), "event_filters": [CREATED]}),
    )
    .await;
    assert_eq!(hook["event_filters"], json!([CREATED]));
    let hook = create_endpoint(
        &app,
        &json!({"url": receiver.url(disabled), "enabled": false}),
    )
    .await;
    assert_eq!(hook["enabled"], json!(false));
    let other_key = app.new_agent_key("other").await;
    let response = app
        .send_as(
            &other_key,
            Method::POST,
            WEBHOOKS,
            Some(&json!({"url": receiver.url(other)})),
        )
        .await;
    assert_eq!(response.status, 201, "{}", response.text);

    // (type, user as the API showed it) in the order they must arrive. A
    // step that emits waits for its event, so arrival order is step order.
    let mut expected: Vec<(String, Value)> = Vec::new();
    let emits = async |expected: &mut Vec<(String, Value)>, kind: &str, user: &Value| {
        expected.push((kind.to_owned(), user.clone()));
        let arrived = receiver
            .wait_for(PROMPTLY, |log| {
                log.iter()
                    .any(|r| r.path == all && r.event_type() == kind && user_in(r) == *user)
            })
            .await;
        assert!(
            arrived,
            "no {kind} event for {user} within {PROMPTLY:?}; got {:?}",
            receiver
                .received(all)
                .iter()
                .map(Received::summary)
                .collect::<Vec<_>>()
        );
    };

    let a = app
        .create_user(&json!({"external_id": "crm-a", "profile": {"first_name": "Ada", "metadata": {"plan": "pro"}}}))
        .await;
    let a_path = TestApp::user_path(&id_of(&a));
    emits(&mut expected, CREATED, &a).await;
    let b = app
        .create_user(&json!({"profile": {"first_name": "Bob"}}))
        .await;
    emits(&mut expected, CREATED, &b).await;

    let patch = async |body: Value, status: u16| {
        let response = app.patch(&a_path, &body).await;
        assert_eq!(response.status, status, "PATCH {body}: {}", response.text);
        response.body
    };
    // A visible change.
    let changed = patch(json!({"profile": {"first_name": "Grace"}}), 200).await;
    emits(&mut expected, UPDATED, &changed).await;
    // Equal values, a removal of an absent key, the same external_id: nothing.
    patch(
        json!({"external_id": "crm-a", "profile": {"first_name": "Grace", "metadata": {"plan": "pro", "absent": null}}}),
        200,
    )
    .await;
    // Sensitive metadata only: nothing.
    patch(
        json!({"profile": {"sensitive_metadata": {"fields": {"token": "t-1"}}}}),
        200,
    )
    .await;
    // Volatile metavariables only: nothing.
    patch(
        json!({"profile": {"metadata": {"browser": "Firefox", "ip_address": "203.0.113.9", "sunshine_user_id": "s-1"}}}),
        200,
    )
    .await;
    // Volatile and real together: updated.
    let mixed = patch(
        json!({"profile": {"metadata": {"browser": "Chrome", "plan": "team"}}}),
        200,
    )
    .await;
    emits(&mut expected, UPDATED, &mixed).await;
    // external_id alone: updated.
    let renamed = patch(json!({"external_id": "crm-a2", "profile": {}}), 200).await;
    emits(&mut expected, UPDATED, &renamed).await;
    // A refused PATCH (with a valid change beside the bad one): nothing.
    patch(
        json!({"profile": {"first_name": "Nope", "metadata": {"ratio": 1.5}}}),
        400,
    )
    .await;
    // POST of an existing external_id answers 200 with that user: nothing.
    let again = app
        .post(
            USERS,
            &json!({"external_id": "CRM-A2", "profile": {"first_name": "Dup"}}),
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.body, renamed);
    // DELETE: nothing.
    let deleted = app.delete(&TestApp::user_path(&id_of(&b))).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    // A last visible change, whose event closes the window.
    let last = patch(json!({"profile": {"first_name": "Final"}}), 200).await;
    emits(&mut expected, UPDATED, &last).await;
    // The other agent's own user reaches the other agent's endpoint.
    let response = app
        .send_as(&other_key, Method::POST, USERS, Some(&json!({})))
        .await;
    assert_eq!(response.status, 201, "{}", response.text);
    let theirs = response.body;
    receiver.wait_count(other, 1, PROMPTLY).await;
    tokio::time::sleep(ms(300)).await;

    let arrived: Vec<(String, Value)> = receiver
        .received(all)
        .iter()
        .map(|r| (r.event_type(), user_in(r)))
        .collect();
    assert_eq!(
        arrived, expected,
        "exactly these events, in this order, reach an endpoint with no filter"
    );
    let events = receiver.received(all);
    let versions: Vec<i64> = events.iter().map(version_in).collect();
    let a_id = id_of(&a);
    let a_versions: Vec<i64> = events
        .iter()
        .filter(|r| r.end_user_id() == a_id)
        .map(version_in)
        .collect();
    assert_eq!(versions[0], 1, "created is version 1: {versions:?}");
    assert_eq!(versions[1], 1, "created is version 1: {versions:?}");
    assert_eq!(
        a_versions[1], 2,
        "the first update is version 2: {a_versions:?}"
    );
    assert!(
        a_versions.windows(2).all(|w| w[0] < w[1]),
        "versions grow with each change: {a_versions:?}"
    );
    for event in &events {
        assert_eq!(event.json()["tags"], json!([event.end_user_id()]));
    }

    let filtered: Vec<(String, Value)> = receiver
        .received(created_only)
        .iter()
        .map(|r| (r.event_type(), user_in(r)))
        .collect();
    assert_eq!(
        filtered,
        [
            (CREATED.to_owned(), a.clone()),
            (CREATED.to_owned(), b.clone())
        ],
        "event_filters [created] receives only created events"
    );
    assert!(
        receiver.received(disabled).is_empty(),
        "a disabled endpoint received {:?}",
        receiver
            .received(disabled)
            .iter()
            .map(Received::summary)
            .collect::<Vec<_>>()
    );
    let foreign: Vec<(String, Value)> = receiver
        .received(other)
        .iter()
        .map(|r| (r.event_type(), user_in(r)))
        .collect();
    assert_eq!(
        foreign,
        [(CREATED.to_owned(), theirs)],
        "another agent's endpoint receives its own agent's events only"
    );
}

// ---------------------------------------------------------------------------
// 4. Retries

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_delivery_is_retried_on_schedule_with_the_same_id() {
    let receiver = Receiver::start().await;
    let schedule = [0, 300, 600];
    let app = spawn(settings(&schedule)).await;
    let path = "/ok/flaky";
    receiver.script(
        path,
        [Reply::Status(500), Reply::Status(500), Reply::Status(500)],
    );
    let (id, secret) = endpoint(&app, &receiver.url(path)).await;

    app.create_user(&json!({})).await;
    let got = receiver.wait_count(path, 4, Duration::from_secs(10)).await;
    let message = got[0].id().to_owned();
    assert!(message.starts_with("msg_"), "{message}");
    for event in &got {
        assert_eq!(
            event.id(),
            message,
            "every retry carries the same webhook-id"
        );
        assert_eq!(event.body, got[0].body, "every retry carries the same body");
        assert_verifies(&secret, event);
    }
    for (n, (gap, base)) in gaps(&got).into_iter().zip(schedule).enumerate() {
        assert_gap(gap, ms(base), &format!("before attempt {}", n + 2));
    }

    let log = wait_attempts(&app, &id, 4).await;
    let statuses: Vec<Value> = log.iter().map(|a| a["status_code"].clone()).collect();
    let numbers: Vec<Value> = log.iter().map(|a| a["attempt"].clone()).collect();
    assert_eq!(
        statuses,
        [json!(200), json!(500), json!(500), json!(500)],
        "{log:?}"
    );
    assert_eq!(numbers, [json!(4), json!(3), json!(2), json!(1)], "{log:?}");
    for attempt in &log {
        assert_eq!(attempt["message_id"], json!(message), "{attempt}");
        assert_eq!(attempt["event_type"], json!(CREATED), "{attempt}");
    }
    assert!(
        log[0]["error"].is_null(),
        "a success has no error: {}",
        log[0]
    );
    assert!(
        log[1]["error"].is_string(),
        "a failure says why: {}",
        log[1]
    );

    tokio::time::sleep(ms(500)).await;
    assert_eq!(
        receiver.received(path).len(),
        4,
        "nothing after the success"
    );
    let hook = get_webhook(&app, &id).await;
    assert_eq!(hook["enabled"], json!(true));
    assert!(
        hook["failing_since"].is_null(),
        "the success ended the streak: {hook}"
    );
}

/// A redirect is an answer, not a new address to send to: following it
/// would let an endpoint bounce a signed delivery to an address that was
/// never checked (an internal one, say). It is recorded as a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_never_followed() {
    let receiver = Receiver::start().await;
    // One attempt per message within the test: the retry is a minute away.
    let app = spawn(settings(&[60_000])).await;
    let elsewhere = receiver.url("/ok/elsewhere");
    for code in [301u16, 302, 307, 308] {
        let path = format!("/moved/{code}");
        receiver.set(&path, Reply::Redirect(code, elsewhere.clone()));
        let (id, _) = endpoint(&app, &receiver.url(&path)).await;
        // An event made after the endpoint: its one attempt.
        app.create_user(&json!({})).await;
        let log = wait_attempts(&app, &id, 1).await;
        assert!(
            log.iter().all(|a| a["status_code"] == json!(code)),
            "{log:?}"
        );
        assert!(
            log.iter().all(|a| a["error"]
                .as_str()
                .is_some_and(|e| e.contains(&code.to_string()))),
            "a redirect is a failure that says so: {log:?}"
        );
    }
    tokio::time::sleep(ms(300)).await;
    assert!(
        receiver.received("/ok/elsewhere").is_empty(),
        "no delivery followed a redirect"
    );
}

/// Deliveries to an `https` URL speak TLS and check the certificate: one
/// that no trusted authority signed ends the attempt before the request is
/// written, and the attempt says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_nobody_vouches_for_is_refused_before_anything_is_sent() {
    let server = UntrustedTls::start().await;
    let app = spawn(settings(&[60_000])).await;
    let url = format!("https://localhost:{}/ok/tls", server.addr.port());
    let (id, _) = endpoint(&app, &url).await;
    app.create_user(&json!({})).await;
    let log = wait_attempts(&app, &id, 1).await;
    let error = log[0]["error"].as_str().unwrap_or_default();
    assert!(log[0]["status_code"].is_null(), "{log:?}");
    assert!(
        error.starts_with("could not connect") && error.contains("invalid peer certificate"),
        "{error}"
    );
    assert!(server.failed_handshakes() >= 1);
    assert_eq!(
        server.requests(),
        0,
        "nothing was sent over the refused connection"
    );
}

/// A retry due at once goes out at once, not at the dispatcher's next poll:
/// recording the failure wakes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_immediate_retry_does_not_wait_for_the_next_poll() {
    let receiver = Receiver::start().await;
    let app = spawn(WebhookSettings {
        poll_interval: Duration::from_secs(30),
        ..settings(&[0, 0, 0])
    })
    .await;
    let path = "/ok/at-last";
    receiver.script(
        path,
        [Reply::Status(500), Reply::Status(500), Reply::Status(500)],
    );
    endpoint(&app, &receiver.url(path)).await;

    app.create_user(&json!({})).await;
    // Three immediate retries, then the success, well within one poll.
    let got = receiver.wait_count(path, 4, PROMPTLY).await;
    assert_eq!(got.len(), 4, "nothing after the success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_schedule_is_spent_retries_stop() {
    let receiver = Receiver::start().await;
    let schedule = [100, 200];
    let app = spawn(settings(&schedule)).await;
    let path = "/fail/always";
    let (id, _) = endpoint(&app, &receiver.url(path)).await;

    app.create_user(&json!({})).await;
    let got = receiver.wait_count(path, 3, PROMPTLY).await;
    for (n, (gap, base)) in gaps(&got).into_iter().zip(schedule).enumerate() {
        assert_gap(gap, ms(base), &format!("before attempt {}", n + 2));
    }
    // Well past the schedule (its longest wait is 240 ms).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        receiver.received(path).len(),
        3,
        "a 2-wait schedule makes 3 attempts, then no more"
    );
    let log = wait_attempts(&app, &id, 3).await;
    let numbers: Vec<Value> = log.iter().map(|a| a["attempt"].clone()).collect();
    assert_eq!(numbers, [json!(3), json!(2), json!(1)], "{log:?}");
    assert!(
        log.iter().all(|a| a["status_code"] == json!(500)),
        "{log:?}"
    );
    assert_eq!(
        app.store.delivery_counts().await.unwrap(),
        (0, 0, 1),
        "(pending, delivered, failed)"
    );
    let hook = get_webhook(&app, &id).await;
    assert_eq!(
        hook["enabled"],
        json!(true),
        "7 days have not passed: {hook}"
    );
    assert!(
        hook["failing_since"].is_string(),
        "failing since the first failure: {hook}"
    );
}

// ---------------------------------------------------------------------------
// 5. Retry-After

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_on_429_and_503_slows_the_retry_down_to_at_most_twice_the_wait() {
    let receiver = Receiver::start().await;
    let wait = ms(400);
    let app = spawn(settings(&[400])).await;
    let paths = ["/ok/limited-429", "/ok/limited-503"];
    receiver.script(paths[0], [Reply::RetryAfter(429, "1".to_owned())]);
    receiver.script(paths[1], [Reply::RetryAfter(503, "1".to_owned())]);
    for path in paths {
        endpoint(&app, &receiver.url(path)).await;
    }
    app.create_user(&json!({})).await;
    for path in paths {
        let got = receiver.wait_count(path, 2, PROMPTLY).await;
        assert_eq!(got[0].id(), got[1].id());
        let gap = got[1].at - got[0].at;
        // Retry-After: 1 s is more than twice the wait, so the retry comes
        // at twice the (jittered) wait: 640..960 ms, never at the plain
        // wait (320..480 ms), never at a full second and beyond.
        let low = (wait * 2).mul_f64(0.8).saturating_sub(EPSILON);
        let high = (wait * 2).mul_f64(1.2) + SLACK;
        assert!(
            gap >= low && gap <= high,
            "{path}: retry after {gap:?}, expected {low:?}..={high:?} (Retry-After 1 s clamped to 2 x {wait:?})"
        );
    }
}

// ---------------------------------------------------------------------------
// 6. 410 Gone

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_disables_the_endpoint_at_once_and_enabling_it_resumes_delivery() {
    let receiver = Receiver::start().await;
    let app = spawn(settings(&[0, 100])).await;
    let (gone, witness) = ("/gone/hook", "/ok/witness");
    let (id, secret) = endpoint(&app, &receiver.url(gone)).await;
    endpoint(&app, &receiver.url(witness)).await;

    app.create_user(&json!({})).await;
    receiver.wait_count(gone, 1, PROMPTLY).await;
    let hook = wait_webhook(&app, &id, PROMPTLY, "disabled", |h| {
        h["enabled"] == json!(false)
    })
    .await;
    let reason = hook["disabled_reason"].as_str().unwrap_or_else(|| {
        panic!("a disabled endpoint says why: {hook}");
    });
    assert!(
        reason.contains("410"),
        "disabled_reason {reason:?} should mention 410"
    );

    // Disabled: a later event reaches the witness but not this endpoint.
    let second = app.create_user(&json!({})).await;
    let second_id = id_of(&second);
    assert!(
        receiver
            .wait_for(PROMPTLY, |log| log
                .iter()
                .any(|r| r.path == witness && r.end_user_id() == second_id))
            .await
    );
    tokio::time::sleep(ms(300)).await;
    let seen: Vec<_> = receiver
        .received(gone)
        .iter()
        .map(Received::summary)
        .collect();
    assert_eq!(
        seen.len(),
        1,
        "410 is not retried and disables at once: {seen:?}"
    );

    // Re-enabled: afresh, and new events arrive again.
    receiver.set(gone, Reply::Status(200));
    let response = app
        .patch(&webhook_path(&id), &json!({"enabled": true}))
        .await;
    assert_eq!(response.status, 200, "{}", response.text);
    for hook in [response.body, get_webhook(&app, &id).await] {
        assert_eq!(hook["enabled"], json!(true), "{hook}");
        assert!(hook["disabled_reason"].is_null(), "{hook}");
        assert!(hook["failing_since"].is_null(), "{hook}");
    }
    let third = app.create_user(&json!({})).await;
    let third_id = id_of(&third);
    let arrived = receiver
        .wait_for(PROMPTLY, |log| {
            log.iter()
                .any(|r| r.path == gone && r.end_user_id() == third_id)
        })
        .await;
    assert!(
        arrived,
        "after re-enabling, a new event should arrive; got {:?}",
        receiver
            .received(gone)
            .iter()
            .map(Received::summary)
            .collect::<Vec<_>>()
    );
    let delivered = receiver.received(gone);
    assert_verifies(&secret, delivered.last().unwrap());
}

/// Disabling an endpoint and enabling it again while its deliveries are
/// out sends none of them a second time while its attempt is still out,
/// and none that answered 2xx ever again: each message arrives once, and
/// one that failed is retried once, on its schedule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toggling_an_endpoint_while_deliveries_are_out_sends_nothing_twice() {
    const USERS: usize = 20;
    let receiver = Receiver::start().await;
    let app = spawn(settings(&[300, 60_000])).await;
    let path = "/slow/hook";
    let (id, _) = endpoint(&app, &receiver.url(path)).await;
    // Every first attempt takes 700 ms; every other one fails. Later
    // requests answer at once.
    receiver.script(
        path,
        (0..USERS).map(|n| Reply::Slow(ms(700), if n % 2 == 0 { 200 } else { 500 })),
    );
    receiver.set(path, Reply::Status(200));
    for _ in 0..USERS {
        app.create_user(&json!({})).await;
    }
    receiver.wait_count(path, USERS, PROMPTLY).await;
    for enabled in [false, true] {
        let response = app
            .patch(&webhook_path(&id), &json!({ "enabled": enabled }))
            .await;
        assert_eq!(response.status, 200, "{}", response.text);
    }
    // The originals answer, the failed ones are retried 300 ms later.
    tokio::time::sleep(ms(2000)).await;
    let mut per_message: HashMap<String, usize> = HashMap::new();
    for request in receiver.received(path) {
        *per_message.entry(request.id().to_owned()).or_default() += 1;
    }
    let mut counts: Vec<usize> = per_message.values().copied().collect();
    counts.sort_unstable();
    let mut expected = vec![1; USERS / 2];
    expected.extend(vec![2; USERS / 2]);
    assert_eq!(
        counts,
        expected,
        "each of {USERS} messages once, the {} that failed twice",
        USERS / 2
    );
}

// ---------------------------------------------------------------------------
// 7. Disabling after a long run of failures

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_failing_for_disable_after_is_disabled_and_can_be_re_enabled() {
    let receiver = Receiver::start().await;
    let mut webhooks = settings(&[300; 8]);
    webhooks.disable_after = Duration::from_secs(1);
    let app = spawn(webhooks).await;
    let path = "/fail/auto";
    let (id, _) = endpoint(&app, &receiver.url(path)).await;

    app.create_user(&json!({})).await;
    receiver.wait_count(path, 1, PROMPTLY).await;
    let hook = wait_webhook(&app, &id, PROMPTLY, "disabled", |h| {
        h["enabled"] == json!(false)
    })
    .await;
    let attempts_then = receiver.received(path);
    let span = attempts_then.last().unwrap().at - attempts_then[0].at;
    assert!(
        span >= Duration::from_secs(1) - ms(50),
        "disabled after only {span:?} of failures ({} attempts), disable_after is 1 s",
        attempts_then.len()
    );
    assert!(
        hook["disabled_reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "a disabled endpoint says why: {hook}"
    );
    let since = hook["failing_since"]
        .as_str()
        .and_then(Timestamp::parse_rfc3339)
        .unwrap_or_else(|| panic!("failing_since is set: {hook}"));
    assert!(
        since <= SystemClock.now().saturating_sub(Duration::from_secs(1)),
        "failing_since {since:?} is at least disable_after ago"
    );
    // Disabled: no more attempts.
    let count = receiver.received(path).len();
    tokio::time::sleep(ms(800)).await;
    assert_eq!(
        receiver.received(path).len(),
        count,
        "a disabled endpoint gets no more attempts"
    );

    receiver.set(path, Reply::Status(200));
    let response = app
        .patch(&webhook_path(&id), &json!({"enabled": true}))
        .await;
    assert_eq!(response.status, 200, "{}", response.text);
    for hook in [response.body, get_webhook(&app, &id).await] {
        assert_eq!(hook["enabled"], json!(true), "{hook}");
        assert!(hook["disabled_reason"].is_null(), "{hook}");
        assert!(hook["failing_since"].is_null(), "{hook}");
    }
    let user = app.create_user(&json!({})).await;
    let user_id = id_of(&user);
    assert!(
        receiver
            .wait_for(PROMPTLY, |log| log
                .iter()
                .any(|r| r.path == path && r.end_user_id() == user_id))
            .await,
        "a re-enabled endpoint receives new events"
    );
    let hook = get_webhook(&app, &id).await;
    assert_eq!(hook["enabled"], json!(true), "{hook}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_clears_failing_since() {
    let receiver = Receiver::start().await;
    let app = spawn(settings(&[1000])).await;
    let path = "/ok/streak";
    receiver.script(path, [Reply::Status(500)]);
    let (id, _) = endpoint(&app, &receiver.url(path)).await;
    assert!(get_webhook(&app, &id).await["failing_since"].is_null());

    app.create_user(&json!({})).await;
    receiver.wait_count(path, 1, PROMPTLY).await;
    let hook = wait_webhook(&app, &id, ms(700), "failing", |h| {
        h["failing_since"].is_string()
    })
    .await;
    assert_eq!(hook["enabled"], json!(true), "{hook}");
    assert!(
        hook["failing_since"]
            .as_str()
            .and_then(Timestamp::parse_rfc3339)
            .is_some(),
        "failing_since is RFC 3339: {hook}"
    );
    receiver.wait_count(path, 2, PROMPTLY).await;
    let hook = wait_webhook(&app, &id, PROMPTLY, "healthy again", |h| {
        h["failing_since"].is_null()
    })
    .await;
    assert_eq!(hook["enabled"], json!(true), "{hook}");
}

// ---------------------------------------------------------------------------
// 8. Isolation

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlogged_endpoints_take_turns_when_the_dispatcher_is_full() {
    const USERS_MADE: usize = 8;
    let receiver = Receiver::start().await;
    // One delivery in flight in all: every claim has room for one, so
    // which endpoint a claim visits first decides who is served.
    let app = spawn(WebhookSettings {
        concurrency: 1,
        ..settings(&[0])
    })
    .await;
    let paths = ["/ok/first", "/ok/second"];
    for path in paths {
        // Each endpoint's first answer is slow, so both build a backlog.
        receiver.script(path, [Reply::Hang(ms(300))]);
        endpoint(&app, &receiver.url(path)).await;
    }
    for _ in 0..USERS_MADE {
        app.create_user(&json!({})).await;
    }
    let all_arrived = receiver
        .wait_for(Duration::from_secs(10), |got| got.len() >= 2 * USERS_MADE)
        .await;
    let order: Vec<String> = receiver.all().iter().map(|r| r.path.clone()).collect();
    assert!(
        all_arrived,
        "only {} deliveries arrived: {order:?}",
        order.len()
    );
    // Served in turns: while the other endpoint still waits, neither gets
    // a third delivery in a row (the last run is whoever finishes last).
    let runs: Vec<usize> = order.chunk_by(|a, b| a == b).map(<[String]>::len).collect();
    let longest_run = runs[..runs.len() - 1].iter().copied().max().unwrap_or(0);
    assert!(
        longest_run <= 2,
        "deliveries arrived in this order: {order:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freed_slot_sends_the_next_delivery_without_waiting_for_the_poll() {
    const USERS_MADE: usize = 6;
    let receiver = Receiver::start().await;
    // One delivery in flight at a time, and a poll far slower than the
    // test: each delivery after the first can only go out because the one
    // before it freed the slot and said so.
    let app = spawn(WebhookSettings {
        per_endpoint_concurrency: 1,
        poll_interval: Duration::from_secs(60),
        ..settings(&[0])
    })
    .await;
    let path = "/ok/one-at-a-time";
    // Each answer takes a while, so every user is made (and every write's
    // own wake-up spent) while the first delivery is still in flight.
    receiver.script(path, (0..USERS_MADE).map(|_| Reply::Hang(ms(100))));
    endpoint(&app, &receiver.url(path)).await;
    for _ in 0..USERS_MADE {
        app.create_user(&json!({})).await;
    }
    receiver.wait_count(path, USERS_MADE, PROMPTLY).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_endpoint_does_not_delay_a_healthy_one() {
    const USERS_MADE: usize = 200;
    let healthy = Receiver::start().await;
    let hanging = Receiver::start().await;
    let app = spawn(settings(&[5000])).await;
    endpoint(&app, &healthy.url("/ok/healthy")).await;
    endpoint(&app, &hanging.url("/hang/slow")).await;

    let mut sent: HashMap<String, Instant> = HashMap::new();
    for _ in 0..USERS_MADE {
        let before = Instant::now();
        let user = app.create_user(&json!({})).await;
        sent.insert(id_of(&user), before);
    }
    let got = healthy
        .wait_count("/ok/healthy", USERS_MADE, Duration::from_secs(20))
        .await;
    let ids: HashSet<String> = got.iter().map(Received::end_user_id).collect();
    assert_eq!(ids.len(), USERS_MADE, "every user's created event arrives");
    assert!(ids.iter().all(|id| sent.contains_key(id)));

    // First arrival of each event, from just before the POST that caused it.
    let mut first: HashMap<String, Instant> = HashMap::new();
    for event in &got {
        first.entry(event.end_user_id()).or_insert(event.at);
    }
    let mut latencies: Vec<Duration> = first.iter().map(|(id, at)| *at - sent[id]).collect();
    latencies.sort_unstable();
    let p50 = latencies[latencies.len() / 2];
    let p99 = latencies[latencies.len() * 99 / 100 - 1];
    let max = *latencies.last().unwrap();
    eprintln!("healthy endpoint beside a hanging one: p50 {p50:?}, p99 {p99:?}, max {max:?}");
    assert!(
        p99 < Duration::from_secs(1),
        "p99 {p99:?} (p50 {p50:?}, max {max:?})"
    );

    // The hanging endpoint was being delivered to all along.
    let stuck = hanging.received("/hang/slow").len();
    assert!(stuck >= 1, "the hanging endpoint got no request at all");
    eprintln!("the hanging endpoint had {stuck} requests in flight or timed out meanwhile");
}

/// One agent's hanging endpoints, with a backlog that would fill every
/// slot of the dispatcher, do not hold another agent's deliveries: each
/// agent has a fair share of the slots, and an endpoint that keeps timing
/// out backs off to fewer of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_agents_hanging_endpoints_do_not_hold_another_agents_deliveries() {
    const HANGING: usize = 4;
    const BACKLOG: usize = 12;
    const USERS_MADE: usize = 20;
    let slow = Receiver::start().await;
    let healthy = Receiver::start().await;
    let app = spawn(WebhookSettings {
        per_endpoint_concurrency: 4,
        // As many as the hanging endpoints can fill between them.
        concurrency: 4 * HANGING,
        ..settings(&[100, 100, 100, 100])
    })
    .await;
    for n in 0..HANGING {
        endpoint(&app, &slow.url(&format!("/hang/{n}"))).await;
    }
    let other = app.new_agent_key("other").await;
    let created = app
        .send_as(
            &other,
            Method::POST,
            WEBHOOKS,
            Some(&json!({ "url": healthy.url("/ok/other") })),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    for _ in 0..BACKLOG {
        app.create_user(&json!({})).await;
    }
    assert!(
        slow.wait_for(PROMPTLY, |log| log.len() >= HANGING).await,
        "the hanging endpoints are being sent to"
    );

    let mut latencies = Vec::new();
    for _ in 0..USERS_MADE {
        let before = Instant::now();
        let user = app
            .send_as(&other, Method::POST, USERS, Some(&json!({})))
            .await;
        assert_eq!(user.status, 201, "{}", user.text);
        latencies.push(arrival(&healthy, &id_of(&user.body), before).await);
        // Spread over the hanging deliveries' timeouts and retries.
        tokio::time::sleep(ms(50)).await;
    }
    assert_no_event_waited(
        latencies,
        &format!("the other agent's events beside {HANGING} hanging endpoints"),
        &slow,
    );
}

/// Endpoints that keep timing out back off to fewer slots: once they have
/// timed out, they no longer hold the slots that their agent's healthy
/// endpoint needs, and its events arrive without waiting for a timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_that_keep_timing_out_back_off_and_free_their_agents_slots() {
    const HANGING: usize = 4;
    const USERS_MADE: usize = 10;
    let slow = Receiver::start().await;
    let healthy = Receiver::start().await;
    let app = spawn(WebhookSettings {
        per_endpoint_concurrency: 4,
        concurrency: 4 * HANGING,
        ..settings(&[0, 0, 0, 0, 0, 0, 0, 0])
    })
    .await;
    for n in 0..HANGING {
        endpoint(&app, &slow.url(&format!("/hang/{n}"))).await;
    }
    // Every event goes to the hanging endpoints; the healthy one wants
    // only updates.
    let created = create_endpoint(
        &app,
        &json!({ "url": healthy.url("/ok/healthy"), "event_filters": ["v1.end_user.updated"] }),
    )
    .await;
    assert_eq!(created["enabled"], json!(true));
    let mut users = Vec::new();
    for _ in 0..USERS_MADE {
        users.push(id_of(&app.create_user(&json!({})).await));
    }
    // The first attempts time out (1 s) and are retried at once.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let mut latencies = Vec::new();
    for (n, id) in users.iter().enumerate() {
        let before = Instant::now();
        let response = app
            .patch(
                &TestApp::user_path(id),
                &json!({ "profile": { "first_name": format!("N{n}") } }),
            )
            .await;
        assert_eq!(response.status, 200, "{}", response.text);
        latencies.push(arrival(&healthy, id, before).await);
    }
    assert_no_event_waited(
        latencies,
        &format!("a healthy endpoint beside {HANGING} timing-out ones of its agent"),
        &slow,
    );
}

/// Asserts that no event took anything like a hanging delivery's timeout
/// to arrive (each latency from its write to its receipt), and says what
/// the hanging endpoints were sent meanwhile.
fn assert_no_event_waited(mut latencies: Vec<Duration>, what: &str, hanging: &Receiver) {
    latencies.sort_unstable();
    let max = latencies.last().copied().unwrap_or_default();
    eprintln!(
        "{what}: p50 {:?}, max {max:?}; {} requests reached the hanging endpoints",
        latencies[latencies.len() / 2],
        hanging.all().len()
    );
    assert!(
        max < Duration::from_millis(500),
        "{what}: an event waited for a hanging delivery: {latencies:?}"
    );
}

/// How long after `before` the receiver got an event about user `id`.
async fn arrival(receiver: &Receiver, id: &str, before: Instant) -> Duration {
    assert!(
        receiver
            .wait_for(Duration::from_secs(10), |log| log
                .iter()
                .any(|r| r.end_user_id() == id))
            .await,
        "the event about {id} arrives"
    );
    before.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_with_a_body_leaves_the_connection_open_for_the_next_delivery() {
    const DELIVERIES: usize = 8;
    let receiver = Receiver::start().await;
    let app = spawn(settings(&[0])).await;
    let answers = [
        ("/ok/says-something", Reply::WithBody(200, 200)),
        // A body that comes after the head: left unread, it would be in
        // the connection's way when the next delivery is written.
        ("/ok/says-it-later", Reply::LateBody(200, ms(30))),
    ];
    for (path, reply) in answers {
        receiver.set(path, reply);
        let (id, _) = endpoint(&app, &receiver.url(path)).await;
        // One user at a time, each once the attempt before is in the log:
        // by then the sender is done with that answer and its connection
        // is free.
        for made in 1..=DELIVERIES {
            app.create_user(&json!({})).await;
            wait_attempts(&app, &id, made).await;
        }
        let log = attempts(&app, &id).await;
        assert!(
            log.iter().all(|a| a["status_code"] == json!(200)),
            "{path}: {log:?}"
        );
        // A sender that left such answers unread would close each
        // connection, and every delivery would pay a new one, with its TLS
        // handshake.
        let got = receiver.received(path);
        let connections: HashSet<_> = got.iter().map(|r| r.peer).collect();
        assert_eq!(got.len(), DELIVERIES, "{path}");
        assert_eq!(
            connections.len(),
            1,
            "{path}: {DELIVERIES} deliveries, one at a time, came over these connections: {connections:?}"
        );
        // The next endpoint's users are not this one's.
        app.delete(&webhook_path(&id)).await;
    }
}

/// The value of the sample `series` (name with its labels, as printed) on
/// the metrics page.
fn sample(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} on the metrics page:\n{page}"))
        .parse()
        .unwrap_or_else(|e| panic!("{series}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_page_counts_attempts_by_outcome_and_the_stores_writes() {
    let receiver = Receiver::start().await;
    let app = spawn(settings(&[10])).await;
    let (ok, _) = endpoint(&app, &receiver.url("/ok/counted")).await;
    let (failing, _) = endpoint(&app, &receiver.url("/fail/counted")).await;
    app.create_user(&json!({})).await;
    wait_attempts(&app, &ok, 1).await;
    // A failure, its retry 10 ms later, and then the schedule is spent.
    wait_attempts(&app, &failing, 2).await;

    let page = app.get_url(&app.url("/metrics")).await;
    assert_eq!(page.status, 200);
    let page = page.text;
    let attempts = |outcome: &str| {
        sample(
            &page,
            &format!("endusers_webhook_attempts_total{{outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(attempts("delivered"), 1.0, "{page}");
    assert_eq!(attempts("retrying"), 1.0, "{page}");
    assert_eq!(attempts("gave_up"), 1.0, "{page}");
    assert_eq!(attempts("disabled_endpoint"), 0.0, "{page}");
    assert_eq!(
        sample(&page, "endusers_webhook_attempts_in_flight"),
        0.0,
        "{page}"
    );
    // Two endpoints, a user and its event, and the attempts, at least.
    let writes = sample(&page, "endusers_store_writes_total");
    let transactions = sample(&page, "endusers_store_transactions_total");
    assert!(writes >= 4.0, "{page}");
    assert!((1.0..=writes).contains(&transactions), "{page}");
    assert!(
        sample(&page, "endusers_store_write_busy_seconds_total") > 0.0,
        "{page}"
    );
}

// ---------------------------------------------------------------------------
// 9. Recover

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_resends_failed_messages_with_the_same_id() {
    let since = SystemClock.now().to_rfc3339();
    let receiver = Receiver::start().await;
    let app = spawn(settings(&[100, 100])).await;
    let path = "/fail/recover";
    let (id, secret) = endpoint(&app, &receiver.url(path)).await;
    let recover = format!("{WEBHOOKS}{id}/recover/");

    app.create_user(&json!({})).await;
    let got = receiver.wait_count(path, 3, PROMPTLY).await;
    wait_attempts(&app, &id, 3).await;
    tokio::time::sleep(ms(400)).await;
    assert_eq!(receiver.received(path).len(), 3, "the schedule is spent");

    for bad in [
        json!({"since": "yesterday"}),
        json!({"since": "2026-13-01T00:00:00+00:00"}),
        json!({"since": 5}),
        json!({}),
    ] {
        app.post(&recover, &bad)
            .await
            .assert_error(400, "invalid_request", "since");
    }
    assert_eq!(
        receiver.received(path).len(),
        3,
        "a refused recover sends nothing"
    );

    receiver.set(path, Reply::Status(200));
    let response = app.post(&recover, &json!({ "since": since })).await;
    assert_eq!(response.status, 200, "recover: {}", response.text);
    assert_eq!(response.body, json!({"recovered": 1}), "{}", response.text);
    let again = receiver.wait_count(path, 4, PROMPTLY).await;
    let resent = &again[3];
    assert_eq!(resent.id(), got[0].id(), "the same webhook-id");
    assert_eq!(resent.body, got[0].body, "the same message");
    assert_verifies(&secret, resent);
    let log = wait_attempts(&app, &id, 4).await;
    assert_eq!(log[0]["status_code"], json!(200), "{log:?}");

    // Nothing failed is left: a second recover finds nothing.
    let response = app.post(&recover, &json!({ "since": since })).await;
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.body, json!({"recovered": 0}));
}

// ---------------------------------------------------------------------------
// 10. The management API

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_are_managed_through_the_api() {
    let app = spawn(settings(&[0])).await;
    let url = "http://127.0.0.1:9/hook";
    let created = create_endpoint(&app, &json!({ "url": url })).await;
    let id = id_of(&created);
    assert!(id.starts_with("ep_"), "{id}");
    let mut keys: Vec<&str> = created
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "created_at",
            "description",
            "disabled_reason",
            "enabled",
            "event_filters",
            "failing_since",
            "id",
            "updated_at",
            "url"
        ],
        "{created}"
    );
    assert_eq!(created["url"], json!(url));
    assert_eq!(created["description"], json!(""));
    assert_eq!(created["event_filters"], json!([]));
    assert_eq!(created["enabled"], json!(true));
    assert!(created["disabled_reason"].is_null() && created["failing_since"].is_null());
    for field in ["created_at", "updated_at"] {
        let text = created[field].as_str().unwrap_or("");
        assert!(
            Timestamp::parse_rfc3339(text).is_some() && text.ends_with("+00:00"),
            "{field}: {text:?}"
        );
    }
    assert_eq!(get_webhook(&app, &id).await, created);
    let response = app.get(&format!("{WEBHOOKS}{id}")).await;
    assert_eq!(
        response.body, created,
        "served without the trailing slash too"
    );
    // The secret is never part of the endpoint object.
    let key = secret(&app, &id).await;
    assert!(!get_webhook(&app, &id).await.to_string().contains(&key));

    // Listing pages through next_page_url.
    let second = create_endpoint(
        &app,
        &json!({"url": "http://127.0.0.1:9/two", "description": "two", "event_filters": [UPDATED]}),
    )
    .await;
    assert_eq!(second["description"], json!("two"));
    assert_eq!(second["event_filters"], json!([UPDATED]));
    let third = create_endpoint(
        &app,
        &json!({"url": "http://127.0.0.1:9/three", "enabled": false}),
    )
    .await;
    assert_eq!(third["enabled"], json!(false));
    let mut listed = Vec::new();
    let mut page_url = app.url(&format!("{WEBHOOKS}?limit=1"));
    for _ in 0..10 {
        let page = app.get_url(&page_url).await;
        assert_eq!(page.status, 200, "{}", page.text);
        let data = page.body["data"].as_array().unwrap();
        assert!(data.len() <= 1, "limit=1: {}", page.text);
        listed.extend(data.iter().cloned());
        match page.body["meta"]["next_page_url"].as_str() {
            Some(next) => page_url = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(listed, [created.clone(), second.clone(), third.clone()]);
    let page = app.get(WEBHOOKS).await;
    assert_eq!(page.body["data"].as_array().map(Vec::len), Some(3));
    assert!(
        page.body["meta"]["next_page_url"].is_null(),
        "{}",
        page.text
    );

    // PATCH changes only what it names.
    let response = app
        .patch(
            &webhook_path(&id),
            &json!({"description": "CRM sync", "event_filters": [UPDATED, CREATED]}),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text);
    let patched = response.body;
    assert_eq!(patched["description"], json!("CRM sync"));
    let mut filters: Vec<String> =
        serde_json::from_value(patched["event_filters"].clone()).unwrap();
    filters.sort();
    assert_eq!(filters, [CREATED, UPDATED]);
    assert_eq!(patched["url"], json!(url));
    assert_eq!(patched["enabled"], json!(true));
    assert_eq!(patched["created_at"], created["created_at"]);
    assert_eq!(get_webhook(&app, &id).await, patched);
    let response = app
        .patch(&webhook_path(&id), &json!({"event_filters": []}))
        .await;
    assert_eq!(response.status, 200, "{}", response.text);
    let current = response.body;
    assert_eq!(current["event_filters"], json!([]));
    assert_eq!(current["description"], json!("CRM sync"));

    // Refusals.
    app.post(
        WEBHOOKS,
        &json!({"url": url, "event_filters": ["v1.end_user.deleted"]}),
    )
    .await
    .assert_error(400, "invalid_request", "event_filters[0]");
    app.patch(
        &webhook_path(&id),
        &json!({"event_filters": [CREATED, "bogus"]}),
    )
    .await
    .assert_error(400, "invalid_request", "event_filters[1]");
    app.post(WEBHOOKS, &json!({"description": "no url"}))
        .await
        .assert_error(400, "invalid_request", "url");
    app.post(WEBHOOKS, &json!({"url": url, "colour": "blue"}))
        .await
        .assert_error(400, "invalid_request", "");
    assert_eq!(get_webhook(&app, &id).await["event_filters"], json!([]));
    let page = app.get(WEBHOOKS).await;
    assert_eq!(
        page.body["data"].as_array().map(Vec::len),
        Some(3),
        "refusals create nothing"
    );

    // The event catalog.
    let response = app.get(&format!("{WEBHOOKS}event-types/")).await;
    assert_eq!(response.status, 200, "{}", response.text);
    let types = response.body["data"].as_array().unwrap();
    for name in [CREATED, UPDATED] {
        let entry = types
            .iter()
            .find(|t| t["name"] == json!(name))
            .unwrap_or_else(|| panic!("{name} is not listed: {}", response.text));
        assert!(
            entry["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{entry}"
        );
    }

    // Another agent sees none of it.
    let other = app.new_agent_key("other").await;
    let as_other = async |method: Method, path: String, body: Option<Value>| {
        app.send_as(&other, method, &path, body.as_ref()).await
    };
    for (method, path, body) in [
        (Method::GET, webhook_path(&id), None),
        (
            Method::PATCH,
            webhook_path(&id),
            Some(json!({"enabled": false})),
        ),
        (Method::DELETE, webhook_path(&id), None),
        (Method::GET, format!("{WEBHOOKS}{id}/secret/"), None),
        (Method::POST, format!("{WEBHOOKS}{id}/secret/rotate/"), None),
        (Method::GET, format!("{WEBHOOKS}{id}/attempts/"), None),
        (
            Method::POST,
            format!("{WEBHOOKS}{id}/recover/"),
            Some(json!({"since": "2020-01-01T00:00:00+00:00"})),
        ),
    ] {
        as_other(method.clone(), path.clone(), body)
            .await
            .assert_error(404, "not_found", "");
    }
    let theirs = as_other(Method::GET, WEBHOOKS.to_owned(), None).await;
    assert_eq!(theirs.status, 200, "{}", theirs.text);
    assert_eq!(
        theirs.body["data"],
        json!([]),
        "another agent lists none of ours"
    );
    assert_eq!(
        get_webhook(&app, &id).await,
        current,
        "the other agent changed nothing"
    );
    assert_eq!(
        secret(&app, &id).await,
        key,
        "the other agent rotated nothing"
    );

    // DELETE, then 404.
    let response = app.delete(&webhook_path(&id)).await;
    assert_eq!(response.status, 204, "{}", response.text);
    assert!(
        response.text.is_empty(),
        "204 has no body: {:?}",
        response.text
    );
    app.get(&webhook_path(&id))
        .await
        .assert_error(404, "not_found", "");
    app.delete(&webhook_path(&id))
        .await
        .assert_error(404, "not_found", "");
    app.get(&format!("{WEBHOOKS}{id}/secret/"))
        .await
        .assert_error(404, "not_found", "");
    let page = app.get(WEBHOOKS).await;
    assert_eq!(page.body["data"], json!([second, third]));
}

// ---------------------------------------------------------------------------
// 11. SSRF

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_allow_insecure_only_public_https_urls_are_accepted() {
    let app = TestApp::spawn_with(ServerConfig::default()).await;
    let refused = [
        "http://example.com/",
        "https://127.0.0.1/",
        "https://10.0.0.1/",
        "https://172.16.0.1/",
        "https://192.168.1.1/",
        "https://169.254.169.254/",
        "https://100.64.0.1/",
        "https://[::1]/",
        "https://[::ffff:127.0.0.1]/",
        "https://[64:ff9b::a00:1]/",
        "https://[2002:a00:1::]/",
        "https://[fd00::1]/",
        "https://[fe80::1]/",
        "https://224.0.0.1/",
        "https://0.0.0.0/",
        "https://192.0.2.1/",
        "https://user:pw@example.com/",
        "https://localhost/",
    ];
    let mut accepted = Vec::new();
    for url in refused {
        let response = app.post(WEBHOOKS, &json!({ "url": url })).await;
        if response.status != 400 {
            accepted.push(format!("{url} -> {}: {}", response.status, response.text));
            continue;
        }
        response.assert_error(400, "invalid_request", "url");
    }
    assert!(
        accepted.is_empty(),
        "these URLs were not refused: {accepted:#?}"
    );
    let page = app.get(WEBHOOKS).await;
    assert_eq!(page.body["data"], json!([]), "nothing was created");

    // A public literal passes without DNS; changing it to a refused URL is 400.
    let created = create_endpoint(&app, &json!({"url": "https://93.184.216.34/hook"})).await;
    let id = id_of(&created);
    for url in [
        "http://93.184.216.34/hook",
        "https://127.0.0.1/",
        "https://[::1]/",
        "https://localhost/",
    ] {
        app.patch(&webhook_path(&id), &json!({ "url": url }))
            .await
            .assert_error(400, "invalid_request", "url");
    }
    assert_eq!(
        get_webhook(&app, &id).await,
        created,
        "a refused PATCH changes nothing"
    );
}
