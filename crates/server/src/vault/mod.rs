//! The sensitive-metadata vault: values are sealed with XChaCha20-Poly1305
//! under a master key before they reach the store, and opened only for the
//! server's own consumers. Nothing here ever logs or returns a value.
//!
//! Each value gets a fresh random 192-bit nonce (safe to draw at random for
//! any number of values) and associated data binding it to its agent, its
//! end user, its key name and its expiry: a ciphertext copied to another
//! user or key, or given a later expiry, no longer opens.

mod keyfile;
mod master_key;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use endusers_core::{AgentId, EndUserId, SensitiveKey, SensitivePatch, SensitiveValue, Timestamp};
use endusers_store::{OwnedSealedValue, SealedValue, SensitiveChange, SensitiveStore, StoreError};
use rand::RngCore;

pub use keyfile::KeyFile;
pub use master_key::{Keyring, MasterKey};

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("master key {0}")]
    BadKey(&'static str),
    #[error("no master key has the id {0}")]
    UnknownKey(String),
    #[error("a sensitive value failed to decrypt (tampered, moved, or sealed with another key)")]
    Tampered,
    #[error("master key file {path}: {message}")]
    KeyFile { path: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Vault {
    keyring: RwLock<Arc<Keyring>>,
    ttl: Duration,
}

const NONCE_LEN: usize = 24;

fn associated_data(
    agent: AgentId,
    user: EndUserId,
    name: &SensitiveKey,
    expires_at: Timestamp,
) -> Vec<u8> {
    let name = name.as_str().as_bytes();
    let mut aad = Vec::with_capacity(64 + name.len());
    aad.extend_from_slice(b"endusers sensitive v1\0");
    aad.extend_from_slice(&agent.0.to_be_bytes());
    aad.extend_from_slice(user.to_string().as_bytes());
    aad.extend_from_slice(&expires_at.as_micros().to_be_bytes());
    // The name is last, so its length needs no prefix to be unambiguous.
    aad.extend_from_slice(name);
    aad
}

impl Vault {
    pub fn new(keyring: Keyring, ttl: Duration) -> Self {
        Self {
            keyring: RwLock::new(Arc::new(keyring)),
            ttl,
        }
    }

    pub fn keyring(&self) -> Arc<Keyring> {
        Arc::clone(
            &self
                .keyring
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Swaps in a new keyring (after `endusers master-key rotate`).
    pub fn replace_keyring(&self, keyring: Keyring) {
        let mut guard = self
            .keyring
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard = Arc::new(keyring);
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn seal_with(
        key: &MasterKey,
        agent: AgentId,
        user: EndUserId,
        name: &SensitiveKey,
        plaintext: &[u8],
        expires_at: Timestamp,
    ) -> SealedValue {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let cipher = XChaCha20Poly1305::new(key.bytes().into());
        let aad = associated_data(agent, user, name, expires_at);
        // Encryption with a valid key cannot fail; an empty ciphertext would
        // only make the value unreadable, never leak it.
        let ciphertext = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .unwrap_or_default();
        SealedValue {
            name: name.clone(),
            key_id: key.id().to_owned(),
            nonce: nonce.to_vec(),
            ciphertext,
            expires_at,
        }
    }

    /// Seals one value under the active key; it expires `ttl` after `now`.
    pub fn seal(
        &self,
        agent: AgentId,
        user: EndUserId,
        name: &SensitiveKey,
        value: &SensitiveValue,
        now: Timestamp,
    ) -> SealedValue {
        let keyring = self.keyring();
        let expires_at = now.saturating_add(self.ttl);
        Self::seal_with(
            keyring.active(),
            agent,
            user,
            name,
            &value.to_plaintext(),
            expires_at,
        )
    }

    /// Opens one value sealed for this agent and user.
    pub fn open(
        &self,
        agent: AgentId,
        user: EndUserId,
        sealed: &SealedValue,
    ) -> Result<SensitiveValue, VaultError> {
        let keyring = self.keyring();
        let key = keyring
            .find(&sealed.key_id)
            .ok_or_else(|| VaultError::UnknownKey(sealed.key_id.clone()))?;
        let plaintext = Self::decrypt(key, agent, user, sealed)?;
        SensitiveValue::from_plaintext(&plaintext).ok_or(VaultError::Tampered)
    }

    fn decrypt(
        key: &MasterKey,
        agent: AgentId,
        user: EndUserId,
        sealed: &SealedValue,
    ) -> Result<Vec<u8>, VaultError> {
        if sealed.nonce.len() != NONCE_LEN {
            return Err(VaultError::Tampered);
        }
        let cipher = XChaCha20Poly1305::new(key.bytes().into());
        let aad = associated_data(agent, user, &sealed.name, sealed.expires_at);
        cipher
            .decrypt(
                XNonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| VaultError::Tampered)
    }

    /// The store changes one request's `sensitive_metadata.fields` makes.
    pub fn changes(
        &self,
        agent: AgentId,
        user: EndUserId,
        patch: &SensitivePatch,
        now: Timestamp,
    ) -> Vec<SensitiveChange> {
        patch
            .entries()
            .map(|(name, value)| match value {
                Some(value) => SensitiveChange::Set(self.seal(agent, user, name, value, now)),
                None => SensitiveChange::Remove(name.clone()),
            })
            .collect()
    }

    /// The internal read path: one user's unexpired values, decrypted. For
    /// the server's own consumers (actions on the agent's behalf); no HTTP
    /// route exposes it.
    pub async fn read(
        &self,
        store: &dyn SensitiveStore,
        agent: AgentId,
        user: EndUserId,
        now: Timestamp,
    ) -> Result<BTreeMap<SensitiveKey, SensitiveValue>, VaultError> {
        let sealed = store.live_sensitive_values(agent, user, now).await?;
        sealed
            .into_iter()
            // The store already leaves expired values out; the vault owns
            // the promise that none is ever served, so it checks again.
            .filter(|s| s.expires_at > now)
            .map(|s| Ok((s.name.clone(), self.open(agent, user, &s)?)))
            .collect()
    }

    /// Re-seals up to `batch` values still under a retired key with the
    /// active key. Returns how many were moved; 0 when none are left.
    pub async fn reseal_batch(
        &self,
        store: &dyn SensitiveStore,
        batch: usize,
    ) -> Result<usize, VaultError> {
        let keyring = self.keyring();
        let active = keyring.active();
        let stale = store
            .sensitive_values_under_other_keys(active.id(), batch)
            .await?;
        if stale.is_empty() {
            return Ok(0);
        }
        let mut replacements: Vec<(OwnedSealedValue, SealedValue)> =
            Vec::with_capacity(stale.len());
        for old in stale {
            let Some(key) = keyring.find(&old.value.key_id) else {
                tracing::error!(key_id = %old.value.key_id, "a sensitive value is sealed with a key this server does not have");
                continue;
            };
            match Self::decrypt(key, old.agent_id, old.end_user_id, &old.value) {
                Ok(plaintext) => {
                    let new = Self::seal_with(
                        active,
                        old.agent_id,
                        old.end_user_id,
                        &old.value.name,
                        &plaintext,
                        old.value.expires_at,
                    );
                    replacements.push((old, new));
                }
                Err(_) => tracing::error!(
                    key_id = %old.value.key_id, name = %old.value.name,
                    "a sensitive value failed to decrypt during re-sealing; left as it is"
                ),
            }
        }
        if replacements.is_empty() {
            return Ok(0);
        }
        Ok(store.replace_sealed_values(replacements).await?)
    }
}

#[cfg(test)]
mod tests;
