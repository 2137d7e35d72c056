//! In-process adapters for embedded mode: the timeline store, the hydration
//! caches, and the event log that tails the SQL outbox.

mod cache;
mod event_log;
mod timelines;

pub use cache::MemoryCache;
pub use event_log::OutboxEventLog;
pub use timelines::LocalTimelines;
