//! A real webhook receiver: an axum server on 127.0.0.1 that records every
//! request it gets (headers, raw body, arrival instant) and answers as the
//! test programs it, per path.
//!
//! Without a program, a path answers by its first segment: `/ok…` 200,
//! `/fail…` 500, `/hang…` sleeps (past any webhook timeout) then 200,
//! `/gone…` 410, `/ratelimited…` 429 with `Retry-After: 1`,
//! `/unavailable…` 503 with `Retry-After: 1`; anything else 404.
//! Each request remembers the client's address, so a test can count the
//! connections deliveries came over. [`Receiver::set`] fixes a path's answer from then on and
//! [`Receiver::script`] queues answers that are used, in order, first.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use endusers_server::webhooks::signature::{self, EndpointSecret};
use http_body_util::channel::Channel;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How long a hanging path sleeps before answering: far past any webhook
/// timeout a test configures.
pub const HANG: Duration = Duration::from_secs(30);

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    /// The body exactly as sent (what the signature covers).
    pub body: Bytes,
    /// When the request (with its whole body) had arrived.
    pub at: Instant,
    /// The sender's end of the connection it came over.
    pub peer: SocketAddr,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `webhook-id` header (empty when missing).
    pub fn id(&self) -> &str {
        self.header("webhook-id").unwrap_or("")
    }

    /// The body as JSON (`Value::Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The event's `type`.
    pub fn event_type(&self) -> String {
        self.json()["type"].as_str().unwrap_or("").to_owned()
    }

    /// The end user the event is about (`data.end_user_id`).
    pub fn end_user_id(&self) -> String {
        self.json()["data"]["end_user_id"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// `(type, end_user_id, version)`: enough to tell events apart.
    pub fn summary(&self) -> (String, String, i64) {
        let json = self.json();
        (
            json["type"].as_str().unwrap_or("").to_owned(),
            json["data"]["end_user_id"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
            json["data"]["version"].as_i64().unwrap_or(-1),
        )
    }
}

/// What a path answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(u16),
    /// A status with a `Retry-After` header of this value.
    RetryAfter(u16, String),
    /// Sleeps this long, then 200.
    Hang(Duration),
    /// Sleeps this long, then answers this status.
    Slow(Duration, u16),
    /// A status with a body of this many bytes, as many receivers answer
    /// (`{"ok":true}`, a page of HTML).
    WithBody(u16, usize),
    /// A status with a `Location` header of this value.
    Redirect(u16, String),
    /// A status whose head goes out at once and whose body (chunked) only
    /// this long after, as from a receiver that streams its answer.
    LateBody(u16, Duration),
}

impl Reply {
    fn default_for(path: &str) -> Self {
        let first = path
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or_default();
        match first {
            "ok" => Self::Status(200),
            "fail" => Self::Status(500),
            "hang" => Self::Hang(HANG),
            "gone" => Self::Status(410),
            "ratelimited" => Self::RetryAfter(429, "1".to_owned()),
            "unavailable" => Self::RetryAfter(503, "1".to_owned()),
            _ => Self::Status(404),
        }
    }
}

#[derive(Default)]
struct Shared {
    log: Mutex<Vec<Received>>,
    fixed: Mutex<HashMap<String, Reply>>,
    scripts: Mutex<HashMap<String, VecDeque<Reply>>>,
}

impl Shared {
    fn reply_for(&self, path: &str) -> Reply {
        if let Some(next) = self
            .scripts
            .lock()
            .unwrap()
            .get_mut(path)
            .and_then(VecDeque::pop_front)
        {
            return next;
        }
        self.fixed
            .lock()
            .unwrap()
            .get(path)
            .cloned()
            .unwrap_or_else(|| Reply::default_for(path))
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let path = uri.path().to_owned();
    let reply = shared.reply_for(&path);
    shared.log.lock().unwrap().push(Received {
        path,
        headers,
        body,
        at,
        peer,
    });
    let status = |code: u16| StatusCode::from_u16(code).unwrap();
    match reply {
        Reply::Status(code) => status(code).into_response(),
        Reply::RetryAfter(code, after) => {
            with_header(status(code), axum::http::header::RETRY_AFTER, &after)
        }
        Reply::Hang(sleep) => {
            tokio::time::sleep(sleep).await;
            StatusCode::OK.into_response()
        }
        Reply::Slow(sleep, code) => {
            tokio::time::sleep(sleep).await;
            status(code).into_response()
        }
        Reply::WithBody(code, length) => (status(code), "x".repeat(length)).into_response(),
        Reply::Redirect(code, location) => {
            with_header(status(code), axum::http::header::LOCATION, &location)
        }
        Reply::LateBody(code, delay) => {
            let (mut sender, body) = Channel::<Bytes, Infallible>::new(1);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = sender.send_data(Bytes::from_static(b"{\"ok\":true}")).await;
            });
            (status(code), Body::new(body)).into_response()
        }
    }
}

