//! Webhook events: their types, their payloads, and the outbox record that
//! carries one from the transaction that caused it to the dispatcher.

use serde::Serialize;

use crate::conversation::{Conversation, ScalarMap};
use crate::end_user::EndUser;
use crate::json;
use crate::time::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    EndUserCreated,
    EndUserUpdated,
    ConversationCreated,
    ConversationEnded,
}

impl EventType {
    /// Every event type, in catalog order.
    pub const ALL: [Self; 4] = [
        Self::EndUserCreated,
        Self::EndUserUpdated,
        Self::ConversationCreated,
        Self::ConversationEnded,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::EndUserCreated => "v1.end_user.created",
            Self::EndUserUpdated => "v1.end_user.updated",
            Self::ConversationCreated => "v1.conversation.created",
            Self::ConversationEnded => "v1.conversation.ended",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Self::EndUserCreated => "An end user was created, by the API or by a channel.",
            Self::EndUserUpdated => {
                "A visible value of an end user's profile changed (not system properties, \
                 sensitive metadata or volatile metavariables)."
            }
            Self::ConversationCreated => "A conversation started on a custom channel.",
            Self::ConversationEnded => "A conversation was ended.",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// One event on its way out: written to the outbox in the same transaction
/// as the change that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    /// `msg_…`: the `webhook-id` every delivery and retry carries.
    pub id: String,
    pub event_type: EventType,
    /// The exact JSON body receivers get and signatures cover.
    pub payload: String,
    pub created_at: Timestamp,
}

#[derive(Serialize)]
struct Payload<'a, D: Serialize> {
    #[serde(rename = "type")]
    event_type: &'static str,
    timestamp: String,
    data: D,
    tags: [&'a str; 1],
}

/// What conversation events carry.
#[derive(Serialize)]
struct ConversationData<'a> {
    conversation_id: String,
    channel_id: String,
    end_user_id: Option<String>,
    metadata: &'a ScalarMap,
    created_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    ended_at: Option<Timestamp>,
}

impl OutboxEvent {
    /// `v1.end_user.created` / `v1.end_user.updated` for this state of the
    /// user: `{"type":…,"timestamp":…,"data":{<the user as the API shows
    /// it>,"version":…},"tags":[<its id>]}`. The version lets receivers
    /// drop events older than one they already applied. Written by hand
    /// (see [`crate::json`]): every change of a user makes one, inside
    /// the store's single writer.
    pub fn end_user(event_type: EventType, user: &EndUser, id: String, now: Timestamp) -> Self {
        let mut payload = String::with_capacity(512);
        payload.push_str("{\"type\":");
        json::string(&mut payload, event_type.name());
        payload.push_str(",\"timestamp\":");
        json::timestamp_millis(&mut payload, now);
        payload.push_str(",\"data\":{");
        user.write_json_fields(&mut payload);
        payload.push_str(",\"version\":");
        json::integer(&mut payload, user.version);
        payload.push_str("},\"tags\":[\"");
        payload.push_str(user.end_user_id.text().as_str());
        payload.push_str("\"]}");
        Self {
            id,
            event_type,
            payload,
            created_at: now,
        }
    }
}

impl OutboxEvent {
    /// `v1.conversation.created` (no `ended_at`) or `v1.conversation.ended`.
    pub fn conversation(
        event_type: EventType,
        conversation: &Conversation,
        id: String,
        now: Timestamp,
    ) -> Self {
        let conversation_id = conversation.id.to_string();
        let ended = matches!(event_type, EventType::ConversationEnded);
        let payload = Payload {
            event_type: event_type.name(),
            timestamp: now.to_rfc3339_millis(),
            data: ConversationData {
                conversation_id: conversation_id.clone(),
                channel_id: conversation.channel_id.to_string(),
                end_user_id: conversation.end_user_id.map(|id| id.to_string()),
                metadata: &conversation.metadata,
                created_at: conversation.created_at,
                ended_at: ended.then_some(conversation.updated_at),
            },
            tags: [&conversation_id],
        };
        Self {
            id,
            event_type,
            payload: serde_json::to_string(&payload).unwrap_or_default(),
            created_at: now,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::wire::CreateEndUserRequest;
    use crate::{AgentId, EndUserChanges, IdGenerator, ProfilePolicy};

    #[test]
    fn names_round_trip() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.name()), Some(t));
        }
        assert_eq!(EventType::parse("v1.end_user.deleted"), None);
    }

    /// The payload as serde writes it, flattening the user into `data`.
    #[derive(Serialize)]
    struct EndUserData<'a> {
        #[serde(flatten)]
        user: &'a EndUser,
        version: i64,
    }

    proptest::proptest! {
        #[test]
        fn the_payload_is_written_as_serde_json_writes_it(
            user in crate::json::tests::end_user(),
            micros in 0i64..4_000_000_000_000_000,
        ) {
            let now = Timestamp::from_micros(micros);
            let event = OutboxEvent::end_user(EventType::EndUserUpdated, &user, "msg_1".into(), now);
            let end_user_id = user.end_user_id.to_string();
            let expected = Payload {
                event_type: EventType::EndUserUpdated.name(),
                timestamp: now.to_rfc3339_millis(),
                data: EndUserData { user: &user, version: user.version },
                tags: [&end_user_id],
            };
            proptest::prop_assert_eq!(event.payload, serde_json::to_string(&expected).unwrap());
        }
    }

    #[test]
    fn the_payload_is_the_api_user_plus_version() {
        let now = Timestamp::from_micros(1_795_773_600_123_456);
        let request: CreateEndUserRequest = serde_json::from_value(
            json!({"profile": {"first_name": "Ada", "metadata": {"vip": true}}}),
        )
        .unwrap();
        let changes = EndUserChanges::from_create(request).unwrap();
        let id = IdGenerator::new().next(now, 1);
        let user =
            EndUser::create(AgentId(1), id, &changes, now, &ProfilePolicy::default()).unwrap();
        let event = OutboxEvent::end_user(EventType::EndUserCreated, &user, "msg_1".into(), now);
        let payload: Value = serde_json::from_str(&event.payload).unwrap();
        let mut expected_data = serde_json::to_value(&user).unwrap();
        expected_data["version"] = json!(1);
        assert_eq!(
            payload,
            json!({
                "type": "v1.end_user.created",
                "timestamp": "2026-11-27T10:00:00.123+00:00",
                "data": expected_data,
                "tags": [id.to_string()],
            })
        );
    }
}
