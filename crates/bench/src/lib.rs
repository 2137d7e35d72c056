//! Measuring Starling: a load generator that drives a running server at a
//! fixed rate (`run`), synthetic data (`seed`), the benchmark suites that
//! compare each figure with a ceiling measured in the same run (`suites`),
//! and the capacity planner (`plan`).
//!
//! Every target must be on the loopback interface; every run is bounded in
//! time and requests and stops by itself.

pub mod baseline;
pub mod load;
pub mod machine;
pub mod manifest;
pub mod nginx;
pub mod plan;
pub mod plot;
pub mod report;
pub mod run;
pub mod seed;
pub mod server;
pub mod suites;
pub mod target;
