//! The embedded backend of endusers: one SQLite file in WAL mode with
//! `synchronous=FULL`, so an acknowledged write is on disk.
//!
//! One thread owns the write connection and commits queued writes together
//! (see [`writer`]); a few reader threads own read-only connections, which
//! WAL lets run beside the writer.

/// The SQL expression "the newest message number given out", which the
/// statements of the outbox and of endpoints use. Numbers are never given
/// out twice: the newest message is its own record of it, and
/// `webhook_sequence` keeps the number of any newest message pruned (see
/// `outbox::prune_history`). A macro, defined before the modules that use
/// it, so that statements stay constants.
///
/// Writing the count down with every message instead would rewrite the
/// counter's page in every commit that carries one.
macro_rules! newest_seq {
    () => {
        "max(COALESCE((SELECT max(seq) FROM webhook_messages), 0), (SELECT last FROM webhook_sequence))"
    };
}

mod anchor;
mod checkpointer;
mod conversations;
mod cursors;
mod end_users;
mod endpoints;
mod error;
mod inline;
mod key_cache;
mod keys;
mod migrations;
mod outbox;
mod outbox_lock;
mod roles;
mod sensitive;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use endusers_core::{EndUserId, Timestamp};
use endusers_store::{Changes, StoreError};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, Row};
use tokio::sync::oneshot;

pub(crate) use crate::error::Error;
use writer::{Job, Message};

/// The file path a `sqlite://` URL names: `sqlite://./data/x.db` is the
/// relative path `./data/x.db`, `sqlite:///var/lib/x.db` the absolute one.
pub fn path_from_url(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let rest = rest.split('?').next().unwrap_or(rest);
    (!rest.is_empty()).then(|| PathBuf::from(rest))
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Threads (each with its own connection) serving reads.
    pub readers: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self { readers: 4 }
    }
}

type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

enum ReadMessage {
    Job(ReadJob),
    Stop,
}

pub struct SqliteStore {
    writes: flume::Sender<Message>,
    reads: flume::Sender<ReadMessage>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    reader_count: usize,
    inline: inline::InlineReaders,
    key_cache: key_cache::KeyCache,
    checkpoints: checkpointer::Stop,
    /// Used by the writer thread's webhook jobs only, one at a time.
    outbox: Arc<Mutex<outbox::OutboxReader>>,
    /// Counted by the writer thread.
    write_counters: Arc<writer::Counters>,
    /// Announces commits that dispatchers may want.
    changes: Changes,
}

/// Runs a statement that returns no rows from the connection's cache: the
/// writer's transaction and savepoint statements and the read anchor's run
/// for every write or commit, and need not be parsed each time.
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// How long a connection waits for a lock another holds.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

fn open_connection(path: &Path, read_only: bool) -> Result<Connection, Error> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // FULL: the WAL is synced at every commit, so a commit that returned
    // survives power loss. NORMAL would only survive a process crash.
    conn.pragma_update(None, "synchronous", "FULL")?;
    // A write that shares its transaction runs in a savepoint, whose undo
    // copies of pages go to a statement journal. `temp_store` keeps its
    // default on purpose: set to MEMORY, it makes SQLite keep that journal
    // in 1 KiB pieces, five allocations and copies for every page, nearly
    // three times the work of a page at the default. At the default the journal
    // is one 64 KiB piece in memory; only a write that changes more pages
    // than that (a large batch of recorded attempts) goes on in a temporary
    // file, unlinked as it is made, in SQLite's temporary directory
    // (`SQLITE_TMPDIR`, else `TMPDIR`, else /var/tmp, /usr/tmp or /tmp).
    conn.pragma_update(None, "cache_size", -16_000)?;
    // SQLite plans a statement for the values bound when it is prepared
    // where they matter (a `LIMIT ?` is planned as that number), and then
    // prepares it again whenever another value is bound: the deliveries
    // claimed per endpoint change from one claim to the next, and so did
    // the plan, every time. Our statements are written for their indexes;
    // one plan per statement is what they need.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

impl SqliteStore {
    pub async fn open(path: &Path, options: Options, now: Timestamp) -> Result<Self, StoreError> {
        let path = path.to_owned();
        let opened = tokio::task::spawn_blocking(move || Self::open_blocking(&path, options, now))
            .await
            .map_err(|e| StoreError::Backend(format!("opening the database failed: {e}")))?;
        Ok(opened?)
    }

