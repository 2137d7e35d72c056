//! `starling serve`: loads the configuration, starts every part this
//! process runs, and drains them on SIGINT or SIGTERM. Shared by the server
//! binary and `starling-bench`, which runs the very same server for its
//! measurements.

use std::path::Path;

use crate::cli::ServeArgs;
use crate::config::Role;
use crate::{Application, Config, telemetry};

/// Serves until a shutdown signal, then drains.
pub async fn run(config_file: Option<&Path>, args: &ServeArgs) -> anyhow::Result<()> {
    let config = Config::load(config_file, &args.overrides())?;
    let telemetry = telemetry::init(config.log_format, &config.log_level, &config.traces)?;
    let serves_api = config.runs(Role::Api);
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

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
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
