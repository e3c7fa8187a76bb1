//! API keys: how they are made, how they are checked.
//!
//! A key reads `eu_<key id>_<secret>`: 16 hex characters naming the key
//! (shown in listings, used to revoke it) and 43 base64url characters of
//! secret (32 random bytes). Only SHA-256 of the secret is stored, and the
//! check compares hashes in constant time.

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use endusers_core::AgentId;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::error::ApiError;

const PREFIX: &str = "eu_";
const KEY_ID_LEN: usize = 16;
const SECRET_LEN: usize = 43;
const TOKEN_LEN: usize = PREFIX.len() + KEY_ID_LEN + 1 + SECRET_LEN;

/// A freshly made key: `token` is shown once, `secret_hash` is stored.
pub struct IssuedKey {
    pub key_id: String,
    pub token: String,
    pub secret_hash: [u8; 32],
}

impl std::fmt::Debug for IssuedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

pub fn issue_key() -> IssuedKey {
    let mut rng = rand::rng();
    let mut id = [0u8; KEY_ID_LEN / 2];
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut id);
    rng.fill_bytes(&mut secret);
    let key_id: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let secret = URL_SAFE_NO_PAD.encode(secret);
    IssuedKey {
        token: format!("{PREFIX}{key_id}_{secret}"),
        secret_hash: hash_secret(&secret),
        key_id,
    }
}

fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Splits a presented token into key id and secret, if it has the shape.
fn split_token(token: &str) -> Option<(&str, &str)> {
    if token.len() != TOKEN_LEN || !token.is_ascii() {
        return None;
    }
    let rest = token.strip_prefix(PREFIX)?;
    let (key_id, rest) = rest.split_at(KEY_ID_LEN);
    let secret = rest.strip_prefix('_')?;
    key_id
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        .then_some((key_id, secret))
}

/// The agent on whose behalf a request acts, proven by its API key.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub agent: AgentId,
}

const MISSING: &str = "an API key is required: send Authorization: Bearer <key>";
const REJECTED: &str = "the API key is not valid";

/// Left by the rate-limit layer when the key did not check out, so the
/// route's [`Caller`] refuses without looking the key up again.
#[derive(Debug, Clone, Copy)]
pub struct Refused(pub &'static str);

/// A key that checked out, as the store shares it (no copy per request).
#[derive(Debug, Clone)]
pub struct AuthenticatedKey(std::sync::Arc<endusers_store::ApiKeyRecord>);

impl AuthenticatedKey {
    /// The agent the key acts for.
    pub fn agent(&self) -> AgentId {
        self.0.agent_id
    }

    /// That agent's rate-limit overrides.
    pub fn limits(&self) -> &endusers_store::AgentLimits {
        &self.0.agent_limits
    }
}

/// Checks the `Authorization` header against the stored keys.
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<AuthenticatedKey, ApiError> {
    let header = headers
        .get(AUTHORIZATION)
        .ok_or(ApiError::Unauthorized(MISSING))?;
    let token = header
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or(ApiError::Unauthorized(MISSING))?;
    let (key_id, secret) = split_token(token).ok_or(ApiError::Unauthorized(REJECTED))?;
    let presented = hash_secret(secret);
    let record = state.store.find_api_key(key_id).await?;
    match record {
        Some(key) if key.revoked_at.is_none() && bool::from(key.secret_hash.ct_eq(&presented)) => {
            Ok(AuthenticatedKey(key))
        }
        _ => Err(ApiError::Unauthorized(REJECTED)),
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    /// The rate-limit layer has usually authenticated the request already
    /// and left the caller in the extensions; otherwise check the key here.
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(*caller);
        }
        if let Some(Refused(reason)) = parts.extensions.get::<Refused>() {
            return Err(ApiError::Unauthorized(reason));
        }
        let key = authenticate(state, &parts.headers).await?;
        Ok(Self { agent: key.agent() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_split_back_into_their_parts() {
        let key = issue_key();
        assert_eq!(key.token.len(), TOKEN_LEN);
        let (key_id, secret) = split_token(&key.token).unwrap();
        assert_eq!(key_id, key.key_id);
        assert_eq!(hash_secret(secret), key.secret_hash);
        assert!(!format!("{key:?}").contains(secret));
    }

    #[test]
    fn malformed_tokens_do_not_split() {
        let key = issue_key();
        for bad in [
            String::new(),
            key.token.replacen("eu_", "xx_", 1),
            key.token[..TOKEN_LEN - 1].to_owned(),
            format!("{}A", key.token),
            key.token.to_uppercase(),
        ] {
            assert!(split_token(&bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn two_keys_differ() {
        assert_ne!(issue_key().token, issue_key().token);
    }
}
