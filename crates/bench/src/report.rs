//! The results: a Markdown table, and the same figures as JSON, with the
//! facts of the machine they were measured on.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::calibrate::Calibration;
use crate::cores::{CoreShare, HostTime};
use crate::load::Outcome;
use crate::rounds::Rounds;
use crate::server::Usage;
use crate::webhooks::Delivery;
use crate::writer::WriterLoad;
use crate::{Params, Result};

/// One request scenario.
#[derive(Debug, Clone)]
pub struct Row {
    pub key: &'static str,
    pub name: String,
    pub outcome: Outcome,
    /// The measured process's memory over the scenario.
    pub usage: Usage,
    /// The size of one answer's body.
    pub response_bytes: usize,
    /// The server's writer meanwhile, when it publishes it.
    pub writer: Option<WriterLoad>,
}

impl Row {
    /// A later round of the same scenario added to this one.
    pub fn merge(&mut self, later: Row) {
        self.outcome.merge(later.outcome);
        self.usage.merge(later.usage);
        self.writer = match (self.writer, later.writer) {
            (Some(mut writer), Some(later)) => {
                writer.merge(later);
                Some(writer)
            }
            (writer, later) => writer.or(later),
        };
    }

    /// Server CPU time per answered request: steadier than requests/s on a
    /// machine whose speed varies, and what an optimisation changes.
    pub fn cpu_micros_per_request(&self) -> f64 {
        self.micros_per_request(self.usage.cpu_seconds)
    }

    /// The load generator's CPU time per answered request: with the server
    /// on the same cores, what it spends is not the server's to spend.
    pub fn client_cpu_micros_per_request(&self) -> f64 {
        self.micros_per_request(self.usage.client_cpu_seconds)
    }

    fn micros_per_request(&self, seconds: f64) -> f64 {
        micros_each(seconds, self.outcome.ok + self.outcome.errors())
    }

    pub fn summary(&self) -> String {
        let o = &self.outcome;
        format!(
            "{:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, errors {}, RSS {:.1} MB, CPU {:.1} µs/req (client {:.1}), stolen by the host {}",
            o.per_second(),
            o.latencies.quantile_ms(0.5),
            o.latencies.quantile_ms(0.99),
            o.latencies.quantile_ms(0.999),
            errors_text(o),
            mb(self.usage.max_kib),
            self.cpu_micros_per_request(),
            self.client_cpu_micros_per_request(),
            self.usage.cores.host.stolen_text(),
        )
    }

