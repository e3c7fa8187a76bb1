//! The endusers HTTP server: the End Users API v2 over a [`Store`].

mod answer;
pub mod api;
pub mod auth;
mod body;
pub mod error;
mod ids;
pub mod limits;
pub mod metrics;
mod pagination;
pub mod vault;
pub mod webhooks;
pub mod workers;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::Uri;
use endusers_core::{Clock, OrphanRule, ProfilePolicy};
use endusers_store::Store;
use tokio::net::TcpListener;

use crate::api::part::Part;
use crate::error::{ApiError, ensure_envelope};
use crate::ids::Ids;
use crate::limits::{Limiter, RateLimitSettings};
use crate::vault::{KeyFile, Vault};
use crate::webhooks::WebhookSettings;

/// Settings the HTTP layer needs; the binary builds them from its config.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Request bodies above this many bytes are refused with 413 unread.
    pub max_body_bytes: usize,
    pub policy: ProfilePolicy,
    /// How often background upkeep runs (see [`maintenance`]).
    pub maintenance_interval: Duration,
    /// The master-key file to watch for rotations, when keys live in one.
    pub key_file: Option<KeyFile>,
    pub webhooks: WebhookSettings,
    /// A user made by `POST /v2/end-users/` that no conversation uses within
    /// this is deleted.
    pub orphan_ttl: Duration,
    pub rate_limits: RateLimitSettings,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 4096,
            policy: ProfilePolicy::default(),
            maintenance_interval: Duration::from_secs(10),
            key_file: None,
            webhooks: WebhookSettings::default(),
            orphan_ttl: Duration::from_secs(24 * 3600),
            rate_limits: RateLimitSettings::default(),
        }
    }
}

pub use ids::MESSAGE_ID_PREFIX;

/// The application: what the routes, the middleware and the workers are
/// made from. Each handler module reaches only its own part (see
/// [`api::part`]); the workers get theirs from [`AppState::dispatcher`]
/// and [`AppState::upkeep`]. One pointer: axum clones the state for every
/// extractor and layer of every request, so a clone is one counter
/// increment rather than one per part.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The parts of [`AppState`], reached through it.
pub struct Shared {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<ServerConfig>,
    pub vault: Arc<Vault>,
    pub limiter: Arc<Limiter>,
    pub webhook_metrics: Arc<metrics::WebhookMetrics>,
    end_users: api::end_users::EndUsersApi,
    conversations: api::conversations::ConversationsApi,
    channels: api::channels::ChannelsApi,
    webhooks: api::webhooks::WebhooksApi,
    health: api::health::HealthApi,
}

impl AppState {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: ServerConfig,
        vault: Arc<Vault>,
    ) -> Self {
        let limiter = Arc::new(Limiter::new(&config.rate_limits));
        let ids = Ids::default();
        let policy = Arc::new(config.policy.clone());
        let end_users = Part::new(api::end_users::EndUsers {
            store: store.clone(),
            clock: Arc::clone(&clock),
            ids: ids.clone(),
            vault: Arc::clone(&vault),
            policy: Arc::clone(&policy),
            orphans: OrphanRule {
                ttl: config.orphan_ttl,
            },
        });
        let conversations = Part::new(api::conversations::Conversations {
            store: store.clone(),
            clock: Arc::clone(&clock),
            ids: ids.clone(),
            policy,
        });
        let channels = Part::new(api::channels::Channels {
            store: store.clone(),
            clock: Arc::clone(&clock),
            ids: ids.clone(),
        });
        let webhooks = Part::new(api::webhooks::Webhooks {
            store: store.clone(),
            clock: Arc::clone(&clock),
            ids,
            allow_insecure: config.webhooks.allow_insecure,
        });
        let health = Part::new(api::health::Readiness {
            store: store.clone(),
        });
        Self(Arc::new(Shared {
            store,
            clock,
            limiter,
            config: Arc::new(config),
            vault,
            webhook_metrics: Arc::new(metrics::WebhookMetrics::default()),
            end_users,
            conversations,
            channels,
            webhooks,
            health,
        }))
    }
}

impl AppState {
    /// What the webhook dispatcher works with.
    pub fn dispatcher(&self) -> workers::dispatcher::Dispatcher {
        workers::dispatcher::Dispatcher {
            outbox: self.store.clone(),
            clock: Arc::clone(&self.clock),
            settings: Arc::new(self.config.webhooks.clone()),
            metrics: Arc::clone(&self.webhook_metrics),
        }
    }

