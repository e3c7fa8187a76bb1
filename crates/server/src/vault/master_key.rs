//! Master keys: 32 random bytes, written as standard base64, named by a
//! short fingerprint that every ciphertext records.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::VaultError;

/// Never printed: `Debug` shows only the id.
#[derive(Clone)]
pub struct MasterKey {
    bytes: [u8; 32],
    id: String,
}

impl MasterKey {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self::from_bytes(bytes)
    }

    fn from_bytes(bytes: [u8; 32]) -> Self {
        // A fingerprint, not the key: a hash with a purpose prefix, cut to
        // 64 bits, names the key without revealing anything usable.
        let digest = Sha256::new()
            .chain_update(b"endusers master key id\0")
            .chain_update(bytes)
            .finalize();
        let id = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Self { bytes, id }
    }

    /// Reads standard base64 of exactly 32 bytes.
    pub fn parse_base64(text: &str) -> Result<Self, VaultError> {
        let decoded = STANDARD
            .decode(text.trim())
            .map_err(|_| VaultError::BadKey("is not standard base64"))?;
        let bytes: [u8; 32] = decoded
            .try_into()
            .map_err(|_| VaultError::BadKey("must decode to exactly 32 bytes"))?;
        Ok(Self::from_bytes(bytes))
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.bytes)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub(super) fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({})", self.id)
    }
}

impl PartialEq for MasterKey {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

/// The key new values are sealed with, and the retired keys that older
/// values may still be sealed with until they are re-sealed.
#[derive(Debug, Clone, PartialEq)]
pub struct Keyring {
    active: MasterKey,
    retired: Vec<MasterKey>,
}

impl Keyring {
    pub fn new(active: MasterKey, retired: Vec<MasterKey>) -> Self {
        let retired = retired.into_iter().filter(|k| k.id != active.id).collect();
        Self { active, retired }
    }

    pub fn active(&self) -> &MasterKey {
        &self.active
    }

    pub fn retired(&self) -> &[MasterKey] {
        &self.retired
    }

    pub fn find(&self, id: &str) -> Option<&MasterKey> {
        std::iter::once(&self.active)
            .chain(&self.retired)
            .find(|k| k.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_and_ids_are_stable() {
        let key = MasterKey::generate();
        let again = MasterKey::parse_base64(&key.to_base64()).unwrap();
        assert_eq!(key.id(), again.id());
        assert_eq!(key.id().len(), 16);
        assert_ne!(key.id(), MasterKey::generate().id());
        assert!(!format!("{key:?}").contains(&key.to_base64()));
    }

    #[test]
    fn bad_keys_are_refused_without_echo() {
        for bad in ["", "not base64!", "AAAA"] {
            let err = MasterKey::parse_base64(bad).unwrap_err().to_string();
            assert!(err.starts_with("master key"), "{err}");
        }
    }
}