    /// `ratio`: the row's "× ceiling" (see [`Run::ratio_of`]).
    fn json(&self, ratio: f64) -> Value {
        let o = &self.outcome;
        json!({
            "key": self.key,
            "name": self.name,
            "requests": o.ok,
            "seconds": o.elapsed.as_secs_f64(),
            "requests_per_s": o.per_second(),
            "ratio_to_ceiling": ratio,
            "latency_ms": latency_json(&o.latencies),
            "errors": o.errors(),
            "transport_errors": o.transport_errors,
            "error_statuses": o.statuses.iter().map(|(s, n)| (s.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
            "response_bytes": self.response_bytes,
            "rss_peak_mb": mb(self.usage.max_kib),
            "rss_hwm_mb": mb(self.usage.hwm_kib),
            "server_cpu_us_per_request": self.cpu_micros_per_request(),
            "client_cpu_us_per_request": self.client_cpu_micros_per_request(),
            "writer": writer_json(self.writer),
            "cores": cores_json(&self.usage.cores),
        })
    }
}

/// The writer's figures, `null` when the server does not publish them.
fn writer_json(writer: Option<WriterLoad>) -> Value {
    writer.map_or(Value::Null, |w| {
        json!({
            "busy_share": w.busy_share(),
            "transactions_per_s": w.transactions_per_second(),
            "writes_per_transaction": w.writes_per_transaction(),
            "ms_per_transaction": w.millis_per_transaction(),
        })
    })
}

/// The writer's busy share and writes per commit, for a table cell.
fn writer_text(writer: Option<WriterLoad>) -> String {
    writer.map_or("–".to_owned(), |w| {
        format!(
            "{:.0} % ({:.1}, {:.2} ms)",
            w.busy_share() * 100.0,
            w.writes_per_transaction(),
            w.millis_per_transaction()
        )
    })
}

/// CPU seconds spread over `count` things done, in microseconds each.
fn micros_each(seconds: f64, count: u64) -> f64 {
    if count == 0 {
        return 0.0;
    }
    seconds * 1e6 / count as f64
}

/// Per kind of server thread, the shares of the scenario's time it ran and
/// waited for a core (per thread); `null` where the kernel does not tell.
fn cores_json(cores: &CoreShare) -> Value {
    let kind = |spent: &crate::cores::Spent| {
        spent.shares(cores.wall_ns).map_or(
            Value::Null,
            |(run, wait)| json!({"threads": spent.threads, "run_share": run, "wait_share": wait}),
        )
    };
    json!({
        "runtime": kind(&cores.runtime),
        "writer": kind(&cores.writer),
        "host_stolen_share": cores.host.stolen_share(),
    })
}

/// One webhook scenario.
#[derive(Debug, Clone)]
pub struct WebhookRow {
    pub delivery: Delivery,
    pub usage: Usage,
    /// The server's writer meanwhile, when it publishes it.
    pub writer: Option<WriterLoad>,
}

impl WebhookRow {
    /// Server CPU time per delivery, the PATCHes that caused them
    /// included (one PATCH per delivery to one endpoint, one per ten to
    /// ten).
    pub fn cpu_micros_per_delivery(&self) -> f64 {
        micros_each(self.usage.cpu_seconds, self.delivery.delivered)
    }

    /// The load generator's and receiver's CPU time per delivery: the
    /// share of the machine the server did not have.
    pub fn client_cpu_micros_per_delivery(&self) -> f64 {
        micros_each(self.usage.client_cpu_seconds, self.delivery.delivered)
    }

    pub fn summary(&self) -> String {
        let d = &self.delivery;
        format!(
            "{:.0} PATCH/s, {:.0} deliveries/s, event→receipt p50 {:.2} ms, p99 {:.2} ms, \
             delivered {}/{} (duplicates {}, unmatched {}), drain {:.2} s, RSS {:.1} MB, \
             CPU {:.1} µs/delivery (client {:.1}), stolen by the host {}",
            d.patches.per_second(),
            d.per_second(),
            d.latencies.quantile_ms(0.5),
            d.latencies.quantile_ms(0.99),
            d.delivered,
            d.expected,
            d.duplicates,
            d.unmatched,
            d.drain.as_secs_f64(),
            mb(self.usage.max_kib),
            self.cpu_micros_per_delivery(),
            self.client_cpu_micros_per_delivery(),
            self.usage.cores.host.stolen_text(),
        )
    }

    fn json(&self, ceiling: f64) -> Value {
        let d = &self.delivery;
        json!({
            "endpoints": d.endpoints,
            "offered_deliveries_per_s": d.offered,
            "patches": d.patches.ok,
            "patch_per_s": d.patches.per_second(),
            "patch_latency_ms": latency_json(&d.patches.latencies),
            "patch_errors": d.patches.errors(),
            "expected": d.expected,
            "delivered": d.delivered,
            "missing": d.missing(),
            "duplicates": d.duplicates,
            "unmatched": d.unmatched,
            "arrived_before_patch_answer": d.early,
            "deliveries_per_s": d.per_second(),
            "server_cpu_us_per_delivery": self.cpu_micros_per_delivery(),
            "client_cpu_us_per_delivery": self.client_cpu_micros_per_delivery(),
            "writer": writer_json(self.writer),
            "cores": cores_json(&self.usage.cores),
            "ratio_to_ceiling": ratio(d.per_second(), ceiling),
            "span_s": d.span.as_secs_f64(),
            "drain_s": d.drain.as_secs_f64(),
            "drained_after_patches": d.drained,
            "event_to_receipt_ms": latency_json(&d.latencies),
            "rss_peak_mb": mb(self.usage.max_kib),
            "rss_hwm_mb": mb(self.usage.hwm_kib),
        })
    }
}

/// Where the figures were measured.
#[derive(Debug, Clone)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_kib: u64,
    pub kernel: String,
    pub rustc: String,
    pub commit: String,
    pub dirty: bool,
    /// /proc/loadavg when the run started: other work on the machine.
    pub load_average: String,
    /// The machine's own speed, to tell machines apart.
    pub calibration: Calibration,
}

impl Machine {
    /// The first three fields of /proc/loadavg.
    pub fn load_average() -> String {
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn collect(root: &Path, load_average: String, calibration: Calibration) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
        Self {
            cpus: std::thread::available_parallelism().map_or(0, usize::from),
            cpu_model: cpuinfo
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    (name.trim() == "model name").then(|| value.trim().to_owned())
                })
                .unwrap_or_else(|| "unknown".to_owned()),
            memory_kib: meminfo
                .lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse().ok())
                .unwrap_or(0),
            kernel: command_output(Path::new("uname"), &["-r"], root)
                .unwrap_or_else(|| "unknown".to_owned()),
            rustc: command_output(Path::new(&rustc), &["--version"], root)
                .unwrap_or_else(|| "unknown".to_owned()),
            commit: command_output(Path::new("git"), &["rev-parse", "--short=12", "HEAD"], root)
                .unwrap_or_else(|| "unknown".to_owned()),
            // The bench's own results are not a change to what it measures.
            dirty: command_output(
                Path::new("git"),
                &[
                    "status",
                    "--porcelain",
                    "--",
                    ".",
                    ":(exclude)bench/results",
                ],
                root,
            )
            .is_some_and(|status| !status.is_empty()),
            load_average,
            calibration,
        }
    }

    fn json(&self) -> Value {
        json!({
            "cpus": self.cpus,
            "cpu_model": self.cpu_model,
            "memory_gib": self.memory_kib as f64 / 1024.0 / 1024.0,
            "kernel": self.kernel,
            "rustc": self.rustc,
            "commit": self.commit,
            "uncommitted_changes": self.dirty,
            "load_average_at_start": self.load_average,
            "sha256_mb_per_s_one_thread": self.calibration.sha256_mb_per_s.round(),
            "random_load_ns_in_64_mib": self.calibration.memory_latency_ns.round(),
        })
    }
}

