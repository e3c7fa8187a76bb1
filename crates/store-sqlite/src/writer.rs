//! The single writer thread and its group commit.
//!
//! SQLite allows one writer at a time, and with `synchronous=FULL` every
//! commit waits for the disk. So one thread owns the write connection,
//! takes every write queued at the moment, runs each inside its own
//! savepoint (a failing write undoes only itself; a write alone needs none,
//! its transaction is its undo), commits them all in one transaction, and
//! only then answers each caller. Under load many writes
//! share one fsync; alone, a write commits at once.
//!
//! A write that can only fail before it changes anything (see
//! [`Job::unguarded`]) runs without a savepoint: when it fails, there is
//! nothing of it to undo. Should it fail after a change all the same (a
//! disk error, say), the whole transaction is rolled back and every write
//! in it answers an error: none is acknowledged, none is kept.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::anchor::ReadAnchor;
use super::checkpointer::Handoff;
use super::run_cached;
use endusers_store::{StoreError, WriteStats};

use crate::Error;

/// How many queued writes one transaction takes at most.
const MAX_BATCH: usize = 512;

/// How long the writer waits for a write before it does its between-
/// transactions work anyway (see [`between_transactions`]): the same beat
/// as the checkpointer's, so an idle store's log starts over as well.
const IDLE_TICK: std::time::Duration = super::checkpointer::INTERVAL;

/// The writer's [`WriteStats`], counted as it goes: three additions per
/// transaction, read from any thread.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    transactions: AtomicU64,
    writes: AtomicU64,
    busy_micros: AtomicU64,
}

