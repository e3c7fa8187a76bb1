//! Webhooks end to end against the real binary: every delivery is checked
//! by the unmodified `svix` and `standardwebhooks` Python libraries, and a
//! `kill -9` in the middle of a burst loses no committed event.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Server, client, create_key, python};
use serde_json::{Value, json};

/// The Python receiver, or `None` (with a notice) where its libraries are
/// missing; in CI they must be there.
struct Receiver {
    child: Child,
    port: u16,
    secret_file: PathBuf,
    log_file: PathBuf,
}

impl Receiver {
    fn start(dir: &Path) -> Option<Self> {
        let probe = python()
            .args(["-c", "import svix, standardwebhooks"])
            .output();
        if !probe.as_ref().is_ok_and(|o| o.status.success()) {
            assert!(
                std::env::var("CI").is_err(),
                "CI must install the svix and standardwebhooks Python packages"
            );
            eprintln!(
                "skipped: svix and standardwebhooks are not installed; scripts/test installs them"
            );
            return None;
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/webhook_receiver.py");
        let secret_file = dir.join("secret");
        let log_file = dir.join("deliveries.jsonl");
        std::fs::write(&secret_file, "").unwrap();
        let mut child = python()
            .arg(script)
            .arg(&secret_file)
            .arg(&log_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let port = first.trim().parse().expect("the receiver prints its port");
        Some(Self {
            child,
            port,
            secret_file,
            log_file,
        })
    }

    fn deliveries(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log_file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const FAST_WEBHOOKS: &[(&str, &str)] = &[
    ("ENDUSERS_WEBHOOKS_ALLOW_INSECURE", "true"),
    ("ENDUSERS_WEBHOOK_TIMEOUT", "2s"),
    (
        "ENDUSERS_WEBHOOK_RETRY_SCHEDULE",
        "0s,500ms,1s,1s,1s,1s,1s,1s",
    ),
];

async fn subscribe(base: &str, key: &str, receiver: &Receiver) {
    let response = client()
        .post(format!("{base}/api/v2/webhooks/"))
        .bearer_auth(key)
        .json(&json!({"url": format!("http://127.0.0.1:{}/hook", receiver.port)}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let endpoint: Value = response.json().await.unwrap();
    let id = endpoint["id"].as_str().unwrap();
    let secret: Value = client()
        .get(format!("{base}/api/v2/webhooks/{id}/secret/"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    std::fs::write(&receiver.secret_file, secret["key"].as_str().unwrap()).unwrap();
}

/// How many messages reached the disk, read straight from the database
/// file. SQLite only: these tests run the binary on its embedded default,
/// and after `kill -9` only the file tells what was committed.
fn messages_in_the_sqlite_file(dir: &Path) -> usize {
    let conn = rusqlite::Connection::open(dir.join("data/endusers.db")).unwrap();
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM webhook_messages", [], |r| r.get(0))
        .unwrap();
    usize::try_from(n).unwrap()
}

#[test]
fn kill_dash_nine_mid_burst_loses_no_committed_event_and_every_delivery_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let Some(receiver) = Receiver::start(dir.path()) else {
        return;
    };
    let key = create_key(dir.path());
    let server = Server::start_with_env(dir.path(), FAST_WEBHOOKS);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let base = server.base.clone();
    let acknowledged = rt.block_on(async {
        subscribe(&base, &key, &receiver).await;
        let user: Value = client()
            .post(format!("{base}/api/v2/end-users/"))
            .bearer_auth(&key)
            .json(&json!({"profile": {"first_name": "Ada"}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let path = format!(
            "{base}/api/v2/end-users/{}",
            user["end_user_id"].as_str().unwrap()
        );
        // 2,000 updates, 64 at a time; kill -9 once half are acknowledged.
        let acknowledged = Arc::new(AtomicUsize::new(0));
        let next = Arc::new(AtomicUsize::new(0));
        let mut workers = Vec::new();
        for _ in 0..64 {
            let (path, key, acknowledged, next) = (
                path.clone(),
                key.clone(),
                acknowledged.clone(),
                next.clone(),
            );
            workers.push(tokio::spawn(async move {
                let client = client();
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= 2000 {
                        return;
                    }
                    let sent = client
                        .patch(&path)
                        .bearer_auth(&key)
                        .json(&json!({"profile": {"metadata": {"n": n}}}))
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status() == 200 => {
                            acknowledged.fetch_add(1, Ordering::SeqCst);
                        }
                        _ => return,
                    }
                }
            }));
        }
        while acknowledged.load(Ordering::SeqCst) < 1000 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        server.signal("KILL");
        for worker in workers {
            let _ = worker.await;
        }
        acknowledged.load(Ordering::SeqCst)
    });
    let (status, _) = server.wait(Duration::from_secs(10));
    assert!(!status.success(), "killed, not stopped");

    // Every event acknowledged or not that made it to disk must be delivered.
    let committed = messages_in_the_sqlite_file(dir.path());
    assert!(
        committed > acknowledged,
        "1 create + every acknowledged update: {committed} vs {acknowledged}"
    );
    let restarted = Server::start_with_env(dir.path(), FAST_WEBHOOKS);
    let deadline = Instant::now() + Duration::from_secs(90);
    let delivered = loop {
        let deliveries = receiver.deliveries();
        let ids: HashSet<String> = deliveries
            .iter()
            .filter_map(|d| d["id"].as_str().map(str::to_owned))
            .collect();
        if ids.len() >= committed || Instant::now() > deadline {
            break (deliveries, ids);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let (deliveries, ids) = delivered;
    eprintln!(
        "acknowledged {acknowledged} updates, committed {committed} events, {} deliveries of {} distinct ids",
        deliveries.len(),
        ids.len()
    );
    assert_eq!(
        ids.len(),
        committed,
        "distinct delivered ids = committed events"
    );
    for d in &deliveries {
        assert!(
            d["svix"].is_null() && d["standard"].is_null(),
            "a library refused a delivery: {d}"
        );
    }
    restarted.signal("TERM");
    assert!(restarted.wait(Duration::from_secs(20)).0.success());
}