fn command_output(program: &Path, args: &[&str], dir: &Path) -> Option<String> {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// A whole run.
#[derive(Debug)]
pub struct Run {
    pub params: Params,
    pub started_at: SystemTime,
    pub backend: String,
    pub machine: Machine,
    pub load: Row,
    pub ceiling: Row,
    /// The ceiling's and GET's requests/s round by round.
    pub rounds: Rounds,
    /// GET, PATCH, POST, first page, deep page.
    pub rows: Vec<Row>,
    pub webhooks: Vec<WebhookRow>,
    pub build: Duration,
    pub total: Duration,
    pub server_hwm_kib: u64,
    /// The largest the SQLite log (`<db>-wal`) grew, when the store is SQLite.
    pub sqlite_log_peak_bytes: Option<u64>,
    pub server_warnings: u64,
    pub server_errors: u64,
    pub server_log_tail: Vec<String>,
}

impl Run {
    /// One line saying what ran where, for the chart.
    pub fn subtitle(&self) -> String {
        format!(
            "{}; {} CPUs ({}); {}, {} users; commit {}{}",
            utc(self.started_at, UtcStyle::Human),
            self.machine.cpus,
            self.machine.cpu_model,
            self.backend,
            self.params.users,
            self.machine.commit,
            if self.machine.dirty { "+" } else { "" },
        )
    }
}

/// One target of issue 7, checked.
struct Check {
    target: &'static str,
    measured: String,
    met: bool,
    /// The machine's time the host took while the target's scenario ran:
    /// a miss while it took much says more of the machine than the build.
    host: HostTime,
}

impl Run {
    /// The ceiling's requests/s: its median round (see [`Rounds`]).
    pub fn ceiling_rate(&self) -> f64 {
        self.rounds
            .ceiling_rate()
            .unwrap_or_else(|| self.ceiling.outcome.per_second())
    }

    /// A row's "× ceiling": GET's is paired round by round with the
    /// ceiling's (see [`Rounds`]); the others are over the ceiling's rate.
    pub fn ratio_of(&self, row: &Row) -> f64 {
        let over_ceiling = || ratio(row.outcome.per_second(), self.ceiling_rate());
        match row.key {
            "ceiling" => 1.0,
            "get" => self.rounds.get_ratio().unwrap_or_else(over_ceiling),
            _ => over_ceiling(),
        }
    }

    /// A row's requests/s as the table gives it: the ceiling's is the rate
    /// the ratios divide by.
    fn rate_of(&self, row: &Row) -> f64 {
        if row.key == "ceiling" {
            self.ceiling_rate()
        } else {
            row.outcome.per_second()
        }
    }

    fn row(&self, key: &str) -> Option<&Row> {
        self.rows.iter().find(|row| row.key == key)
    }

    fn webhook(&self, endpoints: usize) -> Option<&WebhookRow> {
        self.webhooks
            .iter()
            .find(|row| row.delivery.endpoints == endpoints)
    }

    /// The host's take over every scenario of the run.
    fn whole_run_host(&self) -> HostTime {
        let mut host = self.ceiling.usage.cores.host;
        for usage in self
            .rows
            .iter()
            .map(|row| &row.usage)
            .chain(self.webhooks.iter().map(|row| &row.usage))
        {
            host.add(usage.cores.host);
        }
        host
    }

    fn checks(&self) -> Vec<Check> {
        let mut checks = Vec::new();
        if let Some(get) = self.row("get") {
            let o = &get.outcome;
            let r = self.ratio_of(get);
            checks.push(Check {
                target: "GET by id: ≥ 0.6 × ceiling requests/s",
                measured: format!("{r:.2} × ceiling"),
                met: r >= 0.6,
                host: get.usage.cores.host,
            });
            let p99 = o.latencies.quantile_ms(0.99);
            checks.push(Check {
                target: "GET by id: p99 < 5 ms",
                measured: format!("{p99:.2} ms"),
                met: p99 < 5.0,
                host: get.usage.cores.host,
            });
        }
        for (key, name) in [("patch", "PATCH"), ("post", "POST")] {
            if let Some(row) = self.row(key) {
                let o = &row.outcome;
                checks.push(Check {
                    target: if key == "patch" {
                        "PATCH: ≥ 15,000 requests/s, p99 < 20 ms"
                    } else {
                        "POST: ≥ 15,000 requests/s, p99 < 20 ms"
                    },
                    measured: format!(
                        "{name} {:.0}/s, p99 {:.2} ms",
                        o.per_second(),
                        o.latencies.quantile_ms(0.99)
                    ),
                    met: o.per_second() >= 15_000.0 && o.latencies.quantile_ms(0.99) < 20.0,
                    host: row.usage.cores.host,
                });
            }
        }
        if let (Some(first), Some(deep)) = (self.row("list_first"), self.row("list_deep")) {
            let mut host = first.usage.cores.host;
            host.add(deep.usage.cores.host);
            let first = first.outcome.latencies.quantile_ms(0.5);
            let deep = deep.outcome.latencies.quantile_ms(0.5);
            checks.push(Check {
                target: "list: deep-cursor p50 within 20 % of the first page's",
                measured: format!("{deep:.2} ms vs {first:.2} ms"),
                met: deep <= first * 1.2,
                host,
            });
        }
        for (endpoints, floor) in [(1, 10_000.0), (10, 20_000.0)] {
            if let Some(row) = self.webhook(endpoints) {
                let d = &row.delivery;
                let p50 = d.latencies.quantile_ms(0.5);
                checks.push(Check {
                    target: if endpoints == 1 {
                        "webhooks, 1 endpoint: ≥ 10,000 deliveries/s, p50 < 20 ms"
                    } else {
                        "webhooks, 10 endpoints: ≥ 20,000 deliveries/s, p50 < 20 ms"
                    },
                    measured: format!(
                        "{:.0} sent/s, {:.0} delivered/s, p50 {p50:.2} ms, {} missing, backlog drained in {:.2} s",
                        d.sent_per_second(),
                        d.per_second(),
                        d.missing(),
                        d.drain.as_secs_f64()
                    ),
                    // The rate is sustained when the events went out at it,
                    // every delivery arrived, and none queued up: the last
                    // one came within a second of the last PATCH.
                    met: d.sent_per_second() >= floor * 0.99
                        && d.missing() == 0
                        && d.drain < std::time::Duration::from_secs(1)
                        && p50 < 20.0,
                    host: row.usage.cores.host,
                });
            }
        }
        checks.push(Check {
            target: "server RSS < 150 MB through the run",
            measured: format!("{:.1} MB (VmHWM)", mb(self.server_hwm_kib)),
            met: mb(self.server_hwm_kib) < 150.0,
            host: self.whole_run_host(),
        });
        checks
    }

    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let m = &self.machine;
        let p = &self.params;
        let ceiling = self.ceiling_rate();
        let _ = writeln!(
            md,
            "# endusers benchmark, {}\n",
            utc(self.started_at, UtcStyle::Human)
        );
        if p.smoke {
            let _ = writeln!(
                md,
                "**Smoke run** (a check that the command works; the figures mean nothing).\n"
            );
        }
        let _ = writeln!(
            md,
            "Machine: {} CPUs ({}), {:.1} GiB RAM, Linux {}, {}; commit {}{}; \
             load average {} when the run started. Its own speed: SHA-256 at {:.0} MB/s \
             on one thread, {:.0} ns per random load in 64 MiB (figures of other machines \
             compare only after these).\n",
            m.cpus,
            m.cpu_model,
            m.memory_kib as f64 / 1024.0 / 1024.0,
            m.kernel,
            m.rustc,
            m.commit,
            if m.dirty {
                " with uncommitted changes"
            } else {
                ""
            },
            m.load_average,
            m.calibration.sha256_mb_per_s,
            m.calibration.memory_latency_ns,
        );
        let _ = writeln!(
            md,
            "Run: storage {}, {} users loaded in {:.1} s ({:.0}/s, {} errors), {} s per scenario, \
             {} connections, one client process (closed loop, HTTP/1.1 keep-alive). \
             Whole run {:.0} s, of which {:.0} s building the server.\n",
            self.backend,
            p.users,
            self.load.outcome.elapsed.as_secs_f64(),
            self.load.outcome.per_second(),
            self.load.outcome.errors(),
            p.duration.as_secs_f64(),
            p.connections,
            self.total.as_secs_f64(),
            self.build.as_secs_f64(),
        );
        let _ = writeln!(
            md,
            "Ceiling: a minimal server (axum, own process) answering the same GET with {} fixed bytes, \
             measured in rounds alternating with GET by id; its requests/s is its median round. \
             \"× ceiling\" is a figure's requests/s over the ceiling's, except GET's: the median, \
             over rounds, of a GET round's requests/s over the ceiling round's just before it (the \
             machine's speed moves between rounds; the rounds are listed under the table). Latencies are of 2xx answers; \
             errors are non-2xx answers and transport failures. RSS is the server's highest VmRSS \
             sampled every 50 ms during the scenario; CPU is the server process's user + system \
             time over the scenario per answered request (steadier than requests/s when the \
             machine's speed varies); client CPU is the same for the load generator, which \
             shares the machine. Writer busy is the share of the scenario's time the \
             store's single writer spent in transactions (from the server's `/metrics`; near \
             100 %, writes queue behind one another), with the writes each commit carried \
             and how long a transaction took on average (its `fsync` and any wait for a \
             core included). \
             Waiting for a core is the share of the scenario's time a server thread was \
             ready to run but had no core (the kernel's schedstat, per thread): the \
             runtime's workers and the writer. Stolen by the host is the share of the \
             machine's CPU time its host gave to other guests during the scenario (the \
             kernel's steal time): a run with much of it is slower whatever the build.\n",
            self.ceiling.response_bytes
        );
        md.push_str(
            "| scenario | requests/s | × ceiling | p50 ms | p99 ms | p99.9 ms | errors | answer bytes | server CPU µs/req | client CPU µs/req | writer busy (writes, ms a commit) | waiting for a core | stolen by the host | server peak RSS MB |\n",
        );
        md.push_str("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
        for row in std::iter::once(&self.ceiling).chain(&self.rows) {
            let o = &row.outcome;
            let _ = writeln!(
                md,
                "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {:.1} | {:.1} | {} | {} | {} | {:.1}{} |",
                row.name,
                self.rate_of(row),
                self.ratio_of(row),
                o.latencies.quantile_ms(0.5),
                o.latencies.quantile_ms(0.99),
                o.latencies.quantile_ms(0.999),
                errors_text(o),
                row.response_bytes,
                row.cpu_micros_per_request(),
                row.client_cpu_micros_per_request(),
                writer_text(row.writer),
                row.usage.cores.wait_text(),
                row.usage.cores.host.stolen_text(),
                mb(row.usage.max_kib),
                if row.key == "ceiling" {
                    " (ceiling process)"
                } else {
                    ""
                },
            );
        }
        let rounds = self.rounds.text();
        if !rounds.is_empty() {
            let _ = writeln!(
                md,
                "\nRounds, ceiling / GET by id requests/s (GET's ratio), and GET's ratio with the rounds pooled: {rounds}."
            );
        }
        md.push_str(
            "\nWebhooks: PATCHes of one metadata key for the scenario's duration, each an \
             event to every endpoint; the receiver (in the client process) answers 204. \
             \"Offered\" paces the PATCHes at that many deliveries/s (PATCH/s × endpoints; \
             \"max\": as fast as answered, which measures throughput, not latency). \
             Sent/s = acknowledged PATCHes × endpoints ÷ the PATCH phase; \
             delivered/s = distinct deliveries ÷ (first PATCH → last receipt), so it cannot \
             exceed sent/s; \"after the last PATCH\" is the backlog delivered once \
             the PATCHes stopped. Event→receipt = receipt − the PATCH's 200 (a delivery that \
             arrives before the 200 is read counts as 0). Server CPU per delivery includes \
             the PATCHes that caused them; client CPU is the load generator's and the \
             receiver's, which share the machine with the server.\n\n",
        );
        md.push_str(
            "| endpoints | offered/s | sent/s | delivered/s | × ceiling | event→receipt p50 ms | p99 ms | p99.9 ms | delivered / expected | duplicates | after the last PATCH | server CPU µs/delivery | client CPU µs/delivery | writer busy (writes, ms a commit) | waiting for a core | stolen by the host | server peak RSS MB |\n",
        );
        md.push_str("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
        for row in &self.webhooks {
            let d = &row.delivery;
            let _ = writeln!(
                md,
                "| {} | {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} / {} | {} | {} in {:.2} s | {:.1} | {:.1} | {} | {} | {} | {:.1} |",
                d.endpoints,
                d.offered
                    .map_or("max".to_owned(), |rate| format!("{rate:.0}")),
                d.sent_per_second(),
                d.per_second(),
                ratio(d.per_second(), ceiling),
                d.latencies.quantile_ms(0.5),
                d.latencies.quantile_ms(0.99),
                d.latencies.quantile_ms(0.999),
                d.delivered,
                d.expected,
                d.duplicates,
                d.drained,
                d.drain.as_secs_f64(),
                row.cpu_micros_per_delivery(),
                row.client_cpu_micros_per_delivery(),
                writer_text(row.writer),
                row.usage.cores.wait_text(),
                row.usage.cores.host.stolen_text(),
                mb(row.usage.max_kib),
            );
        }
        let _ = write!(
            md,
            "\nServer peak RSS over the whole run (VmHWM): {:.1} MB.",
            mb(self.server_hwm_kib),
        );
        if let Some(bytes) = self.sqlite_log_peak_bytes {
            let _ = write!(
                md,
                " Largest SQLite log (`-wal` file) seen: {:.1} MB.",
                mb(bytes / 1024)
            );
        }
        let _ = writeln!(
            md,
            " Server log: {} warnings, {} errors.",
            self.server_warnings, self.server_errors
        );
        if !self.server_log_tail.is_empty() {
            md.push_str("\nLast warnings and errors of the server:\n\n```\n");
            for line in &self.server_log_tail {
                md.push_str(line);
                md.push('\n');
            }
            md.push_str("```\n");
        }
        md.push_str(
            "\n## Targets (issue 7)\n\n| target | measured | met | stolen by the host |\n|---|---|---|--:|\n",
        );
        for check in self.checks() {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                check.target,
                check.measured,
                if check.met { "yes" } else { "**no**" },
                check.host.stolen_text(),
            );
        }
        md
    }

    pub fn json(&self) -> Value {
        let p = &self.params;
        let ceiling = self.ceiling_rate();
        json!({
            "started_at": utc(self.started_at, UtcStyle::Iso),
            "smoke": p.smoke,
            "parameters": {
                "users": p.users,
                "seconds_per_scenario": p.duration.as_secs_f64(),
                "connections": p.connections,
                "storage": self.backend,
            },
            "machine": self.machine.json(),
            "build_s": self.build.as_secs_f64(),
            "total_s": self.total.as_secs_f64(),
            "load": self.load.json(self.ratio_of(&self.load)),
            "ceiling": self.ceiling.json(1.0),
            "ceiling_per_s": ceiling,
            "rounds": self.rounds.json(),
            "scenarios": self.rows.iter().map(|row| row.json(self.ratio_of(row))).collect::<Vec<_>>(),
            "webhooks": self.webhooks.iter().map(|row| row.json(ceiling)).collect::<Vec<_>>(),
            "server": {
                "rss_hwm_mb": mb(self.server_hwm_kib),
                "sqlite_log_peak_mb": self.sqlite_log_peak_bytes.map(|bytes| mb(bytes / 1024)),
                "log_warnings": self.server_warnings,
                "log_errors": self.server_errors,
            },
            "targets": self.checks().iter().map(|check| json!({
                "target": check.target,
                "measured": check.measured,
                "met": check.met,
                "host_stolen_share": check.host.stolen_share(),
            })).collect::<Vec<_>>(),
        })
    }

    /// Writes `<stamp>.json`, `<stamp>.md` and `latest.md` into `dir`; a
    /// smoke run writes `<stamp>-smoke.json` and `.md` and leaves
    /// `latest.md` to the last real run.
    pub fn write(&self, dir: &Path, markdown: &str) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir)?;
        let mut stamp = utc(self.started_at, UtcStyle::File);
        if self.params.smoke {
            stamp.push_str("-smoke");
        }
        if self.params.partial() {
            stamp.push_str("-partial");
        }
        let json_path = dir.join(format!("{stamp}.json"));
        let md_path = dir.join(format!("{stamp}.md"));
        let svg_path = dir.join(format!("{stamp}.svg"));
        let svg = crate::chart::svg(self);
        std::fs::write(&svg_path, &svg)?;
        std::fs::write(
            &json_path,
            serde_json::to_string_pretty(&self.json())? + "\n",
        )?;
        std::fs::write(&md_path, markdown)?;
        let mut written = vec![json_path, md_path, svg_path];
        if !self.params.smoke && !self.params.partial() {
            let latest = dir.join("latest.md");
            std::fs::write(&latest, markdown)?;
            written.push(latest);
            let latest = dir.join("latest.svg");
            std::fs::write(&latest, &svg)?;
            written.push(latest);
        }
        Ok(written)
    }
}

