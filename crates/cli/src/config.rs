//! Configuration: defaults, then the TOML file given by `--config`, then
//! `ENDUSERS_<KEY>` environment variables, then command-line flags.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::Path;
use std::time::Duration;

use endusers_core::{ProfilePolicy, RatePolicy, RetrySchedule, VolatileKeys};
use endusers_server::ServerConfig;
use endusers_server::limits::RateLimitSettings;
use endusers_server::webhooks::WebhookSettings;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address and port the API listens on.
    pub listen: SocketAddr,
    /// `sqlite://PATH` (relative or absolute). Shown by `config` as
    /// [`crate::backend::shown_url`] shows it: a URL of another backend may
    /// carry a password.
    #[serde(serialize_with = "serialize_shown_url")]
    pub database_url: String,
    /// Request bodies above this many bytes are refused with 413.
    pub max_body_bytes: usize,
    /// Serialized `profile.metadata` above this many bytes is refused with 400.
    pub max_metadata_bytes: usize,
    /// Metadata keys whose changes emit no `v1.end_user.updated`; a trailing
    /// `*` makes a prefix. A list, or one comma-separated string.
    #[serde(deserialize_with = "list_or_csv")]
    pub volatile_metadata_keys: Vec<String>,
    /// Standard base64 of 32 random bytes: the key sensitive values are
    /// sealed with. Without it (SQLite only) a key file is made beside the
    /// database on the first start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_key: Option<Secret>,
    /// Former master keys, still able to open values sealed before a
    /// rotation until the server has re-sealed them.
    #[serde(default, deserialize_with = "secrets_list_or_csv")]
    pub retired_master_keys: Vec<Secret>,
    /// How long a sensitive value lives after it was written.
    #[serde(with = "humantime_duration")]
    pub sensitive_ttl: Duration,
    /// A user made by POST /v2/end-users/ that no conversation uses within
    /// this is deleted.
    #[serde(with = "humantime_duration")]
    pub orphan_ttl: Duration,
    /// How often expired values are swept and retired keys' values re-sealed.
    #[serde(with = "humantime_duration")]
    pub maintenance_interval: Duration,
    /// Waits before each webhook retry, comma-separated humantime durations.
    #[serde(with = "humantime_list")]
    pub webhook_retry_schedule: Vec<Duration>,
    /// A delivery not answered 2xx within this has failed.
    #[serde(with = "humantime_duration")]
    pub webhook_timeout: Duration,
    /// An endpoint whose deliveries have all failed for this long is disabled.
    #[serde(with = "humantime_duration")]
    pub webhook_disable_after: Duration,
    /// Allows http:// and private or loopback webhook targets (development only).
    pub webhooks_allow_insecure: bool,
    /// Webhook attempts and finished messages older than this are deleted.
    #[serde(with = "humantime_duration")]
    pub webhook_retention: Duration,
    /// Deliveries in flight to one endpoint at most.
    pub webhook_endpoint_concurrency: NonZeroUsize,
    /// Deliveries in flight in all at most.
    pub webhook_concurrency: NonZeroUsize,
    /// Per agent on /v2/end-users/{id} and conversation routes:
    /// `30/s,300/m,60000/d` style, or `off`.
    #[serde(with = "rate_policy")]
    pub rate_limit_end_user: RatePolicy,
    /// Per agent on every other API route.
    #[serde(with = "rate_policy")]
    pub rate_limit_global: RatePolicy,
    /// Per client address, for requests whose API key is refused.
    #[serde(with = "rate_policy")]
    pub rate_limit_failed_auth: RatePolicy,
    /// `redis://host:port`: share rate limits across nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// May carry a password (`redis://:pw@host`), so it is a [`Secret`].
    pub redis_url: Option<Secret>,
    /// Prefix of the keys in Redis, so deployments can share one.
    pub redis_key_prefix: String,
    /// After SIGTERM/SIGINT, how long in-flight requests may take to finish.
    #[serde(with = "humantime_duration")]
    pub shutdown_grace: Duration,
    /// Log filter, in `tracing` env-filter syntax (`info`, `endusers=debug`).
    pub log: String,
}

