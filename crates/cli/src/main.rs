//! `endusers`: serve the End Users API, and administer agents and keys.

mod backend;
mod commands;
mod config;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{FlagOverrides, Settings};

/// mimalloc: requests allocate and free many small buffers across two
/// worker threads, where it is measurably cheaper than glibc's allocator
/// (bench/HISTORY.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "endusers",
    version,
    about = "End-user profiles for a customer-support AI agent (Ada End Users API v2)"
)]
struct Cli {
    /// A TOML configuration file.
    #[arg(long, global = true, env = "ENDUSERS_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// The database, e.g. sqlite://./data/endusers.db (overrides config and env).
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API until SIGTERM or SIGINT.
    Serve {
        /// Address to listen on (overrides config and env).
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Manage agents (tenants).
    Agents {
        #[command(subcommand)]
        command: commands::agents::AgentsCommand,
    },
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: commands::keys::KeysCommand,
    },
    /// Manage the master keys that seal sensitive metadata.
    MasterKey {
        #[command(subcommand)]
        command: commands::master_key::MasterKeyCommand,
    },
    /// Print the effective configuration as TOML (secrets redacted).
    Config,
    /// Print the OpenAPI document.
    Openapi,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let flags = FlagOverrides {
        listen: match &cli.command {
            Command::Serve { listen } => *listen,
            _ => None,
        },
        database_url: cli.database_url.clone(),
    };
    let settings = match Settings::load(cli.config.as_deref(), &flags) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("error: invalid configuration: {err}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async move {
        match cli.command {
            Command::Serve { .. } => commands::serve::run(settings).await,
            Command::Migrate => commands::migrate(&settings).await,
            Command::Agents { command } => commands::agents::run(command, &settings).await,
            Command::Keys { command } => commands::keys::run(command, &settings).await,
            Command::MasterKey { command } => commands::master_key::run(command, &settings).await,
            Command::Config => commands::print_config(&settings),
            Command::Openapi => commands::print_openapi(),
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
