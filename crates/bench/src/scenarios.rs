//! The run: the ceiling, then the server on a fresh database loaded with
//! end users, each scenario in turn, webhooks last.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::{Method, StatusCode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::calibrate;
use crate::load::{self, Call, Target, Until, Workload};
use crate::report::{self, Row, Run, WebhookRow};
use crate::rounds::Rounds;
use crate::server::{self, FileSizePeak, Process, UsageSampler};
use crate::writer::WriterMeter;
use crate::{Params, Result, Scenario, webhooks};

/// What every scenario against the server shares.
pub struct Bench {
    pub params: Params,
    pub target: Target,
    /// The loaded users' ids, in list (= creation) order.
    pub ids: Arc<Vec<String>>,
    /// Makes every metadata value written unique, so every PATCH is a change.
    pub counter: Arc<AtomicU64>,
}

/// `GET /api/v2/end-users/{random id}`.
pub struct GetById {
    ids: Arc<Vec<String>>,
}

impl Workload for GetById {
    fn call(&self, _seq: u64, rng: &mut StdRng) -> Call {
        let id = pick(&self.ids, rng);
        Call::get(format!("/api/v2/end-users/{id}"))
    }
}

/// The same GET, always one page of the listing.
pub struct ListPage {
    path: String,
}

impl Workload for ListPage {
    fn call(&self, _seq: u64, _rng: &mut StdRng) -> Call {
        Call::get(self.path.clone())
    }
}

/// `PATCH {"profile":{"metadata":{"n": unique}}}` on random users; with
/// acks, notes when each value was acknowledged.
pub struct PatchMetadata {
    ids: Arc<Vec<String>>,
    counter: Arc<AtomicU64>,
    acks: Option<Mutex<Vec<(u64, Instant)>>>,
}

impl PatchMetadata {
    pub fn new(bench: &Bench, acks: bool) -> Self {
        Self {
            ids: Arc::clone(&bench.ids),
            counter: Arc::clone(&bench.counter),
            acks: acks.then(|| Mutex::new(Vec::new())),
        }
    }

    /// The acknowledged values and when their 200 was read.
    pub fn take_acks(&self) -> Vec<(u64, Instant)> {
        match &self.acks {
            Some(acks) => std::mem::take(
                &mut *acks
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            ),
            None => Vec::new(),
        }
    }
}

impl Workload for PatchMetadata {
    fn call(&self, _seq: u64, rng: &mut StdRng) -> Call {
        let id = pick(&self.ids, rng);
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        Call {
            method: Method::PATCH,
            path: format!("/api/v2/end-users/{id}"),
            body: Some(Bytes::from(format!(
                r#"{{"profile":{{"metadata":{{"n":{n}}}}}}}"#
            ))),
            tag: n,
        }
    }

    fn done(&self, tag: u64, status: StatusCode, _body: &Bytes, at: Instant) {
        if let Some(acks) = &self.acks
            && status.is_success()
        {
            acks.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push((tag, at));
        }
    }
}

/// `POST /api/v2/end-users/`; with `keep`, collects the new users' ids.
pub struct Create {
    counter: Arc<AtomicU64>,
    created: Option<Mutex<Vec<String>>>,
}

impl Workload for Create {
    fn call(&self, _seq: u64, _rng: &mut StdRng) -> Call {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        Call {
            method: Method::POST,
            path: "/api/v2/end-users/".to_owned(),
            body: Some(Bytes::from(format!(
                r#"{{"profile":{{"first_name":"User {n}","metadata":{{"plan":"pro","seats":{n}}}}}}}"#
            ))),
            tag: n,
        }
    }

    fn done(&self, _tag: u64, status: StatusCode, body: &Bytes, _at: Instant) {
        let Some(created) = &self.created else {
            return;
        };
        if !status.is_success() {
            return;
        }
        let id = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|user| Some(user.get("end_user_id")?.as_str()?.to_owned()));
        if let Some(id) = id {
            created
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(id);
        }
    }
}

