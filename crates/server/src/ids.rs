//! New ids: of end users, channels and conversations, of webhook messages
//! (`msg_…`) and endpoints (`ep_…`), all ordered by time.

use std::sync::Arc;

use endusers_core::{EndUserId, IdGenerator, Timestamp};
use rand::RngCore;

/// What webhook message ids start with; the rest orders them by time.
pub const MESSAGE_ID_PREFIX: &str = "msg_";

/// The process's id generator, shared by every handler.
#[derive(Clone, Default)]
pub struct Ids(Arc<IdGenerator>);

impl Ids {
    /// A new time-ordered id: of an end user, a channel or a conversation.
    pub fn new_id(&self, now: Timestamp) -> EndUserId {
        self.0.next(now, rand::rng().next_u64())
    }

    /// A new webhook message id (`msg_…`), the `webhook-id` of its deliveries.
    pub fn new_message_id(&self, now: Timestamp) -> String {
        self.new_prefixed_id(MESSAGE_ID_PREFIX, now)
    }

    /// A new id with a prefix saying what it names (`msg_`, `ep_`),
    /// time-ordered like end-user ids.
    pub fn new_prefixed_id(&self, prefix: &str, now: Timestamp) -> String {
        format!("{prefix}{}", self.new_id(now))
    }
}
