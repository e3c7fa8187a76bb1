//! Rate limits per agent and route family, decided by GCRA over several
//! windows, kept in this process or shared through Redis.
//!
//! Every API answer carries `RateLimit-Policy` and `RateLimit`; a refusal
//! is a 429 in the error envelope with `Retry-After` in whole seconds.
//! Requests with keys that do not check out are limited per client address
//! before any database lookup, so a flood of made-up keys costs little.

mod local;
mod middleware;
mod redis_backend;

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use endusers_core::{AgentId, Decision, RatePolicy, Timestamp};

pub use middleware::enforce;

/// The two families of routes, each with its own budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// `/v2/end-users/{id}` and the conversation routes.
    EndUser,
    /// Every other API route.
    Global,
    /// Requests whose API key was refused, per client address.
    FailedAuth,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Self::EndUser => "end_user",
            Self::Global => "global",
            Self::FailedAuth => "failed_auth",
        }
    }

    /// Which family an API path belongs to; `None` for paths outside the
    /// limited API (health, docs).
    pub fn of_path(path: &str) -> Option<Self> {
        let rest = path.strip_prefix("/api/v2/")?;
        let mut segments = rest.split('/').filter(|s| !s.is_empty());
        match (segments.next(), segments.next()) {
            (Some("end-users"), Some(_)) | (Some("conversations"), _) => Some(Self::EndUser),
            (Some(_), _) => Some(Self::Global),
            (None, _) => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RateLimitSettings {
    pub end_user: RatePolicy,
    pub global: RatePolicy,
    /// Per client address, for requests whose key is refused.
    pub failed_auth: RatePolicy,
    /// Shared limits across nodes when set.
    pub redis_url: Option<String>,
    /// Prefix of the Redis keys.
    pub redis_key_prefix: String,
}

impl RateLimitSettings {
    /// No limits at all (tests and benchmarks).
    pub fn off() -> Self {
        Self {
            end_user: RatePolicy::off(),
            global: RatePolicy::off(),
            failed_auth: RatePolicy::off(),
            redis_url: None,
            redis_key_prefix: "endusers".to_owned(),
        }
    }
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        let parse = |text: &str| RatePolicy::parse(text).unwrap_or_default();
        Self {
            end_user: parse("30/s,300/m,60000/d"),
            global: parse("10/s,100/m,10000/d"),
            failed_auth: parse("10/s,100/m"),
            redis_url: None,
            redis_key_prefix: "endusers".to_owned(),
        }
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    allowed: [AtomicU64; 3],
    limited: [AtomicU64; 3],
    redis_fallbacks: AtomicU64,
}

impl Metrics {
    fn slot(family: Family) -> usize {
        match family {
            Family::EndUser => 0,
            Family::Global => 1,
            Family::FailedAuth => 2,
        }
    }

    fn count(&self, family: Family, allowed: bool) {
        let counters = if allowed {
            &self.allowed
        } else {
            &self.limited
        };
        counters[Self::slot(family)].fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of the counters.
    pub fn render(&self) -> String {
        let mut out = String::new();
        crate::metrics::header(
            &mut out,
            "endusers_rate_limit_requests_total",
            "counter",
            "Requests seen by the rate limiter, by route family and outcome.",
        );
        for family in [Family::EndUser, Family::Global, Family::FailedAuth] {
            let slot = Self::slot(family);
            for (outcome, counters) in [("allowed", &self.allowed), ("limited", &self.limited)] {
                let _ = writeln!(
                    out,
                    "endusers_rate_limit_requests_total{{family=\"{}\",outcome=\"{outcome}\"}} {}",
                    family.name(),
                    counters[slot].load(Ordering::Relaxed)
                );
            }
        }
        crate::metrics::series(
            &mut out,
            "endusers_rate_limit_redis_fallbacks_total",
            "counter",
            "Decisions made locally because Redis did not answer.",
            self.redis_fallbacks.load(Ordering::Relaxed),
        );
        out
    }
}

/// Decides requests: through Redis when configured and reachable, else in
/// this process.
pub struct Limiter {
    local: local::LocalLimiter,
    redis: Option<redis_backend::RedisLimiter>,
    pub metrics: Arc<Metrics>,
}

impl Limiter {
    pub fn new(settings: &RateLimitSettings) -> Self {
        let redis = settings.redis_url.as_deref().and_then(|url| match redis_backend::RedisLimiter::new(url, &settings.redis_key_prefix) {
            Ok(limiter) => Some(limiter),
            Err(err) => {
                tracing::error!(error = %err, "redis_url is not usable; rate limits stay local to this node");
                None
            }
        });
        Self {
            local: local::LocalLimiter::default(),
            redis,
            metrics: Arc::new(Metrics::default()),
        }
    }

    /// Whether an address has used up its budget of refused keys, checked
    /// before the key is looked up so that guessing never reaches the
    /// database. Kept per node: it guards this node's database lookups.
    pub fn failed_auth_refusal(
        &self,
        address: &str,
        policy: &RatePolicy,
        now: Timestamp,
    ) -> Option<Decision> {
        let key = format!("{}:{address}", Family::FailedAuth.name());
        let decision = self.local.peek(&key, policy, now);
        (!decision.allowed).then(|| {
            self.metrics.count(Family::FailedAuth, false);
            decision
        })
    }

    /// Counts a refused key against its address.
    pub fn failed_auth(&self, address: &str, policy: &RatePolicy, now: Timestamp) -> Decision {
        let key = format!("{}:{address}", Family::FailedAuth.name());
        let decision = self.local.check(&key, policy, now);
        self.metrics.count(Family::FailedAuth, decision.allowed);
        decision
    }

    /// Decides one request of `family` for an agent.
    pub async fn check(
        &self,
        family: Family,
        agent: AgentId,
        policy: &RatePolicy,
        now: Timestamp,
    ) -> Decision {
        let key = format!("{}:{}", family.name(), agent.0);
        let decision = match &self.redis {
            Some(redis) => match redis.check(&key, policy).await {
                Ok(decision) => decision,
                Err(err) => {
                    self.metrics.redis_fallbacks.fetch_add(1, Ordering::Relaxed);
                    redis.warn_fallback(&err);
                    self.local.check(&key, policy, now)
                }
            },
            None => self.local.check(&key, policy, now),
        };
        self.metrics.count(family, decision.allowed);
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_fall_into_families() {
        assert_eq!(
            Family::of_path("/api/v2/end-users/abc"),
            Some(Family::EndUser)
        );
        assert_eq!(Family::of_path("/api/v2/end-users"), Some(Family::Global));
        assert_eq!(Family::of_path("/api/v2/end-users/"), Some(Family::Global));
        assert_eq!(
            Family::of_path("/api/v2/conversations"),
            Some(Family::EndUser)
        );
        assert_eq!(
            Family::of_path("/api/v2/conversations/x/end"),
            Some(Family::EndUser)
        );
        assert_eq!(Family::of_path("/api/v2/webhooks/x"), Some(Family::Global));
        assert_eq!(Family::of_path("/healthz"), None);
        assert_eq!(Family::of_path("/api/docs/"), None);
    }
}
