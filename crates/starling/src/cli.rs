//! The command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{Overrides, Role};

const EXAMPLES: &str = "\
Examples:
  starling                          serve on http://127.0.0.1:8080 (API reference at /docs/),
                                    everything in ./data: nothing else to install
  starling serve --listen 0.0.0.0:8080 --data-dir /var/lib/starling
  starling --config /etc/starling/starling.toml serve --role api
                                    one role of a scaled-out deployment (README, \"Scaling out\")
  starling admin grant ada admin    make @ada an admin (the first one is made so), on the
                                    configured database; the server may be running
  starling plan --dau 1000000       what a million daily users need: rates, storage, nodes
  starling-bench feed-read          measure home-timeline reads against a minimal handler
                                    (the benchmarks are a binary of their own)

Configuration: starling.toml, then STARLING_* variables (e.g. STARLING_LISTEN,
STARLING_DATA_DIR, STARLING_DATABASE_URL), then flags; README.md lists them.";

#[derive(Debug, Parser)]
#[command(
    name = "starling",
    version,
    about = "Starling: a social feed backend",
    after_help = EXAMPLES
)]
pub struct Cli {
    /// Configuration file (default: ./starling.toml when present).
    #[arg(long, global = true, env = "STARLING_CONFIG")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API and run the workers (the default when no command is given).
    Serve(ServeArgs),
    /// Apply the database migrations this build knows, then exit.
    Migrate,
    /// Rebuild home timelines from SQL (after losing Redis, or to apply a new cap).
    RebuildTimelines(RebuildArgs),
    /// Capacity planning: rates, storage, memory, bandwidth and nodes for a workload.
    Plan(starling_bench::plan::PlanArgs),
    /// Staff roles, on the configured database (audited; the server may be running).
    #[command(subcommand)]
    Admin(AdminCommand),
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Give the account @HANDLE a role: `starling admin grant ada admin`
    /// makes the first admin, who grants the others through the admin API.
    Grant {
        /// The account's handle (with or without the @).
        handle: String,
        role: RoleArg,
    },
}

/// A staff role on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    User,
    Moderator,
    Admin,
}

impl From<RoleArg> for starling_domain::Role {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::User => Self::User,
            RoleArg::Moderator => Self::Moderator,
            RoleArg::Admin => Self::Admin,
        }
    }
}

#[derive(Debug, Default, Args)]
pub struct ServeArgs {
    /// Address to listen on [env: STARLING_LISTEN] [default: 127.0.0.1:8080].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Data directory [env: STARLING_DATA_DIR] [default: ./data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// What this process runs; repeatable [default: all].
    #[arg(long = "role", value_enum)]
    pub roles: Vec<Role>,
}

impl ServeArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen,
            data_dir: self.data_dir.clone(),
            roles: (!self.roles.is_empty()).then(|| self.roles.clone()),
        }
    }
}

#[derive(Debug, Default, Args)]
pub struct RebuildArgs {
    /// Only this account's timeline [default: every account's].
    #[arg(long)]
    pub user: Option<i64>,
}

/// Runs a binary's `work` on a multi-threaded runtime: success, or the
/// error's chain on stderr (prefixed with `name`) and a failure exit code.
pub fn run_to_exit<F>(name: &str, work: F) -> std::process::ExitCode
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("{name}: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{name}: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
