//! `starling-bench`: seeds data, drives load and runs the benchmark suites.
//! A binary of its own, so that the server carries no load generator; it
//! runs the very same server (`starling-bench serve`, hidden) for the
//! suites that start one, with the same allocator as `starling`.

use std::process::ExitCode;

/// As in `starling`: the servers the suites start are this binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use starling::cli::ServeArgs;
use starling_bench::{baseline, run, seed, suites};

const EXAMPLES: &str = "\
Examples:
  starling-bench feed-read          home-timeline reads against a minimal handler
  starling-bench post-create        durable post creation against raw inserts
  starling-bench seed --data-dir ./bench-data --users 20000
  starling-bench run --rate 1000 --duration 30
                                    the reference's mix against a running Starling, open loop

Every load goes to 127.0.0.1 only, bounded in requests and time.
BENCHMARKS.md lists the suites, their baselines and their figures.";

#[derive(Debug, Parser)]
#[command(
    name = "starling-bench",
    version,
    about = "Measure Starling: seed data, drive load, run the benchmark suites",
    after_help = EXAMPLES
)]
struct BenchCli {
    /// Configuration file of a server this binary runs (`serve`).
    #[arg(long, global = true, env = "STARLING_CONFIG")]
    config: Option<std::path::PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Starling itself, as `starling serve` runs it: the server the suites start.
    #[command(hide = true)]
    Serve(ServeArgs),
    #[command(flatten)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Write a synthetic social graph and post history into a data directory.
    Seed(seed::SeedArgs),
    /// Drive a running Starling with the reference's workload mix, open loop.
    Run(run::RunArgs),
    /// Benchmark 1: home-timeline reads vs a minimal handler.
    FeedRead(suites::feed_read::FeedReadArgs),
    /// Benchmark 2: durable post creation vs raw SQLite inserts.
    PostCreate(suites::post_create::PostCreateArgs),
    /// Benchmark 3: in-process timeline inserts vs plain vectors.
    Fanout(suites::fanout::FanoutArgs),
    /// Benchmark 4: the highest mixed-workload rate with p99 under 50 ms.
    Mixed(suites::mixed::MixedArgs),
    /// Benchmark 5: scaled out behind nginx, one API instance vs two.
    Scaled(suites::scaled::ScaledArgs),
    /// Benchmark 8: what one embedded node costs at 10k, 100k and 1M accounts.
    Scale(suites::scale::ScaleArgs),
    /// Benchmark 6: live streams held: memory per stream, delivery latency.
    Streams(suites::streams::StreamsArgs),
    /// Benchmark 7: image uploads and serving.
    Media(suites::media::MediaArgs),
    /// The minimal handler the feed-read benchmark compares with.
    #[command(hide = true)]
    BaselineServer(baseline::BaselineArgs),
}

fn main() -> ExitCode {
    starling::cli::run_to_exit("starling-bench", bench(BenchCli::parse()))
}

async fn bench(cli: BenchCli) -> anyhow::Result<()> {
    let command = match cli.command {
        // The server logs as the server binary does.
        Command::Serve(args) => return starling::serve::run(cli.config.as_deref(), &args).await,
        Command::Bench(command) => command,
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    match command {
        BenchCommand::Seed(args) => {
            let summary = seed::seed(&args).await?;
            println!(
                "seeded {} accounts, {} follows, {} posts in {:.1} s; most followed: {:?}",
                summary.users,
                summary.follows,
                summary.posts,
                summary.elapsed.as_secs_f64(),
                summary
                    .most_followed
                    .iter()
                    .map(|(_, count)| count)
                    .collect::<Vec<_>>()
            );
            println!("manifest: {}", args.manifest_path().display());
        }
        BenchCommand::Run(args) => {
            let report = run::run(&args).await?;
            report.print("Mixed workload");
            println!("result: {}", args.out.display());
        }
        BenchCommand::FeedRead(args) => {
            suites::feed_read::run(&args).await?;
        }
        BenchCommand::PostCreate(args) => {
            suites::post_create::run(&args).await?;
        }
        BenchCommand::Fanout(args) => {
            suites::fanout::run(&args).await?;
        }
        BenchCommand::Mixed(args) => {
            suites::mixed::run(&args).await?;
        }
        BenchCommand::Scaled(args) => {
            suites::scaled::run(&args).await?;
        }
        BenchCommand::Scale(args) => {
            suites::scale::run(&args).await?;
        }
        BenchCommand::Streams(args) => {
            suites::streams::run(&args).await?;
        }
        BenchCommand::Media(args) => {
            suites::media::run(&args).await?;
        }
        BenchCommand::BaselineServer(args) => baseline::serve(&args).await?,
    }
    Ok(())
}
