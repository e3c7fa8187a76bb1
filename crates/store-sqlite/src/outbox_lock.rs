//! Which process reads the outbox through the endpoints' cursors.
//!
//! Cursors are kept in one process's memory (see [`super::cursors`]), so
//! two processes on one database file (two servers, or a server started
//! while the last one is still stopping) must not both read them: each
//! would send every message. The reader is the process holding an
//! exclusive lock on a file beside the database (`<db>.outbox-lock`). The
//! kernel lets go of it when the process ends however it ends, so after a
//! crash the next process reads on at once, from the stored positions,
//! instead of waiting for a lease to lapse. A SQLite database in WAL mode
//! is only ever shared by processes of one machine, which is what such a
//! lock covers.
//!
//! The lock is taken by the first claim, not when the store opens: admin
//! commands open the store too and never claim, and must not take the
//! reading away from a running server.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub(super) struct OutboxLock {
    path: PathBuf,
    /// The lock file, once opened: a process that does not hold the lock
    /// tries it again at every claim without opening the file again.
    file: Option<File>,
    held: bool,
    /// A lock that cannot be taken for a reason other than another holder
    /// is said once, not at every claim.
    warned: bool,
}

/// What [`OutboxLock::hold`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Holding {
    /// Held since an earlier call.
    Still,
    /// Taken now: memory of the cursors from before counts for nothing.
    Newly,
    /// Another process holds it (or the file cannot be locked).
    No,
}

impl OutboxLock {
    pub(super) fn beside(database: &Path) -> Self {
        let mut name = database.as_os_str().to_owned();
        name.push(".outbox-lock");
        Self {
            path: PathBuf::from(name),
            file: None,
            held: false,
            warned: false,
        }
    }

    /// Holds the lock if it can.
    pub(super) fn hold(&mut self) -> Holding {
        if self.held {
            return Holding::Still;
        }
        let file = match &self.file {
            Some(file) => file,
            None => match OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&self.path)
            {
                Ok(file) => self.file.insert(file),
                Err(err) => {
                    self.warn(&err);
                    return Holding::No;
                }
            },
        };
        match file.try_lock() {
            Ok(()) => {
                self.held = true;
                Holding::Newly
            }
            Err(TryLockError::WouldBlock) => Holding::No,
            Err(TryLockError::Error(err)) => {
                self.warn(&err);
                Holding::No
            }
        }
    }

    fn warn(&mut self, err: &std::io::Error) {
        if !std::mem::replace(&mut self.warned, true) {
            tracing::warn!(path = %self.path.display(), error = %err,
                "cannot lock the outbox lock file; only deliveries being retried are sent");
        }
    }

    /// Whether this process holds the lock: whether it reads the outbox.
    pub(super) fn is_held(&self) -> bool {
        self.held
    }

    /// Lets another process read on (closing the file drops the lock).
    pub(super) fn release(&mut self) {
        self.file = None;
        self.held = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_the_next_takes_over_on_release() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("x.db");
        let mut first = OutboxLock::beside(&db);
        let mut second = OutboxLock::beside(&db);
        assert_eq!(first.hold(), Holding::Newly);
        assert_eq!(first.hold(), Holding::Still);
        assert_eq!(second.hold(), Holding::No);
        first.release();
        assert_eq!(second.hold(), Holding::Newly);
        assert_eq!(first.hold(), Holding::No);
        assert!(dir.path().join("x.db.outbox-lock").exists());
    }
}
