//! The HTTP client deliveries go out through. Its resolver is the SSRF
//! guard: every address a host name resolves to must be public, and those
//! are the addresses dialled, so a name cannot pass a check and then be
//! re-resolved to something private. Redirects are never followed: the
//! client below has no notion of them, so a 3xx is an answer like any other.
//!
//! Built on hyper's pooled client directly. A general-purpose client
//! (reqwest, which this replaced) parses the URL again, consults proxy and
//! redirect policies and copies headers on every request: about a tenth of
//! the server's CPU while delivering, measured with perf.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, RETRY_AFTER, USER_AGENT};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::WebhookSettings;
use super::ssrf::{self, UrlCheckError};

/// Bytes of an answer's body read at most. The body itself is ignored; it
/// is read so that the connection can carry the next delivery. An endpoint
/// that answers more gets its connection closed instead.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Resolves with the system resolver and refuses any answer that contains
/// a non-public address (unless insecure targets are allowed). Host names
/// only: the connector dials an IP literal without asking, which is why
/// [`Targets`] checks literals itself.
#[derive(Debug, Clone, Copy)]
pub struct PublicOnlyResolver {
    allow_insecure: bool,
}

type Resolving =
    Pin<Box<dyn Future<Output = Result<std::vec::IntoIter<SocketAddr>, UrlCheckError>> + Send>>;

impl tower::Service<Name> for PublicOnlyResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = UrlCheckError;
    type Future = Resolving;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allow_insecure = self.allow_insecure;
        Box::pin(async move {
            // The connector sets the port on what comes back.
            let addrs = ssrf::resolve_public(name.as_str(), 0, allow_insecure).await?;
            Ok(addrs.into_iter())
        })
    }
}

type Connector = HttpsConnector<HttpConnector<PublicOnlyResolver>>;

/// What an endpoint answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub status: StatusCode,
    /// `Retry-After` in seconds, when the answer carried one.
    pub retry_after: Option<Duration>,
}

/// Posts deliveries: one pool of connections for the whole process, kept
/// per host, each request bounded by the webhook timeout from the first
/// byte dialled to the last byte of the answer's head.
pub struct WebhookClient {
    client: Client<Connector, Full<Bytes>>,
    timeout: Duration,
}

const JSON: HeaderValue = HeaderValue::from_static("application/json");
const AGENT: HeaderValue =
    HeaderValue::from_static(concat!("endusers-webhooks/", env!("CARGO_PKG_VERSION")));

impl WebhookClient {
    pub fn build(settings: &WebhookSettings) -> std::io::Result<Self> {
        let mut http = HttpConnector::new_with_resolver(PublicOnlyResolver {
            allow_insecure: settings.allow_insecure,
        });
        // The TLS layer above decides which schemes pass.
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(settings.timeout.min(Duration::from_secs(10))));
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = HttpsConnectorBuilder::new().with_provider_and_platform_verifier(provider)?;
        // Plain http only where insecure targets are allowed; the URL check
        // refuses it before, and this refuses it again.
        let tls = if settings.allow_insecure {
            tls.https_or_http()
        } else {
            tls.https_only()
        };
        let connector = tls.enable_http1().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            // Endpoints often share a host (one integrator, several paths):
            // a pool kept per host must hold every connection in flight, or
            // each answer beyond the cap closes its connection and the next
            // send opens a new one.
            .pool_max_idle_per_host(settings.concurrency)
            // Each target carries its `Host` header, made once (see
            // [`Target`]); the client would format it for every request.
            .set_host(false)
            .build(connector);
        Ok(Self {
            client,
            timeout: settings.timeout,
        })
    }

    /// Posts `body` as JSON with `headers` to `target`. An error says why
    /// no answer came, in words fit to store: never the URL, whose query
    /// may carry a token.
    pub async fn post(
        &self,
        target: Target,
        mut headers: HeaderMap,
        body: String,
    ) -> Result<Answer, String> {
        headers.insert(HOST, target.host);
        headers.insert(CONTENT_TYPE, JSON);
        headers.insert(USER_AGENT, AGENT);
        let mut request = Request::new(Full::new(Bytes::from(body)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = target.uri;
        *request.headers_mut() = headers;

        let deadline = tokio::time::Instant::now() + self.timeout;
        let response = match tokio::time::timeout_at(deadline, self.client.request(request)).await {
            Ok(Ok(response)) => response,
            Ok(Err(err)) => return Err(describe(&err)),
            Err(_) => return Err("timed out".to_owned()),
        };
        let answer = Answer {
            status: response.status(),
            retry_after: response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs),
        };
        // The answer counts from its head; the rest is read (within the
        // same deadline, and not kept) only to free the connection.
        let mut body = response.into_body();
        let _ = tokio::time::timeout_at(deadline, async {
            let mut read = 0;
            while read <= MAX_ANSWER_BYTES {
                match body.frame().await {
                    Some(Ok(frame)) => read += frame.data_ref().map_or(0, Bytes::len),
                    _ => break,
                }
            }
        })
        .await;
        Ok(answer)
    }
}

