//! The Starling binary's library half: configuration, wiring and start-up,
//! shared by `main` and the black-box tests.

pub mod cli;
pub mod config;
pub mod data_dir;
pub mod engines;
pub mod gauges;
pub mod serve;
pub mod startup;
pub mod telemetry;

pub use config::Config;
pub use startup::Application;
