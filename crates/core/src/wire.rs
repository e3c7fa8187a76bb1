//! Request bodies as they arrive, before any rule is checked. Parsing them
//! into domain types ([`crate::changes`]) is where the rules live.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, IgnoredAny, Visitor};
use serde_json::{Map, Value};

/// One field of a JSON Merge Patch (RFC 7386): left out, set to `null`, or
/// set to a value. Use with `#[serde(default)]` so a missing field is
/// `Absent`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Patch<T> {
    #[default]
    Absent,
    Null,
    Value(T),
}

impl<T> Patch<T> {
    pub fn is_absent(&self) -> bool {
        matches!(self, Self::Absent)
    }

    /// Parses the value inside, keeping `Absent` and `Null` as they are.
    pub fn try_map<U, E>(self, f: impl FnOnce(T) -> Result<U, E>) -> Result<Patch<U>, E> {
        Ok(match self {
            Self::Absent => Patch::Absent,
            Self::Null => Patch::Null,
            Self::Value(v) => Patch::Value(f(v)?),
        })
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Patch<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PatchVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for PatchVisitor<T> {
            type Value = Patch<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value or null")
            }

            // Only called when the field is present, so "none" means `null`.
            fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(Patch::Null)
            }

            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(Patch::Null)
            }

            fn visit_some<D: Deserializer<'de>>(
                self,
                deserializer: D,
            ) -> Result<Self::Value, D::Error> {
                T::deserialize(ObjectsAsMaps(deserializer)).map(Patch::Value)
            }
        }

        deserializer.deserialize_option(PatchVisitor(PhantomData))
    }
}

/// Wraps a deserializer so that a struct can only be read from a JSON
/// object. Derived `Deserialize` impls also accept an array of the fields
/// in order (`["Maria", "Santos"]` as a profile), which no client means.
pub struct ObjectsAsMaps<D>(pub D);

impl<'de, D: Deserializer<'de>> Deserializer<'de> for ObjectsAsMaps<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.0.deserialize_any(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_map(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// The body of `POST /v2/end-users/`. Every part is optional.
#[derive(Debug, Default, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateEndUserRequest {
    /// The integrator's identifier for this user: at most 36 characters, no
    /// `<` or `>`, unique per agent, compared case-insensitively. When a user
    /// already has it, that user is returned unchanged with status 200.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, max_length = 36))]
    pub external_id: Patch<String>,
    /// Profile fields to start with; omitted means a blank profile.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<ProfileRequest>))]
    pub profile: Patch<ProfileRequest>,
}

/// The body of `PATCH /v2/end-users/{id}`: a JSON Merge Patch of the user.
#[derive(Debug, Default, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateEndUserRequest {
    /// A new integrator identifier, or `null` to release the current one.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, max_length = 36))]
    pub external_id: Patch<String>,
    /// The profile changes (required): absent fields stay, `null` clears.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = ProfileRequest))]
    pub profile: Patch<ProfileRequest>,
}

/// Profile fields in a request. Absent leaves a field as it is, `null`
/// clears it.
#[derive(Debug, Default, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ProfileRequest {
    /// At most 255 characters.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, max_length = 255))]
    pub first_name: Patch<String>,
    /// At most 255 characters.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, max_length = 255))]
    pub last_name: Patch<String>,
    /// At most 255 characters.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, max_length = 255))]
    pub display_name: Patch<String>,
    /// An absolute http(s) URL of at most 2048 characters.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, max_length = 2048))]
    pub avatar: Patch<String>,
    /// An email address of at most 254 characters.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Email, max_length = 254))]
    pub email: Patch<String>,
    /// A BCP 47 language tag such as `en`, `en-US` or `zh-Hant-TW`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "pt-BR"))]
    pub language: Patch<String>,
    /// Keys of at most 128 characters mapped to strings, integers or
    /// booleans; merged key by key, a `null` value removes its key, `null`
    /// for the whole object removes every key. At most 10 KB serialized.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<HashMap<String, crate::metadata::MetadataValue>>))]
    pub metadata: Patch<Map<String, Value>>,
    /// Write-only secrets for the agent's authenticated actions.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<SensitiveMetadataRequest>))]
    pub sensitive_metadata: Patch<SensitiveMetadataRequest>,
    /// Read-only: set by the server. Sending it is an error.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub system_properties: Patch<IgnoredAny>,
}

/// `profile.sensitive_metadata`: encrypted at rest, never returned, deleted
/// 24 hours after it was written. Its `Debug` shows the key names only, so
/// a request logged whole never shows a value.
#[derive(serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SensitiveMetadataRequest {
    /// At most 20 keys matching `^[A-Za-z0-9_-]+$`, each a non-empty string,
    /// an integer, a boolean, or `null` to remove the key.
    #[cfg_attr(feature = "openapi", schema(value_type = HashMap<String, crate::metadata::MetadataValue>))]
    pub fields: Map<String, Value>,
}

impl std::fmt::Debug for SensitiveMetadataRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SensitiveMetadataRequest")
            .field("keys", &self.fields.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_logged_request_shows_sensitive_key_names_but_no_value() {
        let request: UpdateEndUserRequest = serde_json::from_value(serde_json::json!({
            "profile": {"sensitive_metadata": {"fields": {"token": "s3cr3t-value-42"}}}
        }))
        .unwrap();
        let logged = format!("{request:?}");
        assert!(logged.contains("token"), "{logged}");
        assert!(!logged.contains("s3cr3t-value-42"), "{logged}");
    }
}
