//! `starling`: parses the command line, loads configuration, wires and runs.

use std::process::ExitCode;

/// mimalloc instead of the system allocator: the request path allocates many
/// small strings, and glibc's malloc was a tenth of a feed read's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use starling::cli::{AdminCommand, Cli, Command, RebuildArgs, ServeArgs};
use starling::config::Overrides;
use starling::engines::SqlStore;
use starling::{Application, Config};

fn main() -> ExitCode {
    starling::cli::run_to_exit("starling", run(Cli::parse()))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let serve = match cli.command {
        Some(Command::Serve(args)) => args,
        None => ServeArgs::default(),
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
        Some(Command::Admin(command)) => return admin(cli.config.as_deref(), command).await,
    };
    starling::serve::run(cli.config.as_deref(), &serve).await
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

/// `starling admin ...`: on the configured database, without a server.
async fn admin(file: Option<&std::path::Path>, command: AdminCommand) -> anyhow::Result<()> {
    let config = Config::load(file, &Overrides::default())?;
    let store = SqlStore::open(&config).await?;
    let port = store.port();
    let outcome = async {
        let ids =
            starling_domain::IdGenerator::resuming_after(config.node_id, port.highest_id().await?);
        match command {
            AdminCommand::Grant { handle, role } => {
                let role = starling_domain::Role::from(role);
                let (user, before) =
                    starling_app::admin::grant_by_operator(port.as_ref(), &ids, &handle, role)
                        .await
                        .map_err(|error| match error {
                            starling_app::AppError::NotFound(_) => {
                                anyhow::anyhow!(
                                    "there is no account @{}",
                                    handle.trim_start_matches('@')
                                )
                            }
                            other => anyhow::Error::new(other),
                        })?;
                if before == role {
                    println!("@{} is {role} already", user.handle);
                } else {
                    println!("@{} is now {role} (was {before})", user.handle);
                }
            }
        }
        anyhow::Ok(())
    }
    .await;
    store.close().await;
    outcome
}