fn pick<'a>(ids: &'a [String], rng: &mut StdRng) -> &'a str {
    if ids.is_empty() {
        return "";
    }
    ids.get(rng.random_range(0..ids.len()))
        .map_or("", String::as_str)
}

/// Probes the workload once (its answer must be 2xx), then runs it for
/// the scenario's duration.
async fn scenario<W: Workload>(
    target: &Target,
    params: &Params,
    sampler: &UsageSampler,
    meter: Option<&WriterMeter>,
    key: &'static str,
    name: &str,
    workload: Arc<W>,
) -> Result<Row> {
    eprintln!(
        "bench: {name}: {:.1} s at {} connections",
        params.duration.as_secs_f64(),
        params.connections
    );
    let mut rng = StdRng::seed_from_u64(7);
    let call = workload.call(0, &mut rng);
    let what = format!("{} {}", call.method, call.path);
    let (status, body) = target.fetch_call(call).await?;
    if !status.is_success() {
        return Err(format!(
            "{name}: {what} answered {status}: {}",
            String::from_utf8_lossy(&body)
        )
        .into());
    }
    sampler.take();
    if let Some(meter) = meter {
        meter.take().await;
    }
    let outcome = load::run(
        target,
        params.connections,
        Until::Elapsed(params.duration),
        workload,
    )
    .await?;
    let usage = sampler.take();
    let writer = match meter {
        Some(meter) => meter.take().await,
        None => None,
    };
    let row = Row {
        key,
        name: name.to_owned(),
        outcome,
        usage,
        response_bytes: body.len(),
        writer,
    };
    eprintln!("bench:   {}", row.summary());
    Ok(row)
}

/// The ceiling and GET by id alternate this many times, as do the first
/// and the deep list page, each round a quarter of the scenario's
/// duration: the machine's speed drifts (a shared virtual machine), and a
/// ratio of figures taken minutes apart would measure the drift. GET's
/// ratio is taken round by round (see [`Rounds`]).
const ROUNDS: u32 = 4;

fn merge_into(total: &mut Option<Row>, round: Row) {
    match total {
        Some(total) => total.merge(round),
        None => *total = Some(round),
    }
}

