//! Custom channels and the conversations that run on them.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::agent::AgentId;
use crate::error::FieldError;
use crate::id::EndUserId;
use crate::time::Timestamp;
use crate::wire::Patch;

/// Channel and conversation metadata: flat, and unlike profile metadata
/// floats are allowed. At most 4 KB serialized.
pub const MAX_CONVERSATION_METADATA_BYTES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum ScalarValue {
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
}

impl ScalarValue {
    fn from_json(value: Value) -> Result<Self, FieldError> {
        match value {
            Value::String(s) => Ok(Self::String(s)),
            Value::Bool(b) => Ok(Self::Boolean(b)),
            Value::Number(n) => n
                .as_i64()
                .map(Self::Integer)
                .or_else(|| n.as_f64().map(Self::Float))
                .ok_or_else(|| FieldError::new("numbers must be integers or finite floats")),
            Value::Null | Value::Array(_) | Value::Object(_) => Err(FieldError::new(
                "values must be a string, number or boolean",
            )),
        }
    }
}

/// A flat map of scalars.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct ScalarMap(BTreeMap<String, ScalarValue>);

impl ScalarMap {
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_else(|_| "{}".to_owned())
    }

    /// Reads a map written by [`ScalarMap::to_json`].
    /// The map as stored, or `None` when the text is not one (a damaged
    /// row): read as empty, the next merge would write the loss back.
    pub fn from_stored(stored: &str) -> Option<Self> {
        let raw: Map<String, Value> = serde_json::from_str(stored).ok()?;
        raw.into_iter()
            .map(|(k, v)| ScalarValue::from_json(v).ok().map(|v| (k, v)))
            .collect::<Option<_>>()
            .map(Self)
    }

    /// Merges `patch` (RFC 7386: `null` removes a key), then checks the size.
    pub fn merge(&mut self, patch: Map<String, Value>) -> Result<(), FieldError> {
        let mut next = self.0.clone();
        for (key, value) in patch {
            if key.is_empty() || key.chars().count() > 128 {
                return Err(FieldError::new("keys must be 1 to 128 characters"));
            }
            match value {
                Value::Null => {
                    next.remove(&key);
                }
                other => {
                    next.insert(
                        key.clone(),
                        ScalarValue::from_json(other).map_err(|e| e.at(&key))?,
                    );
                }
            }
        }
        let merged = Self(next);
        if merged.to_json().len() > MAX_CONVERSATION_METADATA_BYTES {
            return Err(FieldError::new(
                "must be at most 4096 bytes when serialized",
            ));
        }
        *self = merged;
        Ok(())
    }

    /// A new map from a request's object (`null` or absent: empty).
    pub fn parse(raw: Patch<Map<String, Value>>) -> Result<Self, FieldError> {
        let mut map = Self::default();
        if let Patch::Value(object) = raw {
            map.merge(object)?;
        }
        Ok(map)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    Messaging,
    Email,
    Voice,
}

impl Modality {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Messaging => "messaging",
            Self::Email => "email",
            Self::Voice => "voice",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Messaging, Self::Email, Self::Voice]
            .into_iter()
            .find(|m| m.as_str() == raw)
    }
}

/// A custom channel: where an integrator's conversations come from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Channel {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: EndUserId,
    pub name: String,
    pub description: String,
    /// Always `custom`: channels made through the API.
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "custom"))]
    pub kind: &'static str,
    pub modality: Modality,
    #[cfg_attr(feature = "openapi", schema(value_type = HashMap<String, ScalarValue>))]
    pub metadata: ScalarMap,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub created_at: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub updated_at: Timestamp,
    #[serde(skip)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub agent_id: AgentId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ConversationStatus {
    Active,
    Ended,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Conversation {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: EndUserId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub channel_id: EndUserId,
    /// `null` once the end user was deleted.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub end_user_id: Option<EndUserId>,
    pub status: ConversationStatus,
    #[cfg_attr(feature = "openapi", schema(value_type = HashMap<String, ScalarValue>))]
    pub metadata: ScalarMap,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub created_at: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub updated_at: Timestamp,
    #[serde(skip)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub agent_id: AgentId,
}

/// Ending a conversation that has already ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", Self::MESSAGE)]
pub struct AlreadyEnded;

impl AlreadyEnded {
    pub const MESSAGE: &str = "the conversation has already ended";
}

impl Conversation {
    /// Ends the conversation at `now`. A conversation ends once: ending it
    /// again is refused and changes nothing.
    pub fn end(&mut self, now: Timestamp) -> Result<(), AlreadyEnded> {
        if self.status == ConversationStatus::Ended {
            return Err(AlreadyEnded);
        }
        self.status = ConversationStatus::Ended;
        self.updated_at = now;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_conversation_ends_once() {
        let start = Timestamp::from_micros(1);
        let ids = crate::IdGenerator::new();
        let mut c = Conversation {
            id: ids.next(start, 1),
            channel_id: ids.next(start, 2),
            end_user_id: None,
            status: ConversationStatus::Active,
            metadata: ScalarMap::default(),
            created_at: start,
            updated_at: start,
            agent_id: AgentId(1),
        };
        assert_eq!(c.end(Timestamp::from_micros(5)), Ok(()));
        assert_eq!(c.status, ConversationStatus::Ended);
        assert_eq!(c.updated_at, Timestamp::from_micros(5));
        let ended = c.clone();
        assert_eq!(c.end(Timestamp::from_micros(9)), Err(AlreadyEnded));
        assert_eq!(c, ended, "ending twice changes nothing");
    }

    fn object(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn metadata_merges_allows_floats_and_caps_size() {
        let mut map = ScalarMap::parse(Patch::Value(object(
            json!({"a": 1, "b": 1.5, "c": "x", "d": true}),
        )))
        .unwrap();
        map.merge(object(json!({"a": null, "e": 2}))).unwrap();
        assert_eq!(map.to_json(), r#"{"b":1.5,"c":"x","d":true,"e":2}"#);
        assert_eq!(ScalarMap::from_stored(&map.to_json()), Some(map.clone()));
        assert_eq!(ScalarMap::from_stored("not json"), None);
        assert_eq!(ScalarMap::from_stored(r#"{"a":[1]}"#), None);
        let err = map.merge(object(json!({"f": [1]}))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "f: values must be a string, number or boolean"
        );
        let before = map.clone();
        assert!(map.merge(object(json!({"big": "x".repeat(4096)}))).is_err());
        assert_eq!(map, before, "a refused merge changes nothing");
    }

    #[test]
    fn modalities() {
        assert_eq!(Modality::parse("voice"), Some(Modality::Voice));
        assert_eq!(Modality::parse("sms"), None);
    }
}