fn latency_json(histogram: &crate::load::Histogram) -> Value {
    json!({
        "samples": histogram.len(),
        "p50": histogram.quantile_ms(0.5),
        "p99": histogram.quantile_ms(0.99),
        "p99_9": histogram.quantile_ms(0.999),
        "max": histogram.max_ms(),
    })
}

fn errors_text(outcome: &Outcome) -> String {
    let total = outcome.errors();
    if total == 0 {
        return "0".to_owned();
    }
    let mut parts: Vec<String> = outcome
        .statuses
        .iter()
        .map(|(status, n)| format!("{status}×{n}"))
        .collect();
    if outcome.transport_errors > 0 {
        parts.push(format!("transport×{}", outcome.transport_errors));
    }
    format!("{total} ({})", parts.join(", "))
}

/// `value` over `of`, or 0 when there is nothing to divide by.
pub fn ratio(value: f64, of: f64) -> f64 {
    if of > 0.0 { value / of } else { 0.0 }
}

fn mb(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

enum UtcStyle {
    /// `2026-05-14 10:15:30 UTC`
    Human,
    /// `2026-05-14T10:15:30Z`
    Iso,
    /// `2026-05-14T101530Z`
    File,
}

fn utc(at: SystemTime, style: UtcStyle) -> String {
    let secs = at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let of_day = secs % 86_400;
    let (h, m, s) = (of_day / 3600, of_day / 60 % 60, of_day % 60);
    match style {
        UtcStyle::Human => format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02} UTC"),
        UtcStyle::Iso => format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z"),
        UtcStyle::File => format!("{year:04}-{month:02}-{day:02}T{h:02}{m:02}{s:02}Z"),
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::{UtcStyle, civil_from_days, utc};

    #[test]
    fn dates_are_gregorian() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_587), (2026, 5, 14));
        let at = UNIX_EPOCH + Duration::from_secs(1_778_753_730);
        assert_eq!(utc(at, UtcStyle::File), "2026-05-14T101530Z");
        assert_eq!(utc(at, UtcStyle::Iso), "2026-05-14T10:15:30Z");
    }
}
