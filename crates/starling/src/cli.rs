//! The command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{Overrides, Role};

const EXAMPLES: &str = "\
Examples:
  starling                          serve on http://127.0.0.1:8080 (API reference at /docs/),
                                    everything in ./data: nothing else to install
  starling serve --listen 0.0.0.0:8080 --data-dir /var/lib/starling
  starling --config /etc/starling/starling.toml serve --role api
                                    one role of a scaled-out deployment (README, \"Scaling out\")
  starling plan --dau 1000000       what a million daily users need: rates, storage, nodes
  starling bench feed-read          measure home-timeline reads against a minimal handler

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
    /// Measure Starling: seed data, drive load, run the benchmark suites.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Capacity planning: rates, storage, memory, bandwidth and nodes for a workload.
    Plan(starling_bench::plan::PlanArgs),
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Write a synthetic social graph and post history into a data directory.
    Seed(starling_bench::seed::SeedArgs),
    /// Drive a running Starling with the reference's workload mix, open loop.
    Run(starling_bench::run::RunArgs),
    /// Benchmark 1: home-timeline reads vs a minimal handler.
    FeedRead(starling_bench::suites::feed_read::FeedReadArgs),
    /// Benchmark 2: durable post creation vs raw SQLite inserts.
    PostCreate(starling_bench::suites::post_create::PostCreateArgs),
    /// Benchmark 3: in-process timeline inserts vs plain vectors.
    Fanout(starling_bench::suites::fanout::FanoutArgs),
    /// Benchmark 4: the highest mixed-workload rate with p99 under 50 ms.
    Mixed(starling_bench::suites::mixed::MixedArgs),
    /// Benchmark 5: scaled out behind nginx, one API instance vs two.
    Scaled(starling_bench::suites::scaled::ScaledArgs),
    /// Benchmark 6: live streams held: memory per stream, delivery latency.
    Streams(starling_bench::suites::streams::StreamsArgs),
    /// Benchmark 7: image uploads and serving.
    Media(starling_bench::suites::media::MediaArgs),
    /// The minimal handler the feed-read benchmark compares with.
    #[command(hide = true)]
    BaselineServer(starling_bench::baseline::BaselineArgs),
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
