//! Live updates: the workers publish what changed for whom to the live log
//! (`ports::LiveLog`); each API instance's hub hands what the log delivers
//! to the streams open there; each stream loads and filters it for its
//! reader. A client that reconnects with the last sequence it got replays
//! what it missed from the log's retention window.

mod hub;
mod stream;

use starling_domain::{LiveEvent, Topic};

pub use hub::{Connection, HubSettings, LiveHub};
pub use stream::{LiveStream, REPLAY_LIMIT, StreamEnd, StreamItem};

use crate::error::AppResult;

/// Publishes live updates; fails (and the worker retries the event) when
/// the log cannot take them: updates published twice are dropped by the
/// log, so a retry sends nothing twice.
pub(crate) async fn publish(
    live: &dyn crate::ports::LiveLog,
    updates: &[(Topic, LiveEvent)],
) -> AppResult<()> {
    if updates.is_empty() {
        return Ok(());
    }
    live.publish(updates).await?;
    metrics::counter!(crate::metric::LIVE_PUBLISHED_TOTAL).increment(updates.len() as u64);
    Ok(())
}
