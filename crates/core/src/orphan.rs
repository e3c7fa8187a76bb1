//! The 24-hour rule: an end user made on its own (`POST /v2/end-users/`)
//! that no conversation uses in time is deleted. A conversation that uses
//! it claims it, and a claimed user is never an orphan again.

use std::time::Duration;

use crate::Timestamp;

/// The rule, with its time to live (`orphan_ttl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrphanRule {
    pub ttl: Duration,
}

/// What a conversation's claim writes on its end user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claimed {
    /// No deadline any more.
    pub orphan_until: Option<Timestamp>,
    pub last_conversation_at: Timestamp,
}

impl OrphanRule {
    /// The deadline of a user made on its own at `created_at`.
    pub fn deadline(&self, created_at: Timestamp) -> Timestamp {
        created_at.saturating_add(self.ttl)
    }

    /// A conversation started at `at` claims its user: the deadline goes,
    /// and the user's last conversation is this one. A backend writes this
    /// in the same transaction that sees the user still there, so that a
    /// user is either claimed before the sweep deletes it or deleted
    /// before the claim: never both.
    pub fn claim(at: Timestamp) -> Claimed {
        Claimed {
            orphan_until: None,
            last_conversation_at: at,
        }
    }

    /// Whether the sweep at `now` deletes a user with this deadline.
    pub fn is_due(orphan_until: Option<Timestamp>, now: Timestamp) -> bool {
        orphan_until.is_some_and(|deadline| deadline <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_unclaimed_user_is_due_at_its_deadline_and_a_claimed_one_never() {
        let rule = OrphanRule {
            ttl: Duration::from_secs(86_400),
        };
        let made = Timestamp::from_micros(1_000_000);
        let deadline = rule.deadline(made);
        assert_eq!(deadline.as_micros(), 86_401_000_000);
        assert!(!OrphanRule::is_due(Some(deadline), made));
        assert!(OrphanRule::is_due(Some(deadline), deadline));
        let claimed = OrphanRule::claim(made);
        assert_eq!(claimed.last_conversation_at, made);
        assert!(!OrphanRule::is_due(
            claimed.orphan_until,
            Timestamp::from_micros(i64::MAX)
        ));
    }

    proptest! {
        #[test]
        fn nothing_is_due_before_its_deadline(made in 0i64..1 << 50, ttl in 0u64..1 << 30, at in 0i64..1 << 51) {
            let rule = OrphanRule { ttl: Duration::from_micros(ttl) };
            let deadline = rule.deadline(Timestamp::from_micros(made));
            let now = Timestamp::from_micros(at);
            prop_assert_eq!(OrphanRule::is_due(Some(deadline), now), now >= deadline);
            prop_assert!(!OrphanRule::is_due(None, now));
        }
    }
}
