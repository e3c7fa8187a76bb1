//! Limits kept in this process: one set of TATs per key, in a map that is
//! pruned of idle keys so it cannot grow without bound.

use std::collections::HashMap;
use std::sync::Mutex;

use endusers_core::{Decision, RatePolicy, Timestamp, Window};

/// Each window's TAT is kept under the window itself: a TAT measures time
/// owed at one window's rate, so a window whose limit changes (an override
/// set or cleared) starts afresh, and the unchanged ones carry over.
type Tats = Vec<(Window, Timestamp)>;

fn current(stored: Option<&Tats>, policy: &RatePolicy) -> Vec<Option<Timestamp>> {
    policy
        .windows()
        .iter()
        .map(|w| {
            stored
                .and_then(|tats| tats.iter().find(|(window, _)| window == w))
                .map(|(_, t)| *t)
        })
        .collect()
}

/// Keys above this many trigger a prune of the idle ones.
const PRUNE_ABOVE: usize = 10_000;

#[derive(Default)]
pub struct LocalLimiter {
    tats: Mutex<HashMap<String, Tats>>,
}

impl LocalLimiter {
    pub fn check(&self, key: &str, policy: &RatePolicy, now: Timestamp) -> Decision {
        let mut map = self
            .tats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let decision = policy.check(&current(map.get(key), policy), now);
        if decision.allowed {
            if map.len() >= PRUNE_ABOVE && !map.contains_key(key) {
                // A key whose every TAT has passed is as good as new.
                map.retain(|_, tats| tats.iter().any(|(_, t)| *t > now));
            }
            let tats = policy
                .windows()
                .iter()
                .copied()
                .zip(decision.new_tats.iter().copied());
            // A key seen before is updated where it is: no copy of the key.
            match map.get_mut(key) {
                Some(stored) => {
                    stored.clear();
                    stored.extend(tats);
                }
                None => {
                    map.insert(key.to_owned(), tats.collect());
                }
            }
        }
        decision
    }

    /// The decision `check` would make, without spending anything.
    pub fn peek(&self, key: &str, policy: &RatePolicy, now: Timestamp) -> Decision {
        let map = self
            .tats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        policy.check(&current(map.get(key), policy), now)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.tats.lock().map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_keeps_counting_and_a_new_policy_starts_its_changed_windows_afresh() {
        let limiter = LocalLimiter::default();
        let now = Timestamp::from_micros(0);
        let two = RatePolicy::parse("2/s,10/m").unwrap();
        assert!(limiter.check("agent", &two, now).allowed);
        assert!(limiter.check("agent", &two, now).allowed);
        assert!(
            !limiter.check("agent", &two, now).allowed,
            "the third in a second"
        );
        // The per-second window changes, the per-minute one does not: the
        // new one starts empty, the old one carries its two requests.
        let three = RatePolicy::parse("3/s,10/m").unwrap();
        for _ in 0..3 {
            assert!(limiter.check("agent", &three, now).allowed);
        }
        assert!(!limiter.check("agent", &three, now).allowed);
        // The 2/s window was replaced, not kept beside the new ones.
        assert!(limiter.peek("agent", &two, now).allowed);
        let minute_only = RatePolicy::parse("10/m").unwrap();
        let fresh = limiter.peek("nobody", &minute_only, now).remaining;
        assert_eq!(
            limiter.peek("agent", &minute_only, now).remaining,
            fresh - 5,
            "the per-minute window carried all five requests"
        );
        assert_eq!(limiter.len(), 1);
    }

    #[test]
    fn idle_keys_are_pruned() {
        let limiter = LocalLimiter::default();
        let policy = RatePolicy::parse("5/s").unwrap();
        for n in 0..PRUNE_ABOVE + 10 {
            limiter.check(&format!("k{n}"), &policy, Timestamp::from_micros(0));
        }
        assert!(limiter.len() <= PRUNE_ABOVE + 10);
        // Two seconds on, every earlier key is idle: the next new key prunes them.
        limiter.check("late", &policy, Timestamp::from_micros(2_000_000));
        assert_eq!(limiter.len(), 1);
    }
}
