//! Webhook delivery: a local receiver that answers 204 at once and notes
//! when each delivery arrived, and the measurement of the deliveries that
//! a burst of PATCHes causes, from the PATCH's 200 to the receipt.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::Result;
use crate::load::{self, Histogram, Outcome, Until};
use crate::scenarios::{Bench, PatchMetadata};

/// One delivery as it reached the receiver.
struct Arrival {
    endpoint: u16,
    webhook_id: String,
    /// A copy: the body as received is a slice of the connection's read
    /// buffer, and keeping it would keep that whole buffer alive, so the
    /// connection would allocate a fresh one for every request (gigabytes
    /// of fresh pages over a run, CPU taken from the server under test).
    body: Box<[u8]>,
    at: Instant,
}

/// The receiver's record of arrivals.
#[derive(Default)]
pub struct Receiver {
    arrivals: Mutex<Vec<Arrival>>,
}

impl Receiver {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arrival>> {
        self.arrivals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn count(&self) -> usize {
        self.lock().len()
    }

    fn take(&self) -> Vec<Arrival> {
        std::mem::take(&mut *self.lock())
    }
}

impl Receiver {
    /// `POST /hook/{endpoint}`: notes the arrival and answers 204.
    async fn hook(&self, request: Request<Incoming>) -> Response<Empty<Bytes>> {
        let endpoint = request
            .uri()
            .path()
            .strip_prefix("/hook/")
            .and_then(|n| n.parse::<u16>().ok());
        let (Some(endpoint), &Method::POST) = (endpoint, request.method()) else {
            return answer(StatusCode::NOT_FOUND);
        };
        let webhook_id = request
            .headers()
            .get("webhook-id")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let Ok(body) = request.into_body().collect().await else {
            return answer(StatusCode::BAD_REQUEST);
        };
        let at = Instant::now();
        self.lock().push(Arrival {
            endpoint,
            webhook_id,
            body: body.to_bytes().as_ref().into(),
            at,
        });
        answer(StatusCode::NO_CONTENT)
    }
}

fn answer(status: StatusCode) -> Response<Empty<Bytes>> {
    let mut response = Response::new(Empty::new());
    *response.status_mut() = status;
    response
}

/// Starts the receiver on 127.0.0.1:0: `POST /hook/{endpoint}` answers 204.
///
/// Plain hyper, without a router: the receiver shares the cores with the
/// server under test, so it does as little as a receiver can (no routing
/// table, no copy of the headers), and all it takes from them is left to
/// the server.
pub async fn start_receiver() -> Result<(SocketAddr, Arc<Receiver>)> {
    let receiver = Arc::new(Receiver::default());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let accepting = Arc::clone(&receiver);
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(err) => {
                    // Out of file descriptors, say: wait rather than spin.
                    eprintln!("bench: the webhook receiver cannot accept: {err}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let receiver = Arc::clone(&accepting);
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let receiver = Arc::clone(&receiver);
                    async move { Ok::<_, Infallible>(receiver.hook(request).await) }
                });
                // A connection the server closes ends here; nothing to report.
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((addr, receiver))
}

/// What one webhook phase measured.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub endpoints: usize,
    /// Deliveries/s the PATCH pace offered; `None`: PATCHes as fast as
    /// they were answered.
    pub offered: Option<f64>,
    /// The PATCHes that caused the events.
    pub patches: Outcome,
    /// Acknowledged PATCHes times endpoints.
    pub expected: u64,
    /// Distinct (endpoint, webhook-id) deliveries that arrived.
    pub delivered: u64,
    /// Arrivals of a (endpoint, webhook-id) already seen.
    pub duplicates: u64,
    /// Deliveries whose `data.profile.metadata.n` no acknowledged PATCH sent.
    pub unmatched: u64,
    /// From the first PATCH to the last arrival.
    pub span: Duration,
    /// From the end of the PATCHes to the last arrival.
    pub drain: Duration,
    /// Distinct deliveries that arrived after the last PATCH was answered.
    pub drained: u64,
    /// From a PATCH's 200 to each arrival it caused.
    pub latencies: Histogram,
    /// Deliveries that arrived before their PATCH's answer was read.
    pub early: u64,
}

impl Delivery {
    pub fn per_second(&self) -> f64 {
        let secs = self.span.as_secs_f64();
        if secs > 0.0 {
            self.delivered as f64 / secs
        } else {
            0.0
        }
    }

