//! `profile.metadata`: a flat map from short string keys to strings,
//! integers or booleans.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::error::FieldError;
use crate::wire::Patch;

/// A metadata value: the only three kinds the contract allows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum MetadataValue {
    String(String),
    Integer(i64),
    Boolean(bool),
}

impl MetadataValue {
    /// Accepts a JSON string, an integer that fits in i64, or a boolean.
    pub fn from_json(value: Value) -> Result<Self, FieldError> {
        match value {
            Value::String(s) => Ok(Self::String(s)),
            Value::Bool(b) => Ok(Self::Boolean(b)),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Ok(Self::Integer(i)),
                None if n.is_u64() => Err(FieldError::new(
                    "integers must fit in a signed 64-bit integer",
                )),
                None => Err(FieldError::new(
                    "values must be a string, integer or boolean",
                )),
            },
            Value::Null | Value::Array(_) | Value::Object(_) => Err(FieldError::new(
                "values must be a string, integer or boolean",
            )),
        }
    }
}

/// What a metadata value is read into: the value itself, or only the
/// fact that it was one ([`ValueShape`]). One reader serves both, so what
/// [`Metadata::is_readable`] accepts is what [`Metadata::from_json`] reads.
trait FromValueToken: Sized {
    fn string(text: &str) -> Self;
    fn integer(value: i64) -> Self;
    fn boolean(value: bool) -> Self;

    /// [`FromValueToken::string`] for text the deserializer owns already.
    fn owned_string(text: String) -> Self {
        Self::string(&text)
    }
}

impl FromValueToken for MetadataValue {
    fn string(text: &str) -> Self {
        Self::String(text.to_owned())
    }

    fn owned_string(text: String) -> Self {
        Self::String(text)
    }

    fn integer(value: i64) -> Self {
        Self::Integer(value)
    }

    fn boolean(value: bool) -> Self {
        Self::Boolean(value)
    }
}

/// A value [`MetadataValue`]'s reader takes, not kept.
struct ValueShape;

impl FromValueToken for ValueShape {
    fn string(_: &str) -> Self {
        Self
    }

    fn integer(_: i64) -> Self {
        Self
    }

    fn boolean(_: bool) -> Self {
        Self
    }
}

/// Reads a value straight from the token's kind: every stored profile is
/// parsed on every read, and `untagged`'s buffer-and-retry would cost an
/// allocation and an error value per string.
fn read_value<'de, T: FromValueToken, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<T, D::Error> {
    struct Kind<T>(std::marker::PhantomData<T>);

    impl<T: FromValueToken> serde::de::Visitor<'_> for Kind<T> {
        type Value = T;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string, an integer that fits in i64, or a boolean")
        }

        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
            Ok(T::string(v))
        }

        fn visit_string<E: serde::de::Error>(self, v: String) -> Result<T, E> {
            Ok(T::owned_string(v))
        }

        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<T, E> {
            Ok(T::integer(v))
        }

        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<T, E> {
            i64::try_from(v)
                .map(T::integer)
                .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
        }

        fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<T, E> {
            Ok(T::boolean(v))
        }
    }

    deserializer.deserialize_any(Kind(std::marker::PhantomData))
}

impl<'de> serde::Deserialize<'de> for MetadataValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        read_value(deserializer)
    }
}

impl<'de> serde::Deserialize<'de> for ValueShape {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        read_value(deserializer)
    }
}

/// Stored metadata's shape, for [`Metadata::is_readable`]: an object whose
/// values [`MetadataValue`]'s reader would take, keys and values skipped
/// as they are read.
struct StoredShape;

impl<'de> serde::Deserialize<'de> for StoredShape {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Object;

        impl<'de> serde::de::Visitor<'de> for Object {
            type Value = StoredShape;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a metadata object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<StoredShape, A::Error> {
                while map.next_key::<serde::de::IgnoredAny>()?.is_some() {
                    map.next_value::<ValueShape>()?;
                }
                Ok(StoredShape)
            }
        }

        deserializer.deserialize_map(Object)
    }
}

