use clap::Subcommand;
use endusers_core::{AgentHandle, Clock, SystemClock};

use super::{CommandResult, open_store};
use crate::config::Settings;

#[derive(Debug, Subcommand)]
pub enum AgentsCommand {
    /// Create an agent (a tenant: one AI agent with its own users and keys).
    Create { handle: String },
    /// List agents.
    List,
}

pub async fn run(command: AgentsCommand, settings: &Settings) -> CommandResult {
    let store = open_store(settings).await?;
    let outcome = match command {
        AgentsCommand::Create { handle } => match AgentHandle::parse(&handle) {
            Err(err) => Err(format!("handle {err}")),
            Ok(handle) => store
                .create_agent(handle, SystemClock.now())
                .await
                .map(|agent| println!("{}", agent.handle))
                .map_err(|e| e.to_string()),
        },
        AgentsCommand::List => store
            .list_agents()
            .await
            .map_err(|e| e.to_string())
            .map(|agents| {
                for agent in agents {
                    println!("{}\t{}", agent.handle, agent.created_at);
                }
            }),
    };
    store.close().await;
    outcome
}