/// The defaults are the server's own, so the two cannot drift apart; only
/// what the binary alone decides (address, database, logging) is set here.
impl Default for Settings {
    fn default() -> Self {
        let server = ServerConfig::default();
        let webhooks = server.webhooks;
        let limits = server.rate_limits;
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: "sqlite://./data/endusers.db".to_owned(),
            max_body_bytes: server.max_body_bytes,
            max_metadata_bytes: server.policy.max_metadata_bytes,
            volatile_metadata_keys: VolatileKeys::DEFAULT
                .iter()
                .map(|k| (*k).to_owned())
                .collect(),
            master_key: None,
            retired_master_keys: Vec::new(),
            sensitive_ttl: Duration::from_secs(24 * 3600),
            orphan_ttl: server.orphan_ttl,
            maintenance_interval: server.maintenance_interval,
            webhook_retry_schedule: webhooks.retry_schedule.waits().to_vec(),
            webhook_timeout: webhooks.timeout,
            webhook_disable_after: webhooks.disable_after,
            webhooks_allow_insecure: webhooks.allow_insecure,
            webhook_retention: webhooks.retention,
            webhook_endpoint_concurrency: at_least_one(webhooks.per_endpoint_concurrency),
            webhook_concurrency: at_least_one(webhooks.concurrency),
            rate_limit_end_user: limits.end_user,
            rate_limit_global: limits.global,
            rate_limit_failed_auth: limits.failed_auth,
            redis_url: None,
            redis_key_prefix: limits.redis_key_prefix,
            shutdown_grace: Duration::from_secs(30),
            log: "info".to_owned(),
        }
    }
}

/// Values given as flags; `None` leaves the lower layers' value.
#[derive(Debug, Default, Serialize)]
pub struct FlagOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
}

impl Settings {
    pub fn load(file: Option<&Path>, flags: &FlagOverrides) -> Result<Self, Box<figment::Error>> {
        let mut figment = Figment::from(Serialized::defaults(Self::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(Box::new(figment::Error::from(format!(
                    "config file {} does not exist",
                    file.display()
                ))));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        figment
            // ENDUSERS_TEST_* are the test suite's own variables, not settings.
            .merge(
                Env::prefixed("ENDUSERS_")
                    .ignore(&["config"])
                    .filter(|key| {
                        !key.as_str()
                            .get(..5)
                            .is_some_and(|start| start.eq_ignore_ascii_case("test_"))
                    }),
            )
            .merge(Serialized::defaults(flags))
            .extract()
            .map_err(Box::new)
    }

    pub fn server_config(&self) -> ServerConfig {
        ServerConfig {
            max_body_bytes: self.max_body_bytes,
            policy: ProfilePolicy {
                max_metadata_bytes: self.max_metadata_bytes,
                volatile_keys: VolatileKeys::new(&self.volatile_metadata_keys),
            },
            maintenance_interval: self.maintenance_interval,
            orphan_ttl: self.orphan_ttl,
            rate_limits: RateLimitSettings {
                end_user: self.rate_limit_end_user.clone(),
                global: self.rate_limit_global.clone(),
                failed_auth: self.rate_limit_failed_auth.clone(),
                redis_url: self.redis_url.as_ref().map(|url| url.expose().to_owned()),
                redis_key_prefix: self.redis_key_prefix.clone(),
            },
            key_file: None,
            webhooks: WebhookSettings {
                retry_schedule: RetrySchedule::new(self.webhook_retry_schedule.clone()),
                timeout: self.webhook_timeout,
                disable_after: self.webhook_disable_after,
                allow_insecure: self.webhooks_allow_insecure,
                retention: self.webhook_retention,
                per_endpoint_concurrency: self.webhook_endpoint_concurrency.get(),
                concurrency: self.webhook_concurrency.get(),
                ..WebhookSettings::default()
            },
        }
    }
}

fn at_least_one(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)
}

/// `database_url` as `config` prints it. Settings are also serialized for
/// figment's defaults, whose URL is a SQLite path and is shown whole.
fn serialize_shown_url<S: serde::Serializer>(url: &str, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&crate::backend::shown_url(url))
}

/// A configuration value that is a secret: neither `Debug` nor `Serialize`
/// (what `endusers config` prints) shows it. Settings are only serialized
/// for printing and for figment's defaults, which hold no secrets.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("<redacted>")
    }
}

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

