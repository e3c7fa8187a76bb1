//! Webhook signing as Standard Webhooks / Svix do it.
//!
//! Each delivery carries `webhook-id`, `webhook-timestamp` (Unix seconds) and
//! `webhook-signature`. The signature is HMAC-SHA256, keyed with the
//! endpoint's secret, over `{webhook-id}.{webhook-timestamp}.{body}`, written
//! as `v1,` + standard base64. While a secret is being rotated both the new
//! and the old secret sign, and the header lists the signatures separated by
//! spaces; a receiver accepts the message if any one of them matches.
//!
//! Receivers should verify with [`verify`] (or any Standard Webhooks library)
//! and also refuse timestamps far from their own clock (Svix uses five
//! minutes) so that a captured delivery cannot be replayed later.
//!
//! HMAC comes from the `hmac` crate, whose `verify_slice` compares in
//! constant time.

use std::fmt;

use base64::Engine;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The prefix Svix and Standard Webhooks put before the base64 of a secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// Bytes in a generated secret (what Svix generates).
const GENERATED_LEN: usize = 24;
/// Accepted secret lengths: Svix takes 32 to 100 base64 characters, that is
/// 24 to 75 bytes. Shorter keys are too weak to accept from a user.
const MIN_LEN: usize = 24;
const MAX_LEN: usize = 75;
const SIG_PREFIX: &str = "v1,";
/// SHA-256's block size: HMAC zero-pads shorter keys to it (RFC 2104).
const BLOCK: usize = 64;

/// Standard base64 that tolerates missing `=` padding on input.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("webhook secret is empty")]
    Empty,
    #[error("webhook secret is not valid standard base64 (optionally prefixed with `whsec_`)")]
    InvalidBase64,
    #[error("webhook secret must be {MIN_LEN} to {MAX_LEN} bytes, got {0}")]
    BadLength(usize),
}

/// An endpoint's signing key. `Debug` never shows the key bytes.
#[derive(Clone)]
pub struct EndpointSecret {
    key: Vec<u8>,
    /// HMAC already keyed with `key`, cloned for each message.
    keyed: HmacSha256,
}

impl EndpointSecret {
    /// 24 random bytes from the thread-local CSPRNG, like Svix.
    pub fn generate() -> Self {
        // HMAC zero-pads keys shorter than a block, so keying with the padded
        // block is keying with the 24 bytes, and needs no fallible call.
        let mut block = [0u8; BLOCK];
        rand::rng().fill_bytes(&mut block[..GENERATED_LEN]);
        let keyed = HmacSha256::new(&block.into());
        Self {
            key: block[..GENERATED_LEN].to_vec(),
            keyed,
        }
    }

    /// Reads `whsec_<standard base64>` or the bare base64 (padding optional).
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let text = text.trim();
        let b64 = text.strip_prefix(SECRET_PREFIX).unwrap_or(text);
        if b64.is_empty() {
            return Err(SecretError::Empty);
        }
        let key = LENIENT
            .decode(b64)
            .map_err(|_| SecretError::InvalidBase64)?;
        if !(MIN_LEN..=MAX_LEN).contains(&key.len()) {
            return Err(SecretError::BadLength(key.len()));
        }
        // HMAC takes keys of any length; this never fails.
        let keyed =
            HmacSha256::new_from_slice(&key).map_err(|_| SecretError::BadLength(key.len()))?;
        Ok(Self { key, keyed })
    }

    /// `whsec_` + standard base64: the form shown to users and stored.
    pub fn to_string_whsec(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.key))
    }

    /// The HMAC state after `{msg_id}.{timestamp}.{body}`.
    fn mac(&self, msg_id: &str, timestamp_secs: i64, body: &[u8]) -> HmacSha256 {
        let mut mac = self.keyed.clone();
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(itoa::Buffer::new().format(timestamp_secs).as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

impl fmt::Debug for EndpointSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointSecret").finish_non_exhaustive()
    }
}

/// `v1,` + standard base64 of HMAC-SHA256 over `{msg_id}.{timestamp}.{body}`.
pub fn sign(secret: &EndpointSecret, msg_id: &str, timestamp_secs: i64, body: &[u8]) -> String {
    let mut signature = String::with_capacity(SIGNATURE_LEN);
    sign_into(&mut signature, secret, msg_id, timestamp_secs, body);
    signature
}

/// `v1,` and 44 characters of base64.
const SIGNATURE_LEN: usize = 47;

/// [`sign`], appended to `out`.
fn sign_into(
    out: &mut String,
    secret: &EndpointSecret,
    msg_id: &str,
    timestamp_secs: i64,
    body: &[u8],
) {
    let mac = secret
        .mac(msg_id, timestamp_secs, body)
        .finalize()
        .into_bytes();
    out.push_str(SIG_PREFIX);
    STANDARD.encode_string(mac, out);
}