/// An empty answer with this status and one header.
fn with_header(status: StatusCode, name: axum::http::HeaderName, value: &str) -> Response {
    let mut response = status.into_response();
    response
        .headers_mut()
        .insert(name, HeaderValue::from_str(value).unwrap());
    response
}

/// A running receiver; stops when dropped.
pub struct Receiver {
    pub base_url: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let router = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the receiver binds");
        let addr = listener.local_addr().expect("the receiver's address");
        let task = tokio::spawn(async move {
            let router = router.into_make_service_with_connect_info::<SocketAddr>();
            axum::serve(listener, router)
                .await
                .expect("the receiver runs");
        });
        Self {
            base_url: format!("http://{addr}"),
            shared,
            task,
        }
    }

    /// The absolute URL of `path` on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// `path` answers `reply` from now on (after any scripted answers).
    pub fn set(&self, path: &str, reply: Reply) {
        self.shared
            .fixed
            .lock()
            .unwrap()
            .insert(path.to_owned(), reply);
    }

    /// `path` answers these, one per request, before its usual answer.
    pub fn script(&self, path: &str, replies: impl IntoIterator<Item = Reply>) {
        self.shared
            .scripts
            .lock()
            .unwrap()
            .entry(path.to_owned())
            .or_default()
            .extend(replies);
    }

    /// Every request so far, in arrival order.
    pub fn all(&self) -> Vec<Received> {
        self.shared.log.lock().unwrap().clone()
    }

    /// The requests to `path` so far, in arrival order.
    pub fn received(&self, path: &str) -> Vec<Received> {
        self.shared
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Polls every 10 ms until `predicate` holds for every request so far
    /// (in arrival order); false when `timeout` passes first.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        predicate: impl Fn(&[Received]) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if predicate(&self.shared.log.lock().unwrap()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until `path` has had at least `n` requests and returns them;
    /// panics, showing what did arrive, when `timeout` passes first.
    #[track_caller]
    pub fn wait_count(
        &self,
        path: &str,
        n: usize,
        timeout: Duration,
    ) -> impl Future<Output = Vec<Received>> + '_ {
        let caller = std::panic::Location::caller();
        let path = path.to_owned();
        async move {
            let arrived = self
                .wait_for(timeout, |log| {
                    log.iter().filter(|r| r.path == path).count() >= n
                })
                .await;
            let got = self.received(&path);
            assert!(
                arrived,
                "{caller}: expected at least {n} requests to {path} within {timeout:?}, got {}: {:?}",
                got.len(),
                got.iter().map(Received::summary).collect::<Vec<_>>()
            );
            got
        }
    }
}

/// Checks a delivery's signature with the endpoint secret `whsec_…`: the
/// `webhook-*` headers must be there, the `svix-*` headers must carry the
/// same values, and one `v1,` signature must match
/// `{webhook-id}.{webhook-timestamp}.{body}`. Says what is wrong otherwise.
pub fn verify(secret_whsec: &str, received: &Received) -> Result<(), String> {
    let secret = EndpointSecret::parse(secret_whsec)
        .map_err(|e| format!("the secret {secret_whsec:?} does not parse: {e}"))?;
    let mut values = Vec::new();
    for name in ["id", "timestamp", "signature"] {
        let standard = received
            .header(&format!("webhook-{name}"))
            .ok_or_else(|| format!("no webhook-{name} header"))?;
        let svix = received
            .header(&format!("svix-{name}"))
            .ok_or_else(|| format!("no svix-{name} header"))?;
        if standard != svix {
            return Err(format!(
                "webhook-{name} is {standard:?} but svix-{name} is {svix:?}"
            ));
        }
        values.push(standard);
    }
    let (id, timestamp, header) = (values[0], values[1], values[2]);
    let timestamp: i64 = timestamp
        .parse()
        .map_err(|_| format!("webhook-timestamp {timestamp:?} is not an integer"))?;
    if signature::verify(&secret, id, timestamp, &received.body, header) {
        Ok(())
    } else {
        Err(format!(
            "no signature in {header:?} matches id {id}, timestamp {timestamp} and the body under this secret"
        ))
    }
}
