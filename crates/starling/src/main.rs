//! `starling`: parses the command line, loads configuration, wires and runs.

use std::process::ExitCode;

/// mimalloc instead of the system allocator: the request path allocates many
/// small strings, and glibc's malloc was a tenth of a feed read's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use starling::cli::{BenchCommand, Cli, Command, RebuildArgs, ServeArgs};
use starling::config::Overrides;
use starling::engines::SqlStore;
use starling::{Application, Config, telemetry};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("starling: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("starling: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let serve = match cli.command {
        Some(Command::Serve(args)) => args,
        None => ServeArgs::default(),
        Some(Command::Bench(command)) => return bench(command).await,
        Some(Command::Plan(args)) => return starling_bench::plan::run(&args),
        Some(Command::Migrate) => {
            let config = Config::load(cli.config.as_deref(), &Overrides::default())?;
            SqlStore::migrate(&config).await?;
            println!("migrations applied");
            return Ok(());
        }
        Some(Command::RebuildTimelines(args)) => {
            return rebuild_timelines(cli.config.as_deref(), &args).await;
        }
    };
    let config = Config::load(cli.config.as_deref(), &serve.overrides())?;
    let telemetry = telemetry::init(config.log_format, &config.log_level, &config.traces)?;
    let serves_api = config.runs(starling::config::Role::Api);
    let application = Application::build(config).await?;
    let address = application.address();
    if serves_api {
        tracing::info!(%address, "starling is listening; the API reference is at http://{address}/docs/");
    } else {
        tracing::info!(%address, "starling is listening (operations endpoints only)");
    }
    let result = application.run_until_stopped(shutdown_signal()).await;
    telemetry.shutdown();
    result
}

/// Rebuilds timelines with the configured engines, then exits.
async fn rebuild_timelines(
    file: Option<&std::path::Path>,
    args: &RebuildArgs,
) -> anyhow::Result<()> {
    let mut config = Config::load(file, &Overrides::default())?;
    anyhow::ensure!(
        config.redis_url.is_some(),
        "embedded timelines live in the server's memory and are rebuilt from SQL on \
         each start; rebuild-timelines is for timelines in Redis (set redis_url)"
    );
    // Only the application core is needed: no listener on the service port.
    config.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let application = Application::build(config).await?;
    let app = application.app();
    match args.user {
        Some(id) => {
            app.feed()
                .rebuild_timeline_from_scratch(starling_domain::UserId(id))
                .await?;
            println!("rebuilt the timeline of {id}");
        }
        None => {
            let rebuilt = app.feed().rebuild_all_timelines(16).await?;
            println!("rebuilt {rebuilt} timelines");
        }
    }
    application.close().await;
    Ok(())
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(error = %error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}

async fn bench(command: BenchCommand) -> anyhow::Result<()> {
    use starling_bench::{baseline, run, seed, suites};

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
