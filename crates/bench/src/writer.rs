//! The server's write transactions over a scenario, read from its
//! `/metrics` before and after: how much of the time the single writer was
//! busy, and how many writes shared each commit. A server that does not
//! publish them (an older build under `--server`) reads as unknown.

use std::sync::Mutex;
use std::time::Instant;

use hyper::Method;

use crate::load::Target;
use crate::report::ratio;

/// The writer's work over a stretch of time.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriterLoad {
    pub seconds: f64,
    pub busy_seconds: f64,
    pub transactions: f64,
    pub writes: f64,
}

impl WriterLoad {
    /// The share of the time the writer spent in transactions: near 1,
    /// writes wait for one another.
    pub fn busy_share(&self) -> f64 {
        ratio(self.busy_seconds, self.seconds)
    }

    pub fn writes_per_transaction(&self) -> f64 {
        ratio(self.writes, self.transactions)
    }

    pub fn transactions_per_second(&self) -> f64 {
        ratio(self.transactions, self.seconds)
    }

    /// How long a transaction took on average, its commit's `fsync` and
    /// any wait for a core included: where writes pile up because each
    /// commit got slow (a slow disk, a busy machine), this shows it.
    pub fn millis_per_transaction(&self) -> f64 {
        ratio(self.busy_seconds * 1000.0, self.transactions)
    }

    /// A later stretch of the same scenario added to this one.
    pub fn merge(&mut self, later: WriterLoad) {
        self.seconds += later.seconds;
        self.busy_seconds += later.busy_seconds;
        self.transactions += later.transactions;
        self.writes += later.writes;
    }
}

#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Instant,
    busy_seconds: f64,
    transactions: f64,
    writes: f64,
}

impl Reading {
    fn parse(page: &str, at: Instant) -> Option<Self> {
        Some(Self {
            at,
            busy_seconds: sample(page, "endusers_store_write_busy_seconds_total")?,
            transactions: sample(page, "endusers_store_transactions_total")?,
            writes: sample(page, "endusers_store_writes_total")?,
        })
    }
}

/// The value of an unlabelled series on a Prometheus text page.
fn sample(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))?
        .trim()
        .parse()
        .ok()
}

/// Reads the writer's counters at each [`WriterMeter::take`].
pub struct WriterMeter {
    target: Target,
    last: Mutex<Option<Reading>>,
}

impl WriterMeter {
    pub fn new(target: Target) -> Self {
        Self {
            target,
            last: Mutex::new(None),
        }
    }

    /// The writer's work since the last take; `None` at the first take or
    /// when the counters cannot be read.
    pub async fn take(&self) -> Option<WriterLoad> {
        let now = match self.target.fetch(Method::GET, "/metrics", None).await {
            Ok((status, body)) if status.is_success() => {
                Reading::parse(&String::from_utf8_lossy(&body), Instant::now())
            }
            _ => None,
        };
        let before = std::mem::replace(
            &mut *self
                .last
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            now,
        );
        let (before, now) = (before?, now?);
        Some(WriterLoad {
            seconds: now.at.duration_since(before.at).as_secs_f64(),
            busy_seconds: now.busy_seconds - before.busy_seconds,
            transactions: now.transactions - before.transactions,
            writes: now.writes - before.writes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counters_are_read_from_a_metrics_page() {
        let page = "# HELP endusers_store_writes_total Writes.\n\
                    # TYPE endusers_store_writes_total counter\n\
                    endusers_store_writes_total 120\n\
                    endusers_store_transactions_total 30\n\
                    endusers_store_write_busy_seconds_total 0.5\n";
        let at = Instant::now();
        let reading = Reading::parse(page, at).unwrap();
        assert_eq!(reading.writes, 120.0);
        assert_eq!(reading.transactions, 30.0);
        assert_eq!(reading.busy_seconds, 0.5);
        assert!(Reading::parse("endusers_store_writes_total 1\n", at).is_none());
        let load = WriterLoad {
            seconds: 2.0,
            busy_seconds: 0.5,
            transactions: 30.0,
            writes: 120.0,
        };
        assert_eq!(load.busy_share(), 0.25);
        assert_eq!(load.writes_per_transaction(), 4.0);
        assert_eq!(load.transactions_per_second(), 15.0);
        assert!((load.millis_per_transaction() - 500.0 / 30.0).abs() < 1e-9);
        assert_eq!(WriterLoad::default().busy_share(), 0.0);
        assert_eq!(WriterLoad::default().millis_per_transaction(), 0.0);
    }
}
