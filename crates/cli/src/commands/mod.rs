pub mod agents;
pub mod keys;
pub mod master_key;
pub mod serve;

use std::sync::Arc;

use endusers_core::{Clock, SystemClock};
use endusers_server::vault::{KeyFile, Keyring, MasterKey};
use endusers_store::Store;

use crate::backend;
use crate::config::Settings;

/// What a command can fail with; printed as `error: …`, exit status 1.
pub type CommandResult = Result<(), String>;

pub async fn open_store(settings: &Settings) -> Result<Arc<dyn Store>, String> {
    backend::open(&settings.database_url, SystemClock.now())
        .await
        .map_err(|e| {
            let url = backend::shown_url(&settings.database_url);
            format!("cannot open {url}: {e}")
        })
}

/// The key file beside the database.
pub fn key_file(settings: &Settings) -> Result<KeyFile, String> {
    backend::key_file(&settings.database_url)
        .ok_or_else(|| "master_key is required when the database is not SQLite".to_owned())
}

/// The master keys: from the configuration when `master_key` is set,
/// otherwise from the key file beside the database, made on first use.
/// The key file is returned so a server can notice rotations.
pub fn load_keyring(settings: &Settings) -> Result<(Keyring, Option<KeyFile>), String> {
    if let Some(active) = &settings.master_key {
        let active =
            MasterKey::parse_base64(active.expose()).map_err(|e| format!("master_key: {e}"))?;
        let retired = settings
            .retired_master_keys
            .iter()
            .map(|k| MasterKey::parse_base64(k.expose()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("retired_master_keys: {e}"))?;
        return Ok((Keyring::new(active, retired), None));
    }
    let file = key_file(settings)?;
    let (keyring, created) = file.load_or_create().map_err(|e| e.to_string())?;
    if created {
        tracing::warn!(
            path = %file.path().display(),
            "no master_key configured: generated one into {}; back it up with the database, \
             without it sensitive values cannot be read",
            file.path().display()
        );
    }
    Ok((keyring, Some(file)))
}

pub async fn migrate(settings: &Settings) -> CommandResult {
    let store = open_store(settings).await?;
    store.close().await;
    println!(
        "the database at {} is up to date",
        backend::shown_url(&settings.database_url)
    );
    Ok(())
}

pub fn print_config(settings: &Settings) -> CommandResult {
    let text = toml_text(settings)?;
    print!("{text}");
    Ok(())
}

fn toml_text(settings: &Settings) -> Result<String, String> {
    // figment can render what it extracted; serialize through its Value.
    let value = figment::value::Value::serialize(settings).map_err(|e| e.to_string())?;
    let dict = value
        .into_dict()
        .ok_or("the configuration is not a table")?;
    let mut out = String::new();
    // Secrets serialize as "<redacted>": whether they are set shows, never
    // what they are.
    for (key, value) in dict {
        out.push_str(&format!("{key} = {}\n", render(&value)));
    }
    Ok(out)
}

fn render(value: &figment::value::Value) -> String {
    use figment::value::Value;
    match value {
        Value::String(_, s) => serde_json::to_string(s).unwrap_or_default(),
        Value::Num(_, n) => n
            .to_u128()
            .map(|n| n.to_string())
            .unwrap_or_else(|| format!("{n:?}")),
        Value::Bool(_, b) => b.to_string(),
        Value::Array(_, items) => format!(
            "[{}]",
            items.iter().map(render).collect::<Vec<_>>().join(", ")
        ),
        Value::Char(_, c) => serde_json::to_string(&c.to_string()).unwrap_or_default(),
        Value::Dict(_, _) | Value::Empty(_, _) => "{}".to_owned(),
    }
}

pub fn print_openapi() -> CommandResult {
    let text = endusers_server::api::openapi()
        .to_pretty_json()
        .map_err(|e| e.to_string())?;
    println!("{text}");
    Ok(())
}
