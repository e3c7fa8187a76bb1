//! `endusers-bench`: builds the release server, loads it with end users,
//! drives it from this separate process and reports every figure against
//! the machine's own ceiling (a minimal server answering fixed bytes under
//! the same load generator).
//!
//! ```sh
//! cargo run --release -p endusers-bench -- all            # 100,000 users, 10 s, 64 connections
//! cargo run --release -p endusers-bench -- all --smoke    # 500 users, 1 s, 8 connections
//! ```

mod calibrate;
mod ceiling;
mod chart;
mod cores;
mod load;
mod report;
mod rounds;
mod scenarios;
mod server;
mod sqlite;
mod webhooks;
mod writer;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Errors are reported, never unwrapped.
pub type Result<T, E = Box<dyn std::error::Error + Send + Sync>> = std::result::Result<T, E>;

#[derive(Debug, Parser)]
#[command(
    name = "endusers-bench",
    about = "Benchmark the endusers server against the machine's own ceiling"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build the release server, run every scenario and write the results.
    All(AllArgs),
    /// The ceiling: a minimal server answering fixed bytes (started by `all`).
    #[command(hide = true)]
    CeilingServe {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
}

#[derive(Debug, clap::Args)]
struct AllArgs {
    /// A tiny run for CI: 500 users, 1 s per scenario, 8 connections.
    #[arg(long)]
    smoke: bool,
    /// End users loaded before the scenarios (default 100000).
    #[arg(long, value_name = "N")]
    users: Option<u64>,
    /// Seconds each scenario runs (default 10).
    #[arg(long, value_name = "S")]
    seconds: Option<f64>,
    /// Concurrent connections of the load generator (default 64).
    #[arg(long, value_name = "C")]
    connections: Option<usize>,
    /// The storage backend (default: a fresh SQLite file in a temporary directory).
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Run only these scenarios (the ceiling always runs); a partial run
    /// writes its files with a `-partial` suffix and leaves `latest.md` alone.
    #[arg(long, value_delimiter = ',', value_name = "SCENARIO")]
    only: Vec<Scenario>,
    /// Deliveries/s offered to 1 and to 10 endpoints (PATCHes paced at the
    /// rate ÷ endpoints); 0 sends PATCHes as fast as they are answered.
    /// Default 10000,20000 (the targets); with --smoke 200,400.
    #[arg(long, value_delimiter = ',', value_name = "PER_S")]
    webhook_rates: Option<Vec<f64>>,
    /// Run this `endusers` binary instead of building the workspace's (to
    /// measure another build, such as an earlier commit's, with this bench).
    #[arg(long, value_name = "PATH")]
    server: Option<std::path::PathBuf>,
}

/// The scenarios `--only` can pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    Get,
    List,
    Patch,
    Post,
    Webhooks,
}

/// The parameters of one run, defaults and `--smoke` resolved.
#[derive(Debug, Clone)]
pub struct Params {
    pub smoke: bool,
    pub users: u64,
    pub duration: Duration,
    pub connections: usize,
    pub database_url: Option<String>,
    /// Empty: every scenario.
    pub only: Vec<Scenario>,
    /// Offered deliveries/s to 1 and to 10 endpoints; `None`: closed loop.
    pub webhook_rates: [Option<f64>; 2],
    /// A server binary to run instead of building one.
    pub server: Option<std::path::PathBuf>,
}

impl Params {
    /// Whether this run includes `scenario`.
    pub fn runs(&self, scenario: Scenario) -> bool {
        self.only.is_empty() || self.only.contains(&scenario)
    }

    /// Whether some scenario was left out.
    pub fn partial(&self) -> bool {
        !self.only.is_empty()
    }
}

impl AllArgs {
    fn resolve(self) -> Result<Params> {
        let (users, seconds, connections) = if self.smoke {
            (500, 1.0, 8)
        } else {
            (100_000, 10.0, 64)
        };
        let params = Params {
            smoke: self.smoke,
            users: self.users.unwrap_or(users),
            duration: Duration::try_from_secs_f64(self.seconds.unwrap_or(seconds))
                .map_err(|e| format!("--seconds: {e}"))?,
            connections: self.connections.unwrap_or(connections),
            database_url: self.database_url,
            only: self.only,
            webhook_rates: [None, None],
            server: self.server,
        };
        let rates = match self.webhook_rates {
            Some(rates) => rates,
            None if self.smoke => vec![200.0, 400.0],
            None => vec![10_000.0, 20_000.0],
        };
        if rates.len() != 2 {
            return Err("--webhook-rates: two rates, for 1 and for 10 endpoints".into());
        }
        let mut params = params;
        for (slot, rate) in params.webhook_rates.iter_mut().zip(rates) {
            if !rate.is_finite() || !(rate == 0.0 || rate >= 1.0) {
                return Err("--webhook-rates: each rate is 0 or at least 1 per second".into());
            }
            *slot = (rate > 0.0).then_some(rate);
        }
        if params.users < 10 {
            return Err("--users: at least 10".into());
        }
        if params.connections == 0 {
            return Err("--connections: at least 1".into());
        }
        if params.duration.is_zero() || params.duration > Duration::from_secs(86_400) {
            return Err("--seconds: above 0 and at most a day".into());
        }
        Ok(params)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::All(args) => args.resolve().and_then(|params| {
            runtime()?.block_on(scenarios::run_all(params))?;
            Ok(())
        }),
        Command::CeilingServe { listen } => {
            runtime().and_then(|runtime| runtime.block_on(ceiling::serve(listen)))
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
