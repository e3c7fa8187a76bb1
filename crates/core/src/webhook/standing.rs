//! An endpoint's standing: enabled or not, and since when every delivery to
//! it has failed. The one place that says when an endpoint is disabled.

use super::NextStep;
use crate::Timestamp;

/// What the delivery rules know of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    pub enabled: bool,
    /// Set by the first failure after a success, cleared by a success.
    pub failing_since: Option<Timestamp>,
    /// Why it is disabled, when the rules disabled it.
    pub disabled_reason: Option<String>,
}

impl Standing {
    /// A new endpoint's standing: enabled, no streak.
    pub fn enabled() -> Self {
        Self {
            enabled: true,
            failing_since: None,
            disabled_reason: None,
        }
    }

    /// Applies one recorded attempt. An endpoint is disabled when:
    /// - its receiver answers 410 Gone, at once; or
    /// - a delivery fails and every delivery has failed since at or before
    ///   `disable_if_failing_since` (now minus `webhook_disable_after`).
    ///
    /// Returns `true` when this attempt disabled it. A success clears the
    /// streak; a failure starts it if none runs. An endpoint already
    /// disabled keeps its reason, and a 410 to it changes nothing.
    pub fn record(
        &mut self,
        next: &NextStep,
        at: Timestamp,
        disable_if_failing_since: Timestamp,
    ) -> bool {
        match next {
            NextStep::Delivered => {
                self.failing_since = None;
                false
            }
            NextStep::DisableEndpoint(reason) => {
                if !self.enabled {
                    return false;
                }
                self.failing_since.get_or_insert(at);
                self.disable(reason.clone());
                true
            }
            NextStep::RetryAt(_) | NextStep::GiveUp => {
                let since = *self.failing_since.get_or_insert(at);
                if self.enabled && since <= disable_if_failing_since {
                    self.disable(disabled_for_failing_since(since));
                    return true;
                }
                false
            }
        }
    }

    fn disable(&mut self, reason: String) {
        self.enabled = false;
        self.disabled_reason = Some(reason);
    }

    /// Enabling starts afresh: no reason to be disabled, no streak.
    /// Disabling by hand gives no reason and keeps the streak.
    pub fn set_enabled(&mut self, enabled: bool) {
        if enabled && !self.enabled {
            self.disabled_reason = None;
            self.failing_since = None;
        }
        self.enabled = enabled;
    }
}

/// The `disabled_reason` of an endpoint disabled after failing since `since`.
pub fn disabled_for_failing_since(since: Timestamp) -> String {
    // `2026-11-22T10:00:00.000000+00:00` → `2026-11-22T10:00:00Z`
    let full = since.to_rfc3339();
    let seconds = full.get(..19).unwrap_or(&full);
    format!("every delivery has failed since {seconds}Z")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HOUR: i64 = 3_600_000_000;

    fn at(hours: i64) -> Timestamp {
        Timestamp::from_micros(hours * HOUR)
    }

    fn enabled() -> Standing {
        Standing::enabled()
    }

    #[test]
    fn a_streak_starts_at_the_first_failure_and_a_success_ends_it() {
        let mut standing = enabled();
        assert!(!standing.record(&NextStep::RetryAt(at(2)), at(1), at(0)));
        assert_eq!(standing.failing_since, Some(at(1)));
        assert!(!standing.record(&NextStep::GiveUp, at(2), at(0)));
        assert_eq!(
            standing.failing_since,
            Some(at(1)),
            "the streak keeps its start"
        );
        assert!(!standing.record(&NextStep::Delivered, at(3), at(0)));
        assert_eq!(standing, enabled());
    }

    #[test]
    fn failing_long_enough_disables_and_says_since_when() {
        let mut standing = enabled();
        standing.record(&NextStep::GiveUp, at(10), at(0));
        // Seven days later (the threshold is now minus disable_after).
        assert!(standing.record(&NextStep::GiveUp, at(178), at(10)));
        assert!(!standing.enabled);
        assert_eq!(
            standing.disabled_reason.as_deref(),
            Some("every delivery has failed since 1970-01-01T10:00:00Z")
        );
        // Already disabled: a later failure changes nothing more.
        let before = standing.clone();
        assert!(!standing.record(&NextStep::GiveUp, at(179), at(11)));
        assert_eq!(standing, before);
    }

    #[test]
    fn gone_disables_at_once_once() {
        let mut standing = enabled();
        let gone = NextStep::DisableEndpoint("the endpoint answered 410 Gone".to_owned());
        assert!(standing.record(&gone, at(5), at(0)));
        assert_eq!(standing.failing_since, Some(at(5)));
        assert_eq!(
            standing.disabled_reason.as_deref(),
            Some("the endpoint answered 410 Gone")
        );
        assert!(!standing.record(&gone, at(6), at(0)));
        assert_eq!(standing.failing_since, Some(at(5)));
    }

    #[test]
    fn enabling_starts_afresh_and_disabling_by_hand_keeps_the_streak() {
        let mut standing = Standing {
            enabled: false,
            failing_since: Some(at(1)),
            disabled_reason: Some("the endpoint answered 410 Gone".to_owned()),
        };
        standing.set_enabled(true);
        assert_eq!(standing, enabled());
        standing.record(&NextStep::GiveUp, at(2), at(0));
        standing.set_enabled(false);
        assert_eq!(standing.failing_since, Some(at(2)));
        assert_eq!(standing.disabled_reason, None);
    }

    fn any_step() -> impl Strategy<Value = NextStep> {
        prop_oneof![
            Just(NextStep::Delivered),
            (0i64..100).prop_map(|h| NextStep::RetryAt(at(h))),
            Just(NextStep::GiveUp),
            Just(NextStep::DisableEndpoint("gone".to_owned())),
        ]
    }

    proptest! {
        /// Over any run of attempts: an endpoint is disabled only by a 410
        /// or by a failure ending a streak at least as old as the
        /// threshold; a success always leaves no streak; a disabled
        /// endpoint stays disabled with a reason.
        #[test]
        fn disabling_follows_the_rules(
            steps in proptest::collection::vec((any_step(), 0i64..50), 1..40),
            disable_after_hours in 1i64..30,
        ) {
            let mut standing = enabled();
            let mut clock = 0;
            for (step, gap) in steps {
                clock += gap;
                let threshold = at(clock - disable_after_hours);
                let was = standing.clone();
                let disabled = standing.record(&step, at(clock), threshold);
                if step.is_delivered() {
                    prop_assert_eq!(standing.failing_since, None);
                }
                if disabled {
                    prop_assert!(was.enabled && !standing.enabled);
                    prop_assert!(standing.disabled_reason.is_some());
                    let by_streak = standing.failing_since.is_some_and(|s| s <= threshold);
                    prop_assert!(matches!(step, NextStep::DisableEndpoint(_)) || by_streak);
                } else {
                    prop_assert_eq!(standing.enabled, was.enabled);
                    prop_assert_eq!(&standing.disabled_reason, &was.disabled_reason);
                }
            }
        }
    }
}