    fn open_blocking(path: &Path, options: Options, now: Timestamp) -> Result<Self, Error> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Config(format!("cannot create {}: {e}", dir.display())))?;
        }
        let mut conn = open_connection(path, false)?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Config(format!(
                "{} cannot use write-ahead logging (journal mode {mode})",
                path.display()
            ))
            .into());
        }
        migrations::run(&mut conn)?;
        keys::ensure_an_agent(&conn, now)?;
        // The checkpointer thread copies the log back (see [`checkpointer`]).
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        conn.pragma_update(None, "journal_size_limit", checkpointer::LOG_SIZE_LIMIT)?;

        let (writes, write_queue) = flume::unbounded();
        let (reads, read_queue) = flume::unbounded::<ReadMessage>();
        let mut threads = Vec::new();
        let handoff = Arc::new(checkpointer::Handoff::default());
        let (checkpoints_thread, checkpoints) = checkpointer::spawn(path, Arc::clone(&handoff))?;
        threads.push(checkpoints_thread);
        let anchor = anchor::ReadAnchor::open(path)?;
        let write_counters = Arc::new(writer::Counters::default());
        let counters = Arc::clone(&write_counters);
        threads.push(spawn(WRITER_THREAD, move || {
            writer::run(conn, write_queue, &handoff, anchor, &counters)
        })?);
        let reader_count = options.readers.max(1);
        for n in 0..reader_count {
            let conn = open_connection(path, true)?;
            let queue = read_queue.clone();
            threads.push(spawn(&format!("sqlite-read-{n}"), move || {
                while let Ok(ReadMessage::Job(job)) = queue.recv() {
                    job(&conn);
                }
            })?);
        }
        Ok(Self {
            writes,
            reads,
            threads: Mutex::new(threads),
            reader_count,
            inline: inline::InlineReaders::new(path),
            key_cache: key_cache::KeyCache::new(path)?,
            checkpoints,
            outbox: Arc::new(Mutex::new(outbox::OutboxReader::new(
                outbox_lock::OutboxLock::beside(path),
            ))),
            write_counters,
            changes: Changes::default(),
        })
    }

    /// Tells the dispatchers of a write that committed: it may have written
    /// messages, or made deliveries due.
    fn announced<T>(&self, outcome: Result<T, StoreError>) -> Result<T, StoreError> {
        if outcome.is_ok() {
            self.changes.announce();
        }
        outcome
    }

    /// Runs `f` on a reader connection.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: ReadJob = Box::new(move |conn| {
            let _ = reply.send(f(conn));
        });
        self.reads
            .send(ReadMessage::Job(job))
            .map_err(|_| StoreError::Closed)?;
        Ok(answer.await.map_err(|_| StoreError::Closed)??)
    }

    /// Runs `f` on an idle read connection on this thread (see [`inline`]).
    fn read_now<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, Error>,
    ) -> Result<T, StoreError> {
        Ok(self.inline.read(f)?)
    }

    /// [`Self::write`] for a change to keys or agents: once committed, every
    /// process's key cache is told (see [`key_cache`]).
    async fn write_key_change<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
    {
        let outcome = self.write(f).await?;
        self.key_cache.changed()?;
        Ok(outcome)
    }

    /// [`Self::write`] for work that reads or moves the outbox cursors. If
    /// it does not commit, memory may be ahead of the database, so the
    /// cursors start over from the database (on the writer thread, before
    /// its next transaction).
    async fn write_outbox<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut outbox::OutboxReader) -> Result<T, Error> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let outbox = Arc::clone(&self.outbox);
        let on_failure = Arc::clone(&self.outbox);
        let job = Job::new(move |conn: &Connection| f(conn, &mut lock(&outbox)), reply)
            .on_failure(move || lock(&on_failure).cursors.clear());
        self.submit(job, answer).await
    }

    /// Runs `f` in the writer's next transaction and answers after commit.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.submit(Job::new(f, reply), answer).await
    }

    /// [`Self::write`] for work that can only refuse before its first
    /// change and keeps nothing outside the database: it shares its
    /// transaction without a savepoint of its own (see
    /// [`Job::unguarded`]).
    async fn write_unguarded<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.submit(Job::new(f, reply).unguarded(), answer).await
    }

    /// Queues `job` for the writer and waits for its answer.
    async fn submit<T>(
        &self,
        job: impl writer::WriteJob + 'static,
        answer: oneshot::Receiver<Result<T, Error>>,
    ) -> Result<T, StoreError> {
        self.writes
            .send(Message::Job(Box::new(job)))
            .map_err(|_| StoreError::Closed)?;
        Ok(answer.await.map_err(|_| StoreError::Closed)??)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A row count as SQLite's `LIMIT` takes it (counts past `i64` mean "all").
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// The id in `column`, parsed from the text where SQLite holds it; one that
/// does not parse is a damaged row.
fn id_at(row: &Row<'_>, column: usize) -> rusqlite::Result<EndUserId> {
    parse_id_at(column, row.get_ref(column)?.as_str()?)
}

/// [`id_at`] for a column that may be NULL.
fn optional_id_at(row: &Row<'_>, column: usize) -> rusqlite::Result<Option<EndUserId>> {
    row.get_ref(column)?
        .as_str_or_null()?
        .map(|raw| parse_id_at(column, raw))
        .transpose()
}

fn parse_id_at(column: usize, raw: &str) -> rusqlite::Result<EndUserId> {
    EndUserId::parse(raw).ok_or_else(|| unreadable(column, "id"))
}

/// The error for a stored value that no longer parses (a damaged row).
fn unreadable(column: usize, what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        column,
        rusqlite::types::Type::Text,
        format!("stored {what} is not readable").into(),
    )
}

