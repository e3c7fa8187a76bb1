//! `endusers serve`: run the API until a signal, then stop cleanly.

use std::future::Future;
use std::sync::Arc;

use endusers_core::SystemClock;
use endusers_server::AppState;
use endusers_server::vault::Vault;

use super::{CommandResult, open_store};
use crate::config::Settings;

pub async fn run(settings: Settings) -> CommandResult {
    init_logging(&settings.log)?;
    let stop_signal = stop_signal()?;
    let (keyring, key_file) = super::load_keyring(&settings)?;
    tracing::info!(active_key = %keyring.active().id(), retired_keys = keyring.retired().len(), "master keys loaded");
    let vault = Arc::new(Vault::new(keyring, settings.sensitive_ttl));
    let store = open_store(&settings).await?;
    let listener = match tokio::net::TcpListener::bind(settings.listen).await {
        Ok(listener) => listener,
        Err(err) => {
            store.close().await;
            return Err(format!("cannot listen on {}: {err}", settings.listen));
        }
    };
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let database = crate::backend::shown_url(&settings.database_url);
    tracing::info!(%address, %database, "listening on {address}");

    let mut config = settings.server_config();
    config.key_file = key_file;
    let state = AppState::new(Arc::clone(&store), Arc::new(SystemClock), config, vault);
    let outcome = endusers_server::serve(listener, state, stop_signal, settings.shutdown_grace)
        .await
        .map_err(|e| format!("the server failed: {e}"));
    // Queued writes are committed before the store closes.
    store.close().await;
    tracing::info!("stopped");
    outcome
}

/// Resolves at the first SIGTERM or SIGINT. The handlers are installed
/// when this is called, not when it is first polled, so a signal that
/// arrives right after the "listening" line is not lost.
fn stop_signal() -> Result<impl Future<Output = ()>, String> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate =
            signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
        let mut interrupt =
            signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle SIGINT: {e}"))?;
        Ok(async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

fn init_logging(filter: &str) -> CommandResult {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| format!("log filter {filter:?}: {e}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init()
        .map_err(|e| e.to_string())
}
