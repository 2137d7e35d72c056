//! The stream hub of one API instance: which connection listens to which
//! topics, and the hand-over of each update the live log delivers to the
//! connections listening to its topic.
//!
//! Each connection has a bounded queue. The hub never waits for one: an
//! update that finds a connection's queue full drops that connection (its
//! client was not reading), which then ends once it has sent what it had
//! queued; its client reconnects and resumes from the log. So a slow
//! client costs at most its queue of memory and never slows the others.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use starling_domain::{Topic, UserId};
use tokio::sync::mpsc;

use crate::error::{AppError, AppResult};
use crate::ports::{LiveLog, LiveMessage, LiveSink};

/// Limits of the hub.
#[derive(Debug, Clone)]
pub struct HubSettings {
    /// Updates queued per connection before it is dropped as too slow.
    pub queue: usize,
    /// Streams this instance holds at most.
    pub max_connections: usize,
    /// Streams one account may hold at once (across its devices).
    pub max_per_account: usize,
}

impl Default for HubSettings {
    fn default() -> Self {
        Self {
            queue: 256,
            max_connections: 10_000,
            max_per_account: 5,
        }
    }
}

pub struct LiveHub {
    log: Arc<dyn LiveLog>,
    settings: HubSettings,
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    next_id: AtomicU64,
}

struct Listener {
    account: UserId,
    topics: Vec<Topic>,
    queue: mpsc::Sender<LiveMessage>,
}

#[derive(Default)]
struct State {
    /// Per topic, the connections listening to it. A stream listens to
    /// every account its reader follows, so these are many small sets and
    /// a few large ones (popular accounts).
    listeners: HashMap<Topic, HashSet<u64>>,
    connections: HashMap<u64, Listener>,
    per_account: HashMap<UserId, usize>,
    closed: bool,
}

impl State {
    /// Forgets a connection; dropping its senders ends its queue.
    fn remove(&mut self, id: u64) -> bool {
        let Some(Listener {
            account, topics, ..
        }) = self.connections.remove(&id)
        else {
            return false;
        };
        for topic in topics {
            self.stop_listening(id, topic);
        }
        if let Some(count) = self.per_account.get_mut(&account) {
            *count -= 1;
            if *count == 0 {
                self.per_account.remove(&account);
            }
        }
        metrics::gauge!(crate::metric::STREAM_CONNECTIONS).set(self.connections.len() as f64);
        true
    }

    fn register(
        &mut self,
        id: u64,
        account: UserId,
        topics: Vec<Topic>,
        queue: mpsc::Sender<LiveMessage>,
    ) {
        for topic in &topics {
            self.start_listening(id, *topic);
        }
        self.connections.insert(
            id,
            Listener {
                account,
                topics,
                queue,
            },
        );
        *self.per_account.entry(account).or_default() += 1;
    }

    fn start_listening(&mut self, id: u64, topic: Topic) {
        self.listeners.entry(topic).or_default().insert(id);
    }

    fn stop_listening(&mut self, id: u64, topic: Topic) {
        if let Some(listeners) = self.listeners.get_mut(&topic) {
            listeners.remove(&id);
            if listeners.is_empty() {
                self.listeners.remove(&topic);
            }
        }
    }

    /// Makes connection `id` listen to `topics` instead of what it did
    /// (nothing when the hub dropped it already).
    fn retopic(&mut self, id: u64, topics: Vec<Topic>) {
        let Some(listener) = self.connections.get_mut(&id) else {
            return;
        };
        let old: HashSet<Topic> = std::mem::replace(&mut listener.topics, topics.clone())
            .into_iter()
            .collect();
        let new: HashSet<Topic> = topics.into_iter().collect();
        for topic in old.difference(&new) {
            self.stop_listening(id, *topic);
        }
        for topic in new.difference(&old) {
            self.start_listening(id, *topic);
        }
    }
}

