//! The endusers domain: what an end user is, which inputs are acceptable,
//! how a patch changes a user and which changes are worth an event.
//!
//! Pure: no I/O, no async, no clocks of its own (time is passed in).

/// The accessors every checked string type shares: `as_str`, `Display`,
/// and `from_stored` for values read back from storage, which were parsed
/// on the way in and are not checked again.
#[macro_export]
macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            /// For values read back from storage, which were parsed on the way in.
            pub fn from_stored(stored: String) -> Self {
                Self(stored)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

pub mod agent;
mod avatar;
pub mod changes;
pub mod conversation;
mod email;
pub mod end_user;
pub mod end_user_view;
pub mod error;
pub mod events;
pub mod external_id;
pub mod id;
pub mod json;
mod language;
pub mod metadata;
pub mod orphan;
pub mod rate_limit;
pub mod retry;
pub mod sensitive;
mod text;
pub mod time;
pub mod webhook;
pub mod wire;

pub use agent::{AgentHandle, AgentId};
pub use avatar::AvatarUrl;
pub use changes::{Change, EndUserChanges, ProfileChanges, ProfilePolicy, VolatileKeys};
pub use conversation::{
    AlreadyEnded, Channel, Conversation, ConversationStatus, Modality, ScalarMap, ScalarValue,
};
pub use email::Email;
pub use end_user::{EndUser, Profile, SystemProperties};
pub use end_user_view::{EndUserView, StoredMetadata};
pub use error::FieldError;
pub use events::{EventType, OutboxEvent};
pub use external_id::ExternalId;
pub use id::{EndUserId, IdGenerator, IdText};
pub use json::WriteJson;
pub use language::LanguageTag;
pub use metadata::{Metadata, MetadataPatch, MetadataValue};
pub use orphan::OrphanRule;
pub use rate_limit::{Decision, RatePolicy, Window};
pub use retry::RetrySchedule;
pub use sensitive::{SensitiveKey, SensitivePatch, SensitiveValue};
pub use text::ProfileText;
pub use time::{Clock, ManualClock, SystemClock, Timestamp};
pub use webhook::{Answer, DeliveryState, NextStep, QueueTransition, Standing};
