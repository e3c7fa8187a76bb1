//! Background upkeep, on a timer: notice a master-key rotation, delete
//! expired sensitive values and orphaned end users, prune old webhook
//! history, and re-seal values still under retired keys. Each step works
//! in bounded batches so it never holds the writer long.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use endusers_core::Clock;
use endusers_store::{ConversationStore, Maintenance as StoreUpkeep, SensitiveStore, StoreError};
use tokio::sync::watch;

use crate::vault::{KeyFile, Vault};

/// What upkeep works on, and nothing more.
#[derive(Clone)]
pub struct Upkeep {
    pub sensitive: Arc<dyn SensitiveStore>,
    /// Where orphaned end users are found and deleted.
    pub conversations: Arc<dyn ConversationStore>,
    pub history: Arc<dyn StoreUpkeep>,
    pub vault: Arc<Vault>,
    pub clock: Arc<dyn Clock>,
    /// The master-key file to watch for rotations, when keys live in one.
    pub key_file: Option<KeyFile>,
    /// Webhook attempts and messages older than this are pruned.
    pub webhook_retention: Duration,
    /// How often a pass runs.
    pub interval: Duration,
}

const SWEEP_BATCH: usize = 1000;
/// Old webhook history is pruned at most this many rows a pass.
const PRUNE_BATCH: usize = 1000;
const RESEAL_BATCH: usize = 500;
/// Re-sealing is spread over ticks so a large backlog does not crowd out
/// request traffic.
const RESEAL_BATCHES_PER_TICK: usize = 20;

/// What one pass did, for tests and logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub keyring_reloaded: bool,
    pub expired_deleted: usize,
    pub resealed: usize,
    pub webhook_history_pruned: usize,
    pub orphans_deleted: usize,
}

/// Runs a batch deletion until a batch comes back short of
/// [`SWEEP_BATCH`]; returns how many rows went. A failure is logged and
/// ends the drain: the next pass tries again.
async fn drain<F, Fut>(what: &str, mut batch: F) -> usize
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<usize, StoreError>>,
{
    let mut total = 0;
    loop {
        match batch().await {
            Ok(deleted) => {
                total += deleted;
                if deleted < SWEEP_BATCH {
                    return total;
                }
            }
            Err(err) => {
                tracing::error!(error = %err, "{what} failed");
                return total;
            }
        }
    }
}

/// Remembers what the last pass saw of the key file.
#[derive(Debug, Default)]
pub struct Maintenance {
    key_file_seen: Option<SystemTime>,
}

impl Maintenance {
    /// The first pass always reads the key file and compares it with the
    /// keys in use, so a rotation made while the server was starting counts.
    pub fn new() -> Self {
        Self::default()
    }

    /// One pass of every task.
    pub async fn run_once(&mut self, state: &Upkeep) -> Report {
        let mut report = Report {
            keyring_reloaded: self.reload_keyring(state),
            ..Report::default()
        };
        let now = state.clock.now();
        report.expired_deleted = drain("sweeping expired sensitive values", || {
            state
                .sensitive
                .delete_expired_sensitive_values(now, SWEEP_BATCH)
        })
        .await;
        report.orphans_deleted = drain("deleting orphaned end users", || {
            state.conversations.delete_orphans(now, SWEEP_BATCH)
        })
        .await;
        let before = now.saturating_sub(state.webhook_retention);
        match state
            .history
            .prune_webhook_history(before, PRUNE_BATCH)
            .await
        {
            Ok(pruned) => report.webhook_history_pruned = pruned,
            Err(err) => tracing::error!(error = %err, "pruning webhook history failed"),
        }
        for _ in 0..RESEAL_BATCHES_PER_TICK {
            match state
                .vault
                .reseal_batch(state.sensitive.as_ref(), RESEAL_BATCH)
                .await
            {
                Ok(0) => break,
                Ok(moved) => report.resealed += moved,
                Err(err) => {
                    tracing::error!(error = %err, "re-sealing sensitive values failed");
                    break;
                }
            }
        }
        if report != Report::default() {
            tracing::info!(
                expired_deleted = report.expired_deleted,
                resealed = report.resealed,
                webhook_history_pruned = report.webhook_history_pruned,
                orphans_deleted = report.orphans_deleted,
                keyring_reloaded = report.keyring_reloaded,
                "maintenance pass"
            );
        }
        report
    }

    fn reload_keyring(&mut self, state: &Upkeep) -> bool {
        let Some(file) = &state.key_file else {
            return false;
        };
        let modified = file.modified();
        if modified == self.key_file_seen {
            return false;
        }
        match file.load() {
            Ok(keyring) => {
                self.key_file_seen = modified;
                let active = keyring.active().id().to_owned();
                if state.vault.keyring().as_ref() == &keyring {
                    return false;
                }
                state.vault.replace_keyring(keyring);
                tracing::info!(active_key = %active, "master keys reloaded from the key file");
                true
            }
            Err(err) => {
                tracing::error!(error = %err, "the key file changed but cannot be read; keeping the current keys");
                false
            }
        }
    }
}

/// Runs passes every `maintenance_interval` until `stop` turns true.
pub async fn run(state: Upkeep, mut stop: watch::Receiver<bool>) {
    let mut maintenance = Maintenance::new();
    loop {
        maintenance.run_once(&state).await;
        tokio::select! {
            () = tokio::time::sleep(state.interval) => {}
            _ = stop.changed() => return,
        }
    }
}
