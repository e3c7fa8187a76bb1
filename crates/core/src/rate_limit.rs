//! Rate limits: policies of several windows, and the GCRA arithmetic that
//! decides each request.
//!
//! GCRA (the generic cell rate algorithm) keeps one instant per window,
//! the theoretical arrival time (TAT). A window of `limit` requests per
//! `period` spaces requests `period / limit` apart but lets up to `limit`
//! arrive at once. A request is allowed when every window allows it, and
//! only then do all windows advance: a request refused by the daily window
//! uses up nothing of the per-second one.

use std::fmt;
use std::time::Duration;

use crate::time::Timestamp;

/// `limit` requests per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub limit: u32,
    pub period: Duration,
}

impl Window {
    /// The policy name of the window in `RateLimit-Policy`: `1s`, `1m`, `1d`.
    pub fn name(&self) -> String {
        match self.period.as_secs() {
            1 => "per-second".to_owned(),
            60 => "per-minute".to_owned(),
            3600 => "per-hour".to_owned(),
            86_400 => "per-day".to_owned(),
            s => format!("per-{s}s"),
        }
    }

    fn emission_interval_micros(&self) -> i64 {
        let period = i64::try_from(self.period.as_micros()).unwrap_or(i64::MAX);
        period / i64::from(self.limit.max(1))
    }

    /// How far ahead of now the theoretical arrival time may run: `limit`
    /// emission intervals. The interval is rounded down, so this is at most
    /// the period; taking the period itself would allow a request a few
    /// microseconds early whenever the limit does not divide it.
    fn burst_micros(&self) -> i64 {
        self.emission_interval_micros()
            .saturating_mul(i64::from(self.limit.max(1)))
    }
}

/// Several windows that all apply, or none (`off`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RatePolicy(Vec<Window>);