/// `all`: everything, then the table and the result files.
pub async fn run_all(params: Params) -> Result<()> {
    let started = Instant::now();
    let started_at = std::time::SystemTime::now();
    let load_average = report::Machine::load_average();
    let root = server::workspace_root();
    let binary = match &params.server {
        // Absolute: the server runs in the run's temporary directory.
        Some(path) => path
            .canonicalize()
            .ok()
            .filter(|path| path.is_file())
            .ok_or_else(|| format!("--server: {} is not a file", path.display()))?,
        None => server::build_server(&root)?,
    };
    let build = started.elapsed();
    // Measured while nothing else of the bench runs.
    let calibration = calibrate::measure();
    eprintln!(
        "bench: this machine: SHA-256 {:.0} MB/s on one thread, {:.0} ns per random load in 64 MiB",
        calibration.sha256_mb_per_s, calibration.memory_latency_ns
    );
    let dir = tempfile::Builder::new()
        .prefix("endusers-bench-")
        .tempdir()?;

    // The ceiling: measured later, in rounds alternating with GET by id,
    // so that both see the machine in the same state.
    let exe = std::env::current_exe()?;
    let ceiling_process = Process::start(
        "the ceiling server",
        &exe,
        &["ceiling-serve", "--listen", "127.0.0.1:0"],
        &[],
        dir.path(),
    )?;
    let ceiling_target = Target::new(ceiling_process.addr, None)?;
    let ceiling_sampler = UsageSampler::start(ceiling_process.pid());
    let ceiling_workload = Arc::new(GetById {
        ids: Arc::new(
            (0..10_000u64)
                .map(|i| {
                    format!(
                        "{:024x}",
                        0x019a_0000_0000_0000_0000_0000_u128 + u128::from(i)
                    )
                })
                .collect(),
        ),
    });

    // The server, on a fresh database.
    let (database_url, backend) = match &params.database_url {
        Some(url) => (
            url.clone(),
            url.split("://").next().unwrap_or("custom").to_owned(),
        ),
        None => (
            format!("sqlite://{}", dir.path().join("bench.db").display()),
            "sqlite (fresh file)".to_owned(),
        ),
    };
    let key = server::create_key(&binary, dir.path(), &database_url)?;
    let endusers = Process::start(
        "endusers serve",
        &binary,
        &[
            "--database-url",
            &database_url,
            "serve",
            "--listen",
            "127.0.0.1:0",
        ],
        &[
            ("ENDUSERS_RATE_LIMIT_END_USER", "off"),
            ("ENDUSERS_RATE_LIMIT_GLOBAL", "off"),
            ("ENDUSERS_RATE_LIMIT_FAILED_AUTH", "off"),
            ("ENDUSERS_WEBHOOKS_ALLOW_INSECURE", "true"),
            // Warnings, and the one line that gives the address.
            ("ENDUSERS_LOG", "warn,endusers::commands::serve=info"),
        ],
        dir.path(),
    )?;
    let target = Target::new(endusers.addr, Some(&key))?;
    let sampler = UsageSampler::start(endusers.pid());
    let meter = WriterMeter::new(target.clone());
    // The log beside the database, read the way the server reads the URL;
    // a relative path is the server's, which runs in `dir`.
    let sqlite_log = crate::sqlite::log_file(&database_url, dir.path()).map(FileSizePeak::start);

    eprintln!(
        "bench: loading {} end users at {} connections",
        params.users, params.connections
    );
    let counter = Arc::new(AtomicU64::new(0));
    let loader = Arc::new(Create {
        counter: Arc::clone(&counter),
        created: Some(Mutex::new(Vec::new())),
    });
    sampler.take();
    meter.take().await;
    let loaded = load::run(
        &target,
        params.connections,
        Until::Count(params.users),
        Arc::clone(&loader),
    )
    .await?;
    let mut ids = match &loader.created {
        Some(created) => std::mem::take(
            &mut *created
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        ),
        None => Vec::new(),
    };
    ids.sort_unstable();
    let load_row = Row {
        key: "load",
        name: format!("load {} users (POST)", params.users),
        outcome: loaded,
        usage: sampler.take(),
        response_bytes: 0,
        writer: meter.take().await,
    };
    eprintln!("bench:   {}", load_row.summary());
    if (ids.len() as u64) < params.users {
        return Err(format!(
            "only {} of {} users were created; see the errors above",
            ids.len(),
            params.users
        )
        .into());
    }
    let deep_cursor = ids
        .get(ids.len() * 9 / 10)
        .cloned()
        .ok_or("no users to list")?;
    let bench = Bench {
        params: params.clone(),
        target,
        ids: Arc::new(ids),
        counter,
    };

    let mut rows = Vec::new();
    let get_workload = Arc::new(GetById {
        ids: Arc::clone(&bench.ids),
    });
    let rounds = if params.runs(Scenario::Get) {
        ROUNDS
    } else {
        1
    };
    let round = Params {
        duration: params.duration / rounds,
        ..params.clone()
    };
    let mut ceiling = None::<Row>;
    let mut get = None::<Row>;
    let mut rates = Rounds::default();
    for _ in 0..rounds {
        let row = scenario(
            &ceiling_target,
            &round,
            &ceiling_sampler,
            None,
            "ceiling",
            "ceiling: fixed bytes, same GET",
            Arc::clone(&ceiling_workload),
        )
        .await?;
        rates.ceiling.push(row.outcome.per_second());
        merge_into(&mut ceiling, row);
        if params.runs(Scenario::Get) {
            let row = scenario(
                &bench.target,
                &round,
                &sampler,
                Some(&meter),
                "get",
                "GET by id",
                Arc::clone(&get_workload),
            )
            .await?;
            rates.get.push(row.outcome.per_second());
            merge_into(&mut get, row);
        }
    }
    drop(ceiling_sampler);
    ceiling_process.stop(Duration::from_secs(5))?;
    let ceiling = ceiling.ok_or("the ceiling ran no round")?;
    rows.extend(get);
    // Lists before POST create, so the deep page stays past 90 % of all users.
    // The two pages alternate in rounds too: their latencies are compared.
    if params.runs(Scenario::List) {
        let pages = [
            (
                "list_first",
                "list, first page (limit 100)",
                "/api/v2/end-users/?limit=100".to_owned(),
            ),
            (
                "list_deep",
                "list, cursor past 90 % (limit 100)",
                format!("/api/v2/end-users/?limit=100&cursor={deep_cursor}"),
            ),
        ];
        let list_round = Params {
            duration: params.duration / ROUNDS,
            ..params.clone()
        };
        let mut totals = [None::<Row>, None::<Row>];
        for _ in 0..ROUNDS {
            for ((key, name, path), total) in pages.iter().zip(&mut totals) {
                let row = scenario(
                    &bench.target,
                    &list_round,
                    &sampler,
                    Some(&meter),
                    key,
                    name,
                    Arc::new(ListPage { path: path.clone() }),
                )
                .await?;
                merge_into(total, row);
            }
        }
        rows.extend(totals.into_iter().flatten());
    }
    if params.runs(Scenario::Patch) {
        rows.push(
            scenario(
                &bench.target,
                &params,
                &sampler,
                Some(&meter),
                "patch",
                "PATCH one metadata key",
                Arc::new(PatchMetadata::new(&bench, false)),
            )
            .await?,
        );
    }
    if params.runs(Scenario::Post) {
        rows.push(
            scenario(
                &bench.target,
                &params,
                &sampler,
                Some(&meter),
                "post",
                "POST create",
                Arc::new(Create {
                    counter: Arc::clone(&bench.counter),
                    created: None,
                }),
            )
            .await?,
        );
    }

    let mut deliveries = Vec::new();
    if params.runs(Scenario::Webhooks) {
        let (receiver_addr, receiver) = webhooks::start_receiver().await?;
        for (endpoints, offered) in [1, 10].into_iter().zip(params.webhook_rates) {
            eprintln!(
                "bench: webhooks to {endpoints} endpoint(s): PATCH for {:.1} s at {} connections, {}",
                params.duration.as_secs_f64(),
                params.connections,
                offered.map_or("as fast as answered".to_owned(), |rate| format!(
                    "{rate:.0} deliveries/s offered"
                )),
            );
            sampler.take();
            meter.take().await;
            let delivery =
                webhooks::measure(&bench, receiver_addr, &receiver, endpoints, offered).await?;
            let row = WebhookRow {
                delivery,
                usage: sampler.take(),
                writer: meter.take().await,
            };
            eprintln!("bench:   {}", row.summary());
            deliveries.push(row);
        }
    }

    let hwm_kib = server::memory_kib(endusers.pid()).map_or(0, |(_, hwm)| hwm);
    let (warnings, errors, log_tail) = {
        let log = endusers
            .log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut tail: Vec<String> = log
            .tail
            .iter()
            .filter(|line| line.contains("WARN") || line.contains("ERROR"))
            .cloned()
            .collect();
        tail.drain(..tail.len().saturating_sub(10));
        (log.warnings, log.errors, tail)
    };
    drop(sampler);
    endusers.stop(Duration::from_secs(30))?;

    let run = Run {
        params,
        started_at,
        backend,
        machine: report::Machine::collect(&root, load_average, calibration),
        load: load_row,
        ceiling,
        rounds: rates,
        rows,
        webhooks: deliveries,
        build,
        total: started.elapsed(),
        server_hwm_kib: hwm_kib,
        sqlite_log_peak_bytes: sqlite_log.as_ref().and_then(FileSizePeak::bytes),
        server_warnings: warnings,
        server_errors: errors,
        server_log_tail: log_tail,
    };
    let markdown = run.markdown();
    println!("{markdown}");
    let written = run.write(&root.join("bench").join("results"), &markdown)?;
    for path in written {
        eprintln!("bench: wrote {}", path.display());
    }
    Ok(())
}
