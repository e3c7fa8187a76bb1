//! API keys kept in memory, dropped the moment any process changes a key
//! or an agent.
//!
//! Every request checks its key, so a database read per request would be
//! the single largest cost of a cheap GET. Keys change rarely and mostly
//! from another process (`endusers keys revoke`, `agents set-limits`), and a
//! revocation must hold from the next request on. So every change of keys
//! or agents, by any process, appends one byte to a marker file beside the
//! database (`<db>.keys-changed`); the cache remembers the file's inode and
//! length when it was filled and empties itself when they differ. A `stat`
//! per request costs about a microsecond, a fraction of a read transaction.
//!
//! The length only grows (an append is atomic, whichever process makes it),
//! so a version once seen never comes back; the file grows one byte per
//! key or agent change. If the file cannot be read, the cache is bypassed:
//! slower, never stale.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use crate::{ApiKeyRecord, StoreError};

/// More keys than this in use at once empties the cache, so it stays small.
const MAX_KEYS: usize = 4_096;

/// The marker file's identity and length: different after every change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Version {
    inode: u64,
    len: u64,
}

pub(super) struct KeyCache {
    marker: PathBuf,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    version: Option<Version>,
    keys: HashMap<String, ApiKeyRecord>,
}

impl KeyCache {
    /// The cache for the database at `database`, creating its marker file.
    pub(super) fn new(database: &Path) -> Result<Self, StoreError> {
        let mut marker = database.as_os_str().to_owned();
        marker.push(".keys-changed");
        let cache = Self {
            marker: PathBuf::from(marker),
            state: Mutex::new(State::default()),
        };
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&cache.marker)
            .map_err(|e| {
                StoreError::Config(format!("cannot create {}: {e}", cache.marker.display()))
            })?;
        Ok(cache)
    }

    /// The key from memory if nothing changed since it was read, otherwise
    /// from `read`, remembered for next time.
    pub(super) fn find(
        &self,
        key_id: &str,
        read: impl FnOnce() -> Result<Option<ApiKeyRecord>, StoreError>,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        // The version is taken before the database is read: a change that
        // lands in between makes the next request see a newer version.
        let Some(version) = self.version() else {
            return read();
        };
        {
            let mut state = self.lock();
            if state.version != Some(version) {
                state.keys.clear();
                state.version = Some(version);
            } else if let Some(record) = state.keys.get(key_id) {
                return Ok(Some(record.clone()));
            }
        }
        let record = read()?;
        if let Some(record) = &record {
            let mut state = self.lock();
            if state.version == Some(version) {
                if state.keys.len() >= MAX_KEYS {
                    state.keys.clear();
                }
                state.keys.insert(key_id.to_owned(), record.clone());
            }
        }
        Ok(record)
    }

    /// Tells every process's cache that keys or agents changed. Called
    /// after the change is committed.
    pub(super) fn changed(&self) -> Result<(), StoreError> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.marker)
            .and_then(|mut file| file.write_all(b"\n"))
            .map_err(|e| {
                StoreError::Backend(format!("cannot append to {}: {e}", self.marker.display()))
            })
    }

    fn version(&self) -> Option<Version> {
        let meta = std::fs::metadata(&self.marker).ok()?;
        Some(Version {
            inode: meta.ino(),
            len: meta.len(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(guard) => guard,
            // Emptying the cache is always safe.
            Err(poisoned) => {
                let mut guard = poisoned.into_inner();
                *guard = State::default();
                guard
            }
        }
    }
}