impl RatePolicy {
    /// Reads `30/s,300/m,60000/d` (units `s`, `m`, `h`, `d`) or `off`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") {
            return Ok(Self::off());
        }
        let mut windows = Vec::new();
        for part in text.split(',').map(str::trim) {
            let (limit, unit) = part
                .split_once('/')
                .ok_or_else(|| format!("{part:?}: expected LIMIT/UNIT such as 30/s"))?;
            let limit: u32 = limit
                .trim()
                .parse()
                .ok()
                .filter(|l| *l > 0)
                .ok_or_else(|| format!("{part:?}: the limit must be a positive integer"))?;
            let seconds = match unit.trim() {
                "s" => 1,
                "m" => 60,
                "h" => 3600,
                "d" => 86_400,
                _ => return Err(format!("{part:?}: the unit must be s, m, h or d")),
            };
            windows.push(Window {
                limit,
                period: Duration::from_secs(seconds),
            });
        }
        if windows.is_empty() {
            return Err("expected windows such as 30/s,300/m,60000/d, or off".to_owned());
        }
        windows.sort_by_key(|w| w.period);
        Ok(Self(windows))
    }

    pub fn off() -> Self {
        Self(Vec::new())
    }

    pub fn is_off(&self) -> bool {
        self.0.is_empty()
    }

    pub fn windows(&self) -> &[Window] {
        &self.0
    }

    /// `RateLimit-Policy`: `"per-second";q=30;w=1, "per-minute";q=300;w=60`.
    pub fn header(&self) -> String {
        self.0
            .iter()
            .map(|w| format!("\"{}\";q={};w={}", w.name(), w.limit, w.period.as_secs()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Decides one request against the windows' TATs (`None`: never used).
    pub fn check(&self, tats: &[Option<Timestamp>], now: Timestamp) -> Decision {
        let now = now.as_micros();
        let mut new_tats = Vec::with_capacity(self.0.len());
        let mut refused_for: Option<i64> = None;
        let mut tightest: Option<(usize, i64, i64)> = None; // (window, remaining, reset micros)
        for (i, window) in self.0.iter().enumerate() {
            let interval = window.emission_interval_micros();
            let tat = tats
                .get(i)
                .copied()
                .flatten()
                .map_or(now, Timestamp::as_micros)
                .max(now);
            let new_tat = tat.saturating_add(interval);
            let allow_at = new_tat.saturating_sub(window.burst_micros());
            if now < allow_at {
                let wait = allow_at - now;
                refused_for = Some(refused_for.map_or(wait, |w| w.max(wait)));
                let reset = tat - now;
                if tightest.is_none_or(|(_, r, _)| r > 0) {
                    tightest = Some((i, 0, reset));
                }
                new_tats.push(Timestamp::from_micros(tat));
                continue;
            }
            let remaining = (window.burst_micros() - (new_tat - now)) / interval.max(1);
            let reset = new_tat - now;
            if tightest.is_none_or(|(_, r, _)| remaining < r) {
                tightest = Some((i, remaining, reset));
            }
            new_tats.push(Timestamp::from_micros(new_tat));
        }
        let (window, remaining, reset) = tightest.unwrap_or((0, 0, 0));
        Decision {
            allowed: refused_for.is_none(),
            new_tats,
            retry_after: refused_for.map(|w| Duration::from_micros(u64::try_from(w).unwrap_or(0))),
            window,
            remaining: u64::try_from(remaining.max(0)).unwrap_or(0),
            reset: Duration::from_micros(u64::try_from(reset.max(0)).unwrap_or(0)),
        }
    }
}

impl fmt::Display for RatePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("off");
        }
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|w| {
                let unit = match w.period.as_secs() {
                    1 => "s",
                    60 => "m",
                    3600 => "h",
                    _ => "d",
                };
                format!("{}/{unit}", w.limit)
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// The verdict on one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The TATs to store when allowed (unchanged ones when refused).
    pub new_tats: Vec<Timestamp>,
    /// When refused: how long until every window allows the request.
    pub retry_after: Option<Duration>,
    /// The window closest to its limit, for the `RateLimit` header.
    pub window: usize,
    /// Requests that window still allows right now.
    pub remaining: u64,
    /// Until that window is fully replenished.
    pub reset: Duration,
}

impl Decision {
    /// `Retry-After` in whole seconds, never 0 for a refusal.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after
            .map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
            .map(|s| s.max(1))
    }

    /// `RateLimit`: `"per-second";r=12;t=1`.
    pub fn header(&self, policy: &RatePolicy) -> Option<String> {
        let window = policy.windows().get(self.window)?;
        let t = self.reset.as_secs() + u64::from(self.reset.subsec_nanos() > 0);
        Some(format!(
            "\"{}\";r={};t={}",
            window.name(),
            self.remaining,
            t
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_micros(ms * 1000)
    }

    /// Feeds requests at the given instants and returns which passed.
    fn run(policy: &RatePolicy, times_ms: &[i64]) -> Vec<bool> {
        let mut tats: Vec<Option<Timestamp>> = vec![None; policy.windows().len()];
        times_ms
            .iter()
            .map(|t| {
                let decision = policy.check(&tats, at(*t));
                if decision.allowed {
                    tats = decision.new_tats.iter().copied().map(Some).collect();
                }
                decision.allowed
            })
            .collect()
    }

    #[test]
    fn parses_and_prints() {
        let policy = RatePolicy::parse("300/m, 30/s,60000/d").unwrap();
        assert_eq!(policy.to_string(), "30/s,300/m,60000/d");
        assert_eq!(
            policy.header(),
            "\"per-second\";q=30;w=1, \"per-minute\";q=300;w=60, \"per-day\";q=60000;w=86400"
        );
        assert!(RatePolicy::parse("off").unwrap().is_off());
        for bad in ["", "30", "0/s", "30/w", "x/s"] {
            assert!(RatePolicy::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn thirty_at_once_then_refused_then_recovered() {
        let policy = RatePolicy::parse("30/s").unwrap();
        let mut tats = vec![None];
        for i in 0..30 {
            let d = policy.check(&tats, at(0));
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 29 - i);
            tats = d.new_tats.into_iter().map(Some).collect();
        }
        let refused = policy.check(&tats, at(0));
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        let wait = refused.retry_after.unwrap();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(34),
            "{wait:?}"
        );
        assert_eq!(refused.retry_after_secs(), Some(1), "never 0");
        assert!(policy.check(&tats, at(34)).allowed);
    }

    #[test]
    fn a_refusal_by_one_window_spends_nothing_of_the_others() {
        let policy = RatePolicy::parse("2/s,3/m").unwrap();
        // Three pass (minute window full), then refused for the rest of the minute.
        let times = [0, 0, 1000, 2000, 3000, 4000];
        assert_eq!(
            run(&policy, &times),
            [true, true, true, false, false, false]
        );
        // After the minute recovers, the per-second window has its full burst.
        let mut requests: Vec<i64> = vec![0, 0, 1000];
        requests.extend([60_000, 60_000]);
        assert_eq!(run(&policy, &requests), [true, true, true, true, true]);
    }

    proptest! {
        /// The GCRA bound: between any two allowed requests, at most the
        /// burst (`limit`) plus one request per emission interval elapsed.
        #[test]
        fn never_more_than_the_burst_plus_the_rate(
            gaps in prop::collection::vec(0i64..120, 1..400),
            limit in 1u32..20,
        ) {
            let policy = RatePolicy::parse(&format!("{limit}/s")).unwrap();
            let interval_us = 1_000_000 / i64::from(limit);
            let mut t = 0;
            let times: Vec<i64> = gaps.iter().map(|g| { t += g; t }).collect();
            let allowed: Vec<i64> = times.iter().zip(run(&policy, &times)).filter(|(_, ok)| *ok).map(|(t, _)| *t).collect();
            for i in 0..allowed.len() {
                for j in i..allowed.len() {
                    let count = i64::try_from(j - i + 1).unwrap();
                    let elapsed_us = (allowed[j] - allowed[i]) * 1000;
                    prop_assert!((count - i64::from(limit)) * interval_us <= elapsed_us);
                }
            }
            // And whatever is refused would have broken that bound.
            prop_assert!(!allowed.is_empty());
        }
    }
}
