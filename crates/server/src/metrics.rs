//! `GET /metrics`: the counters an operator watches, in Prometheus' text
//! format. Each part of the server keeps its own counters (the rate
//! limiter, the dispatcher, the store's writer); this puts them on one page.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use endusers_store::NextStep;

use crate::AppState;

/// What the webhook dispatcher has done since the process started.
#[derive(Debug, Default)]
pub struct WebhookMetrics {
    sent: AtomicU64,
    /// Indexed by [`Outcome`], in [`Outcome::ALL`]'s order.
    finished: [AtomicU64; Outcome::ALL.len()],
}

/// What an attempt came to, as counted; its discriminant is its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Delivered,
    Retrying,
    GaveUp,
    DisabledEndpoint,
}

impl Outcome {
    const ALL: [Self; 4] = [
        Self::Delivered,
        Self::Retrying,
        Self::GaveUp,
        Self::DisabledEndpoint,
    ];

    fn of(next: &NextStep) -> Self {
        match next {
            NextStep::Delivered => Self::Delivered,
            NextStep::RetryAt(_) => Self::Retrying,
            NextStep::GiveUp => Self::GaveUp,
            NextStep::DisableEndpoint(_) => Self::DisabledEndpoint,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retrying => "retrying",
            Self::GaveUp => "gave_up",
            Self::DisabledEndpoint => "disabled_endpoint",
        }
    }
}

impl WebhookMetrics {
    /// A delivery attempt went out.
    pub fn sent(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// An attempt that went out came to `next`.
    pub fn finished(&self, next: &NextStep) {
        self.finished[Outcome::of(next) as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String) {
        out.push_str(
            "# HELP endusers_webhook_attempts_total Delivery attempts finished, by what follows from them.\n\
             # TYPE endusers_webhook_attempts_total counter\n",
        );
        let mut finished = 0;
        for (outcome, counter) in Outcome::ALL.iter().zip(&self.finished) {
            let n = counter.load(Ordering::Relaxed);
            finished += n;
            let _ = writeln!(
                out,
                "endusers_webhook_attempts_total{{outcome=\"{}\"}} {n}",
                outcome.label()
            );
        }
        let in_flight = self.sent.load(Ordering::Relaxed).saturating_sub(finished);
        out.push_str(
            "# HELP endusers_webhook_attempts_in_flight Delivery attempts sent and not yet answered.\n\
             # TYPE endusers_webhook_attempts_in_flight gauge\n",
        );
        let _ = writeln!(out, "endusers_webhook_attempts_in_flight {in_flight}");
    }
}

/// The whole page.
pub fn render(state: &AppState) -> String {
    let mut out = state.limiter.metrics.render();
    state.webhook_metrics.render(&mut out);
    let writes = state.store.write_stats();
    for (name, kind, help, value) in [
        (
            "endusers_store_transactions_total",
            "counter",
            "Write transactions run by the store.",
            writes.transactions,
        ),
        (
            "endusers_store_writes_total",
            "counter",
            "Writes carried by those transactions (concurrent writes share one).",
            writes.writes,
        ),
    ] {
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        );
    }
    let busy = writes.busy_micros as f64 / 1e6;
    let _ = write!(
        out,
        "# HELP endusers_store_write_busy_seconds_total Wall-clock time spent in write transactions, waiting for the disk and for a core included.\n\
         # TYPE endusers_store_write_busy_seconds_total counter\n\
         endusers_store_write_busy_seconds_total {busy}\n"
    );
    out
}