    /// Deliveries the acknowledged PATCHes called for, per second of the
    /// PATCH phase: the load actually offered.
    pub fn sent_per_second(&self) -> f64 {
        let secs = self.patches.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.expected as f64 / secs
        } else {
            0.0
        }
    }

    pub fn missing(&self) -> u64 {
        self.expected.saturating_sub(self.delivered)
    }
}

/// Subscribes `endpoints` endpoints, PATCHes for the scenario's duration,
/// waits for the deliveries, then unsubscribes.
pub async fn measure(
    bench: &Bench,
    receiver_addr: SocketAddr,
    receiver: &Receiver,
    endpoints: usize,
    offered: Option<f64>,
) -> Result<Delivery> {
    let target = &bench.target;
    let mut ids = Vec::with_capacity(endpoints);
    for endpoint in 0..endpoints {
        let body = serde_json::json!({
            "url": format!("http://{receiver_addr}/hook/{endpoint}"),
            "description": format!("bench endpoint {endpoint}"),
            "event_filters": ["v1.end_user.updated"],
        });
        let (status, answer) = target
            .fetch(Method::POST, "/api/v2/webhooks/", Some(body.to_string()))
            .await?;
        if status != StatusCode::CREATED {
            return Err(format!(
                "POST /api/v2/webhooks/ answered {status}: {}",
                String::from_utf8_lossy(&answer)
            )
            .into());
        }
        let created: serde_json::Value = serde_json::from_slice(&answer)?;
        let id = created
            .get("id")
            .and_then(serde_json::Value::as_str)
            .ok_or("POST /api/v2/webhooks/ answered no id")?;
        ids.push(id.to_owned());
    }
    receiver.take();

    let workload = Arc::new(PatchMetadata::new(bench, true));
    let started = Instant::now();
    let patches = load::run_paced(
        target,
        bench.params.connections,
        Until::Elapsed(bench.params.duration),
        offered.map(|rate| rate / endpoints as f64),
        Arc::clone(&workload),
    )
    .await?;
    let patched = Instant::now();
    let acks = workload.take_acks();
    let expected = acks.len() as u64 * endpoints as u64;

    // Wait for the deliveries: all expected, or no progress for 10 s.
    let mut seen = receiver.count();
    let mut progress = Instant::now();
    let give_up = patched + Duration::from_secs(300);
    while (seen as u64) < expected && progress.elapsed() < Duration::from_secs(10) {
        if Instant::now() > give_up {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = receiver.count();
        if now != seen {
            seen = now;
            progress = Instant::now();
        }
    }
    let arrivals = receiver.take();

    for id in &ids {
        let (status, answer) = target
            .fetch(Method::DELETE, &format!("/api/v2/webhooks/{id}"), None)
            .await?;
        if !status.is_success() {
            eprintln!(
                "bench: DELETE /api/v2/webhooks/{id} answered {status}: {}",
                String::from_utf8_lossy(&answer)
            );
        }
    }

    let acked: HashMap<u64, Instant> = acks.into_iter().collect();
    let mut distinct = HashSet::new();
    let mut duplicates = 0;
    let mut unmatched = 0;
    let mut early = 0;
    let mut drained = 0;
    let mut micros = Vec::with_capacity(arrivals.len());
    let mut last = None::<Instant>;
    for arrival in &arrivals {
        if !distinct.insert((arrival.endpoint, arrival.webhook_id.as_str())) {
            duplicates += 1;
            continue;
        }
        last = Some(last.map_or(arrival.at, |last: Instant| last.max(arrival.at)));
        if arrival.at > patched {
            drained += 1;
        }
        let n = serde_json::from_slice::<serde_json::Value>(&arrival.body)
            .ok()
            .and_then(|event| event.pointer("/data/profile/metadata/n")?.as_u64());
        match n.and_then(|n| acked.get(&n)) {
            Some(&acked_at) => {
                let latency = match arrival.at.checked_duration_since(acked_at) {
                    Some(latency) => latency,
                    None => {
                        early += 1;
                        Duration::ZERO
                    }
                };
                micros.push(u32::try_from(latency.as_micros()).unwrap_or(u32::MAX));
            }
            None => unmatched += 1,
        }
    }
    let last = last.unwrap_or(patched);
    Ok(Delivery {
        endpoints,
        offered,
        patches,
        expected,
        delivered: distinct.len() as u64,
        duplicates,
        unmatched,
        span: last.saturating_duration_since(started),
        drain: last.saturating_duration_since(patched),
        drained,
        latencies: Histogram::from_micros(micros),
        early,
    })
}