/// The `webhook-signature` value: one signature per secret, space-separated
/// (during a rotation grace period both the new and the old secret sign).
/// Written into one string: every delivery makes one.
pub fn signature_header<'a>(
    secrets: impl IntoIterator<Item = &'a EndpointSecret>,
    msg_id: &str,
    timestamp_secs: i64,
    body: &[u8],
) -> String {
    let mut header = String::with_capacity(2 * SIGNATURE_LEN + 1);
    for (n, secret) in secrets.into_iter().enumerate() {
        if n > 0 {
            header.push(' ');
        }
        sign_into(&mut header, secret, msg_id, timestamp_secs, body);
    }
    header
}

/// True if any space-separated `v1,` entry of `header` is the signature of
/// this message under `secret`. Entries of other versions are ignored; the
/// comparison is constant-time. Checking the timestamp's age is the caller's
/// job.
pub fn verify(
    secret: &EndpointSecret,
    msg_id: &str,
    timestamp_secs: i64,
    body: &[u8],
    header: &str,
) -> bool {
    let mac = secret.mac(msg_id, timestamp_secs, body);
    header
        .split_ascii_whitespace()
        .filter_map(|entry| entry.strip_prefix(SIG_PREFIX))
        .filter_map(|b64| LENIENT.decode(b64).ok())
        .any(|given| mac.clone().verify_slice(&given).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const EXPECTED: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn svix_test_vector() {
        let secret = EndpointSecret::parse(SECRET).unwrap();
        assert_eq!(sign(&secret, ID, TS, BODY), EXPECTED);
        assert!(verify(&secret, ID, TS, BODY, EXPECTED));
        // The bare base64 is the same key.
        let bare = EndpointSecret::parse(&SECRET[SECRET_PREFIX.len()..]).unwrap();
        assert_eq!(sign(&bare, ID, TS, BODY), EXPECTED);
        assert_eq!(bare.to_string_whsec(), SECRET);
    }

    #[test]
    fn generate_sign_verify_round_trip() {
        let secret = EndpointSecret::generate();
        let text = secret.to_string_whsec();
        assert!(text.starts_with("whsec_"));
        assert_eq!(text.len(), SECRET_PREFIX.len() + 32);
        // `generate` keys with the padded block, `parse` with the bytes:
        // both must sign alike.
        let reparsed = EndpointSecret::parse(&text).unwrap();
        let header = sign(&secret, ID, TS, BODY);
        assert_eq!(header, sign(&reparsed, ID, TS, BODY));
        assert!(verify(&reparsed, ID, TS, BODY, &header));
        assert!(verify(&secret, ID, TS, BODY, &header));
        assert_ne!(
            EndpointSecret::generate().to_string_whsec(),
            text,
            "two generated secrets should differ"
        );
    }

    #[test]
    fn tampering_fails() {
        let secret = EndpointSecret::parse(SECRET).unwrap();
        let mut body = BODY.to_vec();
        body[3] ^= 0x01;
        assert!(!verify(&secret, ID, TS, &body, EXPECTED));
        assert!(!verify(&secret, "msg_other", TS, BODY, EXPECTED));
        assert!(!verify(&secret, ID, TS + 1, BODY, EXPECTED));
        assert!(!verify(&EndpointSecret::generate(), ID, TS, BODY, EXPECTED));
        assert!(!verify(&secret, ID, TS, BODY, ""));
        assert!(!verify(
            &secret,
            ID,
            TS,
            BODY,
            "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        ));
        assert!(!verify(&secret, ID, TS, BODY, "v1,not-base64!"));
        assert!(!verify(&secret, ID, TS, BODY, "v1,"));
    }

    #[test]
    fn rotation_header_verifies_with_either_secret() {
        let new = EndpointSecret::generate();
        let old = EndpointSecret::parse(SECRET).unwrap();
        let header = signature_header([&new, &old], ID, TS, BODY);
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1], EXPECTED);
        assert!(verify(&new, ID, TS, BODY, &header));
        assert!(verify(&old, ID, TS, BODY, &header));
        assert!(!verify(&EndpointSecret::generate(), ID, TS, BODY, &header));
        assert_eq!(signature_header(std::iter::empty(), ID, TS, BODY), "");
    }

    #[test]
    fn parse_rejects_bad_input() {
        assert_eq!(EndpointSecret::parse("").unwrap_err(), SecretError::Empty);
        assert_eq!(
            EndpointSecret::parse("whsec_").unwrap_err(),
            SecretError::Empty
        );
        assert_eq!(
            EndpointSecret::parse("whsec_not*base64*at*all*not*base64*").unwrap_err(),
            SecretError::InvalidBase64
        );
        // URL-safe alphabet is not the standard one.
        assert_eq!(
            EndpointSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS_").unwrap_err(),
            SecretError::InvalidBase64
        );
        assert_eq!(
            EndpointSecret::parse("whsec_c2hvcnQ=").unwrap_err(),
            SecretError::BadLength(5)
        );
    }

    #[test]
    fn debug_redacts() {
        let secret = EndpointSecret::parse(SECRET).unwrap();
        let shown = format!("{secret:?}");
        assert!(!shown.contains("MfKQ"), "{shown}");
        assert!(!shown.contains("49"), "raw byte values leaked: {shown}");
    }
}
