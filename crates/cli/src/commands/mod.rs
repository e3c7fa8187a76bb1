pub mod agents;
pub mod keys;
pub mod serve;

use std::sync::Arc;

use endusers_core::{Clock, SystemClock};
use endusers_store::Store;

use crate::config::Settings;

/// What a command can fail with; printed as `error: …`, exit status 1.
pub type CommandResult = Result<(), String>;

pub async fn open_store(settings: &Settings) -> Result<Arc<dyn Store>, String> {
    endusers_store::open(&settings.database_url, SystemClock.now())
        .await
        .map_err(|e| format!("cannot open {}: {e}", settings.database_url))
}

pub async fn migrate(settings: &Settings) -> CommandResult {
    let store = open_store(settings).await?;
    store.close().await;
    println!("the database at {} is up to date", settings.database_url);
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
