use clap::Subcommand;
use endusers_core::{AgentHandle, Clock, RatePolicy, SystemClock};
use endusers_store::AgentLimits;

use super::{CommandResult, open_store};
use crate::config::Settings;

#[derive(Debug, Subcommand)]
pub enum AgentsCommand {
    /// Create an agent (a tenant: one AI agent with its own users and keys).
    Create { handle: String },
    /// List agents.
    List,
    /// Give an agent its own rate limits (`100/s,1000/m`, `off`, or
    /// `default` for the configured ones); takes effect on the next request.
    SetLimits {
        handle: String,
        /// For /v2/end-users/{id} and conversation routes.
        #[arg(long, value_name = "POLICY")]
        end_user: Option<String>,
        /// For every other API route.
        #[arg(long, value_name = "POLICY")]
        global: Option<String>,
    },
}

/// `default` clears an override; anything else must be a valid policy.
fn override_policy(
    flag: &str,
    given: Option<String>,
    current: Option<RatePolicy>,
) -> Result<Option<RatePolicy>, String> {
    match given {
        None => Ok(current),
        Some(text) if text.eq_ignore_ascii_case("default") => Ok(None),
        Some(text) => RatePolicy::parse(&text)
            .map(Some)
            .map_err(|e| format!("--{flag}: {e}")),
    }
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
        AgentsCommand::SetLimits {
            handle,
            end_user,
            global,
        } => set_limits(store.as_ref(), &handle, end_user, global).await,
    };
    store.close().await;
    outcome
}

async fn set_limits(
    store: &dyn endusers_store::Store,
    handle: &str,
    end_user: Option<String>,
    global: Option<String>,
) -> CommandResult {
    let handle = AgentHandle::parse(handle).map_err(|e| format!("handle {e}"))?;
    let current = store
        .agent_limits(&handle)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no agent has the handle {handle}"))?;
    let limits = AgentLimits {
        end_user: override_policy("end-user", end_user, current.end_user.clone())?,
        global: override_policy("global", global, current.global.clone())?,
    };
    // Nothing to change writes nothing, and so drops no server's key cache.
    if limits != current {
        store
            .set_agent_limits(&handle, limits.clone())
            .await
            .map_err(|e| e.to_string())?;
    }
    let shown =
        |o: &Option<RatePolicy>| o.as_ref().map_or("default".to_owned(), ToString::to_string);
    println!(
        "{handle}\tend_user={}\tglobal={}",
        shown(&limits.end_user),
        shown(&limits.global)
    );
    Ok(())
}
