//! The event log of scaled-out mode on NATS JetStream.
//!
//! The relay publishes each outbox event to `<prefix>.events.<partition>.<kind>`
//! with its event id as `Nats-Msg-Id`, so the server drops a duplicate
//! published again after a relay crash. The partition is a hash of the
//! event's partition key (the author of a post, the followee of a follow):
//! one account's events stay in one partition, in order. Each partition has
//! its own durable pull consumer per consumer name, and one worker process
//! at a time holds it (a lease, `lease.rs`: partitions are spread over the
//! live workers of a group and handed over at a batch boundary), so its
//! events are handled in order and in batches. An event delivered too many
//! times, or one that cannot be decoded, is copied to
//! `<prefix>.dead.<consumer>` (a stream of its own) and acknowledged, so the
//! rest flows.
//!
//! The live-update log (`live.rs`) is a second stream, kept for minutes,
//! that streaming clients follow through the API instances.

mod announce;
mod lease;
mod live;
mod log;
mod wire;

pub use live::JetStreamLive;

/// Dead letters: `<stream>_DEAD`.
const DEAD: &str = "_DEAD";
/// Live updates: `<stream>_LIVE`.
const LIVE: &str = "_LIVE";
/// Worker leases and group membership: `<stream>_LEASES`.
const LEASES: &str = "_LEASES";

/// Every stream that Starling makes for the event stream `stream`: the
/// events, then their dead letters, live updates and worker leases (what
/// to delete to remove a deployment's streams).
pub fn streams_of(stream: &str) -> [String; 4] {
    [
        stream.to_owned(),
        format!("{stream}{DEAD}"),
        format!("{stream}{LIVE}"),
        format!("{stream}{LEASES}"),
    ]
}
pub use log::{JetStream, JetStreamOptions, JetStreamPartition};
