use clap::Subcommand;
use endusers_core::{AgentHandle, Clock, SystemClock};
use endusers_store::{NewApiKey, Store};

use super::{CommandResult, open_store};
use crate::config::Settings;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make an API key; prints only the key, which is shown this once.
    Create {
        /// The agent the key acts for.
        #[arg(long, default_value = AgentHandle::DEFAULT)]
        agent: String,
        /// A label to recognise the key by in listings.
        #[arg(long)]
        name: Option<String>,
    },
    /// List keys (ids and labels; the keys themselves are not stored).
    List,
    /// Revoke a key by its id (the 16 hex characters after `eu_`).
    Revoke { key_id: String },
}

pub async fn run(command: KeysCommand, settings: &Settings) -> CommandResult {
    let store = open_store(settings).await?;
    let outcome = match command {
        KeysCommand::Create { agent, name } => create(store.as_ref(), &agent, name).await,
        KeysCommand::List => list(store.as_ref()).await,
        KeysCommand::Revoke { key_id } => {
            match store.revoke_api_key(&key_id, SystemClock.now()).await {
                Ok(true) => {
                    eprintln!("revoked key {key_id}");
                    Ok(())
                }
                Ok(false) => Err(format!("no active key has the id {key_id}")),
                Err(err) => Err(err.to_string()),
            }
        }
    };
    store.close().await;
    outcome
}

async fn create(store: &dyn Store, agent: &str, name: Option<String>) -> CommandResult {
    let handle = AgentHandle::parse(agent).map_err(|e| format!("--agent {e}"))?;
    let agent = store
        .find_agent(&handle)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!(
                "no agent has the handle {handle}; create it with `endusers agents create {handle}`"
            )
        })?;
    let issued = endusers_server::auth::issue_key();
    store
        .insert_api_key(NewApiKey {
            key_id: issued.key_id.clone(),
            agent_id: agent.id,
            name,
            secret_hash: issued.secret_hash,
            created_at: SystemClock.now(),
        })
        .await
        .map_err(|e| e.to_string())?;
    println!("{}", issued.token);
    eprintln!(
        "created key {} for agent {}; store it now, it is not shown again",
        issued.key_id, agent.handle
    );
    Ok(())
}

async fn list(store: &dyn Store) -> CommandResult {
    let keys = store.list_api_keys().await.map_err(|e| e.to_string())?;
    println!("KEY_ID\tAGENT\tNAME\tCREATED\tREVOKED");
    for key in keys {
        println!(
            "{}\t{}\t{}\t{}\t{}",
            key.key_id,
            key.agent_handle,
            key.name.as_deref().unwrap_or("-"),
            key.created_at,
            key.revoked_at
                .map_or_else(|| "-".to_owned(), |t| t.to_string())
        );
    }
    Ok(())
}
