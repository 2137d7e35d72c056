//! 64-bit time-ordered identifiers: `ms since epoch (41 bits) | node (10) | sequence (12)`.
//!
//! They sort by creation time, which makes keyset cursors and timelines trivial,
//! and they need no coordination between nodes as long as node numbers differ.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// 2024-01-01T00:00:00Z in Unix milliseconds: 41 bits of milliseconds last until 2093.
pub const EPOCH_MS: i64 = 1_704_067_200_000;
const NODE_BITS: u32 = 10;
const SEQUENCE_BITS: u32 = 12;
const MAX_SEQUENCE: u64 = (1 << SEQUENCE_BITS) - 1;
pub const MAX_NODE: u16 = (1 << NODE_BITS) - 1;

/// Hands out unique, strictly increasing ids for one node.
///
/// When more than 4096 ids are asked for within one millisecond (or the clock
/// steps back), the generator borrows from the next millisecond instead of
/// waiting or repeating itself: ids stay unique and monotonic.
#[derive(Debug)]
pub struct IdGenerator {
    node: u64,
    /// `(milliseconds since EPOCH_MS) << SEQUENCE_BITS | sequence` of the last id.
    last: AtomicU64,
    clock: fn() -> i64,
}

impl IdGenerator {
    pub fn new(node: u16) -> Self {
        Self::with_clock(node, crate::time::Timestamp::now_ms)
    }

    /// A generator reading time from `clock` (Unix ms), for tests of clock edge cases.
    pub fn with_clock(node: u16, clock: fn() -> i64) -> Self {
        debug_assert!(node <= MAX_NODE, "node number must fit in 10 bits");
        Self {
            node: u64::from(node & MAX_NODE),
            last: AtomicU64::new(0),
            clock,
        }
    }

    /// A generator that never hands out an id at or below `issued` (the
    /// highest id already stored): a restart after the clock stepped back,
    /// or after a burst borrowed future milliseconds, cannot repeat ids.
    pub fn resuming_after(node: u16, issued: i64) -> Self {
        let generator = Self::new(node);
        if issued > 0 {
            let millis = (issued as u64) >> (NODE_BITS + SEQUENCE_BITS);
            let sequence = (issued as u64) & MAX_SEQUENCE;
            generator
                .last
                .store((millis << SEQUENCE_BITS) | sequence, Ordering::Relaxed);
        }
        generator
    }

    pub fn next_raw(&self) -> i64 {
        let now = u64::try_from((self.clock)() - EPOCH_MS).unwrap_or(0) << SEQUENCE_BITS;
        let mut previous = self.last.load(Ordering::Relaxed);
        loop {
            let candidate = if now > previous {
                now
            } else if previous & MAX_SEQUENCE == MAX_SEQUENCE {
                // Sequence exhausted: move to the start of the next millisecond.
                (previous | MAX_SEQUENCE) + 1
            } else {
                previous + 1
            };
            match self.last.compare_exchange_weak(
                previous,
                candidate,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    let millis = candidate >> SEQUENCE_BITS;
                    let sequence = candidate & MAX_SEQUENCE;
                    let raw = (millis << (NODE_BITS + SEQUENCE_BITS))
                        | (self.node << SEQUENCE_BITS)
                        | sequence;
                    // 41 bits of milliseconds keep the sign bit clear until 2093.
                    return (raw & (i64::MAX as u64)) as i64;
                }
                Err(actual) => previous = actual,
            }
        }
    }

    pub fn next_user_id(&self) -> UserId {
        UserId(self.next_raw())
    }

    pub fn next_post_id(&self) -> PostId {
        PostId(self.next_raw())
    }

    pub fn next_event_id(&self) -> EventId {
        EventId(self.next_raw())
    }

    pub fn next_media_id(&self) -> MediaId {
        MediaId(self.next_raw())
    }

    pub fn next_notification_id(&self) -> NotificationId {
        NotificationId(self.next_raw())
    }
}

/// The id a generator on `node` would give the `sequence`-th id of the
/// millisecond `unix_ms`: for importing history with its original times.
pub fn compose_id(unix_ms: i64, node: u16, sequence: u16) -> i64 {
    let millis = (unix_ms - EPOCH_MS).max(0);
    (millis << (NODE_BITS + SEQUENCE_BITS))
        | (i64::from(node & MAX_NODE) << SEQUENCE_BITS)
        | (i64::from(sequence) & MAX_SEQUENCE as i64)
}