    /// What the upkeep passes work on.
    pub fn upkeep(&self) -> workers::maintenance::Upkeep {
        workers::maintenance::Upkeep {
            sensitive: self.store.clone(),
            conversations: self.store.clone(),
            history: self.store.clone(),
            vault: Arc::clone(&self.vault),
            clock: Arc::clone(&self.clock),
            key_file: self.config.key_file.clone(),
            webhook_retention: self.config.webhooks.retention,
            interval: self.config.maintenance_interval,
        }
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The routes: authentication and rate limits wrap only requests a route
/// will serve (an unknown path is 404 and a wrong method 405, key or no
/// key, and neither spends budget), and unknown paths fall back to 404.
pub fn routes(state: AppState) -> Router {
    api::router()
        .route("/metrics", axum::routing::get(metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limits::enforce,
        ))
        // `route_layer` wraps each route's 405 fallback as well; put the
        // plain one back so a wrong method neither looks a key up nor
        // spends budget.
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .fallback(|| async { ApiError::NotFound("no such path") })
        .with_state(state)
}

/// The whole application: [`routes`] behind what every request passes
/// through: the trailing slash dropped, the error envelope on every
/// failure, and, when the log shows them, each request and its answer.
/// These wrap the router once rather than through `Router::layer`, which
/// wraps every route and its fallback separately and so boxes and clones
/// each layer again per request.
pub fn app(
    state: AppState,
) -> impl tower::Service<
    Request,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone
+ Send
+ Sync
+ 'static {
    // The trace layer logs each request and answer at DEBUG, which the
    // default filter leaves out, yet it still reads the clock three times
    // a request and wraps every answer's body, a share of a GET's CPU that
    // shows in a profile. It is only added when its lines would be written (the
    // filter is set once, at start); server errors are logged either way,
    // by `ensure_envelope`.
    let trace = request_lines_shown().then(|| {
        tower::ServiceBuilder::new()
            .map_response(|response: axum::http::Response<_>| response.map(axum::body::Body::new))
            .layer(tower_http::trace::TraceLayer::new_for_http())
    });
    tower::ServiceBuilder::new()
        .map_request(without_trailing_slash)
        .map_response(ensure_envelope)
        .option_layer(trace)
        .service(routes(state))
}

/// Whether the log shows any of the trace layer's DEBUG lines: its span,
/// or its line when a request starts or is answered. Each has a target of
/// its own, and a filter may name one of them alone.
fn request_lines_shown() -> bool {
    use tracing::Level;
    tracing::enabled!(target: "tower_http::trace::make_span", Level::DEBUG)
        || tracing::enabled!(target: "tower_http::trace::on_request", Level::DEBUG)
        || tracing::enabled!(target: "tower_http::trace::on_response", Level::DEBUG)
}

/// Prometheus metrics.
async fn metrics(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        metrics::render(&state),
    )
}

/// Every API path is served with and without a trailing slash: the slash
/// is dropped before routing (Swagger UI's own paths keep theirs).
fn without_trailing_slash(mut request: Request) -> Request {
    let path = request.uri().path();
    if path.len() > 1 && path.ends_with('/') && !path.starts_with("/api/docs") {
        let trimmed = path.trim_end_matches('/');
        let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
        let rebuilt = match request.uri().query() {
            Some(query) => format!("{trimmed}?{query}"),
            None => trimmed.to_owned(),
        };
        if let Ok(uri) = rebuilt.parse::<Uri>() {
            *request.uri_mut() = uri;
        }
    }
    request
}

/// Serves, with background upkeep, until `shutdown` completes; then lets
/// in-flight requests finish for up to `grace`, stops the upkeep (always,
/// grace or not) and returns. The caller closes the store afterwards.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let upkeep = tokio::spawn(workers::maintenance::run(state.upkeep(), stopped.clone()));
    let dispatcher = tokio::spawn(workers::dispatcher::run(state.dispatcher(), stopped));
    let app = app(state);
    let (signalled, on_signal) = tokio::sync::oneshot::channel::<()>();
    let served = axum::serve(
        listener,
        axum::ServiceExt::<Request>::into_make_service_with_connect_info::<std::net::SocketAddr>(
            app,
        ),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!("shutting down: finishing in-flight requests");
        let _ = signalled.send(());
    });
    let grace_spent = async {
        if on_signal.await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let served = tokio::select! {
        served = served => served,
        () = grace_spent => {
            tracing::warn!(?grace, "requests were still in flight when the shutdown grace ran out");
            Ok(())
        }
    };
    let _ = stop.send(true);
    let _ = upkeep.await;
    let _ = dispatcher.await;
    served
}

#[cfg(test)]
mod tests {
    use super::request_lines_shown;

    /// Whether the trace layer is built under the log filter `filter`.
    fn built_under(filter: &str) -> bool {
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::sink)
            .finish();
        tracing::subscriber::with_default(subscriber, request_lines_shown)
    }

    #[test]
    fn the_trace_layer_is_built_when_a_filter_shows_any_of_its_lines() {
        for filter in [
            "debug",
            "info,tower_http=debug",
            "info,tower_http::trace::make_span=debug",
            "info,tower_http::trace::on_request=debug",
            "info,tower_http::trace::on_response=debug",
        ] {
            assert!(built_under(filter), "{filter}");
        }
        for filter in [
            "info",
            "warn,endusers=debug",
            "info,tower_http::trace::on_failure=debug",
        ] {
            assert!(!built_under(filter), "{filter}");
        }
    }
}
