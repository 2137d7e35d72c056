//! Starling's application core: the use cases (accounts, graph, posts, feed),
//! the ports they need, and the logic of the background workers.
//!
//! Nothing here knows HTTP or a particular database; `App` is built from
//! ports by the binary and shared by the HTTP layer and the workers.

mod app;
pub mod auth;
pub mod error;
pub mod metric;
pub mod ports;
pub mod resilience;
pub mod telemetry;
pub mod workers;

pub mod accounts;
pub mod admin;
pub mod export;
pub mod feed;
pub mod graph;
pub mod live;
pub mod media;
pub mod notifications;
pub mod posts;

mod page;

pub use app::{App, Caches, Ports, Settings};
pub use error::{AppError, AppResult};
pub use page::{Page, PostView};
