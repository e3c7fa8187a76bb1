//! The HTTP client deliveries go out through. Its resolver is the SSRF
//! guard: every address a host name resolves to must be public, and those
//! are the addresses dialled, so a name cannot pass a check and then be
//! re-resolved to something private. Redirects are never followed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::WebhookSettings;
use super::ssrf;

/// Resolves with the system resolver and refuses any answer that contains
/// a non-public address (unless insecure targets are allowed).
#[derive(Debug, Clone, Copy)]
struct PublicOnlyResolver {
    allow_insecure: bool,
}

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_insecure = self.allow_insecure;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            ssrf::check_addresses(&host, &addrs, allow_insecure)?;
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

pub fn build(settings: &WebhookSettings) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(PublicOnlyResolver {
            allow_insecure: settings.allow_insecure,
        }))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout.min(std::time::Duration::from_secs(10)))
        // Endpoints often share a host (one integrator, several paths): a
        // pool kept per host must hold every connection in flight, or each
        // answer beyond the cap closes its connection and the next send
        // opens a new one.
        .pool_max_idle_per_host(settings.concurrency)
        .user_agent(concat!("endusers-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The check made before sending to a URL, for what the resolver never
/// sees: a URL whose host is an IP literal.
fn check_literal_address(url: &str, allow_insecure: bool) -> Result<(), String> {
    let (_, host, _) = ssrf::check_url_syntax(url, allow_insecure).map_err(|e| e.to_string())?;
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    match literal.parse::<std::net::IpAddr>() {
        Ok(ip) if !allow_insecure && !ssrf::is_public(ip) => {
            Err(format!("{ip} is not a public address"))
        }
        _ => Ok(()),
    }
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
    checked: HashMap<String, Result<reqwest::Url, String>>,
}

impl Targets {
    pub fn new(allow_insecure: bool) -> Self {
        Self {
            allow_insecure,
            checked: HashMap::new(),
        }
    }

    /// Where a delivery to `url` goes, or why it cannot go there.
    pub fn get(&mut self, url: &str) -> Result<reqwest::Url, String> {
        if let Some(target) = self.checked.get(url) {
            return target.clone();
        }
        if self.checked.len() >= MAX_TARGETS {
            self.checked.clear();
        }
        let target = check_literal_address(url, self.allow_insecure).and_then(|()| {
            reqwest::Url::parse(url).map_err(|e| format!("the endpoint's URL does not parse: {e}"))
        });
        self.checked.insert(url.to_owned(), target.clone());
        target
    }
}

#[cfg(test)]
mod tests {
    use super::Targets;

    #[test]
    fn a_url_is_checked_once_and_answered_the_same_after() {
        let mut targets = Targets::new(false);
        let url = "https://hooks.example.com/in?token=t";
        let first = targets.get(url).unwrap();
        assert_eq!(first.as_str(), url);
        assert_eq!(targets.get(url).unwrap(), first);
        assert_eq!(targets.checked.len(), 1);
        // Refusals are remembered too, and say why.
        let private = "https://10.0.0.1/in";
        let refused = targets.get(private).unwrap_err();
        assert!(refused.contains("not a public address"), "{refused}");
        assert_eq!(targets.get(private).unwrap_err(), refused);
        // Unless insecure targets are allowed.
        assert!(Targets::new(true).get(private).is_ok());
    }

    #[test]
    fn the_memory_starts_over_when_full() {
        let mut targets = Targets::new(false);
        for n in 0..=super::MAX_TARGETS {
            targets
                .get(&format!("https://hooks.example.com/{n}"))
                .unwrap();
        }
        assert_eq!(targets.checked.len(), 1);
    }
}