/// The name of the writer's thread, by which tools outside the process
/// (the bench among them) tell it from the store's other threads.
pub const WRITER_THREAD: &str = "sqlite-writer";

/// Starts a thread of the store. Linux keeps the first 15 bytes of a
/// thread's name (what `top -H`, `perf` and `/proc/<pid>/task/*/comm`
/// show; the bench tells the writer apart by it), so names fit in that.
fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, Error> {
    debug_assert!(name.len() <= 15, "thread name {name:?} is cut short");
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(body)
        .map_err(|e| StoreError::Backend(format!("cannot start {name}: {e}")).into())
}

#[cfg(test)]
mod tests {
    use rusqlite::StatementStatus;

    /// A statement whose `LIMIT` is bound keeps its plan when the limit
    /// changes, instead of being prepared again for each new value.
    #[test]
    fn a_new_limit_does_not_prepare_the_statement_again() {
        let dir = tempfile::tempdir().unwrap();
        let conn = super::open_connection(&dir.path().join("t.db"), false).unwrap();
        conn.execute_batch(
            "CREATE TABLE t (k INTEGER PRIMARY KEY);
             INSERT INTO t VALUES (1), (2), (3), (4);",
        )
        .unwrap();
        let mut stmt = conn
            .prepare("SELECT k FROM t WHERE k >= ?1 ORDER BY k LIMIT ?2")
            .unwrap();
        for limit in 1..=3_i64 {
            let rows: Vec<i64> = stmt
                .query_map([1, limit], |row| row.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(rows.len(), usize::try_from(limit).unwrap());
        }
        assert_eq!(stmt.get_status(StatementStatus::RePrepare), 0);
    }

    /// A write that fails after changing rows leaves none of its changes,
    /// also when it is the only write of its transaction (which then runs
    /// without a savepoint), and the writer goes on with the next one.
    #[tokio::test]
    async fn a_lone_write_that_fails_part_way_leaves_nothing() {
        use endusers_store::{Maintenance, StoreError};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let now = endusers_core::Timestamp::from_micros(0);
        let store = super::SqliteStore::open(&path, super::Options::default(), now)
            .await
            .unwrap();
        let last = |conn: &rusqlite::Connection| {
            conn.query_row("SELECT last FROM webhook_sequence", [], |row| {
                row.get::<_, i64>(0)
            })
        };
        let before = store.write(move |conn| Ok(last(conn)?)).await.unwrap();
        let failed = store
            .write(|conn| {
                conn.execute("UPDATE webhook_sequence SET last = last + 100", [])?;
                Err::<(), _>(StoreError::Conflict("part way").into())
            })
            .await;
        assert!(matches!(failed, Err(StoreError::Conflict("part way"))));
        let after = store
            .write(move |conn| {
                conn.execute("UPDATE webhook_sequence SET last = last + 1", [])?;
                Ok(last(conn)?)
            })
            .await
            .unwrap();
        assert_eq!(after, before + 1);
        store.close().await;
    }

    /// With one plan per statement (above), the partial indexes still
    /// serve the lookups made with bound values, which imply their
    /// conditions whatever the values are.
    #[test]
    fn bound_lookups_still_use_the_partial_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = super::open_connection(&dir.path().join("t.db"), false).unwrap();
        super::migrations::run(&mut conn).unwrap();
        for (sql, index) in [
            (
                "SELECT id FROM end_users WHERE agent_id = ?1 AND external_id = ?2",
                "end_users_by_external_id",
            ),
            (
                "SELECT agent_id, id FROM end_users WHERE orphan_until <= ?1 LIMIT ?2",
                "end_users_orphans",
            ),
            (
                "SELECT id FROM conversations WHERE agent_id = ?1 AND end_user_id = ?2",
                "conversations_by_end_user",
            ),
            (
                "SELECT message_id FROM webhook_deliveries
                 WHERE endpoint_id = ?1 AND state = 0 AND next_attempt_at <= ?2
                 ORDER BY next_attempt_at LIMIT ?3",
                "webhook_deliveries_due",
            ),
            (
                "SELECT seq, id, event_type, payload, created_at FROM webhook_messages
                 WHERE agent_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                "webhook_messages_by_agent (agent_id=? AND rowid>?)",
            ),
        ] {
            let mut explain = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let unbound = std::iter::repeat_n(rusqlite::types::Null, explain.parameter_count());
            let plan: Vec<String> = explain
                .query_map(rusqlite::params_from_iter(unbound), |row| row.get(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert!(
                plan.iter().any(|step| step.contains(index)),
                "{sql}: {plan:?}"
            );
            // In the index's order: nothing is sorted afterwards.
            assert!(
                !plan.iter().any(|step| step.contains("TEMP B-TREE")),
                "{sql}: {plan:?}"
            );
        }
    }
}
