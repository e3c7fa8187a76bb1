//! Rate limits over HTTP: the exact boundary, the minute and day windows
//! with a driven clock, isolation and overrides per agent, the headers,
//! refused keys per address, and limits shared through Redis.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::test_redis::test_redis;
use common::{TestApp, USERS};
use endusers_core::{AgentHandle, ManualClock, RatePolicy, Timestamp};
use endusers_server::ServerConfig;
use endusers_server::limits::RateLimitSettings;
use endusers_store::AgentLimits;
use reqwest::Method;
use serde_json::json;

fn limited(end_user: &str, global: &str) -> ServerConfig {
    ServerConfig {
        rate_limits: RateLimitSettings {
            end_user: RatePolicy::parse(end_user).unwrap(),
            global: RatePolicy::parse(global).unwrap(),
            ..RateLimitSettings::default()
        },
        ..ServerConfig::default()
    }
}

async fn manual(config: ServerConfig) -> (TestApp, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(Timestamp::from_micros(
        1_795_773_600_000_000,
    )));
    (TestApp::spawn_limited(config, clock.clone()).await, clock)
}

/// A user to GET, made while limits are generous.
async fn user_path(app: &TestApp) -> String {
    let user = app.create_user(&json!({})).await;
    TestApp::user_path(user["end_user_id"].as_str().unwrap())
}

#[tokio::test]
async fn thirty_pass_then_429_with_retry_after_then_recovery() {
    let (app, clock) = manual(limited("30/s,300/m,60000/d", "10/s,100/m,10000/d")).await;
    let path = user_path(&app).await;
    for n in 0..30 {
        let response = app.get(&path).await;
        assert_eq!(response.status, 200, "request {n}");
        assert_eq!(
            response.header("ratelimit-policy"),
            Some("\"per-second\";q=30;w=1, \"per-minute\";q=300;w=60, \"per-day\";q=60000;w=86400")
        );
        let expected = format!("\"per-second\";r={};t=1", 29 - n);
        assert_eq!(
            response.header("ratelimit"),
            Some(expected.as_str()),
            "request {n}"
        );
    }
    let refused = app.get(&path).await;
    refused.assert_error(429, "rate_limited", "too many requests");
    assert_eq!(
        refused.header("retry-after"),
        Some("1"),
        "whole seconds, never 0"
    );
    assert_eq!(refused.header("ratelimit"), Some("\"per-second\";r=0;t=1"));
    assert!(refused.header("ratelimit-policy").is_some());
    // Refusals spend nothing: after Retry-After the burst is back.
    clock.advance(Duration::from_secs(1));
    assert_eq!(app.get(&path).await.status, 200);
}

#[tokio::test]
async fn the_minute_window_holds_when_seconds_have_room() {
    let (app, clock) = manual(limited("30/s,300/m,60000/d", "off")).await;
    let path = user_path(&app).await;
    // 30 a second is six times the minute's sustained rate (5/s): the
    // minute's burst of 300 drains by 25 a second and runs out in second
    // 11, at its 26th request, while that second still has room.
    let mut first_refusal = None;
    'seconds: for second in 0..20 {
        for index in 0..30 {
            let response = app.get(&path).await;
            if response.status == 429 {
                first_refusal = Some((second, index, response));
                break 'seconds;
            }
        }
        clock.advance(Duration::from_secs(1));
    }
    let (second, index, refused) = first_refusal.expect("the minute window refuses");
    assert_eq!((second, index), (11, 25));
    refused.assert_error(429, "rate_limited", "");
    assert_eq!(refused.header("ratelimit"), Some("\"per-minute\";r=0;t=60"));
    assert_eq!(refused.header("retry-after"), Some("1"));
    clock.advance(Duration::from_secs(1));
    assert_eq!(app.get(&path).await.status, 200);
}

