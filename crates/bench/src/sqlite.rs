//! What the bench measures only when the server runs on the embedded SQLite
//! backend: the share of time its writer thread ran or waited for a core,
//! and how large its write-ahead log grew. Other backends have neither.

use std::path::{Path, PathBuf};

/// The name of the SQLite backend's writer thread, as the kernel shows it.
pub use endusers_store_sqlite::WRITER_THREAD;

/// The write-ahead log of the database `database_url` names, when it names
/// a SQLite file; a relative path is taken from `server_dir`, where the
/// server runs.
pub fn log_file(database_url: &str, server_dir: &Path) -> Option<PathBuf> {
    endusers_store_sqlite::path_from_url(database_url).map(|db| {
        let mut wal = server_dir.join(db).into_os_string();
        wal.push("-wal");
        wal.into()
    })
}
