//! `endusers master-key`: the keys sensitive values are sealed with.

use clap::Subcommand;
use endusers_server::vault::{KeyFile, MasterKey};

use super::{CommandResult, open_store};
use crate::config::Settings;

#[derive(Debug, Subcommand)]
pub enum MasterKeyCommand {
    /// Print a new random key (for `master_key` in the configuration).
    Generate,
    /// Show the active and retired key ids and how many values each seals.
    Status,
    /// Make a new active key in the key file; the running server picks it
    /// up and re-seals older values in the background.
    Rotate,
    /// Remove retired keys that no stored value uses any more.
    DropRetired,
}

pub async fn run(command: MasterKeyCommand, settings: &Settings) -> CommandResult {
    match command {
        MasterKeyCommand::Generate => {
            println!("{}", MasterKey::generate().to_base64());
            Ok(())
        }
        MasterKeyCommand::Status => status(settings).await,
        MasterKeyCommand::Rotate => {
            let file = key_file_for_rotation(settings)?;
            let keyring = file.rotate().map_err(|e| e.to_string())?;
            println!("active key is now {}", keyring.active().id());
            eprintln!(
                "values sealed with the retired keys are re-sealed by the running server (or the next one to start); \
                 then `endusers master-key drop-retired` removes the retired keys"
            );
            Ok(())
        }
        MasterKeyCommand::DropRetired => drop_retired(settings).await,
    }
}

fn key_file_for_rotation(settings: &Settings) -> Result<KeyFile, String> {
    if settings.master_key.is_some() {
        return Err("master_key is set in the configuration: make a key with `endusers master-key generate`, \
                    set it as master_key, move the old one to retired_master_keys and restart"
            .to_owned());
    }
    existing_key_file(settings)
}

/// The key file, which must already exist: admin commands read or change
/// the keys a server made, and never make one themselves.
fn existing_key_file(settings: &Settings) -> Result<KeyFile, String> {
    let file = super::key_file(settings)?;
    if !file.exists() {
        return Err(format!(
            "there is no key file at {} yet (start the server once)",
            file.path().display()
        ));
    }
    Ok(file)
}

/// How many stored values each key id seals.
async fn sensitive_value_counts(settings: &Settings) -> Result<Vec<(String, u64)>, String> {
    let store = open_store(settings).await?;
    let counts = store
        .count_sensitive_values_by_key()
        .await
        .map_err(|e| e.to_string());
    store.close().await;
    counts
}

async fn status(settings: &Settings) -> CommandResult {
    let keyring = if settings.master_key.is_some() {
        super::load_keyring(settings)?.0
    } else {
        existing_key_file(settings)?
            .load()
            .map_err(|e| e.to_string())?
    };
    let counts = sensitive_value_counts(settings).await?;
    let count = |id: &str| counts.iter().find(|(k, _)| k == id).map_or(0, |(_, n)| *n);
    println!(
        "active\t{}\t{} values",
        keyring.active().id(),
        count(keyring.active().id())
    );
    for key in keyring.retired() {
        println!("retired\t{}\t{} values", key.id(), count(key.id()));
    }
    for (id, n) in counts.iter().filter(|(id, _)| keyring.find(id).is_none()) {
        println!("unknown\t{id}\t{n} values (no configured key opens these)");
    }
    Ok(())
}

async fn drop_retired(settings: &Settings) -> CommandResult {
    let file = key_file_for_rotation(settings)?;
    let counts = sensitive_value_counts(settings).await?;
    let (keyring, dropped) = file
        .drop_retired(|id| counts.iter().any(|(k, n)| k == id && *n > 0))
        .map_err(|e| e.to_string())?;
    for id in &dropped {
        println!("dropped {id}");
    }
    for key in keyring.retired() {
        eprintln!(
            "kept {}: values are still sealed with it (the server re-seals them in the background)",
            key.id()
        );
    }
    Ok(())
}