/// Checks a metadata key: non-empty, at most 128 characters.
fn check_key(key: &str) -> Result<(), FieldError> {
    match key.chars().count() {
        0 => Err(FieldError::new("keys must not be empty")),
        1..=128 => Ok(()),
        _ => Err(FieldError::new("keys must be at most 128 characters")),
    }
}

/// The metadata of one end user. Keys are kept sorted, so the serialized
/// form (and its size) does not depend on the order changes arrived in.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Metadata(BTreeMap<String, MetadataValue>);

impl Metadata {
    pub fn get(&self, key: &str) -> Option<&MetadataValue> {
        self.0.get(key)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &MetadataValue)> {
        self.0.iter()
    }

    /// The size in bytes of the JSON object, as stored and as sent.
    pub fn serialized_len(&self) -> usize {
        self.to_json().len()
    }

    pub fn to_json(&self) -> String {
        crate::json::WriteJson::to_json_string(self, 64)
    }

    /// Reads metadata written by [`Metadata::to_json`].
    pub fn from_json(stored: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(stored)
    }

    /// Whether [`Metadata::from_json`] would read `stored`: one object of
    /// strings, integers that fit in i64 and booleans. Checked as the text
    /// is read, without building the map.
    pub fn is_readable(stored: &str) -> bool {
        serde_json::from_str::<StoredShape>(stored).is_ok()
    }

    pub fn insert(&mut self, key: String, value: MetadataValue) {
        self.0.insert(key, value);
    }
}

/// A change to the metadata map, as RFC 7386 reads it: absent keeps it,
/// `null` clears it, an object merges key by key with `null` removing a key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum MetadataPatch {
    #[default]
    Keep,
    Clear,
    Merge(BTreeMap<String, Option<MetadataValue>>),
}

impl MetadataPatch {
    pub fn parse(raw: Patch<Map<String, Value>>) -> Result<Self, FieldError> {
        let object = match raw {
            Patch::Absent => return Ok(Self::Keep),
            Patch::Null => return Ok(Self::Clear),
            Patch::Value(object) => object,
        };
        let mut merge = BTreeMap::new();
        for (key, value) in object {
            check_key(&key)?;
            let value = match value {
                Value::Null => None,
                other => Some(MetadataValue::from_json(other).map_err(|e| e.at(&key))?),
            };
            merge.insert(key, value);
        }
        Ok(Self::Merge(merge))
    }