/// Unix milliseconds at which an id was generated.
pub fn id_timestamp_ms(raw: i64) -> i64 {
    (raw >> (NODE_BITS + SEQUENCE_BITS)) + EPOCH_MS
}

/// The smallest id that any generator could hand out at `unix_ms`; used as a
/// keyset bound ("everything newer than this moment").
pub fn lowest_id_at(unix_ms: i64) -> i64 {
    (unix_ms - EPOCH_MS).max(0) << (NODE_BITS + SEQUENCE_BITS)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a valid id")]
pub struct InvalidId;

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub i64);

        impl $name {
            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;

            /// Accepts the decimal form only: no sign, no spaces, positive.
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                if text.is_empty() || text.len() > 19 || !text.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(InvalidId);
                }
                match text.parse::<i64>() {
                    Ok(value) if value > 0 => Ok(Self(value)),
                    _ => Err(InvalidId),
                }
            }
        }

        /// Ids travel as JSON strings: 64-bit integers do not survive JavaScript numbers.
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                text.parse()
                    .map_err(|_| serde::de::Error::custom("expected an id (a string of digits)"))
            }
        }
    };
}

id_type!(
    /// Identifies an account.
    UserId
);
id_type!(
    /// Identifies a post.
    PostId
);
id_type!(
    /// Identifies a notification; notifications list newest id first.
    NotificationId
);
id_type!(
    /// Identifies an uploaded image.
    MediaId
);
id_type!(
    /// Identifies an event in the outbox / event log; the idempotency key of its handlers.
    EventId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_strictly_increasing_and_unique() {
        let generator = IdGenerator::new(7);
        let mut previous = 0;
        for _ in 0..100_000 {
            let id = generator.next_raw();
            assert!(id > previous, "{id} should follow {previous}");
            previous = id;
        }
    }

    #[test]
    fn ids_stay_monotonic_when_the_clock_stands_still_or_steps_back() {
        fn frozen() -> i64 {
            EPOCH_MS + 1_000
        }
        let generator = IdGenerator::with_clock(1, frozen);
        let ids: Vec<i64> = (0..10_000).map(|_| generator.next_raw()).collect();
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
        // Every id keeps node 1, even after the sequence spilled into later milliseconds.
        assert!(
            ids.iter()
                .all(|id| (id >> SEQUENCE_BITS) & u64::from(MAX_NODE) as i64 == 1)
        );
    }

    #[test]
    fn a_resumed_generator_never_repeats_stored_ids() {
        fn early() -> i64 {
            EPOCH_MS + 1_000
        }
        let before_restart = IdGenerator::with_clock(2, early);
        let issued: Vec<i64> = (0..5_000).map(|_| before_restart.next_raw()).collect();
        let highest = *issued.last().unwrap();
        // The clock stepped back across the restart.
        let mut resumed = IdGenerator::resuming_after(2, highest);
        resumed.clock = early;
        assert!(resumed.next_raw() > highest);
    }

    #[test]
    fn ids_carry_their_timestamp_and_node() {
        fn fixed() -> i64 {
            EPOCH_MS + 123_456
        }
        let generator = IdGenerator::with_clock(5, fixed);
        let id = generator.next_raw();
        assert_eq!(id_timestamp_ms(id), EPOCH_MS + 123_456);
        assert!(lowest_id_at(EPOCH_MS + 123_456) <= id);
        assert!(lowest_id_at(EPOCH_MS + 123_457) > id);
    }

    #[test]
    fn ids_serialise_as_strings_and_parse_strictly() {
        let id = PostId(42);
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"42\"");
        assert_eq!(serde_json::from_str::<PostId>("\"42\"").unwrap(), id);
        assert!(serde_json::from_str::<PostId>("42").is_err());
        for bad in ["", "-1", "0", "+5", " 5", "5a", "99999999999999999999"] {
            assert!(bad.parse::<PostId>().is_err(), "{bad:?} should not parse");
        }
    }
}
