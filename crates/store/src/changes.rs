//! How a store tells the dispatchers that it committed something they may
//! want: new messages in the outbox, or deliveries due now.

use std::sync::Arc;

use tokio::sync::Notify;

/// A store's announcements of its own commits. A dispatcher waits on
/// [`Changes::changed`] between claims; the store calls
/// [`Changes::announce`] after a commit, so no caller has to remember to.
/// Announcements made while nobody waits are not lost: the next wait
/// returns at once (several collapse into one).
#[derive(Debug, Clone, Default)]
pub struct Changes(Arc<Notify>);

impl Changes {
    /// Something committed that a dispatcher may claim now.
    pub fn announce(&self) {
        self.0.notify_one();
    }

    /// Waits for the next announcement (or returns at once for one made
    /// since the last wait).
    pub async fn changed(&self) {
        self.0.notified().await;
    }
}
