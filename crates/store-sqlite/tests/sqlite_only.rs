//! The SQLite backend's own behaviour, beyond the contract every backend
//! has: several processes on one file, its files, its log and its readers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use endusers_core::{AgentHandle, AgentId, IdGenerator, Timestamp};
use endusers_store::contract::*;
use endusers_store::{NextStep, Store};
use serde_json::json;

/// The file of a [`sqlite`] fixture.
const SQLITE_FILE: &str = "suite.db";

/// A store on the file a `sqlite://` URL names.
async fn open(url: &str) -> Arc<dyn Store> {
    let path = endusers_store_sqlite::path_from_url(url).unwrap();
    Arc::new(
        endusers_store_sqlite::SqliteStore::open(&path, Default::default(), NOW)
            .await
            .unwrap(),
    )
}

/// A fresh store on a new file, and the file.
async fn sqlite() -> (Fixture, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(SQLITE_FILE);
    let store = endusers_store_sqlite::SqliteStore::open(&file, Default::default(), NOW)
        .await
        .unwrap();
    (Fixture::new(Arc::new(store), dir), file)
}

/// What pruning removed, and how pending deliveries are counted, on this
/// backend (the contract case checks the rest).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_old_history_is_pruned_but_pending_deliveries_are_kept() {
    let (pruned, counts, pruned_later) =
        old_history_is_pruned_but_pending_deliveries_are_kept(sqlite().await.0).await;
    assert_eq!(
        pruned,
        4 + 1,
        "4 attempts and msg_a's finished delivery row; no message: ep_2 has msg_b out, \
         so its stored position is still before msg_a, which it passed over"
    );
    assert_eq!(
        counts,
        (1, 0, 0),
        "msg_b's delivery to ep_2 is pending; the history of the delivered ones went with their attempts"
    );
    assert_eq!(
        pruned_later,
        1 + 1,
        "ep_2's attempt, and msg_a now that ep_2 has passed it; msg_b waits in its delivery row"
    );
}

/// A message's number is never given out again, not even the newest's
/// once it is pruned: the endpoint that read up to it would pass over the
/// next message, numbered the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_pruned_newest_message_keeps_its_number_to_itself() {
    assert_eq!(
        a_pruned_newest_message_keeps_its_number_to_itself(sqlite().await.0).await,
        2 + 2,
        "both attempts and both messages, the newest among them"
    );
}

/// Out of order successes move the stored position only as far as the
/// oldest delivery still out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_the_cursor_moves_past_finished_deliveries_only() {
    assert_eq!(
        the_cursor_moves_past_finished_deliveries_only(sqlite().await.0).await,
        (4, 2, 0),
        "the stored position waits for msg_0, so all four count as pending"
    );
}

/// Two stores on one file stand for two processes: only one reads the
/// outbox, or both would send every message; the moment it closes (or
/// dies), the other reads on from the stored position.
#[tokio::test]
async fn sqlite_one_process_reads_the_outbox_and_another_takes_over_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (first, url, agent) = sqlite_store(&dir, "outbox.db").await;
    let second = open(&url).await;
    first
        .create_webhook(endpoint(agent, "ep_1", &[]))
        .await
        .unwrap();
    let f = Fixture::new(first, dir);
    f.users_with_events(agent, 2).await;
    let far = NOW.saturating_add(std::time::Duration::from_secs(3600));
    let out = f.claim(NOW, NOW, room(1, &[])).await;
    assert_eq!(out.len(), 1);
    f.record(vec![record(&out[0], NextStep::Delivered, NOW)], NOW)
        .await;
    assert!(
        second
            .claim_deliveries(far, far, room(10, &[]))
            .await
            .unwrap()
            .is_empty(),
        "the first store reads the outbox"
    );
    f.store.close().await;
    let taken = second
        .claim_deliveries(NOW, NOW, room(10, &[]))
        .await
        .unwrap();
    let ids: Vec<&str> = taken.iter().map(|d| d.message_id.as_str()).collect();
    assert_eq!(ids, ["msg_1"], "read on from where the first one got to");
    second.close().await;
}

