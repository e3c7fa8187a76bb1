//! Read connections used on the caller's own thread.
//!
//! A point lookup by primary key takes a few microseconds in SQLite; handing
//! it to a reader thread and waking the caller afterwards costs several
//! times that in context switches (profiling the GET path showed a third of
//! the server's time in futex wake-ups). Bounded reads therefore run inline:
//! the caller borrows an idle connection, queries, and puts it back. A WAL
//! reader never waits for the writer, so the borrow is as short as the query.
//!
//! Scans whose length the data decides (counts over a whole table) still go
//! to the reader threads, so they never hold up an async worker.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::Connection;

use endusers_store::StoreError;

use crate::Error;

/// Idle connections beyond this are closed instead of kept: more than this
/// many threads never read at once (the async workers plus a few blocking
/// ones).
const MAX_IDLE: usize = 16;

pub(super) struct InlineReaders {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    closed: AtomicBool,
}

impl InlineReaders {
    pub(super) fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
        }
    }

    /// Runs `f` on an idle connection (opening one if none is idle).
    pub(super) fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, Error>,
    ) -> Result<T, Error> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed.into());
        }
        // The list is released before a connection is opened: an open runs
        // several statements, and other threads' reads must not wait on it.
        let idle = self.lock().pop();
        let conn = match idle {
            Some(conn) => conn,
            None => super::open_connection(&self.path, true)?,
        };
        let outcome = f(&conn);
        if !self.closed.load(Ordering::Acquire) {
            let mut idle = self.lock();
            if idle.len() < MAX_IDLE {
                idle.push(conn);
            }
        }
        outcome
    }

    /// Refuses further reads and closes the idle connections.
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        // A panic while the list was held cannot leave it half-changed:
        // push and pop are the only operations.
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
