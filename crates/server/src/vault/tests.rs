use std::time::Duration;

use endusers_core::{AgentId, EndUserId, IdGenerator, SensitiveKey, SensitiveValue, Timestamp};

use super::*;

const NOW: Timestamp = Timestamp::from_micros(1_795_773_600_000_000);

fn ids() -> (EndUserId, EndUserId) {
    let ids = IdGenerator::new();
    (ids.next(NOW, 1), ids.next(NOW, 2))
}

fn vault() -> Vault {
    Vault::new(
        Keyring::new(MasterKey::generate(), Vec::new()),
        Duration::from_secs(86_400),
    )
}

fn name(n: &str) -> SensitiveKey {
    SensitiveKey::parse(n).unwrap()
}

#[test]
fn values_round_trip_and_ciphertext_hides_them() {
    let vault = vault();
    let (user, _) = ids();
    for value in [
        SensitiveValue::String("eyJhbGciOi-distinctive".into()),
        SensitiveValue::Integer(-42),
        SensitiveValue::Boolean(true),
    ] {
        let sealed = vault.seal(AgentId(1), user, &name("token"), &value, NOW);
        assert_eq!(sealed.nonce.len(), 24);
        assert_eq!(sealed.key_id, vault.keyring().active().id());
        assert_eq!(
            sealed.expires_at,
            NOW.saturating_add(Duration::from_secs(86_400))
        );
        assert!(!sealed.ciphertext.windows(11).any(|w| w == b"distinctive"));
        assert_eq!(vault.open(AgentId(1), user, &sealed).unwrap(), value);
    }
}

#[test]
fn nonces_are_fresh_for_every_value() {
    let vault = vault();
    let (user, _) = ids();
    let value = SensitiveValue::Integer(1);
    let a = vault.seal(AgentId(1), user, &name("k"), &value, NOW);
    let b = vault.seal(AgentId(1), user, &name("k"), &value, NOW);
    assert_ne!(a.nonce, b.nonce);
    assert_ne!(a.ciphertext, b.ciphertext);
}

#[test]
fn tampering_in_any_way_fails_to_open() {
    let vault = vault();
    let (user, other_user) = ids();
    let sealed = vault.seal(
        AgentId(1),
        user,
        &name("token"),
        &SensitiveValue::String("secret".into()),
        NOW,
    );
    let tampered = |f: &dyn Fn(&mut SealedValue)| {
        let mut copy = sealed.clone();
        f(&mut copy);
        copy
    };
    let flipped = tampered(&|s| s.ciphertext[0] ^= 1);
    let flipped_tag = tampered(&|s| {
        let last = s.ciphertext.len() - 1;
        s.ciphertext[last] ^= 0x80;
    });
    let flipped_nonce = tampered(&|s| s.nonce[5] ^= 1);
    let renamed = tampered(&|s| s.name = name("other_key"));
    let extended =
        tampered(&|s| s.expires_at = s.expires_at.saturating_add(Duration::from_secs(1)));
    for case in [&flipped, &flipped_tag, &flipped_nonce, &renamed, &extended] {
        assert!(matches!(
            vault.open(AgentId(1), user, case),
            Err(VaultError::Tampered)
        ));
    }
    // Moved to another user or another agent.
    assert!(matches!(
        vault.open(AgentId(1), other_user, &sealed),
        Err(VaultError::Tampered)
    ));
    assert!(matches!(
        vault.open(AgentId(2), user, &sealed),
        Err(VaultError::Tampered)
    ));
    // A key id this vault does not know, and the right id under another vault's key.
    let unknown = tampered(&|s| s.key_id = "0000000000000000".into());
    assert!(matches!(
        vault.open(AgentId(1), user, &unknown),
        Err(VaultError::UnknownKey(_))
    ));
    let stranger = Vault::new(
        Keyring::new(MasterKey::generate(), Vec::new()),
        Duration::from_secs(1),
    );
    let relabelled = tampered(&|s| s.key_id = stranger.keyring().active().id().to_owned());
    assert!(matches!(
        stranger.open(AgentId(1), user, &relabelled),
        Err(VaultError::Tampered)
    ));
}

#[test]
fn retired_keys_still_open_after_rotation() {
    let old = MasterKey::generate();
    let vault = Vault::new(
        Keyring::new(old.clone(), Vec::new()),
        Duration::from_secs(60),
    );
    let (user, _) = ids();
    let sealed = vault.seal(
        AgentId(1),
        user,
        &name("t"),
        &SensitiveValue::Boolean(false),
        NOW,
    );
    let new = MasterKey::generate();
    vault.replace_keyring(Keyring::new(new.clone(), vec![old.clone()]));
    assert_eq!(
        vault.open(AgentId(1), user, &sealed).unwrap(),
        SensitiveValue::Boolean(false)
    );
    let fresh = vault.seal(
        AgentId(1),
        user,
        &name("t"),
        &SensitiveValue::Boolean(true),
        NOW,
    );
    assert_eq!(fresh.key_id, new.id());
    vault.replace_keyring(Keyring::new(new, Vec::new()));
    assert!(matches!(
        vault.open(AgentId(1), user, &sealed),
        Err(VaultError::UnknownKey(_))
    ));
}

#[test]
fn debug_output_never_contains_plaintext_or_key() {
    let vault = vault();
    let (user, _) = ids();
    let sealed = vault.seal(
        AgentId(1),
        user,
        &name("t"),
        &SensitiveValue::String("hunter2".into()),
        NOW,
    );
    let text = format!("{sealed:?} {:?}", vault.keyring());
    assert!(!text.contains("hunter2"));
    assert!(!text.contains(&vault.keyring().active().to_base64()));
}