/// Two processes on one file: one reads the outbox and has deliveries out
/// when the other disables the endpoint and enables it again. The copies
/// the second parks wait for the first one's leases, and the first one's
/// answers settle them: nothing is sent twice.
#[tokio::test]
async fn sqlite_a_toggle_in_another_process_sends_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (first, url, agent) = sqlite_store(&dir, "toggle.db").await;
    let second = open(&url).await;
    let secs = |n| NOW.saturating_add(std::time::Duration::from_secs(n));
    first
        .create_webhook(endpoint(agent, "ep_1", &[]))
        .await
        .unwrap();
    let f = Fixture::new(first, dir);
    f.users_with_events(agent, 2).await;
    let out = f.claim(NOW, secs(30), room(10, &[])).await;
    assert_eq!(out.len(), 2);
    // The second process's dispatcher claims too: only rows, none yet.
    assert!(
        second
            .claim_deliveries(NOW, secs(30), room(10, &[]))
            .await
            .unwrap()
            .is_empty()
    );
    for enabled in [false, true] {
        second
            .update_webhook(
                agent,
                "ep_1",
                Box::new(move |e| e.standing.enabled = enabled),
            )
            .await
            .unwrap();
    }
    for store in [&f.store, &second] {
        assert!(
            store
                .claim_deliveries(secs(1), secs(31), room(10, &[]))
                .await
                .unwrap()
                .is_empty(),
            "both are still out"
        );
    }
    f.record(
        out.iter()
            .map(|d| record(d, NextStep::Delivered, secs(2)))
            .collect(),
        NOW,
    )
    .await;
    for store in [&f.store, &second] {
        assert!(
            store
                .claim_deliveries(secs(3600), secs(3630), room(10, &[]))
                .await
                .unwrap()
                .is_empty(),
            "both arrived: nothing waits"
        );
    }
    second.close().await;
}

#[tokio::test]
async fn sqlite_data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("reopen.db").display());
    let store = open(&url).await;
    let agent = store.list_agents().await.unwrap()[0].id;
    let fixture = Fixture::new(store, dir);
    let user = fixture
        .create(agent, json!({"profile": {"email": "a@example.com"}}))
        .await;
    fixture.store.close().await;
    let reopened = open(&url).await;
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

/// For the SQLite-only tests below: a store on `name` in `dir`, its URL
/// (to open a second store on the same file), and its first agent.
async fn sqlite_store(dir: &tempfile::TempDir, name: &str) -> (Arc<dyn Store>, String, AgentId) {
    let url = format!("sqlite://{}", dir.path().join(name).display());
    let store = open(&url).await;
    let agent = store.list_agents().await.unwrap()[0].id;
    (store, url, agent)
}

/// When the key was revoked, as `store` sees it now (the key must exist).
async fn revoked_at(store: &dyn Store, key_id: &str) -> Option<Timestamp> {
    store
        .find_api_key(key_id)
        .await
        .unwrap()
        .unwrap()
        .revoked_at
}

fn api_key(key_id: &str, agent: AgentId) -> endusers_store::NewApiKey {
    endusers_store::NewApiKey {
        key_id: key_id.to_owned(),
        agent_id: agent,
        name: None,
        secret_hash: [9; 32],
        created_at: NOW,
    }
}

/// Two stores on one file stand for two processes: a key revoked or an
/// agent's limits changed through one is seen by the other's next lookup,
/// however often the other has looked the key up before.
#[tokio::test]
async fn sqlite_key_changes_by_another_store_are_seen_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (server, url, agent) = sqlite_store(&dir, "two.db").await;
    let admin = open(&url).await;
    admin.insert_api_key(api_key("k2", agent)).await.unwrap();
    for _ in 0..3 {
        let found = server.find_api_key("k2").await.unwrap().unwrap();
        assert_eq!(found.revoked_at, None);
        assert_eq!(found.agent_limits, endusers_store::AgentLimits::default());
    }

    let limits = endusers_store::AgentLimits {
        end_user: Some(endusers_core::RatePolicy::parse("5/s").unwrap()),
        global: None,
    };
    assert!(
        admin
            .set_agent_limits(&AgentHandle::default_handle(), limits.clone())
            .await
            .unwrap()
    );
    let found = server.find_api_key("k2").await.unwrap().unwrap();
    assert_eq!(found.agent_limits, limits);

    assert!(admin.revoke_api_key("k2", NOW).await.unwrap());
    assert_eq!(revoked_at(&*server, "k2").await, Some(NOW));
    server.close().await;
    admin.close().await;
}

/// A marker file deleted while a server runs is followed once it is made
/// anew: changes written after that still reach the running store.
#[tokio::test]
async fn sqlite_a_deleted_key_marker_is_followed_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let (server, url, agent) = sqlite_store(&dir, "marker.db").await;
    server.insert_api_key(api_key("k3", agent)).await.unwrap();
    assert_eq!(revoked_at(&*server, "k3").await, None);

    std::fs::remove_file(dir.path().join("marker.db.keys-changed")).unwrap();
    let admin = open(&url).await;
    assert!(admin.revoke_api_key("k3", NOW).await.unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    assert_eq!(revoked_at(&*server, "k3").await, Some(NOW));
    server.close().await;
    admin.close().await;
}

