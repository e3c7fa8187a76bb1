//! Checkpoints on a thread of their own, finished by the writer.
//!
//! In WAL mode a commit appends pages to the log, and a checkpoint copies
//! them back into the database file and syncs it. SQLite's automatic
//! checkpoint runs inside the commit that takes the log past 1,000 pages:
//! that commit, and every write queued behind it, waits for the random page
//! writes and the sync of the database file. So the writer's connection
//! never checkpoints on its own (`wal_autocheckpoint = 0`); this thread
//! does, once a second, on its own connection. A PASSIVE checkpoint takes
//! no lock a writer waits for, so commits go on meanwhile, and a page
//! written many times between two checkpoints is copied once.
//!
//! The log only starts over from its beginning once a checkpoint has copied
//! all of it and no reader still reads from it. Under a steady stream of
//! writes this thread never gets there: the writer appends while it copies.
//! Left at that, the `-wal` file grows without end (measured: 950 MB within
//! a minute of webhook load), every page lands in newly allocated file
//! blocks, and readers search an ever larger log index. So after each pass
//! this thread hands over to the writer, which finishes the job between two
//! of its transactions ([`Handoff::finish`]): with nothing appended
//! meanwhile, it only has the pages committed since this thread's pass to
//! copy, waits a moment for readers of the old log to finish, and starts
//! the log over.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use crate::Error;

/// How often the log is copied back: the log holds about a second of
/// writes at most (tens of MB under the heaviest load the bench makes).
/// Measured against 200 ms, one second wrote less (a busy page is copied
/// once per checkpoint) and gave higher write rates with lower tails.
pub(super) const INTERVAL: Duration = Duration::from_millis(1000);

/// A log that grew past this (a reader holding one snapshot for long keeps
/// it from starting over) is cut back to it when it does, so the file's
/// size stays bounded. Well above a second of the heaviest writes the bench
/// makes (about 150 MB): at 128 MiB the log was cut back and grown again
/// every second, which cost PATCH a tenth of its rate and took its p99.9
/// from 15–18 ms to 34–36 ms.
pub(super) const LOG_SIZE_LIMIT: i64 = 512 * 1024 * 1024;

/// Stops the thread when dropped or sent to.
pub(super) type Stop = flume::Sender<()>;

/// The checkpointer's request to the writer to finish a pass.
#[derive(Debug, Default)]
pub(super) struct Handoff {
    unfinished: AtomicBool,
}

impl Handoff {
    /// Run by the writer between transactions, after a background pass:
    /// copies what that pass could not and starts the log over. Nothing
    /// else of this store writes meanwhile, so the copy reaches the end of
    /// the log; a reader (or an admin command's write, from another
    /// process) that holds on longer than [`READERS_WAIT`] only puts the
    /// start-over off until the next pass.
    pub(super) fn finish(&self, writer: &Connection) {
        if self.unfinished.swap(false, Ordering::Relaxed)
            && let Err(err) = restart(writer)
        {
            tracing::warn!(error = %err, "finishing a checkpoint failed; the next one retries");
        }
    }
}

/// How long the writer waits for readers of the old log before it gives up
/// until the next pass: long enough for any bounded read, short enough that
/// writes queued meanwhile hardly notice.
const READERS_WAIT: Duration = Duration::from_millis(20);

/// Copies the rest of the log and starts it over (RESTART), waiting at most
/// [`READERS_WAIT`] for readers still on the old log. Run on the writer's
/// connection, between transactions.
fn restart(writer: &Connection) -> rusqlite::Result<()> {
    writer.busy_timeout(READERS_WAIT)?;
    let outcome = writer.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()));
    writer.busy_timeout(super::BUSY_TIMEOUT)?;
    outcome
}

pub(super) fn spawn(path: &Path, handoff: Arc<Handoff>) -> Result<(JoinHandle<()>, Stop), Error> {
    let conn = super::open_connection(path, false)?;
    let (stop, stopped) = flume::bounded::<()>(1);
    let thread = super::spawn("sqlite-checkpt", move || {
        // Ends when told to or when the store (holding the sender) is gone.
        while let Err(flume::RecvTimeoutError::Timeout) = stopped.recv_timeout(INTERVAL) {
            match checkpoint(&conn) {
                Ok(()) => handoff.unfinished.store(true, Ordering::Relaxed),
                Err(err) => tracing::warn!(error = %err, "checkpoint failed; retrying shortly"),
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
