//! The test harness: a real server (real SQLite store in a temporary
//! directory, real TCP listener, real HTTP client), nothing mocked.

#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod receiver;
pub mod test_redis;
pub mod untrusted_tls;

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use endusers_core::{AgentHandle, Clock, SystemClock};
use endusers_server::vault::{KeyFile, Vault};
use endusers_server::{AppState, ServerConfig};
use endusers_store::{NewApiKey, Store};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::Value;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// The collection path, with its trailing slash as Ada documents it.
pub const USERS: &str = "/api/v2/end-users/";

/// What a request answered.
#[derive(Debug)]
pub struct TestResponse {
    pub status: u16,
    pub headers: HeaderMap,
    /// The body as text, whatever it is.
    pub text: String,
    /// The body as JSON, or `Value::Null` when it is not JSON (or empty).
    pub body: Value,
}

impl TestResponse {
    fn new(status: u16, headers: HeaderMap, text: String) -> Self {
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self {
            status,
            headers,
            text,
            body,
        }
    }

    /// Asserts the status and the contract's error envelope:
    /// `{"errors":[{"type":…,"message":…,"details":null}]}`, with the
    /// message starting with `message_prefix`.
    #[track_caller]
    pub fn assert_error(&self, status: u16, kind: &str, message_prefix: &str) {
        assert_eq!(
            self.status, status,
            "expected status {status} ({kind}), got {}: {}",
            self.status, self.text
        );
        assert!(
            self.header("content-type")
                .is_some_and(|ct| ct.starts_with("application/json")),
            "an error answer must be JSON, got content-type {:?}",
            self.header("content-type")
        );
        let errors = self.body["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("no error envelope in {:?}", self.text));
        assert_eq!(errors.len(), 1, "{}", self.text);
        let error = &errors[0];
        assert_eq!(error["type"], kind, "{}", self.text);
        assert!(
            error.get("details").is_some_and(Value::is_null),
            "details must be present and null: {}",
            self.text
        );
        let message = error["message"]
            .as_str()
            .unwrap_or_else(|| panic!("message is not a string: {}", self.text));
        assert!(
            message.starts_with(message_prefix),
            "message {message:?} should start with {message_prefix:?}"
        );
    }

    /// The error message of an envelope (empty when there is none).
    pub fn message(&self) -> &str {
        self.body["errors"][0]["message"].as_str().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One running server with its own database and an API key for `default`.
pub struct TestApp {
    pub base_url: String,
    pub addr: std::net::SocketAddr,
    /// The bearer token of the `default` agent.
    pub key: String,
    pub store: Arc<dyn Store>,
    /// The server's own state: its vault, clock and configuration.
    pub state: AppState,
    pub client: reqwest::Client,
    pub dir: TempDir,
    _shutdown: oneshot::Sender<()>,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(ServerConfig::default()).await
    }

    /// Rate limits are off unless the test asks for them with
    /// [`TestApp::spawn_limited`].
    pub async fn spawn_with(config: ServerConfig) -> Self {
        Self::spawn_with_clock(config, Arc::new(SystemClock)).await
    }

    /// A server that keeps `config.rate_limits`.
    pub async fn spawn_limited(config: ServerConfig, clock: Arc<dyn Clock>) -> Self {
        Self::spawn_inner(config, clock).await
    }

    /// A server whose sense of time is `clock` (a `ManualClock` drives TTLs),
    /// with its master key in a key file beside the database, as in production.
    pub async fn spawn_with_clock(mut config: ServerConfig, clock: Arc<dyn Clock>) -> Self {
        config.rate_limits = endusers_server::limits::RateLimitSettings::off();
        Self::spawn_inner(config, clock).await
    }

    async fn spawn_inner(mut config: ServerConfig, clock: Arc<dyn Clock>) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let database = dir.path().join("test.db");
        let store: Arc<dyn Store> = Arc::new(
            endusers_store_sqlite::SqliteStore::open(
                &database,
                Default::default(),
                SystemClock.now(),
            )
            .await
            .expect("the store opens"),
        );
        let agent = store
            .find_agent(&AgentHandle::default_handle())
            .await
            .expect("agents can be read")
            .expect("an empty database gets the default agent");
        let key = issue_key_for(&store, agent.id).await;

        let key_file = KeyFile::beside(&database);
        let (keyring, _) = key_file.load_or_create().expect("a master key");
        config.key_file.get_or_insert(key_file);
        let vault = Arc::new(Vault::new(keyring, Duration::from_secs(24 * 3600)));
        let state = AppState::new(Arc::clone(&store), clock, config, vault);
        let server_state = state.clone();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = rx.await;
            };
            endusers_server::serve(listener, state, shutdown, Duration::from_secs(10))
                .await
                .expect("the server runs");
        });

        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("a client");
        Self {
            base_url: format!("http://{addr}"),
            addr,
            key,
            store,
            state: server_state,
            client,
            dir,
            _shutdown: tx,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Creates another agent and returns a key for it.
    pub async fn new_agent_key(&self, handle: &str) -> String {
        let handle = AgentHandle::parse(handle).expect("a valid handle");
        let agent = self
            .store
            .create_agent(handle, SystemClock.now())
            .await
            .expect("the agent is created");
        issue_key_for(&self.store, agent.id).await
    }

    /// Another key for the `default` agent.
    pub async fn new_default_key(&self) -> String {
        let agent = self
            .store
            .find_agent(&AgentHandle::default_handle())
            .await
            .unwrap()
            .unwrap();
        issue_key_for(&self.store, agent.id).await
    }

    /// Sends a request with the default key and, when given, a JSON body.
    pub async fn send(&self, method: Method, path: &str, json: Option<&Value>) -> TestResponse {
        self.send_as(&self.key, method, path, json).await
    }

    /// Sends a request with the given key and, when given, a JSON body.
    pub async fn send_as(
        &self,
        key: &str,
        method: Method,
        path: &str,
        json: Option<&Value>,
    ) -> TestResponse {
        let mut request = self.client.request(method, self.url(path)).bearer_auth(key);
        if let Some(json) = json {
            request = request.json(json);
        }
        finish(request).await
    }

    pub async fn post(&self, path: &str, json: &Value) -> TestResponse {
        self.send(Method::POST, path, Some(json)).await
    }

    pub async fn patch(&self, path: &str, json: &Value) -> TestResponse {
        self.send(Method::PATCH, path, Some(json)).await
    }

    pub async fn get(&self, path: &str) -> TestResponse {
        self.send(Method::GET, path, None).await
    }

    pub async fn delete(&self, path: &str) -> TestResponse {
        self.send(Method::DELETE, path, None).await
    }

    /// GET an absolute URL (a `next_page_url`) with the default key.
    pub async fn get_url(&self, url: &str) -> TestResponse {
        finish(self.client.get(url).bearer_auth(&self.key)).await
    }

    /// Any request: exactly these headers (no auth added) and these bytes.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> TestResponse {
        let mut request = self.client.request(method, self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        finish(request).await
    }

    /// Writes `request` as-is on a fresh TCP connection and reads the
    /// answer until the server closes it. For what reqwest will not send
    /// (a chunked body). Send `Connection: close`.
    pub async fn raw_tcp(&self, request: Vec<u8>) -> TestResponse {
        let addr = self.addr;
        tokio::task::spawn_blocking(move || raw_exchange(addr, &request))
            .await
            .expect("the raw exchange finishes")
    }

    /// POSTs `json`, expects 201, returns the created user.
    pub async fn create_user(&self, json: &Value) -> Value {
        let response = self.post(USERS, json).await;
        assert_eq!(response.status, 201, "create failed: {}", response.text);
        response.body
    }

    pub fn user_path(id: &str) -> String {
        format!("{USERS}{id}")
    }

    /// GETs a user by id and expects 200.
    pub async fn get_user(&self, id: &str) -> Value {
        let response = self.get(&Self::user_path(id)).await;
        assert_eq!(response.status, 200, "get failed: {}", response.text);
        response.body
    }

    /// The default agent's id.
    pub async fn default_agent(&self) -> endusers_core::AgentId {
        self.store
            .find_agent(&AgentHandle::default_handle())
            .await
            .unwrap()
            .unwrap()
            .id
    }

    /// The internal read path: a user's live sensitive values, decrypted,
    /// as the server's own consumers see them (keyed by name).
    pub async fn sensitive_values(
        &self,
        id: &str,
    ) -> std::collections::BTreeMap<String, endusers_core::SensitiveValue> {
        let id = endusers_core::EndUserId::parse(id).expect("an end user id");
        let agent = self.default_agent().await;
        let now = self.state.clock.now();
        self.state
            .vault
            .read(self.store.as_ref(), agent, id, now)
            .await
            .expect("the vault opens every value")
            .into_iter()
            .map(|(k, v)| (k.as_str().to_owned(), v))
            .collect()
    }

    /// Every user of the default agent, following `next_page_url`.
    pub async fn list_all(&self) -> Vec<Value> {
        let mut users = Vec::new();
        let mut url = self.url(USERS);
        loop {
            let page = self.get_url(&url).await;
            assert_eq!(page.status, 200, "list failed: {}", page.text);
            users.extend(page.body["data"].as_array().unwrap().iter().cloned());
            match page.body["meta"]["next_page_url"].as_str() {
                Some(next) => url = next.to_owned(),
                None => return users,
            }
        }
    }
}

