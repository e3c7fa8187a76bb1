//! `GET /metrics`: the counters an operator watches, in Prometheus' text
//! format. Each part of the server keeps its own counters (the rate
//! limiter, the dispatcher, the store's writer); this puts them on one page.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use endusers_core::NextStep;

use crate::AppState;

/// What the webhook dispatcher has done since the process started.
#[derive(Debug, Default)]
pub struct WebhookMetrics {
    sent: AtomicU64,
    /// Indexed by [`Outcome`] (`outcome as usize`).
    finished: [AtomicU64; Outcome::ALL.len()],
}

/// What an attempt came to, as counted; its discriminant is its slot in
/// [`WebhookMetrics::finished`] (and [`Outcome::ALL`] only orders the page).
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
        let mut finished = 0;
        header(
            out,
            "endusers_webhook_attempts_total",
            "counter",
            "Delivery attempts finished, by what follows from them.",
        );
        for outcome in Outcome::ALL {
            let n = self.finished[outcome as usize].load(Ordering::Relaxed);
            finished += n;
            let _ = writeln!(
                out,
                "endusers_webhook_attempts_total{{outcome=\"{}\"}} {n}",
                outcome.label()
            );
        }
        series(
            out,
            "endusers_webhook_attempts_in_flight",
            "gauge",
            "Delivery attempts sent and not yet answered.",
            self.sent.load(Ordering::Relaxed).saturating_sub(finished),
        );
    }
}

/// The `# HELP` and `# TYPE` lines of a series.
pub(crate) fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
}

/// A series without labels: its header and its one value.
pub(crate) fn series(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    value: impl std::fmt::Display,
) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// The whole page.
pub fn render(state: &AppState) -> String {
    let mut out = state.limiter.metrics.render();
    state.webhook_metrics.render(&mut out);
    let writes = state.store.write_stats();
    series(
        &mut out,
        "endusers_store_transactions_total",
        "counter",
        "Write transactions run by the store.",
        writes.transactions,
    );
    series(
        &mut out,
        "endusers_store_writes_total",
        "counter",
        "Writes carried by those transactions (concurrent writes share one).",
        writes.writes,
    );
    series(
        &mut out,
        "endusers_store_write_busy_seconds_total",
        "counter",
        "Wall-clock time spent in write transactions, waiting for the disk and for a core included.",
        writes.busy_micros as f64 / 1e6,
    );
    out
}
