//! Limits kept in this process: one set of TATs per key, in a map that is
//! pruned of idle keys so it cannot grow without bound.

use std::collections::HashMap;
use std::sync::Mutex;

use endusers_core::{Decision, RatePolicy, Timestamp};

/// Keys above this many trigger a prune of the idle ones.
const PRUNE_ABOVE: usize = 10_000;

#[derive(Default)]
pub struct LocalLimiter {
    tats: Mutex<HashMap<String, Vec<Timestamp>>>,
}

impl LocalLimiter {
    pub fn check(&self, key: &str, policy: &RatePolicy, now: Timestamp) -> Decision {
        let mut map = match self.tats.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let current: Vec<Option<Timestamp>> = map
            .get(key)
            .map(|tats| tats.iter().copied().map(Some).collect())
            .unwrap_or_default();
        let decision = policy.check(&current, now);
        if decision.allowed {
            if map.len() >= PRUNE_ABOVE && !map.contains_key(key) {
                // A key whose every TAT has passed is as good as new.
                map.retain(|_, tats| tats.iter().any(|t| *t > now));
            }
            map.insert(key.to_owned(), decision.new_tats.clone());
        }
        decision
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