async fn issue_key_for(store: &Arc<dyn Store>, agent_id: endusers_core::AgentId) -> String {
    let issued = endusers_server::auth::issue_key();
    store
        .insert_api_key(NewApiKey {
            key_id: issued.key_id.clone(),
            agent_id,
            name: Some("test".to_owned()),
            secret_hash: issued.secret_hash,
            created_at: SystemClock.now(),
        })
        .await
        .expect("the key is stored");
    issued.token
}

async fn finish(request: reqwest::RequestBuilder) -> TestResponse {
    let response = request.send().await.expect("the request is answered");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("the body is read");
    TestResponse::new(status, headers, text)
}

fn raw_exchange(addr: std::net::SocketAddr, request: &[u8]) -> TestResponse {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    // The server may answer (and stop reading) before it has read it all.
    let _ = stream.write_all(request);
    let _ = stream.flush();
    let mut received = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                received.extend_from_slice(&buffer[..n]);
                if response_complete(&received) {
                    break;
                }
            }
            Err(err) => {
                assert!(
                    !received.is_empty(),
                    "no answer before the connection failed: {err}"
                );
                break;
            }
        }
    }
    parse_response(&received)
}

fn split_head(received: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = received.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some((&received[..at], &received[at + 4..]))
}

fn head_lines(head: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(head)
        .split("\r\n")
        .map(str::to_owned)
        .collect()
}