/// A stored row that no longer parses is an error, never a default: empty
/// event filters would subscribe the endpoint to every event, and empty
/// channel metadata would be written back over the real one.
#[tokio::test]
async fn sqlite_damaged_rows_are_errors_not_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, agent) = sqlite_store(&dir, "damaged.db").await;
    store
        .create_webhook(endpoint(agent, "ep_damaged", &["v1.end_user.updated"]))
        .await
        .unwrap();
    let raw = rusqlite::Connection::open(dir.path().join("damaged.db")).unwrap();
    raw.execute(
        "UPDATE webhook_endpoints SET event_filters = 'not json' WHERE id = 'ep_damaged'",
        [],
    )
    .unwrap();
    assert!(store.get_webhook(agent, "ep_damaged").await.is_err());

    // An orphan whose id no longer parses is swept all the same, instead of
    // being found again on every pass.
    raw.execute(
        "INSERT INTO end_users (agent_id, id, version, created_at, updated_at, orphan_until)
         VALUES (?1, 'not-an-id', 1, 0, 0, 0)",
        [agent.0],
    )
    .unwrap();
    assert_eq!(store.delete_orphans(NOW, 10).await.unwrap(), 1);
    let left: i64 = raw
        .query_row("SELECT count(*) FROM end_users", [], |row| row.get(0))
        .unwrap();
    assert_eq!(left, 0);

    // An id that no longer parses, whether the row's own or a reference.
    raw.execute(
        "INSERT INTO end_users (agent_id, id, version, created_at, updated_at)
         VALUES (?1, 'not-an-id', 1, 0, 0)",
        [agent.0],
    )
    .unwrap();
    assert!(store.list_end_users(agent, None, 10).await.is_err());
    raw.execute("DELETE FROM end_users WHERE id = 'not-an-id'", [])
        .unwrap();
    assert!(store.list_end_users(agent, None, 10).await.is_ok());

    // Metadata that is no longer one JSON object: an error, whether the
    // user is read or answered straight from the row, never broken JSON.
    let id = IdGenerator::new().next(NOW, rand_u64());
    for damaged in ["{\"n\":1", "[1]", "{\"n\":1} {}", "{\"n\":1.5}"] {
        raw.execute("DELETE FROM end_users", []).unwrap();
        raw.execute(
            "INSERT INTO end_users (agent_id, id, metadata, version, created_at, updated_at)
             VALUES (?1, ?2, ?3, 1, 0, 0)",
            rusqlite::params![agent.0, id.text().as_str(), damaged],
        )
        .unwrap();
        assert!(store.get_end_user(agent, id).await.is_err(), "{damaged}");
        assert!(
            store.get_end_user_json(agent, id).await.is_err(),
            "{damaged}"
        );
    }
    raw.execute("DELETE FROM end_users", []).unwrap();

    // A rate-limit override that no longer parses: the agent's own limit is
    // not silently replaced by the default.
    store
        .insert_api_key(api_key("k_damaged", agent))
        .await
        .unwrap();
    raw.execute(
        "UPDATE agents SET rate_limit_global = 'nonsense' WHERE id = ?1",
        [agent.0],
    )
    .unwrap();
    assert!(store.find_api_key("k_damaged").await.is_err());
    assert!(
        store
            .agent_limits(&AgentHandle::default_handle())
            .await
            .is_err()
    );
    store.close().await;
}

/// The bundled SQLite is built with the options in `.cargo/config.toml`:
/// without them every page fetch of every connection takes one global
/// mutex. Checked here because a build that missed them (the variable set
/// elsewhere, say) would still pass every other test, only slower.
#[test]
fn sqlite_is_built_without_the_locks_every_connection_shares() {
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    let options: Vec<String> = conn
        .prepare("PRAGMA compile_options")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
        "{options:?}"
    );
    assert!(
        options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
        "{options:?}"
    );
}

/// The writer never checkpoints; a thread of its own copies the log back
/// into the database file within about a second, with no commit
/// needed to set it off.
#[tokio::test]
async fn sqlite_the_log_is_copied_back_into_the_database_file_in_the_background() {
    let (fixture, file) = sqlite().await;
    let agent = fixture.default_agent().await;
    let file = file.clone();
    // Let any checkpoint of the migrations finish first.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let before = std::fs::metadata(&file).unwrap().len();
    // A few hundred pages of users: far below the 1,000 pages at which
    // SQLite's own automatic checkpoint would run.
    for n in 0..400 {
        let name = format!("user {n} {}", "x".repeat(200));
        fixture
            .create(agent, json!({"profile": {"first_name": name}}))
            .await;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let mut after = before;
    while after <= before && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        after = std::fs::metadata(&file).unwrap().len();
    }
    assert!(
        after > before,
        "the database file stayed at {before} bytes: the log was not copied back"
    );
    fixture.store.close().await;
}

