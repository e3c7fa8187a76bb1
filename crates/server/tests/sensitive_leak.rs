//! A distinctive secret written through the API must appear nowhere but in
//! its ciphertext: not in any response (success or error), not in any
//! webhook delivery, not in any log line at TRACE level, not in the raw
//! bytes of the database, its WAL or the key file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::receiver::Receiver;
use common::{TestApp, USERS};
use endusers_core::SensitiveValue;
use endusers_server::ServerConfig;
use endusers_server::workers::maintenance::Maintenance;
use reqwest::Method;
use serde_json::json;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_never_leaves_the_vault() {
    let logs = Captured::default();
    let sink = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .init();

    let secret = format!("S3CRET-{:016x}", rand_u64());
    let mut config = ServerConfig::default();
    config.webhooks.allow_insecure = true;
    config.webhooks.poll_interval = Duration::from_millis(50);
    let app = TestApp::spawn_with(config).await;
    let receiver = Receiver::start().await;
    let subscribed = app
        .post("/api/v2/webhooks/", &json!({"url": receiver.url("/ok")}))
        .await;
    assert_eq!(subscribed.status, 201, "{}", subscribed.text);
    let mut answers: Vec<String> = Vec::new();
    let mut record = |response: common::TestResponse| {
        answers.push(format!(
            "{} {:?} {}",
            response.status, response.headers, response.text
        ));
        response
    };

    // Accepted writes, on create and on update.
    let created = record(
        app.post(
            USERS,
            &json!({"external_id": "leak-1", "profile": {"first_name": "Ada",
            "sensitive_metadata": {"fields": {"auth_token": secret}}}}),
        )
        .await,
    );
    assert_eq!(created.status, 201);
    let id = created.body["end_user_id"].as_str().unwrap().to_owned();
    let path = TestApp::user_path(&id);
    let patched = record(
        app.patch(
            &path,
            &json!({"profile": {"sensitive_metadata": {"fields": {"session": secret, "n": 5}}}}),
        )
        .await,
    );
    assert_eq!(patched.status, 200);

    // Refused writes carrying the secret in every position a parser sees.
    let refused = [
        json!({"profile": {"sensitive_metadata": {"fields": {"bad key": secret}}}}),
        json!({"profile": {"sensitive_metadata": secret}}),
        json!({"profile": {"sensitive_metadata": {"fields": secret}}}),
        json!({"profile": {"sensitive_metadata": {"fields": {"k": [secret]}}}}),
        json!({"profile": {"sensitive_metadata": {"fields": {"k": {"nested": secret}}}}}),
        json!({"profile": {"sensitive_metadata": {"fields": {"k": secret}, "other": secret}}}),
        json!({"profile": {"first_name": "x".repeat(300), "sensitive_metadata": {"fields": {"k": secret}}}}),
        json!({"profile": {"sensitive_metadata": {"fields": {secret.clone(): "v"}}}, "nope": 1}),
    ];
    for body in &refused {
        let post = record(app.post(USERS, body).await);
        assert_eq!(post.status, 400, "{}", post.text);
        let patch = record(app.patch(&path, body).await);
        assert_eq!(patch.status, 400, "{}", patch.text);
    }
    // A key in both metadata and sensitive metadata: refused on POST only.
    let overlap = json!({"profile": {"metadata": {"k": "v"}, "sensitive_metadata": {"fields": {"k": secret}}}});
    assert_eq!(record(app.post(USERS, &overlap).await).status, 400);
    let truncated =
        format!(r#"{{"profile": {{"sensitive_metadata": {{"fields": {{"k": "{secret}""#);
    let bearer = format!("Bearer {}", app.key);
    let json_type = [
        ("content-type", "application/json"),
        ("authorization", bearer.as_str()),
    ];
    let text_type = [
        ("content-type", "text/plain"),
        ("authorization", bearer.as_str()),
    ];
    let malformed = record(
        app.raw(
            Method::POST,
            USERS,
            &json_type,
            Some(truncated.clone().into_bytes()),
        )
        .await,
    );
    assert_eq!(malformed.status, 400);
    let wrong_type = record(
        app.raw(
            Method::POST,
            USERS,
            &text_type,
            Some(truncated.into_bytes()),
        )
        .await,
    );
    assert_eq!(wrong_type.status, 415);
    let padding = "p".repeat(5000);
    let large = json!({"profile": {"display_name": padding, "sensitive_metadata": {"fields": {"k": secret}}}});
    let too_large = record(
        app.raw(
            Method::POST,
            USERS,
            &json_type,
            Some(large.to_string().into_bytes()),
        )
        .await,
    );
    assert_eq!(too_large.status, 413);

    // A visible change, so an updated event carries the whole profile.
    let visible = record(
        app.patch(&path, &json!({"profile": {"last_name": "Lovelace"}}))
            .await,
    );
    assert_eq!(visible.status, 200);

    // Reads of every kind.
    record(app.get(&path).await);
    record(app.get(USERS).await);
    record(app.get(&format!("{USERS}?external_id=leak-1")).await);

    // The value is really there, for the server's own consumers only.
    let values = app.sensitive_values(&id).await;
    assert_eq!(values["auth_token"], SensitiveValue::String(secret.clone()));

    // Upkeep that handles values: re-sealing after a rotation.
    let key_file = app.state.config.key_file.clone().unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    key_file.rotate().unwrap();
    let report = Maintenance::new().run_once(&app.state.upkeep()).await;
    assert_eq!(report.resealed, 3);

    let deliveries = receiver.wait_count("/ok", 2, Duration::from_secs(10)).await;
    let types: Vec<String> = deliveries.iter().map(|d| d.event_type()).collect();
    assert_eq!(
        types,
        ["v1.end_user.created", "v1.end_user.updated"],
        "no event for the sensitive-only change"
    );
    for delivery in &deliveries {
        assert!(
            !contains(&delivery.body, &secret),
            "a webhook body contains the secret"
        );
        assert!(!format!("{:?}", delivery.headers).contains(&secret));
    }

    tokio::time::sleep(Duration::from_millis(100)).await;
    let log = logs.0.lock().unwrap().clone();
    assert!(
        contains(&log, "TRACE") && contains(&log, "maintenance pass"),
        "the capture sees the server's logs"
    );
    assert!(
        contains(&log, "finished processing request"),
        "the capture sees each request's trace, which the log level turns on"
    );
    assert!(!contains(&log, &secret), "a log line contains the secret");
    for answer in &answers {
        assert!(
            !answer.contains(&secret),
            "a response contains the secret: {answer}"
        );
    }
    let mut scanned = 0;
    for entry in std::fs::read_dir(app.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !contains(&bytes, &secret),
            "{} contains the secret",
            path.display()
        );
        scanned += 1;
    }
    assert!(
        scanned >= 3,
        "the database, its WAL and the key file were scanned"
    );
    assert!(app.dir.path().join("test.db-wal").exists());
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(std::process::id().into());
    hasher.finish()
}
