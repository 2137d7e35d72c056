//! The live-update log of embedded mode: a ring of recent updates per topic
//! in process memory, handed to the hub as they are published.
//!
//! Sequences start above a number taken from the clock when the process
//! starts, so that a position a client kept from before a restart is seen
//! as such (its updates are gone with the old process) instead of being
//! mistaken for a position of this one.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;
use starling_app::ports::{LiveError, LiveLog, LiveMessage, LiveSink, Replay};
use starling_domain::{LiveEvent, Timestamp, Topic};

/// Rings are swept for expired updates after this many publications.
const SWEEP_EVERY: u32 = 1024;

#[derive(Clone)]
pub struct LocalLiveLog {
    state: Arc<Mutex<State>>,
    retention: Duration,
    topic_capacity: usize,
}

struct State {
    /// Every sequence of this log is above it.
    origin: u64,
    last: u64,
    topics: HashMap<Topic, Ring>,
    /// Rings dropped by a sweep may have forgotten updates above any
    /// position below this.
    swept_through: u64,
    since_sweep: u32,
    sink: Option<Arc<dyn LiveSink>>,
}

#[derive(Default)]
struct Ring {
    entries: VecDeque<Entry>,
    keys: HashSet<String>,
    /// The newest sequence this ring no longer holds.
    forgotten_through: u64,
}

struct Entry {
    sequence: u64,
    at: Instant,
    key: String,
    event: Arc<LiveEvent>,
}

impl Ring {
    fn expire(&mut self, now: Instant, retention: Duration) {
        while let Some(oldest) = self.entries.front() {
            if now.duration_since(oldest.at) < retention {
                break;
            }
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        if let Some(entry) = self.entries.pop_front() {
            self.keys.remove(&entry.key);
            self.forgotten_through = entry.sequence;
        }
    }
}

impl LocalLiveLog {
    /// Keeps each update for `retention`, and at most `topic_capacity` per
    /// topic.
    pub fn new(retention: Duration, topic_capacity: usize) -> Self {
        let origin = u64::try_from(Timestamp::now_ms()).unwrap_or(0) * 1000;
        Self {
            state: Arc::new(Mutex::new(State {
                origin,
                last: origin,
                topics: HashMap::new(),
                swept_through: origin,
                since_sweep: 0,
                sink: None,
            })),
            retention,
            topic_capacity: topic_capacity.max(1),
        }
    }

    fn sweep(&self, state: &mut State, now: Instant) {
        let retention = self.retention;
        let mut swept_through = state.swept_through;
        state.topics.retain(|_, ring| {
            ring.expire(now, retention);
            if ring.entries.is_empty() {
                swept_through = swept_through.max(ring.forgotten_through);
                return false;
            }
            true
        });
        state.swept_through = swept_through;
        state.since_sweep = 0;
    }
}

#[async_trait]
impl LiveLog for LocalLiveLog {
    async fn publish(&self, updates: &[(Topic, LiveEvent)]) -> Result<(), LiveError> {
        let now = Instant::now();
        let mut state = self.state.lock();
        for (topic, event) in updates {
            let key = event.dedupe_key();
            let sequence = state.last + 1;
            let ring = state.topics.entry(*topic).or_default();
            ring.expire(now, self.retention);
            if ring.keys.contains(&key) {
                continue;
            }
            let previous_in_topic = ring.entries.back().map(|entry| entry.sequence);
            let event = Arc::new(event.clone());
            ring.keys.insert(key.clone());
            ring.entries.push_back(Entry {
                sequence,
                at: now,
                key,
                event: event.clone(),
            });
            if ring.entries.len() > self.topic_capacity {
                ring.forget_oldest();
            }
            state.last = sequence;
            // Under the lock: the sink sees updates in sequence order.
            if let Some(sink) = &state.sink {
                sink.deliver(LiveMessage {
                    sequence,
                    topic: *topic,
                    event,
                    previous_in_topic,
                });
            }
        }
        state.since_sweep += 1;
        if state.since_sweep >= SWEEP_EVERY {
            self.sweep(&mut state, now);
        }
        Ok(())
    }

    async fn head(&self) -> Result<u64, LiveError> {
        Ok(self.state.lock().last)
    }

    async fn replay(
        &self,
        topics: &[Topic],
        after: u64,
        through: u64,
        limit: usize,
    ) -> Result<Replay, LiveError> {
        let now = Instant::now();
        let mut state = self.state.lock();
        // A position from before this log started, or one it never gave out.
        if after < state.origin || after > state.last {
            return Ok(Replay::default());
        }
        let mut complete = after >= state.swept_through;
        let mut messages = Vec::new();
        for topic in topics {
            let Some(ring) = state.topics.get_mut(topic) else {
                continue;
            };
            ring.expire(now, self.retention);
            if after < ring.forgotten_through {
                complete = false;
            }
            let mut previous = None;
            for entry in &ring.entries {
                if entry.sequence > after && entry.sequence <= through {
                    messages.push(LiveMessage {
                        sequence: entry.sequence,
                        topic: *topic,
                        event: entry.event.clone(),
                        previous_in_topic: previous,
                    });
                }
                previous = Some(entry.sequence);
            }
        }
        messages.sort_by_key(|message| message.sequence);
        if messages.len() > limit {
            messages.truncate(limit);
            complete = false;
        }
        Ok(Replay { messages, complete })
    }

    async fn attach(&self, sink: Arc<dyn LiveSink>) -> Result<(), LiveError> {
        self.state.lock().sink = Some(sink);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn make(
        retention: Duration,
        topic_capacity: usize,
    ) -> Option<(Arc<dyn LiveLog>, Box<dyn std::any::Any + Send>)> {
        Some((
            Arc::new(LocalLiveLog::new(retention, topic_capacity)),
            Box::new(()),
        ))
    }

    starling_app::live_log_contract!(make);
}