/// Says why a request failed, from the innermost cause, without internals.
fn describe(err: &hyper_util::client::legacy::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = Some(err);
    let mut deepest = String::new();
    while let Some(e) = source {
        deepest = e.to_string();
        source = e.source();
    }
    if err.is_connect() {
        format!("could not connect: {deepest}")
    } else {
        format!("request failed: {deepest}")
    }
}

/// The check made before sending to a URL, for what the resolver never
/// sees: a URL whose host is an IP literal.
fn check_literal_address(url: &str, allow_insecure: bool) -> Result<(), String> {
    // The host comes back without an IPv6 literal's brackets.
    let (_, host, _) = ssrf::check_url_syntax(url, allow_insecure).map_err(|e| e.to_string())?;
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) if !allow_insecure && !ssrf::is_public(ip) => {
            Err(format!("{ip} is not a public address"))
        }
        _ => Ok(()),
    }
}

/// Where deliveries to one URL go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub uri: Uri,
    /// The `Host` header: the host, and the port unless it is the
    /// scheme's own.
    pub host: HeaderValue,
}

/// The URL as a request target. Read by the WHATWG rules first, which
/// percent-encode what a request line cannot carry (text beyond ASCII in
/// the path, say), and without its fragment, which is never sent.
fn request_target(url: &str) -> Result<Target, String> {
    let unusable = |e: &dyn std::fmt::Display| format!("the endpoint's URL does not parse: {e}");
    let mut parsed = url::Url::parse(url).map_err(|e| unusable(&e))?;
    parsed.set_fragment(None);
    let uri = Uri::try_from(parsed.as_str()).map_err(|e| unusable(&e))?;
    let host = parsed.host_str().ok_or_else(|| unusable(&"no host"))?;
    // `port()` is `None` for the scheme's own port: the WHATWG parser
    // drops it.
    let host = match parsed.port() {
        Some(port) => HeaderValue::try_from(format!("{host}:{port}")),
        None => HeaderValue::try_from(host),
    }
    .map_err(|e| unusable(&e))?;
    Ok(Target { uri, host })
}

/// Distinct URLs remembered at most; past this the memory starts over
/// (endpoints are few, so only URLs changed many times fill it).
const MAX_TARGETS: usize = 1024;

/// Endpoint URLs checked ([`check_literal_address`]) and parsed once, not
/// once per delivery: the deliveries of a claim go to a few URLs, over and
/// over. Keyed by the URL's text, so an endpoint whose URL changes is
/// checked again under its new one.
pub struct Targets {
    /// The setting every check is made under, fixed for the process.
    allow_insecure: bool,
    checked: HashMap<String, Result<Target, String>>,
}

