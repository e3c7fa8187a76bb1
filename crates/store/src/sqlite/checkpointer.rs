//! Checkpoints on a thread of their own.
//!
//! In WAL mode a commit appends pages to the log, and a checkpoint copies
//! them back into the database file and syncs it. SQLite's automatic
//! checkpoint runs inside the commit that takes the log past 1,000 pages:
//! that commit, and every write queued behind it, waits for the random page
//! writes and the sync of the database file. So the writer's connection
//! never checkpoints (`wal_autocheckpoint = 0`); this thread does, once a
//! second, on its own connection. A PASSIVE checkpoint takes no lock
//! a writer waits for, so commits go on meanwhile, and a page written many
//! times between two checkpoints is copied once.
//!
//! Once a checkpoint has copied the whole log, the writer's next commit
//! starts the log over from its beginning, so the `-wal` file stops growing.

use std::path::Path;
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use crate::StoreError;

/// How often the log is copied back: the log holds about a second of
/// writes at most (tens of MB under the heaviest load the bench makes).
/// Measured against 200 ms, one second wrote less (a busy page is copied
/// once per checkpoint) and gave higher write rates with lower tails.
pub(super) const INTERVAL: Duration = Duration::from_millis(1000);

/// Stops the thread when dropped or sent to.
pub(super) type Stop = flume::Sender<()>;

pub(super) fn spawn(path: &Path) -> Result<(JoinHandle<()>, Stop), StoreError> {
    let conn = super::open_connection(path, false)?;
    let (stop, stopped) = flume::bounded::<()>(1);
    let thread = super::spawn("endusers-sqlite-checkpointer", move || {
        // Ends when told to or when the store (holding the sender) is gone.
        while let Err(flume::RecvTimeoutError::Timeout) = stopped.recv_timeout(INTERVAL) {
            if let Err(err) = checkpoint(&conn) {
                tracing::warn!(error = %err, "checkpoint failed; retrying shortly");
            }
        }
        // One last copy, so a clean shutdown leaves little in the log.
        let _ = checkpoint(&conn);
    })?;
    Ok((thread, stop))
}

/// Copies what it can of the log into the database file: everything older
/// than the oldest snapshot a reader still holds.
fn checkpoint(conn: &Connection) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}
