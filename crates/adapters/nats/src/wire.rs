//! Events as carried in messages: JSON bodies, the trace context in a header.

use serde::{Deserialize, Serialize};
use starling_domain::{Event, EventEnvelope, EventId, Timestamp};

pub(crate) const TRACEPARENT: &str = "traceparent";

#[derive(Serialize, Deserialize)]
pub(crate) struct WireEvent {
    pub(crate) id: EventId,
    pub(crate) occurred_at_ms: i64,
    /// Position in the SQL outbox it came from.
    pub(crate) outbox_sequence: i64,
    pub(crate) event: Event,
}

pub(crate) fn encode(envelope: &EventEnvelope) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(&WireEvent {
        id: envelope.id,
        occurred_at_ms: envelope.occurred_at.millis(),
        outbox_sequence: envelope.sequence,
        event: envelope.event.clone(),
    })
}

/// The envelope a consumer sees: its sequence is the stream's, which grows
/// in publish order within a partition.
pub(crate) fn decode(
    payload: &[u8],
    stream_sequence: u64,
    trace_parent: Option<String>,
) -> serde_json::Result<EventEnvelope> {
    let wire: WireEvent = serde_json::from_slice(payload)?;
    Ok(EventEnvelope {
        id: wire.id,
        sequence: i64::try_from(stream_sequence).unwrap_or(i64::MAX),
        occurred_at: Timestamp(wire.occurred_at_ms),
        event: wire.event,
        trace_parent,
    })
}

#[cfg(test)]
mod tests {
    use starling_domain::{PostId, UserId};

    use super::*;

    #[test]
    fn envelopes_round_trip_with_the_stream_sequence() {
        let envelope = EventEnvelope {
            id: EventId(77),
            sequence: 5,
            occurred_at: Timestamp(1_700_000_000_123),
            event: Event::PostCreated {
                post_id: PostId(9),
                author_id: UserId(2),
                reply_to: None,
                mentions: Vec::new(),
            },
            trace_parent: Some("00-abc-def-01".to_owned()),
        };
        let payload = encode(&envelope).unwrap();
        let decoded = decode(&payload, 42, envelope.trace_parent.clone()).unwrap();
        assert_eq!(decoded.sequence, 42);
        assert_eq!(
            EventEnvelope {
                sequence: 5,
                ..decoded
            },
            envelope
        );
    }
}