impl Counters {
    fn count(&self, writes: usize, busy: std::time::Duration) {
        self.transactions.fetch_add(1, Ordering::Relaxed);
        self.writes
            .fetch_add(u64::try_from(writes).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.busy_micros.fetch_add(
            u64::try_from(busy.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    pub(crate) fn read(&self) -> WriteStats {
        WriteStats {
            transactions: self.transactions.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            busy_micros: self.busy_micros.load(Ordering::Relaxed),
        }
    }
}

pub(crate) enum Message {
    Job(Box<dyn WriteJob>),
    Stop,
}

pub(crate) trait WriteJob: Send {
    /// Does the work inside the job's savepoint; `true` keeps its changes.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Whether the job needs a savepoint of its own when it shares its
    /// transaction (see [`Job::unguarded`]).
    fn guarded(&self) -> bool;
    /// Answers the caller once the transaction's fate is known.
    fn finish(self: Box<Self>, commit: Result<(), &Error>);
}

pub(crate) struct Job<T, F> {
    work: Option<F>,
    outcome: Option<Result<T, Error>>,
    reply: oneshot::Sender<Result<T, Error>>,
    on_failure: Option<Box<dyn FnOnce() + Send>>,
    guarded: bool,
}

impl<T, F> Job<T, F> {
    pub(crate) fn new(work: F, reply: oneshot::Sender<Result<T, Error>>) -> Self {
        Self {
            work: Some(work),
            outcome: None,
            reply,
            on_failure: None,
            guarded: true,
        }
    }

    /// For work that reads and decides before it writes, so that a refusal
    /// (not found, a conflict, a rule of the domain) changes nothing, and
    /// keeps no state outside the database: it runs without a savepoint of
    /// its own. A savepoint copies every page the write changes into a
    /// journal first, three or four pages for each PATCH in a shared
    /// transaction, copies that showed in profiles of webhook delivery.
    pub(crate) fn unguarded(mut self) -> Self {
        self.guarded = false;
        self
    }

    /// Runs `undo` on the writer thread, before its next transaction, if
    /// the job's changes did not commit: for state the job keeps outside
    /// the database.
    pub(crate) fn on_failure(mut self, undo: impl FnOnce() + Send + 'static) -> Self {
        self.on_failure = Some(Box::new(undo));
        self
    }
}

impl<T, F> WriteJob for Job<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T, Error> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let outcome = match self.work.take() {
            Some(work) => catch_unwind(AssertUnwindSafe(|| work(conn)))
                .unwrap_or_else(|_| Err(StoreError::Backend("a write panicked".into()).into())),
            None => Err(StoreError::Backend("a write ran twice".into()).into()),
        };
        let keep = outcome.is_ok();
        self.outcome = Some(outcome);
        keep
    }

    fn guarded(&self) -> bool {
        self.guarded
    }

    fn finish(self: Box<Self>, commit: Result<(), &Error>) {
        let answer = match (self.outcome, commit) {
            (Some(Err(own)), _) => Err(own),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (Some(Ok(_)), Err(commit)) => {
                Err(StoreError::Backend(format!("commit failed: {commit}")).into())
            }
            (None, _) => Err(StoreError::Backend("a write never ran".into()).into()),
        };
        if let (Err(_), Some(undo)) = (&answer, self.on_failure) {
            undo();
        }
        // The caller may have gone away (client disconnected); the write
        // stands regardless.
        let _ = self.reply.send(answer);
    }
}

pub(crate) fn run(
    mut conn: Connection,
    queue: flume::Receiver<Message>,
    checkpoints: &Handoff,
    anchor: ReadAnchor,
    counters: &Counters,
) {
    let mut batch: Vec<Box<dyn WriteJob>> = Vec::with_capacity(MAX_BATCH);
    let mut stopping = false;
    anchor.hold();
    while !stopping {
        match queue.recv_timeout(IDLE_TICK) {
            Ok(Message::Job(job)) => batch.push(job),
            Ok(Message::Stop) | Err(flume::RecvTimeoutError::Disconnected) => break,
            Err(flume::RecvTimeoutError::Timeout) => {
                between_transactions(&conn, checkpoints, &anchor);
                continue;
            }
        }
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(Message::Job(job)) => batch.push(job),
                Ok(Message::Stop) => {
                    stopping = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let commit = commit_batch(&mut conn, &mut batch);
        counters.count(batch.len(), started.elapsed());
        for job in batch.drain(..) {
            job.finish(commit.as_ref().map(|_| ()));
        }
        // After the callers have their answers.
        between_transactions(&conn, checkpoints, &anchor);
    }
    // Writes queued behind the stop signal are refused, not dropped silently.
    while let Ok(message) = queue.try_recv() {
        if let Message::Job(job) = message {
            job.finish(Err(&Error::Store(StoreError::Closed)));
        }
    }
}

/// Runs each job in a savepoint of its own, so that a failing job undoes
/// only itself; an unguarded job without one, the transaction failing
/// whole if it fails after a change. The two savepoint statements are
/// taken from the statement cache once per batch, not once per job: each
/// use of the cache hashes and copies the statement's text, and a batch
/// holds up to [`MAX_BATCH`] jobs.
fn run_jobs(conn: &Connection, batch: &mut [Box<dyn WriteJob>]) -> Result<(), Error> {
    let mut savepoint = conn.prepare_cached("SAVEPOINT job")?;
    let mut release = conn.prepare_cached("RELEASE job")?;
    for job in batch.iter_mut() {
        if job.guarded() {
            savepoint.execute([])?;
            if !job.run(conn) {
                run_cached(conn, "ROLLBACK TO job")?;
            }
            release.execute([])?;
            continue;
        }
        let changes_before = conn.total_changes();
        // A statement that fails is undone by SQLite on its own, and is
        // not counted; some errors (a full disk) end the transaction
        // itself, after which the next write would commit on its own.
        if !job.run(conn) && (conn.total_changes() != changes_before || conn.is_autocommit()) {
            return Err(StoreError::Backend(
                "a write failed part way through a shared transaction".into(),
            )
            .into());
        }
    }
    Ok(())
}

/// Between two transactions, and once per [`IDLE_TICK`] without any: the
/// log may start over only with no reader on it, the anchor included; then
/// the anchor moves to the newest commit. When idle, that commit may be
/// another process's (an admin command's, another server's): an anchor
/// left where it was would keep their pages in the log for good.
fn between_transactions(conn: &Connection, checkpoints: &Handoff, anchor: &ReadAnchor) {
    anchor.release();
    checkpoints.finish(conn);
    anchor.hold();
}

fn commit_batch(conn: &mut Connection, batch: &mut [Box<dyn WriteJob>]) -> Result<(), Error> {
    run_cached(conn, "BEGIN IMMEDIATE")?;
    // A job alone needs no savepoint: its transaction undoes it. A
    // savepoint copies every page the job changes into a journal of its
    // own (see `open_connection` for how that journal is kept).
    if let [job] = batch {
        if !job.run(conn) {
            // The job answers its own error; nothing of it stays.
            run_cached(conn, "ROLLBACK")?;
            return Ok(());
        }
    } else if let Err(err) = run_jobs(conn, batch) {
        let _ = run_cached(conn, "ROLLBACK");
        return Err(err);
    }
    if let Err(err) = run_cached(conn, "COMMIT") {
        tracing::error!(error = %err, "commit failed; rolling the batch back");
        let _ = run_cached(conn, "ROLLBACK");
        return Err(err.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use tokio::sync::oneshot;

    use endusers_store::StoreError;

    use super::{Job, WriteJob, commit_batch};
    use crate::Error;

    /// A write that shares its transaction and changes more pages than its
    /// savepoint's journal keeps in memory (so the journal goes on in a
    /// temporary file) is still undone alone when it fails: the write
    /// beside it lands, and the rows it changed are as they were.
    #[test]
    fn a_large_failing_write_in_a_batch_undoes_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = super::super::open_connection(&dir.path().join("t.db"), false).unwrap();
        // As the store runs: in WAL mode every undo copy of a savepoint
        // goes to its statement journal (with a rollback journal, a page's
        // first change goes to that journal instead).
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE wide (k INTEGER PRIMARY KEY, v TEXT NOT NULL);
             CREATE TABLE small (k INTEGER PRIMARY KEY);
             WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM n WHERE k < 200)
             INSERT INTO wide SELECT k, printf('%.2000c', 'a') FROM n;",
        )
        .unwrap();
        let (large_reply, large_answer) = oneshot::channel::<Result<(), Error>>();
        let (small_reply, small_answer) = oneshot::channel::<Result<(), Error>>();
        let mut batch: Vec<Box<dyn WriteJob>> = vec![
            Box::new(Job::new(
                |conn: &rusqlite::Connection| {
                    // 200 rows of 2,000 bytes: about 100 pages, 400 KiB of
                    // undo copies, far past the 64 KiB kept in memory.
                    let changed = conn.execute("UPDATE wide SET v = printf('%.2000c', 'b')", [])?;
                    assert_eq!(changed, 200);
                    Err(StoreError::Conflict("after changing every row").into())
                },
                large_reply,
            )),
            Box::new(Job::new(
                |conn: &rusqlite::Connection| {
                    conn.execute("INSERT INTO small VALUES (1)", [])?;
                    Ok(())
                },
                small_reply,
            )),
        ];
        commit_batch(&mut conn, &mut batch).unwrap();
        for job in batch {
            job.finish(Ok(()));
        }
        assert!(matches!(
            large_answer.blocking_recv().unwrap(),
            Err(Error::Store(StoreError::Conflict(
                "after changing every row"
            )))
        ));
        small_answer.blocking_recv().unwrap().unwrap();
        let changed: i64 = conn
            .query_row("SELECT count(*) FROM wide WHERE v LIKE 'b%'", [], |row| {
                row.get(0)
            })
            .unwrap();
        let untouched: i64 = conn
            .query_row(
                "SELECT count(*) FROM wide WHERE v = printf('%.2000c', 'a')",
                [],
                |row| row.get(0),
            )
            .unwrap();
        let landed: i64 = conn
            .query_row("SELECT count(*) FROM small", [], |row| row.get(0))
            .unwrap();
        assert_eq!((changed, untouched, landed), (0, 200, 1));
    }

    type Answer = oneshot::Receiver<Result<(), Error>>;

    /// A job inserting `k` into `t`, then failing if `fail` says so;
    /// `guarded` or not (see [`Job::unguarded`]).
    fn insert(k: i64, fail: Option<StoreError>, guarded: bool) -> (Box<dyn WriteJob>, Answer) {
        let (reply, answer) = oneshot::channel();
        let job = Job::new(
            move |conn: &rusqlite::Connection| {
                conn.execute("INSERT INTO t VALUES (?1)", [k])?;
                fail.map_or(Ok(()), |err| Err(err.into()))
            },
            reply,
        );
        let job = if guarded { job } else { job.unguarded() };
        (Box::new(job), answer)
    }

    /// Runs `batch` as the writer does and answers every job.
    fn commit(conn: &mut rusqlite::Connection, mut batch: Vec<Box<dyn WriteJob>>) {
        let committed = commit_batch(conn, &mut batch);
        for job in batch {
            job.finish(committed.as_ref().map(|_| ()));
        }
    }

    fn rows(conn: &rusqlite::Connection) -> Vec<i64> {
        conn.prepare("SELECT k FROM t ORDER BY k")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn table() -> (tempfile::TempDir, rusqlite::Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = super::super::open_connection(&dir.path().join("t.db"), false).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (k INTEGER PRIMARY KEY);")
            .unwrap();
        (dir, conn)
    }

    /// An unguarded job that refuses before changing anything needs no
    /// savepoint: the jobs beside it land, it answers its own error, and
    /// one that succeeds lands like any other.
    #[test]
    fn an_unguarded_job_refusing_before_any_change_leaves_the_others_alone() {
        let (_dir, mut conn) = table();
        // Inserting 1 a second time fails in its statement, which SQLite
        // undoes: nothing of the job is left.
        let (first, first_answer) = insert(1, None, false);
        let (refused, refused_answer) = insert(1, None, false);
        let (fine, fine_answer) = insert(3, None, false);
        let (guarded, guarded_answer) = insert(2, None, true);
        commit(&mut conn, vec![first, refused, fine, guarded]);
        first_answer.blocking_recv().unwrap().unwrap();
        assert!(refused_answer.blocking_recv().unwrap().is_err());
        fine_answer.blocking_recv().unwrap().unwrap();
        guarded_answer.blocking_recv().unwrap().unwrap();
        assert_eq!(rows(&conn), [1, 2, 3]);
    }

    /// An unguarded job that fails after a change cannot be undone alone:
    /// the transaction is rolled back whole and every job answers an
    /// error, so nothing is kept that was not acknowledged.
    #[test]
    fn an_unguarded_job_failing_after_a_change_fails_its_whole_transaction() {
        let (_dir, mut conn) = table();
        let (before, before_answer) = insert(1, None, true);
        let failure = Some(StoreError::Conflict("after a change"));
        let (failing, failing_answer) = insert(2, failure, false);
        let (after, after_answer) = insert(3, None, true);
        commit(&mut conn, vec![before, failing, after]);
        assert!(before_answer.blocking_recv().unwrap().is_err());
        assert!(matches!(
            failing_answer.blocking_recv().unwrap(),
            Err(Error::Store(StoreError::Conflict("after a change")))
        ));
        assert!(after_answer.blocking_recv().unwrap().is_err());
        assert!(rows(&conn).is_empty());
        assert!(conn.is_autocommit(), "no transaction left open");
        // The writer goes on: the next batch commits.
        let (next, next_answer) = insert(4, None, false);
        let (other, other_answer) = insert(5, None, true);
        commit(&mut conn, vec![next, other]);
        next_answer.blocking_recv().unwrap().unwrap();
        other_answer.blocking_recv().unwrap().unwrap();
        assert_eq!(rows(&conn), [4, 5]);
    }
}
