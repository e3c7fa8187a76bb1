//! Limits shared by every node through Redis: one Lua script runs the same
//! GCRA as [`RatePolicy::check`] atomically, on Redis's clock, in one round
//! trip per request.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use endusers_core::{Decision, RatePolicy, Timestamp};
use redis::aio::ConnectionManager;
use tokio::sync::OnceCell;

/// KEYS: one per window. ARGV: per window its emission interval and period
/// in microseconds. Returns {allowed (0/1), retry_after_us, window index,
/// remaining, reset_us}.
const SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = #KEYS
local new_tats = {}
local wait = -1
local tight_i, tight_r, tight_reset = 0, -1, 0
for i = 1, n do
  local interval = tonumber(ARGV[2 * i - 1])
  local period = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - period
  if now < allow_at then
    if allow_at - now > wait then wait = allow_at - now end
    if tight_r ~= 0 then tight_i, tight_r, tight_reset = i - 1, 0, tat - now end
  else
    local remaining = math.floor((period - (new_tat - now)) / interval)
    if tight_r < 0 or remaining < tight_r then tight_i, tight_r, tight_reset = i - 1, remaining, new_tat - now end
    new_tats[i] = new_tat
  end
end
if wait >= 0 then return {0, wait, tight_i, 0, tight_reset} end
for i = 1, n do
  local period = tonumber(ARGV[2 * i])
  redis.call('SET', KEYS[i], new_tats[i], 'PX', math.ceil((new_tats[i] - now) / 1000) + 1000)
end
return {1, 0, tight_i, tight_r, tight_reset}
"#;

pub struct RedisLimiter {
    client: redis::Client,
    connection: OnceCell<ConnectionManager>,
    script: redis::Script,
    /// Prefix of every key, so several deployments can share one Redis.
    prefix: String,
    /// When the last fallback warning was logged (seconds), to log once a minute.
    last_warning: AtomicI64,
    /// After a failure Redis is left alone until then (unix milliseconds),
    /// so an outage costs requests no waiting on timeouts.
    resting_until: AtomicI64,
}

/// How long Redis is left alone after it failed.
const REST_AFTER_FAILURE_MS: i64 = 2000;

fn unix_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl RedisLimiter {
    pub fn new(url: &str, prefix: &str) -> Result<Self, redis::RedisError> {
        Ok(Self {
            client: redis::Client::open(url)?,
            connection: OnceCell::new(),
            script: redis::Script::new(SCRIPT),
            prefix: prefix.to_owned(),
            last_warning: AtomicI64::new(i64::MIN),
            resting_until: AtomicI64::new(0),
        })
    }

    async fn connection(&self) -> Result<ConnectionManager, redis::RedisError> {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_millis(500))
            .set_response_timeout(Duration::from_millis(500))
            .set_number_of_retries(1);
        self.connection
            .get_or_try_init(|| ConnectionManager::new_with_config(self.client.clone(), config))
            .await
            .cloned()
    }

    pub async fn check(
        &self,
        key: &str,
        policy: &RatePolicy,
    ) -> Result<Decision, redis::RedisError> {
        if unix_millis() < self.resting_until.load(Ordering::Relaxed) {
            return Err(redis::RedisError::from((
                redis::ErrorKind::IoError,
                "Redis failed recently; resting",
            )));
        }
        let outcome = self.check_now(key, policy).await;
        if outcome.is_err() {
            self.resting_until
                .store(unix_millis() + REST_AFTER_FAILURE_MS, Ordering::Relaxed);
        }
        outcome
    }

    async fn check_now(
        &self,
        key: &str,
        policy: &RatePolicy,
    ) -> Result<Decision, redis::RedisError> {
        let mut connection = self.connection().await?;
        let mut invocation = self.script.prepare_invoke();
        for window in policy.windows() {
            invocation.key(format!(
                "{}:rl:{key}:{}",
                self.prefix,
                window.period.as_secs()
            ));
            let period = i64::try_from(window.period.as_micros()).unwrap_or(i64::MAX);
            invocation
                .arg(period / i64::from(window.limit.max(1)))
                .arg(period);
        }
        let (allowed, wait, window, remaining, reset): (i64, i64, i64, i64, i64) =
            invocation.invoke_async(&mut connection).await?;
        let micros = |v: i64| Duration::from_micros(u64::try_from(v.max(0)).unwrap_or(0));
        Ok(Decision {
            allowed: allowed == 1,
            new_tats: Vec::<Timestamp>::new(),
            retry_after: (allowed != 1).then(|| micros(wait)),
            window: usize::try_from(window).unwrap_or(0),
            remaining: u64::try_from(remaining.max(0)).unwrap_or(0),
            reset: micros(reset),
        })
    }

    /// Logs that Redis failed and the node decides alone, at most once a minute.
    pub fn warn_fallback(&self, err: &redis::RedisError) {
        let now = unix_millis() / 1000;
        let last = self.last_warning.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 60
            && self
                .last_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(error = %err, "Redis is unreachable: rate limits fall back to this node alone");
        }
    }
}