#[tokio::test]
async fn the_day_window_and_a_per_agent_override_without_restart() {
    let (app, clock) = manual(limited("30/s,300/m,60000/d", "off")).await;
    let path = user_path(&app).await;
    let default = AgentHandle::default_handle();
    let tight = AgentLimits {
        end_user: Some(RatePolicy::parse("5/s,8/d").unwrap()),
        global: None,
    };
    app.store.set_agent_limits(&default, tight).await.unwrap();
    for _ in 0..5 {
        assert_eq!(app.get(&path).await.status, 200);
    }
    assert_eq!(
        app.get(&path).await.status,
        429,
        "the override applies at once"
    );
    clock.advance(Duration::from_secs(1));
    for _ in 0..3 {
        let response = app.get(&path).await;
        assert_eq!(response.status, 200);
        assert_eq!(
            response.header("ratelimit-policy"),
            Some("\"per-second\";q=5;w=1, \"per-day\";q=8;w=86400")
        );
    }
    let refused = app.get(&path).await;
    assert_eq!(refused.status, 429);
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!(retry > 3600, "a day window refuses for hours: {retry}");
    clock.advance(Duration::from_secs(retry));
    assert_eq!(app.get(&path).await.status, 200);
    // Back to the default, again without a restart.
    app.store
        .set_agent_limits(&default, AgentLimits::default())
        .await
        .unwrap();
    for _ in 0..10 {
        assert_eq!(app.get(&path).await.status, 200);
    }
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_without_a_key_and_without_spending_budget() {
    let (app, _clock) = manual(limited("1/s", "1/s")).await;
    for _ in 0..3 {
        let response = app.raw(Method::GET, "/api/v2/nope", &[], None).await;
        response.assert_error(404, "not_found", "");
        let response = app.raw(Method::PUT, USERS, &[], None).await;
        response.assert_error(405, "method_not_allowed", "");
    }
    assert_eq!(app.get(USERS).await.status, 200, "the budget is untouched");
}

#[tokio::test]
async fn a_wrong_method_with_a_valid_key_spends_no_budget() {
    let (app, _clock) = manual(limited("1/s", "1/s")).await;
    for _ in 0..3 {
        let response = app.send(Method::PUT, USERS, None).await;
        response.assert_error(405, "method_not_allowed", "");
        assert!(response.headers.get("ratelimit").is_none());
    }
    assert_eq!(app.get(USERS).await.status, 200, "the budget is untouched");
}

#[tokio::test]
async fn agents_and_families_have_separate_budgets() {
    let (app, _clock) = manual(limited("3/s", "2/s")).await;
    let path = user_path(&app).await;
    let other = app.new_agent_key("other").await;
    for _ in 0..3 {
        assert_eq!(app.get(&path).await.status, 200);
    }
    assert_eq!(app.get(&path).await.status, 429, "the end-user budget of 3");
    // The global family (the list) is separate from the end-user family.
    assert_eq!(app.get(USERS).await.status, 200);
    assert_eq!(
        app.get(USERS).await.status,
        429,
        "user_path's POST used one global request"
    );
    // Another agent is unaffected by the first one's exhaustion.
    for _ in 0..2 {
        let response = app.send_as(&other, Method::GET, USERS, None).await;
        assert_eq!(response.status, 200);
    }
    let other_user = app.send_as(&other, Method::GET, &path, None).await;
    assert_eq!(
        other_user.status, 404,
        "within budget, and isolated: not its user"
    );
}

#[tokio::test]
async fn refused_keys_are_limited_per_address_before_any_lookup() {
    let (app, _clock) = manual(limited("off", "off")).await;
    let mut statuses = Vec::new();
    for n in 0..200 {
        let bogus = format!("eu_{n:016x}_{}", "A".repeat(43));
        let response = app.send_as(&bogus, Method::GET, USERS, None).await;
        statuses.push(response.status);
        if response.status == 429 {
            response.assert_error(429, "rate_limited", "");
            assert!(response.header("retry-after").is_some());
        }
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        10,
        "the burst of refused keys"
    );
    assert!(statuses[10..].iter().all(|s| *s == 429));
    // Once over the budget the store is not asked at all: with it closed,
    // a lookup would answer 503, but the answer stays 429.
    app.store.close().await;
    let response = app
        .send_as("eu_0000000000000000_x", Method::GET, USERS, None)
        .await;
    assert_eq!(response.status, 429);
    let metrics = app.get_url(&app.url("/metrics")).await;
    assert!(metrics.text.contains(
        "endusers_rate_limit_requests_total{family=\"failed_auth\",outcome=\"limited\"}"
    ));
}

fn shared(url: &str, prefix: &str) -> ServerConfig {
    let mut config = limited("6/s", "off");
    config.rate_limits.redis_url = Some(url.to_owned());
    config.rate_limits.redis_key_prefix = prefix.to_owned();
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_sharing_redis_enforce_one_budget() {
    let Some(url) = test_redis() else { return };
    let prefix = format!("endusers-test-{}-{}", std::process::id(), rand_suffix());
    let clock: Arc<ManualClock> = Arc::new(ManualClock::new(Timestamp::from_micros(0)));
    let a = TestApp::spawn_limited(shared(&url, &prefix), clock.clone()).await;
    let b = TestApp::spawn_limited(shared(&url, &prefix), clock).await;
    // Both databases start with agent 1 (`default`): the same budget key.
    let path_a = user_path(&a).await;
    let path_b = user_path(&b).await;
    let mut passed = 0;
    for n in 0..12 {
        let app = if n % 2 == 0 { &a } else { &b };
        let path = if n % 2 == 0 { &path_a } else { &path_b };
        if app.get(path).await.status == 200 {
            passed += 1;
        }
    }
    assert_eq!(passed, 6, "one budget of 6 across both servers");
    let metrics = a.get_url(&a.url("/metrics")).await;
    assert!(
        metrics
            .text
            .contains("endusers_rate_limit_redis_fallbacks_total 0"),
        "{}",
        metrics.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_redis_stops_requests_are_decided_locally_and_never_fail() {
    // A Redis of this test's own, so stopping it disturbs nobody.
    let probe = std::process::Command::new("redis-server")
        .arg("--version")
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        assert!(std::env::var("CI").is_err(), "CI must have redis-server");
        eprintln!("skipped: redis-server is not installed");
        return;
    }
    let port = {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        socket.local_addr().unwrap().port()
    };
    let mut redis = std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("redis://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "redis-server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let clock: Arc<ManualClock> = Arc::new(ManualClock::new(Timestamp::from_micros(0)));
    let app = TestApp::spawn_limited(shared(&url, "stop-test"), clock.clone()).await;
    let path = user_path(&app).await;
    assert_eq!(app.get(&path).await.status, 200);

    redis.kill().unwrap();
    redis.wait().unwrap();
    let started = std::time::Instant::now();
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(app.get(&path).await.status);
    }
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        6,
        "the local limiter keeps the budget"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "an outage costs no waiting per request"
    );
    let metrics = app.get_url(&app.url("/metrics")).await;
    assert!(
        !metrics
            .text
            .contains("endusers_rate_limit_redis_fallbacks_total 0\n"),
        "{}",
        metrics.text
    );
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u8(1);
    hasher.finish()
}
