//! The `endusers` binary as an operator uses it: real processes, real
//! SQLite files, real signals.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::test_redis::test_redis;
use common::{BIN, Server, client, create_key, database_url, endusers, python};

use serde_json::{Value, json};

#[test]
fn a_first_start_makes_the_default_agent_and_keys_work_until_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let url = database_url(dir.path());
    let agents = endusers(dir.path(), &["--database-url", &url, "agents", "list"]);
    assert!(String::from_utf8_lossy(&agents.stdout).starts_with("default\t"));
    assert!(
        dir.path().join("data/endusers.db").exists(),
        "the database lives where database_url says"
    );

    let key = create_key(dir.path());
    let second = create_key(dir.path());
    let key_id = &key[3..19];
    let listing = endusers(dir.path(), &["--database-url", &url, "keys", "list"]);
    let listing = String::from_utf8(listing.stdout).unwrap();
    assert!(
        listing.contains(key_id) && listing.contains("\tdefault\tci\t"),
        "{listing}"
    );
    assert!(
        !listing.contains(&key[20..]),
        "listings never show the secret"
    );

    let server = Server::start(dir.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let list = format!("{}/api/v2/end-users", server.base);
        for k in [&key, &second] {
            let status = client()
                .get(&list)
                .bearer_auth(k)
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, 200);
        }
        // Revoked by another process while the server runs: refused at once.
        let out = endusers(
            dir.path(),
            &["--database-url", &url, "keys", "revoke", key_id],
        );
        assert!(out.status.success());
        let response = client().get(&list).bearer_auth(&key).send().await.unwrap();
        assert_eq!(response.status(), 401);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["errors"][0]["type"], "unauthorized");
        let status = client()
            .get(&list)
            .bearer_auth(&second)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "other keys keep working");
    });
    let again = endusers(
        dir.path(),
        &["--database-url", &url, "keys", "revoke", key_id],
    );
    assert_eq!(again.status.code(), Some(1));
    let missing_agent = endusers(
        dir.path(),
        &[
            "--database-url",
            &url,
            "keys",
            "create",
            "--agent",
            "nobody",
        ],
    );
    assert_eq!(missing_agent.status.code(), Some(1));
    assert!(missing_agent.stdout.is_empty());
}

#[test]
fn agents_are_created_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = database_url(dir.path());
    let out = endusers(
        dir.path(),
        &["--database-url", &url, "agents", "create", "acme"],
    );
    assert!(out.status.success());
    let out = endusers(
        dir.path(),
        &["--database-url", &url, "agents", "create", "acme"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already taken"));
    let out = endusers(
        dir.path(),
        &["--database-url", &url, "agents", "create", "Not Valid"],
    );
    assert_eq!(out.status.code(), Some(1));
    let out = endusers(dir.path(), &["--database-url", &url, "agents", "list"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.lines()
            .map(|l| l.split('\t').next().unwrap())
            .collect::<Vec<_>>(),
        ["default", "acme"]
    );
}

#[test]
fn a_request_still_in_flight_when_the_grace_runs_out_does_not_hold_up_the_exit() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path());
    let grace = Duration::from_millis(500);
    let server = Server::start_with_env(dir.path(), &[("ENDUSERS_SHUTDOWN_GRACE", "500ms")]);
    // A request whose body never finishes arriving stays in flight.
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut stalled = std::net::TcpStream::connect(&address).unwrap();
    write!(
        stalled,
        "POST /api/v2/end-users HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"profile\":"
    )
    .unwrap();
    stalled.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));

    let signalled = Instant::now();
    server.signal("TERM");
    let (status, log) = server.wait(Duration::from_secs(20));
    let took = signalled.elapsed();
    assert!(status.success(), "a clean exit: {status:?}\n{log}");
    assert!(
        took >= grace && took < grace + Duration::from_secs(5),
        "exited {took:?} after the signal with a {grace:?} grace\n{log}"
    );
    assert!(log.contains("shutdown grace ran out"), "{log}");
    // Upkeep and the dispatcher were stopped and the store closed after it.
    assert!(log.contains("stopped"), "{log}");
    drop(stalled);
}

