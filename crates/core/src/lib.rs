//! The endusers domain: what an end user is, which inputs are acceptable,
//! how a patch changes a user and which changes are worth an event.
//!
//! Pure: no I/O, no async, no clocks of its own (time is passed in).

pub mod agent;
mod avatar;
pub mod changes;
mod email;
pub mod end_user;
pub mod error;
pub mod external_id;
pub mod id;
mod language;
pub mod metadata;
pub mod sensitive;
mod text;
pub mod time;
pub mod wire;

pub use agent::{AgentHandle, AgentId};
pub use avatar::AvatarUrl;
pub use changes::{Change, EndUserChanges, ProfileChanges, ProfilePolicy, VolatileKeys};
pub use email::Email;
pub use end_user::{EndUser, Profile, SystemProperties};
pub use error::FieldError;
pub use external_id::ExternalId;
pub use id::{EndUserId, IdGenerator};
pub use language::LanguageTag;
pub use metadata::{Metadata, MetadataPatch, MetadataValue};
pub use sensitive::{SensitiveKey, SensitivePatch, SensitiveValue};
pub use text::ProfileText;
pub use time::{Clock, ManualClock, SystemClock, Timestamp};