/// The checkpoint sequence number in a `-wal` file's header: SQLite adds
/// one each time the log starts over from its beginning.
fn log_restarts(wal: &std::path::Path) -> Option<u32> {
    use std::io::Read as _;
    // The header only: the log itself runs to megabytes.
    let mut header = [0u8; 16];
    std::fs::File::open(wal)
        .ok()?
        .read_exact(&mut header)
        .ok()?;
    let [.., a, b, c, d] = header;
    Some(u32::from_be_bytes([a, b, c, d]))
}

/// Under a stream of writes that never pauses (and readers that never
/// stop), the log still starts over every second or so instead of growing
/// without end: the writer finishes what the background checkpoint could
/// not copy while commits kept coming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_the_log_starts_over_under_writes_that_never_pause() {
    let (fixture, file) = sqlite().await;
    let fixture = Arc::new(fixture);
    let agent = fixture.default_agent().await;
    let wal = file.with_file_name(format!("{SQLITE_FILE}-wal"));
    let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (fixture, running) = (Arc::clone(&fixture), Arc::clone(&running));
        tasks.push(tokio::spawn(async move {
            let mut last = None;
            while running.load(std::sync::atomic::Ordering::Relaxed) {
                let name = "x".repeat(200);
                let user = fixture
                    .create(agent, json!({"profile": {"first_name": name}}))
                    .await;
                if let Some(id) = last {
                    fixture.store.get_end_user(agent, id).await.unwrap();
                }
                last = Some(user.end_user_id);
            }
        }));
    }
    let mut seen = std::collections::BTreeSet::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(4500);
    while std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        seen.extend(log_restarts(&wal));
    }
    running.store(false, std::sync::atomic::Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    assert!(
        seen.len() >= 3,
        "the log started over {} times in 4.5 s of steady writes (sequence numbers seen: {seen:?})",
        seen.len().saturating_sub(1)
    );
    fixture.store.close().await;
}

/// Checkpoints from another connection (as another process would) until
/// one runs and copies the whole log, for up to `within`; whether one did.
/// A checkpoint that could not run at all (another one held the lock)
/// reports -1 frames for both counts, which is not a copy of everything.
async fn whole_log_copied_elsewhere(
    raw: &rusqlite::Connection,
    within: std::time::Duration,
) -> bool {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        let (busy, log, copied): (i64, i64, i64) = raw
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .unwrap();
        if busy == 0 && log >= 0 && log == copied {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    false
}

/// A second connection to a fixture's database that never waits for a lock.
fn raw_connection(file: &std::path::Path) -> rusqlite::Connection {
    let raw = rusqlite::Connection::open(file).unwrap();
    raw.busy_timeout(std::time::Duration::ZERO).unwrap();
    raw
}

/// After each commit the store keeps one read transaction open at that
/// commit, so that reads need no file lock of their own (its read anchor).
/// It must sit at the newest commit, never holding a checkpoint back: a
/// checkpoint from elsewhere still copies the whole log. And it must be
/// there: starting the log over needs every reader off the log, so another
/// connection's attempt is refused while the anchor holds.
#[tokio::test]
async fn sqlite_a_read_transaction_stays_open_at_the_newest_commit() {
    let (fixture, file) = sqlite().await;
    let agent = fixture.default_agent().await;
    let raw = raw_connection(&file);
    for round in 0..3 {
        fixture
            .create(
                agent,
                json!({"profile": {"first_name": format!("round {round}")}}),
            )
            .await;
        // The writer answers before it moves the anchor: give it a moment.
        assert!(
            whole_log_copied_elsewhere(&raw, std::time::Duration::from_secs(2)).await,
            "round {round}: a reader holds the log back"
        );
        let busy: i64 = raw
            .query_row("PRAGMA wal_checkpoint(RESTART)", [], |row| row.get(0))
            .unwrap();
        assert_eq!(busy, 1, "round {round}: nobody was reading the log");
    }
    fixture.store.close().await;
}

/// The read anchor also follows commits made elsewhere (an admin command,
/// another server on the same file) while this store writes nothing: left
/// at its own last commit, it would keep their pages in the log for good.
#[tokio::test]
async fn sqlite_the_read_anchor_follows_commits_made_elsewhere() {
    let (fixture, file) = sqlite().await;
    let agent = fixture.default_agent().await;
    fixture.create(agent, json!({"profile": {}})).await;
    let raw = raw_connection(&file);
    raw.pragma_update(None, "user_version", 7).unwrap();
    assert!(
        whole_log_copied_elsewhere(&raw, std::time::Duration::from_secs(3)).await,
        "the anchor kept another connection's commit in the log"
    );
    fixture.store.close().await;
}
