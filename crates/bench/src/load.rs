//! The load generator: `C` workers, each on its own HTTP/1.1 connection,
//! in a closed loop (a worker sends its next request when the previous
//! answer has been read in full), every latency kept in microseconds.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::net::TcpStream;

use crate::Result;

/// A request that takes longer than this counts as a transport error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// One request of a workload. `tag` comes back in [`Workload::done`].
pub struct Call {
    pub method: Method,
    pub path: String,
    pub body: Option<Bytes>,
    pub tag: u64,
}

impl Call {
    pub fn get(path: String) -> Self {
        Self {
            method: Method::GET,
            path,
            body: None,
            tag: 0,
        }
    }
}

/// What a scenario sends, and what it does with the answers.
pub trait Workload: Send + Sync + 'static {
    /// The request number `seq` (0, 1, 2… across all workers).
    fn call(&self, seq: u64, rng: &mut StdRng) -> Call;
    /// The answer to a call, read in full at `at`.
    fn done(&self, _tag: u64, _status: StatusCode, _body: &Bytes, _at: Instant) {}
}

/// Where requests go, and as whom.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    host: HeaderValue,
    auth: Option<HeaderValue>,
}

impl Target {
    pub fn new(addr: SocketAddr, key: Option<&str>) -> Result<Self> {
        Ok(Self {
            addr,
            host: HeaderValue::from_str(&addr.to_string())?,
            auth: key
                .map(|key| HeaderValue::from_str(&format!("Bearer {key}")))
                .transpose()?,
        })
    }

    fn request(&self, call: Call) -> Result<Request<Full<Bytes>>> {
        let mut builder = Request::builder()
            .method(call.method)
            .uri(call.path)
            .header(HOST, self.host.clone());
        if let Some(auth) = &self.auth {
            builder = builder.header(AUTHORIZATION, auth.clone());
        }
        let body = match call.body {
            Some(body) => {
                builder =
                    builder.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                body
            }
            None => Bytes::new(),
        };
        Ok(builder.body(Full::new(body))?)
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>> {
        let stream = TcpStream::connect(self.addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }

    /// One request on a connection of its own, for setup and probes.
    pub async fn fetch(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<(StatusCode, Bytes)> {
        self.fetch_call(Call {
            method,
            path: path.to_owned(),
            body: body.map(Bytes::from),
            tag: 0,
        })
        .await
    }

    /// [`Target::fetch`] for a workload's call.
    pub async fn fetch_call(&self, call: Call) -> Result<(StatusCode, Bytes)> {
        let what = format!("{} {}", call.method, call.path);
        let mut sender = self.connect().await?;
        let request = self.request(call)?;
        let sent = async {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body))
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, sent).await {
            Ok(answer) => Ok(answer.map_err(|e| format!("{what}: {e}"))?),
            Err(_) => Err(format!("{what}: no answer within {REQUEST_TIMEOUT:?}").into()),
        }
    }
}

/// When a run stops.
#[derive(Debug, Clone, Copy)]
pub enum Until {
    /// Workers send no new request after this long.
    Elapsed(Duration),
    /// Exactly this many requests are sent in all.
    Count(u64),
}

/// Latencies in microseconds, sorted.
#[derive(Debug, Default, Clone)]
pub struct Histogram(Vec<u32>);

impl Histogram {
    pub fn from_micros(mut micros: Vec<u32>) -> Self {
        micros.sort_unstable();
        Self(micros)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The `q` quantile (0..=1) in milliseconds; 0 when empty.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        let rank = (q * self.0.len() as f64).ceil() as usize;
        let index = rank.clamp(1, self.0.len()) - 1;
        self.0.get(index).map_or(0.0, |&us| f64::from(us) / 1000.0)
    }

    pub fn max_ms(&self) -> f64 {
        self.0.last().map_or(0.0, |&us| f64::from(us) / 1000.0)
    }
}

/// What a run measured.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// From the first request sent to the last answer read.
    pub elapsed: Duration,
    /// 2xx answers.
    pub ok: u64,
    /// Non-2xx answers, by status.
    pub statuses: BTreeMap<u16, u64>,
    /// Connection failures and timeouts.
    pub transport_errors: u64,
    /// Latencies of the 2xx answers.
    pub latencies: Histogram,
}

impl Outcome {
    /// Adds another run's figures to these, as if one run had done both.
    pub fn merge(&mut self, other: Outcome) {
        self.elapsed += other.elapsed;
        self.ok += other.ok;
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        self.transport_errors += other.transport_errors;
        let mut micros = std::mem::take(&mut self.latencies.0);
        micros.extend(other.latencies.0);
        self.latencies = Histogram::from_micros(micros);
    }

    pub fn errors(&self) -> u64 {
        self.statuses.values().sum::<u64>() + self.transport_errors
    }

    pub fn per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ok as f64 / secs
        } else {
            0.0
        }
    }
}

#[derive(Default)]
struct WorkerTally {
    ok: u64,
    statuses: BTreeMap<u16, u64>,
    transport_errors: u64,
    micros: Vec<u32>,
}

/// Runs `workload` on `connections` connections until `until`.
pub async fn run<W: Workload>(
    target: &Target,
    connections: usize,
    until: Until,
    workload: Arc<W>,
) -> Result<Outcome> {
    run_paced(target, connections, until, None, workload).await
}

