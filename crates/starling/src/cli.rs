//! The command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Overrides;

#[derive(Debug, Parser)]
#[command(name = "starling", version, about = "Starling: a social feed backend")]
pub struct Cli {
    /// Configuration file (default: ./starling.toml when present).
    #[arg(long, global = true, env = "STARLING_CONFIG")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API (the default when no command is given).
    Serve(ServeArgs),
}

#[derive(Debug, Default, Args)]
pub struct ServeArgs {
    /// Address to listen on [env: STARLING_LISTEN] [default: 127.0.0.1:8080].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Data directory [env: STARLING_DATA_DIR] [default: ./data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

impl ServeArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen,
            data_dir: self.data_dir.clone(),
        }
    }
}