impl LiveSink for Shared {
    fn deliver(&self, message: LiveMessage) {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        let Some(listeners) = state.listeners.get(&message.topic) else {
            return;
        };
        let mut slow = Vec::new();
        for id in listeners {
            let Some(listener) = state.connections.get(id) else {
                continue;
            };
            match listener.queue.try_send(message.clone()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => slow.push(*id),
                // Its stream ended; it is being removed.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        for id in slow {
            if guard.remove(id) {
                metrics::counter!(crate::metric::STREAM_DROPPED_TOTAL, "reason" => "slow")
                    .increment(1);
            }
        }
    }
}

/// One client's registration with the hub; unregisters when dropped.
pub struct Connection {
    id: u64,
    shared: Arc<Shared>,
    /// Ends (`None`) when the hub drops the connection: too slow, or the
    /// instance shutting down.
    pub(crate) updates: mpsc::Receiver<LiveMessage>,
}

impl Connection {
    /// Listens to `topics` from now on, instead of those it had.
    pub(crate) fn listen_to(&self, topics: Vec<Topic>) {
        self.shared.state.lock().retopic(self.id, topics);
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shared.state.lock().remove(self.id);
    }
}

impl LiveHub {
    /// A hub receiving every update `log` stores from now on.
    pub async fn start(log: Arc<dyn LiveLog>, settings: HubSettings) -> AppResult<Arc<Self>> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            next_id: AtomicU64::new(1),
        });
        log.attach(shared.clone()).await?;
        metrics::gauge!(crate::metric::STREAM_CONNECTIONS).set(0.0);
        Ok(Arc::new(Self {
            log,
            settings,
            shared,
        }))
    }

    pub fn log(&self) -> &Arc<dyn LiveLog> {
        &self.log
    }

    /// Registers a connection of `account` listening to `topics`.
    pub(crate) fn connect(&self, account: UserId, topics: Vec<Topic>) -> AppResult<Connection> {
        let mut state = self.shared.state.lock();
        if state.closed {
            return Err(AppError::AtCapacity("the server is shutting down"));
        }
        if state.connections.len() >= self.settings.max_connections {
            metrics::counter!(crate::metric::STREAM_REFUSED_TOTAL, "reason" => "instance")
                .increment(1);
            return Err(AppError::AtCapacity(
                "this server holds as many streams as it can; retry shortly",
            ));
        }
        let held = state.per_account.get(&account).copied().unwrap_or(0);
        if held >= self.settings.max_per_account {
            metrics::counter!(crate::metric::STREAM_REFUSED_TOTAL, "reason" => "account")
                .increment(1);
            return Err(AppError::TooMany(
                "this account holds as many streams as it may; close one first",
            ));
        }
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, updates) = mpsc::channel(self.settings.queue.max(1));
        state.register(id, account, topics, sender);
        metrics::gauge!(crate::metric::STREAM_CONNECTIONS).set(state.connections.len() as f64);
        Ok(Connection {
            id,
            shared: self.shared.clone(),
            updates,
        })
    }

    /// Streams open now.
    pub fn connections(&self) -> usize {
        self.shared.state.lock().connections.len()
    }

    /// Ends every stream (each sends what it has queued first) and refuses
    /// new ones: the instance is shutting down.
    pub fn close(&self) {
        let mut state = self.shared.state.lock();
        state.closed = true;
        let ids: Vec<u64> = state.connections.keys().copied().collect();
        for id in ids {
            state.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use starling_domain::{LiveEvent, PostId};

    use super::*;

    fn message(sequence: u64, topic: Topic) -> LiveMessage {
        LiveMessage {
            sequence,
            topic,
            event: Arc::new(LiveEvent::Post {
                post_id: PostId(sequence as i64),
                author_id: UserId(2),
            }),
            previous_in_topic: None,
        }
    }

    #[test]
    fn a_connection_gets_the_updates_of_the_topics_it_listens_to_now() {
        let shared = Shared {
            state: Mutex::new(State::default()),
            next_id: AtomicU64::new(1),
        };
        let (inbox, star) = (Topic::Inbox(UserId(1)), Topic::Author(UserId(2)));
        let (queue, mut updates) = mpsc::channel(8);
        shared
            .state
            .lock()
            .register(1, UserId(1), vec![inbox], queue);
        let mut received = |sent: LiveMessage| {
            shared.deliver(sent);
            updates.try_recv().ok().map(|got| got.sequence)
        };

        assert_eq!(received(message(1, star)), None);
        shared.state.lock().retopic(1, vec![inbox, star]);
        assert_eq!(received(message(2, star)), Some(2));
        assert_eq!(received(message(3, inbox)), Some(3));
        shared.state.lock().retopic(1, vec![inbox]);
        assert_eq!(received(message(4, star)), None);
        assert_eq!(received(message(5, inbox)), Some(5));
        assert!(!shared.state.lock().listeners.contains_key(&star));

        // A connection the hub dropped (too slow) is not brought back.
        assert!(shared.state.lock().remove(1));
        shared.state.lock().retopic(1, vec![inbox, star]);
        assert!(shared.state.lock().listeners.is_empty());
    }
}