impl Targets {
    pub fn new(allow_insecure: bool) -> Self {
        Self {
            allow_insecure,
            checked: HashMap::new(),
        }
    }

    /// Where a delivery to `url` goes, or why it cannot go there.
    pub fn get(&mut self, url: &str) -> Result<Target, String> {
        if let Some(target) = self.checked.get(url) {
            return target.clone();
        }
        if self.checked.len() >= MAX_TARGETS {
            self.checked.clear();
        }
        let target =
            check_literal_address(url, self.allow_insecure).and_then(|()| request_target(url));
        self.checked.insert(url.to_owned(), target.clone());
        target
    }
}

#[cfg(test)]
mod tests {
    use tower::ServiceExt;

    use super::*;

    #[test]
    fn a_url_is_checked_once_and_answered_the_same_after() {
        let mut targets = Targets::new(false);
        let url = "https://hooks.example.com/in?token=t";
        let first = targets.get(url).unwrap();
        assert_eq!(first.uri.to_string(), url);
        assert_eq!(targets.get(url).unwrap(), first);
        assert_eq!(targets.checked.len(), 1);
        // Refusals are remembered too, and say why.
        let private = "https://10.0.0.1/in";
        let refused = targets.get(private).unwrap_err();
        assert!(refused.contains("not a public address"), "{refused}");
        assert_eq!(targets.get(private).unwrap_err(), refused);
        // IPv6 literals are checked too.
        let refused = targets.get("https://[fd00::1]:8443/in").unwrap_err();
        assert!(
            refused.contains("fd00::1 is not a public address"),
            "{refused}"
        );
        // Unless insecure targets are allowed.
        assert!(Targets::new(true).get(private).is_ok());
    }

    #[test]
    fn a_target_is_the_url_as_a_request_line_carries_it() {
        let mut targets = Targets::new(false);
        let cases = [
            (
                "HTTPS://Hooks.Example.COM:443/é?q=ü#fragment",
                "https://hooks.example.com/%C3%A9?q=%C3%BC",
            ),
            ("https://hooks.example.com", "https://hooks.example.com/"),
            (
                "https://[2606:4700::1111]:8443/x",
                "https://[2606:4700::1111]:8443/x",
            ),
        ];
        for (url, want) in cases {
            assert_eq!(targets.get(url).unwrap().uri.to_string(), want, "{url}");
        }
    }

    #[test]
    fn the_host_header_names_the_port_only_when_it_is_not_the_schemes() {
        let mut targets = Targets::new(true);
        let cases = [
            ("https://Hooks.Example.COM:443/in", "hooks.example.com"),
            (
                "https://hooks.example.com:8443/in",
                "hooks.example.com:8443",
            ),
            ("http://127.0.0.1:80/in", "127.0.0.1"),
            ("http://127.0.0.1:8080/in", "127.0.0.1:8080"),
            ("https://[2606:4700::1111]:8443/x", "[2606:4700::1111]:8443"),
            ("https://[2606:4700::1111]/x", "[2606:4700::1111]"),
        ];
        for (url, want) in cases {
            assert_eq!(targets.get(url).unwrap().host, want, "{url}");
        }
    }

    #[test]
    fn the_memory_starts_over_when_full() {
        let mut targets = Targets::new(false);
        for n in 0..=MAX_TARGETS {
            targets
                .get(&format!("https://hooks.example.com/{n}"))
                .unwrap();
        }
        assert_eq!(targets.checked.len(), 1);
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_name_with_any_address_that_is_not_public() {
        let resolve = |allow_insecure| {
            PublicOnlyResolver { allow_insecure }.oneshot("localhost".parse::<Name>().unwrap())
        };
        let err = resolve(false).await.unwrap_err();
        assert!(
            matches!(err, UrlCheckError::NonPublicAddress { .. }),
            "{err}"
        );
        let addrs: Vec<SocketAddr> = resolve(true).await.unwrap().collect();
        assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()));
    }
}
