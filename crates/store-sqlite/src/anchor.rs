//! A read transaction the writer keeps open at the newest commit, so that
//! reads do not each take and drop a file lock.
//!
//! A WAL reader marks the part of the log it reads with a shared lock on
//! one of a few "read mark" slots. SQLite counts those locks per process
//! and only asks the kernel (`fcntl`) when the process's count for a slot
//! goes from 0 to 1 or back. Short reads on two or three threads rarely
//! overlap, so nearly every read took a lock and dropped it again with two
//! system calls: measured, 1.6 `fcntl` per GET by id and about a tenth of
//! the server's CPU on that path.
//!
//! So the writer holds one read transaction, begun right after each of its
//! commits. Readers that start before the next commit see the same log and
//! choose the same slot, which the process already holds: no system call.
//! Because the anchor sits at the newest commit, it does not keep a
//! checkpoint from copying what is committed: the writer moves it after
//! each of its own commits, and once a second when idle, so commits of
//! other processes are let through within a second. The writer lets go of
//! it while it starts the log over (see [`super::checkpointer`]) and takes
//! it again afterwards.
//!
//! It only saves work: if it cannot be taken, reads lock as before.

use std::path::Path;

use rusqlite::Connection;

use super::run_cached;

use crate::Error;

pub(super) struct ReadAnchor {
    conn: Connection,
}

impl ReadAnchor {
    pub(super) fn open(path: &Path) -> Result<Self, Error> {
        Ok(Self {
            conn: super::open_connection(path, true)?,
        })
    }

    /// Whether the anchor's connection is inside a transaction.
    fn held(&self) -> bool {
        !self.conn.is_autocommit()
    }

    /// Ends the anchor's read transaction, if it has one. One left open
    /// would hold every later checkpoint back, so a failed end is rolled
    /// back.
    pub(super) fn release(&self) {
        if self.held()
            && let Err(err) = run_cached(&self.conn, "COMMIT")
        {
            tracing::debug!(error = %err, "ending the read anchor failed");
            self.roll_back();
        }
    }

    /// Begins a read transaction at the newest commit. A deferred `BEGIN`
    /// reads nothing; reading the schema's version takes the snapshot.
    pub(super) fn hold(&self) {
        if self.held() {
            return;
        }
        let begun = run_cached(&self.conn, "BEGIN").and_then(|()| {
            self.conn
                .prepare_cached("PRAGMA schema_version")?
                .query_row([], |_| Ok(()))
        });
        if let Err(err) = begun {
            tracing::debug!(error = %err, "taking the read anchor failed");
            self.roll_back();
        }
    }

    fn roll_back(&self) {
        if self.held() {
            let _ = run_cached(&self.conn, "ROLLBACK");
        }
    }
}