    /// Keys this patch sets to a value (not the ones it removes).
    pub fn assigned_keys(&self) -> impl Iterator<Item = &str> {
        let entries = match self {
            Self::Merge(entries) => Some(entries),
            Self::Keep | Self::Clear => None,
        };
        entries
            .into_iter()
            .flat_map(|m| m.iter())
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| k.as_str())
    }

    pub fn apply_to(&self, metadata: &mut Metadata) {
        match self {
            Self::Keep => {}
            Self::Clear => metadata.0.clear(),
            Self::Merge(entries) => {
                for (key, value) in entries {
                    match value {
                        Some(value) => {
                            metadata.0.insert(key.clone(), value.clone());
                        }
                        None => {
                            metadata.0.remove(key);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn stored_values_read_back_by_their_kind() {
        let read: Metadata =
            serde_json::from_str(r#"{"a":"x","b":-3,"c":true,"d":9223372036854775807}"#).unwrap();
        assert_eq!(read.get("a"), Some(&MetadataValue::String("x".into())));
        assert_eq!(read.get("b"), Some(&MetadataValue::Integer(-3)));
        assert_eq!(read.get("c"), Some(&MetadataValue::Boolean(true)));
        assert_eq!(read.get("d"), Some(&MetadataValue::Integer(i64::MAX)));
        for bad in [
            r#"{"a":9223372036854775808}"#,
            r#"{"a":1.5}"#,
            r#"{"a":null}"#,
            r#"{"a":[1]}"#,
            r#"{"a":{}}"#,
        ] {
            assert!(serde_json::from_str::<Metadata>(bad).is_err(), "{bad}");
        }
    }

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn accepts_strings_integers_and_booleans_only() {
        assert_eq!(
            MetadataValue::from_json(json!("x")),
            Ok(MetadataValue::String("x".into()))
        );
        assert_eq!(
            MetadataValue::from_json(json!(-40)),
            Ok(MetadataValue::Integer(-40))
        );
        assert_eq!(
            MetadataValue::from_json(json!(true)),
            Ok(MetadataValue::Boolean(true))
        );
        for bad in [
            json!(1.5),
            json!([1]),
            json!({"a": 1}),
            json!(null),
            json!(u64::MAX),
        ] {
            assert!(MetadataValue::from_json(bad).is_err());
        }
    }

    #[test]
    fn names_the_offending_key() {
        let err = MetadataPatch::parse(Patch::Value(object(json!({"plan": 1.5}))));
        assert_eq!(
            err.map_err(|e| e.to_string()),
            Err("plan: values must be a string, integer or boolean".into())
        );
        let err = MetadataPatch::parse(Patch::Value(object(json!({"": 1}))));
        assert_eq!(
            err.map_err(|e| e.to_string()),
            Err("keys must not be empty".into())
        );
        let long = "k".repeat(129);
        assert!(MetadataPatch::parse(Patch::Value(object(json!({ long: 1 })))).is_err());
    }

    #[test]
    fn merge_patch_semantics() {
        let mut metadata = Metadata::default();
        let set = MetadataPatch::parse(Patch::Value(object(json!({"a": 1, "b": "x"}))))
            .unwrap_or_default();
        set.apply_to(&mut metadata);
        assert_eq!(metadata.len(), 2);
        let remove_a = MetadataPatch::parse(Patch::Value(object(json!({"a": null, "c": false}))))
            .unwrap_or_default();
        remove_a.apply_to(&mut metadata);
        assert_eq!(metadata.to_json(), r#"{"b":"x","c":false}"#);
        MetadataPatch::Keep.apply_to(&mut metadata);
        assert_eq!(metadata.len(), 2);
        MetadataPatch::Clear.apply_to(&mut metadata);
        assert!(metadata.is_empty());
    }

    fn value_strategy() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<String>().prop_map(Value::String),
            any::<i64>().prop_map(|i| json!(i)),
            any::<bool>().prop_map(Value::Bool),
        ]
    }

    /// Any JSON value, objects of every kind of value most of all, nested a
    /// little.
    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            "[a-z\"\\\\é]{0,6}".prop_map(Value::String),
        ];
        let nested = leaf.prop_recursive(2, 12, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z]{1,3}", inner, 0..4)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        });
        prop_oneof![
            3 => prop::collection::btree_map("[a-zé\"]{1,4}", nested.clone(), 0..5)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
            1 => nested,
        ]
    }

    proptest! {
        #[test]
        fn valid_maps_round_trip_through_storage(entries in prop::collection::btree_map("[^\\x00]{1,128}", value_strategy(), 0..20)) {
            let patch = MetadataPatch::parse(Patch::Value(entries.clone().into_iter().collect()));
            prop_assert!(patch.is_ok());
            let mut metadata = Metadata::default();
            patch.unwrap_or_default().apply_to(&mut metadata);
            prop_assert_eq!(metadata.len(), entries.len());
            let stored = metadata.to_json();
            prop_assert_eq!(stored.len(), metadata.serialized_len());
            prop_assert_eq!(Metadata::from_json(&stored).ok(), Some(metadata));
        }

        #[test]
        fn stored_text_is_readable_exactly_when_it_reads(value in any_json()) {
            let text = value.to_string();
            prop_assert_eq!(Metadata::is_readable(&text), Metadata::from_json(&text).is_ok(), "{}", text);
            // Cut short, it reads neither way.
            if let Some(cut) = text.get(..text.len() / 2) {
                prop_assert_eq!(Metadata::is_readable(cut), Metadata::from_json(cut).is_ok(), "{}", cut);
            }
        }

        #[test]
        fn floats_are_always_refused(f in any::<f64>().prop_filter("finite, non-integral", |f| f.is_finite() && f.fract() != 0.0)) {
            prop_assert!(MetadataValue::from_json(json!(f)).is_err());
        }
    }
}
