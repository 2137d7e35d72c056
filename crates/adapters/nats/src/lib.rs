//! NATS JetStream event log.