fn secrets_list_or_csv<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<Secret>, D::Error> {
    Ok(list_or_csv(deserializer)?.into_iter().map(Secret).collect())
}

fn list_or_csv<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrCsv {
        List(Vec<String>),
        Csv(String),
    }
    Ok(match ListOrCsv::deserialize(deserializer)? {
        ListOrCsv::List(list) => list,
        ListOrCsv::Csv(csv) => csv
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

/// Durations as humantime text: `2s`, `15m`, `24h`, `7d`.
mod humantime_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_duration(*duration))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!("{e} (use a duration such as 2s, 15m, 24h or 7d)"))
        })
    }
}

/// Rate-limit policies as text: `30/s,300/m,60000/d` or `off`.
mod rate_policy {
    use endusers_core::RatePolicy;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(policy: &RatePolicy, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(policy)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<RatePolicy, D::Error> {
        let text = String::deserialize(deserializer)?;
        RatePolicy::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Duration lists as comma-separated humantime text: `0s,5s,5m`.
mod humantime_list {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(waits: &[Duration], serializer: S) -> Result<S::Ok, S::Error> {
        let text: Vec<String> = waits
            .iter()
            .map(|d| humantime::format_duration(*d).to_string())
            .collect();
        serializer.collect_str(&text.join(","))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Duration>, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|part| {
                humantime::parse_duration(part).map_err(|e| {
                    serde::de::Error::custom(format!(
                        "{part:?}: {e} (use a list such as 0s,5s,5m,30m)"
                    ))
                })
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's test Jail returns its own error type
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn flags_beat_env_beat_file_beat_defaults() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "endusers.toml",
                r#"
                    listen = "127.0.0.1:9001"
                    database_url = "sqlite://file.db"
                    max_body_bytes = 1000
                    shutdown_grace = "2m"
                "#,
            )?;
            jail.set_env("ENDUSERS_DATABASE_URL", "sqlite://env.db");
            jail.set_env("ENDUSERS_MAX_BODY_BYTES", "2000");
            let flags = FlagOverrides {
                database_url: Some("sqlite://flag.db".into()),
                ..FlagOverrides::default()
            };
            let settings =
                Settings::load(Some(Path::new("endusers.toml")), &flags).map_err(|e| *e)?;
            assert_eq!(settings.listen.port(), 9001, "file beats default");
            assert_eq!(settings.max_body_bytes, 2000, "env beats file");
            assert_eq!(settings.database_url, "sqlite://flag.db", "flag beats env");
            assert_eq!(settings.shutdown_grace, Duration::from_secs(120));
            assert_eq!(settings.max_metadata_bytes, 10_240, "default");
            assert_eq!(settings.webhook_retry_schedule.len(), 8);
            assert_eq!(settings.webhook_retry_schedule[2], Duration::from_secs(300));
            Ok(())
        });
    }

    #[test]
    fn bad_values_and_unknown_keys_are_named() {
        Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "shutdown_grace = \"soon\"")?;
            let err =
                Settings::load(Some(Path::new("bad.toml")), &FlagOverrides::default()).unwrap_err();
            assert!(err.to_string().contains("shutdown_grace"), "{err}");
            jail.create_file("typo.toml", "listne = \"127.0.0.1:1\"")?;
            let err = Settings::load(Some(Path::new("typo.toml")), &FlagOverrides::default())
                .unwrap_err();
            assert!(err.to_string().contains("listne"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn the_test_suites_own_variables_are_not_settings() {
        Jail::expect_with(|jail| {
            jail.set_env("ENDUSERS_TEST_REDIS_URL", "redis://127.0.0.1:6390");
            jail.set_env("ENDUSERS_TEST_PYTHON", "/usr/bin/python3");
            Settings::load(None, &FlagOverrides::default()).map_err(|e| *e)?;
            Ok(())
        });
    }

    #[test]
    fn volatile_keys_take_a_comma_separated_env_value() {
        Jail::expect_with(|jail| {
            jail.set_env("ENDUSERS_VOLATILE_METADATA_KEYS", "seen_at, tmp_*");
            let settings = Settings::load(None, &FlagOverrides::default()).map_err(|e| *e)?;
            assert_eq!(settings.volatile_metadata_keys, ["seen_at", "tmp_*"]);
            Ok(())
        });
    }
}