/// [`run`], with request number `n` sent no earlier than `n / rate`
/// seconds after the start when `rate` (requests per second) is given: an
/// offered load instead of as fast as answers come back. A worker that
/// falls behind sends at once, so the rate is kept while the server can.
pub async fn run_paced<W: Workload>(
    target: &Target,
    connections: usize,
    until: Until,
    rate: Option<f64>,
    workload: Arc<W>,
) -> Result<Outcome> {
    // Every connection is open before the clock starts.
    let mut connecting = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let target = target.clone();
        connecting.spawn(async move { target.connect().await });
    }
    let mut senders = Vec::with_capacity(connections);
    while let Some(joined) = connecting.join_next().await {
        senders.push(joined??);
    }

    let seq = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let (deadline, limit) = match until {
        Until::Elapsed(duration) => (Some(started + duration), None),
        Until::Count(count) => (None, Some(count)),
    };
    let mut workers = tokio::task::JoinSet::new();
    for (index, sender) in senders.into_iter().enumerate() {
        let target = target.clone();
        let workload = Arc::clone(&workload);
        let seq = Arc::clone(&seq);
        let seed = 0x5eed_0000 + index as u64;
        let pace = rate.map(|rate| Pace { started, rate });
        workers.spawn(async move {
            worker(target, sender, workload, seq, deadline, limit, pace, seed).await
        });
    }
    let mut outcome = Outcome::default();
    let mut micros = Vec::new();
    while let Some(joined) = workers.join_next().await {
        let tally = joined?;
        outcome.ok += tally.ok;
        outcome.transport_errors += tally.transport_errors;
        for (status, n) in tally.statuses {
            *outcome.statuses.entry(status).or_default() += n;
        }
        micros.extend(tally.micros);
    }
    outcome.elapsed = started.elapsed();
    outcome.latencies = Histogram::from_micros(micros);
    Ok(outcome)
}

/// When paced requests are due.
#[derive(Debug, Clone, Copy)]
struct Pace {
    started: Instant,
    rate: f64,
}

impl Pace {
    /// `None` past any representable time (never, in practice).
    fn due(&self, n: u64) -> Option<Instant> {
        let after = Duration::try_from_secs_f64(n as f64 / self.rate).ok()?;
        self.started.checked_add(after)
    }
}

#[allow(clippy::too_many_arguments)]
async fn worker<W: Workload>(
    target: Target,
    sender: SendRequest<Full<Bytes>>,
    workload: Arc<W>,
    seq: Arc<AtomicU64>,
    deadline: Option<Instant>,
    limit: Option<u64>,
    pace: Option<Pace>,
    seed: u64,
) -> WorkerTally {
    let mut rng = StdRng::seed_from_u64(seed);
    // Room for a long run's latencies up front: growing the vector mid-run
    // would copy megabytes while requests are being timed.
    let mut tally = WorkerTally {
        micros: Vec::with_capacity(1 << 16),
        ..WorkerTally::default()
    };
    let mut sender = Some(sender);
    loop {
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            break;
        }
        let n = seq.fetch_add(1, Ordering::Relaxed);
        if limit.is_some_and(|limit| n >= limit) {
            break;
        }
        if let Some(pace) = pace {
            let Some(due) = pace.due(n) else {
                break;
            };
            if deadline.is_some_and(|deadline| due >= deadline) {
                break;
            }
            tokio::time::sleep_until(due.into()).await;
        }
        let call = workload.call(n, &mut rng);
        let tag = call.tag;
        let Ok(request) = target.request(call) else {
            tally.transport_errors += 1;
            continue;
        };
        let mut connection = match sender.take() {
            Some(connection) if !connection.is_closed() => connection,
            _ => match target.connect().await {
                Ok(connection) => connection,
                Err(_) => {
                    tally.transport_errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let sent_at = Instant::now();
        let exchange = async {
            connection.ready().await?;
            let response = connection.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body))
        };
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, exchange).await;
        let at = Instant::now();
        match answer {
            Ok(Ok((status, body))) => {
                if status.is_success() {
                    tally.ok += 1;
                    let micros = at.duration_since(sent_at).as_micros();
                    tally.micros.push(u32::try_from(micros).unwrap_or(u32::MAX));
                } else {
                    *tally.statuses.entry(status.as_u16()).or_default() += 1;
                }
                workload.done(tag, status, &body, at);
                sender = Some(connection);
            }
            Ok(Err(_)) | Err(_) => tally.transport_errors += 1,
        }
    }
    tally
}

#[cfg(test)]
mod tests {
    use super::Histogram;

    #[test]
    fn quantiles_are_nearest_rank() {
        let histogram = Histogram::from_micros((1..=1000).rev().collect());
        assert!((histogram.quantile_ms(0.5) - 0.5).abs() < 1e-9);
        assert!((histogram.quantile_ms(0.99) - 0.99).abs() < 1e-9);
        assert!((histogram.quantile_ms(0.999) - 0.999).abs() < 1e-9);
        assert!((histogram.max_ms() - 1.0).abs() < 1e-9);
        assert!(Histogram::default().quantile_ms(0.5).abs() < 1e-9);
    }
}
