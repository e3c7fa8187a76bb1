//! What follows one delivery attempt: done, a retry, or no more.

use std::time::Duration;

use crate::{RetrySchedule, Timestamp};

/// What the receiver made of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Answer {
    /// The HTTP status, `None` when no answer came (refused, timed out).
    pub status: Option<u16>,
    /// The answer's `Retry-After`, where it gave one.
    pub retry_after: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextStep {
    Delivered,
    RetryAt(Timestamp),
    /// The schedule is spent: the delivery failed for good.
    GiveUp,
    /// The receiver said 410 Gone: disable the endpoint now, for this reason.
    DisableEndpoint(String),
}

impl NextStep {
    /// A 2xx: the delivery arrived.
    pub fn is_delivered(&self) -> bool {
        matches!(self, Self::Delivered)
    }
}

/// What follows the `attempt`-th attempt (1-based) that got `answer` at
/// `now`: any 2xx delivers; 410 Gone disables the endpoint at once; any
/// other outcome waits for the next step of `schedule` (honouring a
/// `Retry-After` on 429 and 503 within the schedule's bounds) or, with the
/// schedule spent, gives up. `unit` is a random number in [0, 1) that
/// places the wait within its jitter band.
pub fn next_step(
    answer: Answer,
    attempt: u32,
    now: Timestamp,
    schedule: &RetrySchedule,
    unit: f64,
) -> NextStep {
    match answer.status {
        Some(status) if (200..300).contains(&status) => return NextStep::Delivered,
        Some(410) => return NextStep::DisableEndpoint("the endpoint answered 410 Gone".to_owned()),
        _ => {}
    }
    let Some(wait) = schedule.wait_after(attempt, unit) else {
        return NextStep::GiveUp;
    };
    let wait = match answer.status {
        Some(429 | 503) => RetrySchedule::with_retry_after(wait, answer.retry_after),
        _ => wait,
    };
    NextStep::RetryAt(now.saturating_add(wait))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn answer(status: Option<u16>, retry_after: Option<u64>) -> Answer {
        Answer {
            status,
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    #[test]
    fn the_answer_decides_what_comes_next() {
        let now = Timestamp::from_micros(0);
        let schedule = RetrySchedule::new(vec![Duration::from_secs(10)]);
        let step = |status, retry_after, attempt| {
            next_step(answer(status, retry_after), attempt, now, &schedule, 0.5)
        };
        assert_eq!(step(Some(204), None, 1), NextStep::Delivered);
        assert!(matches!(
            step(Some(410), None, 1),
            NextStep::DisableEndpoint(reason) if reason.contains("410")
        ));
        assert_eq!(step(Some(500), None, 2), NextStep::GiveUp);
        assert_eq!(
            step(None, None, 1),
            NextStep::RetryAt(Timestamp::from_micros(10_000_000))
        );
        // Retry-After is honoured within [wait, 2 × wait], only on 429 and 503.
        assert_eq!(
            step(Some(429), Some(1000), 1),
            NextStep::RetryAt(Timestamp::from_micros(20_000_000))
        );
        assert_eq!(
            step(Some(503), Some(15), 1),
            NextStep::RetryAt(Timestamp::from_micros(15_000_000))
        );
        assert_eq!(
            step(Some(500), Some(1000), 1),
            NextStep::RetryAt(Timestamp::from_micros(10_000_000))
        );
    }

    proptest! {
        /// Whatever the answer, a retry is never sooner than the schedule's
        /// jittered wait, and a 2xx is never retried.
        #[test]
        fn retries_follow_the_schedule(
            status in proptest::option::of(100u16..600),
            retry_after in proptest::option::of(0u64..100_000),
            attempt in 1u32..12,
            unit in 0.0f64..1.0,
        ) {
            let schedule = RetrySchedule::standard();
            let now = Timestamp::from_micros(1_000_000);
            let next = next_step(answer(status, retry_after), attempt, now, &schedule, unit);
            match next {
                NextStep::Delivered => prop_assert!(matches!(status, Some(200..=299))),
                NextStep::DisableEndpoint(_) => prop_assert_eq!(status, Some(410)),
                NextStep::GiveUp => prop_assert!(schedule.wait_after(attempt, unit).is_none()),
                NextStep::RetryAt(at) => {
                    let wait = schedule.wait_after(attempt, unit);
                    prop_assert!(wait.is_some());
                    let earliest = now.saturating_add(wait.unwrap_or_default());
                    let latest = now.saturating_add(wait.unwrap_or_default() * 2);
                    prop_assert!(earliest <= at && at <= latest);
                }
            }
        }
    }
}