fn header_value(lines: &[String], name: &str) -> Option<String> {
    lines.iter().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_owned())
    })
}

fn response_complete(received: &[u8]) -> bool {
    let Some((head, body)) = split_head(received) else {
        return false;
    };
    let lines = head_lines(head);
    if let Some(length) = header_value(&lines, "content-length") {
        return length.parse::<usize>().is_ok_and(|n| body.len() >= n);
    }
    if header_value(&lines, "transfer-encoding").is_some_and(|te| te.contains("chunked")) {
        return body.ends_with(b"0\r\n\r\n");
    }
    false
}

fn parse_response(received: &[u8]) -> TestResponse {
    let (head, body) = split_head(received).unwrap_or_else(|| {
        panic!(
            "no HTTP head in {:?}",
            String::from_utf8_lossy(received).into_owned()
        )
    });
    let lines = head_lines(head);
    let status: u16 = lines[0]
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {:?}", lines[0]));
    let mut headers = HeaderMap::new();
    for line in lines.iter().skip(1) {
        if let Some((key, value)) = line.split_once(':')
            && let (Ok(name), Ok(value)) = (
                reqwest::header::HeaderName::from_bytes(key.trim().as_bytes()),
                reqwest::header::HeaderValue::from_str(value.trim()),
            )
        {
            headers.append(name, value);
        }
    }
    let chunked =
        header_value(&lines, "transfer-encoding").is_some_and(|te| te.contains("chunked"));
    let body = if chunked {
        decode_chunked(body)
    } else {
        body.to_vec()
    };
    TestResponse::new(status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn decode_chunked(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(at) = body.windows(2).position(|w| w == b"\r\n") {
        let size_line = String::from_utf8_lossy(&body[..at]).into_owned();
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        body = &body[at + 2..];
        if size == 0 || body.len() < size {
            break;
        }
        out.extend_from_slice(&body[..size]);
        body = body.get(size + 2..).unwrap_or_default();
    }
    out
}

/// A chunked HTTP/1.1 request carrying `body` in chunks of `chunk` bytes.
pub fn chunked_request(
    method: &str,
    path: &str,
    host: &str,
    key: &str,
    content_type: &str,
    body: &[u8],
    chunk: usize,
) -> Vec<u8> {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for piece in body.chunks(chunk) {
        request.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        request.extend_from_slice(piece);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    request
}