#[test]
fn sigterm_finishes_in_flight_requests_and_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path());
    let server = Server::start(dir.path());
    let base = server.base.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let acknowledged: Vec<String> = rt.block_on(async {
        let client = client();
        let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for n in 0..400 {
            let (client, base, key, counter) =
                (client.clone(), base.clone(), key.clone(), Arc::clone(&done));
            tasks.push(tokio::spawn(async move {
                let response = client
                    .post(format!("{base}/api/v2/end-users"))
                    .bearer_auth(&key)
                    .json(&json!({"profile": {"metadata": {"n": n}}}))
                    .send()
                    .await
                    .ok()?;
                if response.status() != 201 {
                    return None;
                }
                let body: Value = response.json().await.ok()?;
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                body["end_user_id"].as_str().map(str::to_owned)
            }));
            if n == 200 {
                // Signal while requests are in flight: some acknowledged,
                // many still on the wire.
                while done.load(std::sync::atomic::Ordering::SeqCst) < 20 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                server.signal("TERM");
            }
        }
        let mut ids = Vec::new();
        for task in tasks {
            ids.extend(task.await.unwrap());
        }
        ids
    });
    let (status, log) = server.wait(Duration::from_secs(20));
    assert!(status.success(), "a clean exit: {status:?}\n{log}");
    assert!(
        log.contains("shutting down") && log.contains("stopped"),
        "{log}"
    );
    assert!(!acknowledged.is_empty());

    let server = Server::start(dir.path());
    rt.block_on(async {
        for id in &acknowledged {
            let response = client()
                .get(format!("{}/api/v2/end-users/{id}", server.base))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap();
            assert_eq!(
                response.status(),
                200,
                "acknowledged user {id} survived the restart"
            );
        }
    });
    server.signal("INT");
    let (status, _) = server.wait(Duration::from_secs(20));
    assert!(status.success());
}

#[test]
fn configuration_layers_flag_over_env_over_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("endusers.toml");
    std::fs::write(
        &file,
        "max_body_bytes = 1000\nmax_metadata_bytes = 5000\nlisten = \"127.0.0.1:9999\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .current_dir(dir.path())
        .env("ENDUSERS_MAX_BODY_BYTES", "2000")
        .env("ENDUSERS_DATABASE_URL", "sqlite://env.db")
        .args([
            "--config",
            file.to_str().unwrap(),
            "--database-url",
            "sqlite://flag.db",
            "config",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for expected in [
        "max_body_bytes = 2000",
        "max_metadata_bytes = 5000",
        "listen = \"127.0.0.1:9999\"",
        "database_url = \"sqlite://flag.db\"",
        "shutdown_grace = \"30s\"",
    ] {
        assert!(
            text.lines().any(|l| l == expected),
            "missing {expected:?} in\n{text}"
        );
    }
}

#[test]
fn a_bad_configuration_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "shutdown_grace = \"whenever\"\n").unwrap();
    let out = endusers(dir.path(), &["--config", file.to_str().unwrap(), "config"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("shutdown_grace"));
    // No delivery could ever be sent: refused, not quietly raised to 1.
    std::fs::write(&file, "webhook_endpoint_concurrency = 0\n").unwrap();
    let out = endusers(dir.path(), &["--config", file.to_str().unwrap(), "config"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("webhook_endpoint_concurrency"));
    let missing = endusers(dir.path(), &["--config", "nope.toml", "config"]);
    assert_eq!(missing.status.code(), Some(2));
}

/// A URL this build has no backend for is refused, and its password is
/// not repeated: not in the error, not anywhere else the binary prints.
#[test]
fn a_postgres_url_is_refused_without_repeating_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let url = "postgres://app:hunter2@db.internal/endusers?password=hunter2";
    for command in [
        &["migrate"][..],
        &["serve", "--listen", "127.0.0.1:0"][..],
        &["config"][..],
    ] {
        // With a master key, as a non-SQLite database requires: the
        // refusal comes from opening the database.
        let out = Command::new(BIN)
            .current_dir(dir.path())
            .env_remove("ENDUSERS_CONFIG")
            .env(
                "ENDUSERS_MASTER_KEY",
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            )
            .args(["--database-url", url])
            .args(command)
            .output()
            .unwrap();
        // `config` only shows the settings; the others open the database.
        assert_eq!(out.status.success(), command == ["config"], "{command:?}");
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if command != ["config"] {
            assert!(
                printed.contains("PostgreSQL backend is not built yet"),
                "{printed}"
            );
        }
        assert!(
            printed.contains("postgres://db.internal/endusers"),
            "{printed}"
        );
        assert!(
            !printed.contains("hunter2"),
            "{command:?} printed the password: {printed}"
        );
    }
}

/// The published document is valid OpenAPI 3.1 by an independent
/// validator. Needs Python's openapi-spec-validator; in CI it must run.
#[test]
fn the_openapi_document_passes_a_standard_validator() {
    let dir = tempfile::tempdir().unwrap();
    let out = endusers(dir.path(), &["openapi"]);
    assert!(out.status.success());
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let path: PathBuf = dir.path().join("openapi.json");
    std::fs::write(&path, &out.stdout).unwrap();
    let validator = python()
        .args(["-m", "openapi_spec_validator"])
        .arg(&path)
        .output();
    match validator {
        Ok(result) if result.status.success() => {}
        Ok(result) if String::from_utf8_lossy(&result.stderr).contains("No module named") => {
            assert!(
                std::env::var("CI").is_err(),
                "CI must install openapi-spec-validator"
            );
            eprintln!("skipped: openapi-spec-validator is not installed; scripts/test installs it");
        }
        Ok(result) => panic!(
            "the validator refused the document:\n{}{}",
            String::from_utf8_lossy(&result.stdout),
            String::from_utf8_lossy(&result.stderr)
        ),
        Err(err) => {
            assert!(std::env::var("CI").is_err(), "CI must have python3: {err}");
            eprintln!("skipped: no Python interpreter (ENDUSERS_TEST_PYTHON or python3): {err}");
        }
    }
}

#[test]
fn the_first_start_makes_a_private_key_file_and_logs_where_not_what() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let key_file = dir.path().join("data/endusers.db.master-keys");
    server.signal("TERM");
    let (status, log) = server.wait(Duration::from_secs(20));
    assert!(status.success());
    let text = std::fs::read_to_string(&key_file).unwrap();
    let key = text
        .lines()
        .find_map(|l| l.strip_prefix("active "))
        .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    assert!(
        log.contains("endusers.db.master-keys"),
        "the log says where the key is:\n{log}"
    );
    assert!(!log.contains(key), "the log never shows the key");
}

