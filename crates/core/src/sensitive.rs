//! `profile.sensitive_metadata`: short-lived secrets the agent needs for
//! authenticated actions. Write-only: these types deliberately implement
//! neither `Serialize` nor a `Debug` that shows the value.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

use crate::error::FieldError;

/// At most this many keys per request.
pub const MAX_SENSITIVE_FIELDS: usize = 20;

/// A sensitive metadata key: `^[A-Za-z0-9_-]+$`, at most 128 characters.
/// Key names are not secret (operators may see them); values are.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SensitiveKey(String);

crate::string_newtype!(SensitiveKey);

impl SensitiveKey {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let well_formed = !raw.is_empty()
            && raw.len() <= 128
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !well_formed {
            return Err(FieldError::new(
                "keys must be 1 to 128 characters of A-Z, a-z, 0-9, '_' or '-'",
            ));
        }
        Ok(Self(raw.to_owned()))
    }
}

/// A secret value: a non-empty string, an integer or a boolean.
#[derive(Clone, PartialEq, Eq)]
pub enum SensitiveValue {
    String(String),
    Integer(i64),
    Boolean(bool),
}

impl fmt::Debug for SensitiveValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SensitiveValue(<redacted>)")
    }
}

impl SensitiveValue {
    /// Parses one request value; `Ok(None)` is a removal (`null`). The error
    /// describes the kind of value expected and never echoes the value.
    pub fn from_json(value: Value) -> Result<Option<Self>, FieldError> {
        match value {
            Value::Null => Ok(None),
            Value::String(s) if s.is_empty() => Err(FieldError::new("strings must not be empty")),
            Value::String(s) => Ok(Some(Self::String(s))),
            Value::Bool(b) => Ok(Some(Self::Boolean(b))),
            Value::Number(n) => n.as_i64().map(|i| Some(Self::Integer(i))).ok_or_else(|| {
                FieldError::new("values must be a non-empty string, an integer, a boolean or null")
            }),
            Value::Array(_) | Value::Object(_) => Err(FieldError::new(
                "values must be a non-empty string, an integer, a boolean or null",
            )),
        }
    }

    /// The bytes that get encrypted: a one-byte kind tag, then the value.
    pub fn to_plaintext(&self) -> Vec<u8> {
        match self {
            Self::String(s) => [b"s".as_slice(), s.as_bytes()].concat(),
            Self::Integer(i) => [b"i".as_slice(), &i.to_be_bytes()].concat(),
            Self::Boolean(b) => vec![b'b', u8::from(*b)],
        }
    }

    /// Reads bytes made by [`SensitiveValue::to_plaintext`].
    pub fn from_plaintext(bytes: &[u8]) -> Option<Self> {
        match bytes.split_first()? {
            (b's', rest) => String::from_utf8(rest.to_vec()).ok().map(Self::String),
            (b'i', rest) => Some(Self::Integer(i64::from_be_bytes(rest.try_into().ok()?))),
            (b'b', [0]) => Some(Self::Boolean(false)),
            (b'b', [1]) => Some(Self::Boolean(true)),
            _ => None,
        }
    }
}

/// The `sensitive_metadata.fields` of one request: keys to set (`Some`) or
/// remove (`None`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SensitivePatch(BTreeMap<SensitiveKey, Option<SensitiveValue>>);

impl SensitivePatch {
    /// Parses `fields`; errors are relative to the `fields` object.
    pub fn parse(fields: Map<String, Value>) -> Result<Self, FieldError> {
        if fields.len() > MAX_SENSITIVE_FIELDS {
            return Err(FieldError::new("must have at most 20 keys"));
        }
        let mut parsed = BTreeMap::new();
        for (raw_key, value) in fields {
            let key = SensitiveKey::parse(&raw_key).map_err(|e| e.at(&raw_key))?;
            let value = SensitiveValue::from_json(value).map_err(|e| e.at(&raw_key))?;
            parsed.insert(key, value);
        }
        Ok(Self(parsed))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn entries(&self) -> impl Iterator<Item = (&SensitiveKey, Option<&SensitiveValue>)> {
        self.0.iter().map(|(k, v)| (k, v.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn fields(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn parses_values_and_removals() {
        let patch = SensitivePatch::parse(fields(
            json!({"auth_token": "eyJ", "tries": 3, "ok": true, "old": null}),
        ))
        .unwrap();
        assert_eq!(patch.len(), 4);
        let removed: Vec<_> = patch
            .entries()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(removed, ["old"]);
    }

    #[test]
    fn refuses_bad_keys_and_values_without_echoing_them() {
        let cases = [
            (
                json!({"bad key": "x"}),
                "bad key: keys must be 1 to 128 characters of A-Z, a-z, 0-9, '_' or '-'",
            ),
            (json!({"k": ""}), "k: strings must not be empty"),
            (
                json!({"k": 1.5}),
                "k: values must be a non-empty string, an integer, a boolean or null",
            ),
            (
                json!({"k": ["hunter2"]}),
                "k: values must be a non-empty string, an integer, a boolean or null",
            ),
        ];
        for (input, expected) in cases {
            let err = SensitivePatch::parse(fields(input)).unwrap_err();
            assert_eq!(err.to_string(), expected);
            assert!(!err.to_string().contains("hunter2"));
        }
        let many: Map<String, Value> = (0..21).map(|i| (format!("k{i}"), json!("v"))).collect();
        assert_eq!(
            SensitivePatch::parse(many).unwrap_err().to_string(),
            "must have at most 20 keys"
        );
    }

    #[test]
    fn debug_never_shows_the_value() {
        let value = SensitiveValue::String("hunter2".into());
        assert!(!format!("{value:?}").contains("hunter2"));
        let patch = SensitivePatch::parse(fields(json!({"pw": "hunter2"}))).unwrap();
        assert!(!format!("{patch:?}").contains("hunter2"));
    }

    proptest! {
        #[test]
        fn plaintext_round_trips(s in ".+", i in any::<i64>(), b in any::<bool>()) {
            for value in [SensitiveValue::String(s.clone()), SensitiveValue::Integer(i), SensitiveValue::Boolean(b)] {
                prop_assert_eq!(SensitiveValue::from_plaintext(&value.to_plaintext()), Some(value));
            }
        }

        #[test]
        fn keys_outside_the_alphabet_are_refused(key in ".*[^A-Za-z0-9_-].*") {
            prop_assert!(SensitiveKey::parse(&key).is_err());
        }

        #[test]
        fn keys_inside_the_alphabet_are_accepted(key in "[A-Za-z0-9_-]{1,128}") {
            prop_assert!(SensitiveKey::parse(&key).is_ok());
        }
    }
}
