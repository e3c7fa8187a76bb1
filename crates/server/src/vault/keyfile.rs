//! The master-key file kept beside a SQLite database when no `master_key`
//! is configured: made on the first start with mode 0600, one key per
//! line, the active key first.
//!
//! ```text
//! active <base64>
//! retired <base64>
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{Keyring, MasterKey, VaultError};

#[derive(Debug, Clone)]
pub struct KeyFile {
    path: PathBuf,
}

const HEADER: &str =
    "# endusers master keys: keep this file secret, and back it up with the database.\n";

impl KeyFile {
    /// The key file for the SQLite database at `database`: same directory,
    /// the database's file name with `.master-keys` appended.
    pub fn beside(database: &Path) -> Self {
        let mut name = database
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        name.push(".master-keys");
        Self {
            path: database.with_file_name(name),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, message: impl Into<String>) -> VaultError {
        VaultError::KeyFile {
            path: self.path.display().to_string(),
            message: message.into(),
        }
    }

    pub fn exists(&self) -> bool {
        self.path.exists()
    }

    /// When the file last changed, to notice a rotation by another process.
    pub fn modified(&self) -> Option<SystemTime> {
        std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok()
    }

    pub fn load(&self) -> Result<Keyring, VaultError> {
        let text = std::fs::read_to_string(&self.path).map_err(|e| self.error(e.to_string()))?;
        let mut active = None;
        let mut retired = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (kind, key) = line.split_once(' ').unwrap_or((line, ""));
            let key = MasterKey::parse_base64(key)
                .map_err(|e| self.error(format!("line {}: {e}", number + 1)))?;
            match kind {
                "active" if active.is_none() => active = Some(key),
                "active" => return Err(self.error("more than one active key")),
                "retired" => retired.push(key),
                _ => {
                    return Err(self.error(format!(
                        "line {}: expected `active` or `retired`",
                        number + 1
                    )));
                }
            }
        }
        let active = active.ok_or_else(|| self.error("no active key"))?;
        Ok(Keyring::new(active, retired))
    }

    /// Writes the keyring atomically (a new file, then a rename), mode 0600.
    pub fn store(&self, keyring: &Keyring) -> Result<(), VaultError> {
        let mut text = String::from(HEADER);
        text.push_str(&format!("active {}\n", keyring.active().to_base64()));
        for key in keyring.retired() {
            text.push_str(&format!("retired {}\n", key.to_base64()));
        }
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| self.error(e.to_string()))?;
        }
        let temporary = self.path.with_extension("master-keys.new");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options
            .open(&temporary)
            .map_err(|e| self.error(e.to_string()))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| self.error(e.to_string()))?;
        std::fs::rename(&temporary, &self.path).map_err(|e| self.error(e.to_string()))?;
        if let Some(dir) = self.path.parent().and_then(|d| std::fs::File::open(d).ok()) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// Loads the keyring, first making one with a fresh key if there is
    /// no file yet. `true` when it was just made.
    pub fn load_or_create(&self) -> Result<(Keyring, bool), VaultError> {
        if self.exists() {
            return Ok((self.load()?, false));
        }
        let keyring = Keyring::new(MasterKey::generate(), Vec::new());
        self.store(&keyring)?;
        Ok((keyring, true))
    }

    /// Makes a new active key; the old active key becomes retired.
    pub fn rotate(&self) -> Result<Keyring, VaultError> {
        let current = self.load()?;
        let mut retired = vec![current.active().clone()];
        retired.extend(current.retired().iter().cloned());
        let keyring = Keyring::new(MasterKey::generate(), retired);
        self.store(&keyring)?;
        Ok(keyring)
    }

    /// Removes the retired keys for which `in_use` is false.
    pub fn drop_retired(
        &self,
        in_use: impl Fn(&str) -> bool,
    ) -> Result<(Keyring, Vec<String>), VaultError> {
        let current = self.load()?;
        let (kept, dropped): (Vec<_>, Vec<_>) = current
            .retired()
            .iter()
            .cloned()
            .partition(|k| in_use(k.id()));
        let keyring = Keyring::new(current.active().clone(), kept);
        self.store(&keyring)?;
        Ok((keyring, dropped.iter().map(|k| k.id().to_owned()).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_private_and_rotated() {
        let dir = tempfile::tempdir().unwrap();
        let file = KeyFile::beside(&dir.path().join("endusers.db"));
        assert_eq!(file.path(), dir.path().join("endusers.db.master-keys"));
        let (first, created) = file.load_or_create().unwrap();
        assert!(created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(file.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (again, created) = file.load_or_create().unwrap();
        assert!(!created);
        assert_eq!(again, first);

        let rotated = file.rotate().unwrap();
        assert_ne!(rotated.active().id(), first.active().id());
        assert_eq!(rotated.retired(), [first.active().clone()]);
        assert_eq!(file.load().unwrap(), rotated);

        let old_id = first.active().id().to_owned();
        let (kept, dropped) = file.drop_retired(|id| id == old_id).unwrap();
        assert!(
            dropped.is_empty() && kept.retired().len() == 1,
            "a key still in use stays"
        );
        let (kept, dropped) = file.drop_retired(|_| false).unwrap();
        assert_eq!(dropped, [old_id]);
        assert!(kept.retired().is_empty());
    }

    #[test]
    fn a_broken_file_is_an_error_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = KeyFile::beside(&dir.path().join("x.db"));
        std::fs::write(file.path(), "active notakey\n").unwrap();
        let err = file.load().unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
        assert!(!err.contains("notakey"));
    }
}
