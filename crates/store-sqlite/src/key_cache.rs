//! API keys kept in memory, dropped the moment any process changes a key
//! or an agent.
//!
//! Every request checks its key, so a database read per request would be
//! the single largest cost of a cheap GET. Keys change rarely and mostly
//! from another process (`endusers keys revoke`, `agents set-limits`), and a
//! revocation must hold from the next request on. So every change of keys
//! or agents, by any process, appends one byte to a marker file beside the
//! database (`<db>.keys-changed`); the cache remembers the file's inode and
//! length when it was filled and empties itself when they differ. The
//! length is read per request by seeking the open file to its end, one
//! `lseek`, which costs half an `fstat` (measured on the development VM:
//! 160–200 ns against 400–430 ns) and a fraction of a read transaction;
//! the inode is the open file's own, taken when it was opened. Once a
//! second the path is checked too, so a marker file that was deleted and
//! made anew is followed within a second.
//!
//! The length only grows (an append is atomic, whichever process makes it),
//! so a version once seen never comes back; the file grows one byte per
//! key or agent change. If the file cannot be read, the cache is bypassed:
//! slower, never stale.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use endusers_store::{ApiKeyRecord, StoreError};

use crate::Error;

/// More keys than this in use at once empties the cache, so it stays small.
const MAX_KEYS: usize = 4_096;

/// How often, in milliseconds, the marker's path is checked against the
/// open file.
const REOPEN_CHECK_MS: u64 = 1_000;

/// The marker file's identity and length: different after every change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Version {
    inode: u64,
    len: u64,
}

pub(super) struct KeyCache {
    marker: PathBuf,
    /// The marker, open: its length needs no path lookup.
    file: RwLock<OpenMarker>,
    /// Milliseconds after `born` when the path was last checked.
    path_checked_ms: AtomicU64,
    born: Instant,
    state: RwLock<State>,
}

#[derive(Default)]
struct State {
    version: Option<Version>,
    keys: HashMap<String, Arc<ApiKeyRecord>>,
}

impl KeyCache {
    /// The cache for the database at `database`, creating its marker file.
    pub(super) fn new(database: &Path) -> Result<Self, Error> {
        let mut marker = database.as_os_str().to_owned();
        marker.push(".keys-changed");
        let marker = PathBuf::from(marker);
        let file = OpenMarker::open(&marker)
            .map_err(|e| StoreError::Config(format!("cannot create {}: {e}", marker.display())))?;
        Ok(Self {
            marker,
            file: RwLock::new(file),
            path_checked_ms: AtomicU64::new(0),
            born: Instant::now(),
            state: RwLock::new(State::default()),
        })
    }

    /// The key from memory if nothing changed since it was read, otherwise
    /// from `read`, remembered for next time. Shared, not copied: this runs
    /// on every request.
    pub(super) fn find(
        &self,
        key_id: &str,
        read: impl FnOnce() -> Result<Option<ApiKeyRecord>, Error>,
    ) -> Result<Option<Arc<ApiKeyRecord>>, Error> {
        // The version is taken before the database is read: a change that
        // lands in between makes the next request see a newer version.
        let Some(version) = self.version() else {
            return Ok(read()?.map(Arc::new));
        };
        {
            let state = read_lock(&self.state);
            if state.version == Some(version)
                && let Some(record) = state.keys.get(key_id)
            {
                return Ok(Some(Arc::clone(record)));
            }
        }
        let record = read()?.map(Arc::new);
        let mut state = write_lock(&self.state);
        if state.version != Some(version) {
            // Another thread may have moved the cache on to a newer version
            // meanwhile; a record read under an older one must not join it.
            if self.version() != Some(version) {
                return Ok(record);
            }
            state.keys.clear();
            state.version = Some(version);
        }
        if let Some(record) = &record {
            if state.keys.len() >= MAX_KEYS {
                state.keys.clear();
            }
            state.keys.insert(key_id.to_owned(), Arc::clone(record));
        }
        Ok(record)
    }

    /// Tells every process's cache that keys or agents changed. Called
    /// after the change is committed.
    pub(super) fn changed(&self) -> Result<(), Error> {
        open_marker(&self.marker)
            .and_then(|mut file| file.write_all(b"\n"))
            .map_err(|e| {
                StoreError::Backend(format!("cannot append to {}: {e}", self.marker.display()))
                    .into()
            })
    }

    fn version(&self) -> Option<Version> {
        let now_ms = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        let checked = self.path_checked_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(checked) >= REOPEN_CHECK_MS
            && self
                .path_checked_ms
                .compare_exchange(checked, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.follow_replacement()?;
        }
        let open = read_lock(&self.file);
        // The offset moved is never used: nothing reads or writes through
        // this handle (`changed` appends through a handle of its own).
        let len = (&open.file).seek(SeekFrom::End(0)).ok()?;
        Some(Version {
            inode: open.inode,
            len,
        })
    }

    /// Reopens the marker if the file at its path is no longer the open one
    /// (deleted and made anew). The new file's inode differs, so the
    /// version changes and the cache empties.
    fn follow_replacement(&self) -> Option<()> {
        let at_path = std::fs::metadata(&self.marker).ok()?;
        let (inode, device) = {
            let open = read_lock(&self.file);
            (open.inode, open.device)
        };
        if at_path.ino() != inode || at_path.dev() != device {
            *write_lock(&self.file) = OpenMarker::open(&self.marker).ok()?;
        }
        Some(())
    }
}

/// The marker file, open, with the identity it had when it was opened.
struct OpenMarker {
    file: File,
    inode: u64,
    device: u64,
}

impl OpenMarker {
    fn open(path: &Path) -> std::io::Result<Self> {
        let file = open_marker(path)?;
        let meta = file.metadata()?;
        Ok(Self {
            file,
            inode: meta.ino(),
            device: meta.dev(),
        })
    }
}

fn open_marker(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

// A panic while a lock was held cannot leave either value half-changed
// (every change is one assignment or one map operation, and an emptied
// cache is always correct), so a poisoned lock is used as it is.
fn read_lock<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write_lock<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
