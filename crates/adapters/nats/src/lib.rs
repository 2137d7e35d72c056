//! The event log of scaled-out mode on NATS JetStream.
//!
//! The relay publishes each outbox event to `<prefix>.events.<partition>.<kind>`
//! with its event id as `Nats-Msg-Id`, so the server drops a duplicate
//! published again after a relay crash. The partition is a hash of the
//! event's partition key (the author of a post, the followee of a follow):
//! one account's events stay in one partition, in order. Each partition has
//! its own durable pull consumer per consumer name; several worker processes
//! pull from it, and a limit of one batch in flight per partition keeps
//! batches in order between them. An event delivered too many times, or one
//! that cannot be decoded, is copied to `<prefix>.dead.<consumer>` (a stream
//! of its own) and acknowledged, so the rest flows.
//!
//! The live-update log (`live.rs`) is a second stream, kept for minutes,
//! that streaming clients follow through the API instances.

mod lease;
mod live;
mod log;
mod wire;

pub use live::JetStreamLive;
pub use log::{JetStream, JetStreamOptions, JetStreamPartition};
