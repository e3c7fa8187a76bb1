//! What disabling and enabling an endpoint do to its queue, and what an
//! attempt does to the delivery it settles.

use super::NextStep;
use crate::Timestamp;

/// What a change of an endpoint's `enabled` does to what it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueTransition {
    /// Nothing: it was and stays enabled, or disabled.
    Keep,
    /// Disabled: every message it would still be sent becomes a waiting
    /// delivery, kept for when it is enabled again; messages committed
    /// while it is disabled are not queued for it. A delivery in flight
    /// keeps its lease: its waiting copy is not due before that lease ends,
    /// and the in-flight attempt, once recorded, settles the copy
    /// ([`DeliveryState::after`]), so nothing is sent twice while an
    /// attempt is still out.
    Park,
    /// Enabled again: its waiting deliveries go out; of the messages that
    /// follow, it is sent those committed from now on.
    Resume,
}

impl QueueTransition {
    pub fn of(was_enabled: bool, enabled: bool) -> Self {
        match (was_enabled, enabled) {
            (true, false) => Self::Park,
            (false, true) => Self::Resume,
            _ => Self::Keep,
        }
    }

    /// When the waiting copy of a message parked at `now` may first be
    /// handed out: at once, unless an attempt at it is in flight until
    /// `in_flight_until`.
    pub fn parked_due(now: Timestamp, in_flight_until: Option<Timestamp>) -> Timestamp {
        in_flight_until.map_or(now, |until| until.max(now))
    }
}

/// Where a delivery stands after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// It arrived: nothing waits any more; a waiting copy is dropped.
    Delivered,
    /// It waits for another attempt at this time.
    Pending(Timestamp),
    /// It failed for good; `recover` can queue it again.
    Failed,
}

impl DeliveryState {
    pub fn after(next: &NextStep) -> Self {
        match next {
            NextStep::Delivered => Self::Delivered,
            NextStep::RetryAt(at) => Self::Pending(*at),
            NextStep::GiveUp | NextStep::DisableEndpoint(_) => Self::Failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_change_of_enabled_moves_the_queue() {
        assert_eq!(QueueTransition::of(true, false), QueueTransition::Park);
        assert_eq!(QueueTransition::of(false, true), QueueTransition::Resume);
        assert_eq!(QueueTransition::of(true, true), QueueTransition::Keep);
        assert_eq!(QueueTransition::of(false, false), QueueTransition::Keep);
    }

    #[test]
    fn a_parked_copy_of_a_delivery_in_flight_waits_for_its_lease() {
        let now = Timestamp::from_micros(100);
        assert_eq!(QueueTransition::parked_due(now, None), now);
        let lease = Timestamp::from_micros(900);
        assert_eq!(QueueTransition::parked_due(now, Some(lease)), lease);
        // A lease that already ran out: the attempt is presumed lost.
        let lapsed = Timestamp::from_micros(50);
        assert_eq!(QueueTransition::parked_due(now, Some(lapsed)), now);
    }

    #[test]
    fn an_attempt_settles_its_delivery() {
        let at = Timestamp::from_micros(7);
        assert_eq!(
            DeliveryState::after(&NextStep::Delivered),
            DeliveryState::Delivered
        );
        assert_eq!(
            DeliveryState::after(&NextStep::RetryAt(at)),
            DeliveryState::Pending(at)
        );
        assert_eq!(
            DeliveryState::after(&NextStep::GiveUp),
            DeliveryState::Failed
        );
        assert_eq!(
            DeliveryState::after(&NextStep::DisableEndpoint("gone".to_owned())),
            DeliveryState::Failed
        );
    }
}