#[test]
fn master_keys_rotate_and_retire_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let url = database_url(dir.path());
    let key = create_key(dir.path());
    let run = |args: &[&str]| {
        let mut all = vec!["--database-url", url.as_str(), "master-key"];
        all.extend_from_slice(args);
        let out = endusers(dir.path(), &all);
        let stdout = String::from_utf8(out.stdout).unwrap();
        (
            out.status.code(),
            stdout,
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    // Before any server made a key file, status says so and makes none.
    let (code, _, stderr) = run(&["status"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("no key file"), "{stderr}");
    assert!(!dir.path().join("data/endusers.db.master-keys").exists());
    let server = Server::start(dir.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let response = client()
            .post(format!("{}/api/v2/end-users", server.base))
            .bearer_auth(&key)
            .json(&json!({"profile": {"sensitive_metadata": {"fields": {"token": "abc"}}}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    });
    let (code, status, _) = run(&["status"]);
    assert_eq!(code, Some(0));
    let old = status
        .lines()
        .next()
        .unwrap()
        .split('\t')
        .nth(1)
        .unwrap()
        .to_owned();
    assert!(
        status.starts_with(&format!("active\t{old}\t1 values")),
        "{status}"
    );

    let (code, rotated, _) = run(&["rotate"]);
    assert_eq!(code, Some(0));
    let new = rotated
        .trim()
        .strip_prefix("active key is now ")
        .unwrap()
        .to_owned();
    assert_ne!(new, old);
    // The running server notices the new key file and re-seals (interval 10 s by default; poll).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, status, _) = run(&["status"]);
        if status.contains(&format!("active\t{new}\t1 values"))
            && status.contains(&format!("retired\t{old}\t0 values"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not re-sealed in time:\n{status}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, dropped, _) = run(&["drop-retired"]);
    assert_eq!(code, Some(0));
    assert_eq!(dropped.trim(), format!("dropped {old}"));
    let (_, status, _) = run(&["status"]);
    assert_eq!(status.lines().count(), 1, "{status}");
    server.signal("TERM");
    assert!(server.wait(Duration::from_secs(20)).0.success());

    let (code, generated, _) = run(&["generate"]);
    assert_eq!(code, Some(0));
    assert_eq!(generated.trim().len(), 44, "base64 of 32 bytes");
}

#[test]
fn configured_secrets_are_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let key = "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=";
    let out = Command::new(BIN)
        .current_dir(dir.path())
        .env("ENDUSERS_MASTER_KEY", key)
        .env("ENDUSERS_RETIRED_MASTER_KEYS", key)
        .env(
            "ENDUSERS_REDIS_URL",
            "redis://:hunter2-redis@127.0.0.1:6379",
        )
        .arg("config")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains(key), "{text}");
    assert!(!text.contains("hunter2-redis"), "{text}");
    assert!(text.contains("master_key = \"<redacted>\""), "{text}");
    assert!(text.contains("redis_url = \"<redacted>\""), "{text}");
    let rotate = Command::new(BIN)
        .current_dir(dir.path())
        .env("ENDUSERS_MASTER_KEY", key)
        .args(["master-key", "rotate"])
        .output()
        .unwrap();
    assert_eq!(
        rotate.status.code(),
        Some(1),
        "rotation of a configured key is the operator's"
    );
}

#[test]
fn with_a_two_second_orphan_ttl_unused_users_vanish_and_used_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path());
    let server = Server::start_with_env(
        dir.path(),
        &[
            ("ENDUSERS_ORPHAN_TTL", "2s"),
            ("ENDUSERS_MAINTENANCE_INTERVAL", "200ms"),
        ],
    );
    let base = server.base.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let post = |path: &str, body: Value| {
            client()
                .post(format!("{base}{path}"))
                .bearer_auth(&key)
                .json(&body)
                .send()
        };
        let channel: Value = post(
            "/api/v2/channels/",
            json!({"name": "web", "modality": "messaging"}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let orphan: Value = post(
            "/api/v2/end-users/",
            json!({"profile": {"sensitive_metadata": {"fields": {"token": "t"}}}}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let kept: Value = post("/api/v2/end-users/", json!({}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let conversation = post(
            "/api/v2/conversations/",
            json!({"channel_id": channel["id"], "end_user_id": kept["end_user_id"]}),
        )
        .await
        .unwrap();
        assert_eq!(conversation.status(), 201);
        let made_by_conversation: Value = post(
            "/api/v2/conversations/",
            json!({"channel_id": channel["id"]}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

        tokio::time::sleep(Duration::from_millis(3000)).await;
        let status = |id: &Value| {
            let url = format!("{base}/api/v2/end-users/{}", id.as_str().unwrap());
            let key = key.clone();
            async move {
                client()
                    .get(url)
                    .bearer_auth(key)
                    .send()
                    .await
                    .unwrap()
                    .status()
            }
        };
        assert_eq!(
            status(&orphan["end_user_id"]).await,
            404,
            "an unused POSTed user is deleted"
        );
        assert_eq!(
            status(&kept["end_user_id"]).await,
            200,
            "a user a conversation used stays"
        );
        assert_eq!(
            status(&made_by_conversation["end_user_id"]).await,
            200,
            "users made by conversations are never orphans"
        );
    });
    server.signal("TERM");
    assert!(server.wait(Duration::from_secs(20)).0.success());
}

#[test]
fn agents_set_limits_applies_to_a_running_server_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url = database_url(dir.path());
    let key = create_key(dir.path());
    let server = Server::start_with_env(dir.path(), &[("ENDUSERS_RATE_LIMIT_GLOBAL", "100/s")]);
    let list = format!("{}/api/v2/end-users/", server.base);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let statuses = |n: usize| {
        let (list, key) = (list.clone(), key.clone());
        rt.block_on(async move {
            let mut out = Vec::new();
            for _ in 0..n {
                let response = client().get(&list).bearer_auth(&key).send().await.unwrap();
                out.push((
                    response.status().as_u16(),
                    response.headers().get("ratelimit-policy").cloned(),
                ));
            }
            out
        })
    };
    assert!(statuses(5).iter().all(|(s, _)| *s == 200));
    let set_global = |limit: &str| {
        endusers(
            dir.path(),
            &[
                "--database-url",
                &url,
                "agents",
                "set-limits",
                "default",
                "--global",
                limit,
            ],
        )
    };
    let out = set_global("2/s");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "default\tend_user=default\tglobal=2/s"
    );
    let after = statuses(4);
    assert_eq!(
        after.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [200, 200, 429, 429]
    );
    assert_eq!(after[0].1.as_ref().unwrap(), "\"per-second\";q=2;w=1");
    assert_eq!(set_global("2/week").status.code(), Some(1));
    let reset = || set_global("default");
    assert!(reset().status.success());
    // The same limits again change nothing, so no server drops its keys.
    let marker = dir.path().join("data/endusers.db.keys-changed");
    let before = std::fs::metadata(&marker).unwrap().len();
    assert!(reset().status.success());
    assert_eq!(std::fs::metadata(&marker).unwrap().len(), before);
    server.signal("TERM");
    assert!(server.wait(Duration::from_secs(20)).0.success());
}

/// Two `endusers serve` processes on one database and one Redis: one budget.
#[test]
fn two_server_processes_sharing_redis_enforce_one_budget() {
    let Some(redis) = test_redis() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path());
    let prefix = format!("endusers-cli-test-{}", std::process::id());
    let env = [
        ("ENDUSERS_REDIS_URL", redis.as_str()),
        ("ENDUSERS_REDIS_KEY_PREFIX", prefix.as_str()),
        ("ENDUSERS_RATE_LIMIT_GLOBAL", "8/m"),
    ];
    let first = Server::start_with_env(dir.path(), &env);
    let second = Server::start_with_env(dir.path(), &env);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let passed = rt.block_on(async {
        let mut passed = 0;
        for n in 0..20 {
            let base = if n % 2 == 0 {
                &first.base
            } else {
                &second.base
            };
            let response = client()
                .get(format!("{base}/api/v2/end-users/"))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap();
            if response.status() == 200 {
                passed += 1;
            }
        }
        passed
    });
    assert_eq!(passed, 8, "8 a minute across both processes, not 8 each");
    for server in [first, second] {
        server.signal("TERM");
        assert!(server.wait(Duration::from_secs(20)).0.success());
    }
}
