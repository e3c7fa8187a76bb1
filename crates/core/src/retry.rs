//! When a failed webhook delivery is tried again.

use std::time::Duration;

/// The waits before each retry: the first entry follows the first failure.
/// Each wait is jittered by up to ±20 % so that many deliveries that failed
/// together do not retry together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule(Vec<Duration>);

/// How far a wait may move either way, as a fraction.
const JITTER: f64 = 0.2;

impl RetrySchedule {
    pub fn new(waits: Vec<Duration>) -> Self {
        Self(waits)
    }

    /// The contract's default: immediately, 5 s, 5 min, 30 min, 2 h, 5 h,
    /// 10 h, 10 h.
    pub fn standard() -> Self {
        let s = Duration::from_secs;
        Self(vec![
            s(0),
            s(5),
            s(300),
            s(1800),
            s(7200),
            s(18_000),
            s(36_000),
            s(36_000),
        ])
    }

    pub fn waits(&self) -> &[Duration] {
        &self.0
    }

    /// The wait after the `failures`-th failure (1-based), or `None` when
    /// the schedule is spent. `unit` is a random number in [0, 1) that
    /// places the wait within its jitter band.
    pub fn wait_after(&self, failures: u32, unit: f64) -> Option<Duration> {
        let index = usize::try_from(failures.checked_sub(1)?).ok()?;
        let base = *self.0.get(index)?;
        let factor = 1.0 - JITTER + 2.0 * JITTER * unit.clamp(0.0, 1.0);
        Some(base.mul_f64(factor))
    }

    /// A receiver's `Retry-After` is honoured, but only within
    /// [wait, 2 × wait]: it can slow retries down, not speed them up or
    /// stall them for longer than twice the schedule.
    pub fn with_retry_after(wait: Duration, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(asked) => asked.clamp(wait, wait.saturating_mul(2)),
            None => wait,
        }
    }
}

impl Default for RetrySchedule {
    fn default() -> Self {
        Self::standard()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_schedule_is_walked_then_spent() {
        let schedule = RetrySchedule::standard();
        assert_eq!(schedule.wait_after(1, 0.5), Some(Duration::ZERO));
        assert_eq!(schedule.wait_after(2, 0.5), Some(Duration::from_secs(5)));
        assert_eq!(
            schedule.wait_after(8, 0.5),
            Some(Duration::from_secs(36_000))
        );
        assert_eq!(schedule.wait_after(9, 0.5), None);
        assert_eq!(schedule.wait_after(0, 0.5), None);
    }

    #[test]
    fn retry_after_is_clamped_to_one_to_two_waits() {
        let wait = Duration::from_secs(300);
        assert_eq!(RetrySchedule::with_retry_after(wait, None), wait);
        assert_eq!(
            RetrySchedule::with_retry_after(wait, Some(Duration::from_secs(1))),
            wait
        );
        assert_eq!(
            RetrySchedule::with_retry_after(wait, Some(Duration::from_secs(450))),
            Duration::from_secs(450)
        );
        assert_eq!(
            RetrySchedule::with_retry_after(wait, Some(Duration::from_secs(99_999))),
            Duration::from_secs(600)
        );
    }

    proptest! {
        #[test]
        fn jitter_stays_within_twenty_percent(failures in 1u32..=8, unit in 0.0f64..1.0) {
            let schedule = RetrySchedule::standard();
            let base = schedule.waits()[failures as usize - 1].as_secs_f64();
            let wait = schedule.wait_after(failures, unit).unwrap().as_secs_f64();
            prop_assert!(wait >= base * 0.8 - 1e-6 && wait <= base * 1.2 + 1e-6);
        }
    }
}
