//! Which worker consumes each partition: one at a time, so that a worker
//! may take a partition's events in batches and still handle them in order.
//!
//! Each worker process is a member of each consumer group it runs
//! (`<prefix>.leases.m.<consumer>.<member>`, renewed every `ttl / 4`), and
//! the group's partitions are spread over its live members by rendezvous
//! hashing: the preferred owner of a partition is the member whose hash
//! with it is highest, so a member joining or leaving moves only the
//! partitions it gains or loses. A member takes a partition's lease
//! (`<prefix>.leases.l.<consumer>.<partition>`, written only where absent or
//! released) when it is the preferred owner, renews it with the revision it
//! holds (a renewal that finds another revision means the lease was lost),
//! and gives it up at a batch boundary once another member is preferred.
//!
//! Leases and memberships are messages of a JetStream stream
//! (`<STREAM>_LEASES`, on file, one message per subject) that expire `ttl`
//! after they were written: a worker that dies stops renewing, and what it
//! held lapses by itself. Writes that must not race carry the subject's
//! last sequence they expect (`Nats-Expected-Last-Subject-Sequence`, 0 for
//! none), as a key-value bucket's create and update do; the key-value API
//! itself is not used because async-nats 0.46 cannot read nats-server 2.9's
//! answer to creating a bucket.
//!
//! Written here, not taken from a crate: NATS 2.9 has no consumer groups
//! with exclusive partition assignment (2.11's priority groups pin a single
//! client, not a spread), and the lease needs nothing but the broker the
//! events are already on.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE;
use async_nats::jetstream::Context;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::stream::{
    Config as StreamConfig, DirectGetErrorKind, DiscardPolicy, StorageType, Stream,
};
use futures::TryStreamExt;
use parking_lot::{Mutex, RwLock};
use tokio::task::JoinHandle;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The stream holding the leases, and how to write to it.
struct Store {
    context: Context,
    stream: Stream,
    /// `<prefix>.leases.`
    subjects: String,
}

/// What a conditional write found.
enum Written {
    At(u64),
    /// The subject's last sequence was not the one expected.
    Conflict,
}

impl Store {
    /// Writes `value` to `key` if its last sequence is `expected` (0: none).
    async fn write(&self, key: &str, value: &str, expected: Option<u64>) -> Result<Written, Error> {
        let mut headers = HeaderMap::new();
        if let Some(expected) = expected {
            headers.insert(
                NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                expected.to_string().as_str(),
            );
        }
        let sent = self
            .context
            .publish_with_headers(
                format!("{}{key}", self.subjects),
                headers,
                value.to_owned().into(),
            )
            .await?;
        match sent.await {
            Ok(ack) => Ok(Written::At(ack.sequence)),
            Err(error) if error.kind() == PublishErrorKind::WrongLastSequence => {
                Ok(Written::Conflict)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// The last value written to `key` and its sequence, if any is kept.
    async fn read(&self, key: &str) -> Result<Option<(u64, bytes::Bytes)>, Error> {
        match self
            .stream
            .direct_get_last_for_subject(format!("{}{key}", self.subjects))
            .await
        {
            Ok(message) => Ok(Some((message.sequence, message.payload))),
            Err(error) if error.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Forgets `key` at once (its value is not kept until it expires).
    async fn forget(&self, key: &str) -> Result<(), Error> {
        self.stream
            .purge()
            .filter(format!("{}{key}", self.subjects))
            .await?;
        Ok(())
    }

    /// The keys under `prefix` that have a value kept.
    async fn keys(&self, prefix: &str) -> Result<Vec<String>, Error> {
        let filter = format!("{}{prefix}*", self.subjects);
        let subjects: Vec<(String, usize)> = self
            .stream
            .info_with_subjects(&filter)
            .await?
            .try_collect()
            .await?;
        let strip = format!("{}{prefix}", self.subjects);
        Ok(subjects
            .into_iter()
            .filter_map(|(subject, _)| subject.strip_prefix(&strip).map(str::to_owned))
            .collect())
    }
}

/// The leases of one stream's consumer groups, for one worker process.
pub(crate) struct Leases {
    store: Arc<Store>,
    /// This process: random, so a restarted worker is a new member (its
    /// predecessor's leases lapse within `ttl`).
    member: String,
    ttl: Duration,
    groups: Mutex<HashMap<String, Arc<Group>>>,
    /// Held while joining a group: a worker's partitions ask for their
    /// group at once, and each joined it (wrote and listed the membership)
    /// before all but one of the joins were thrown away.
    joining: tokio::sync::Mutex<()>,
}

/// The live members of one consumer group, as this process last saw them.
pub(crate) struct Group {
    members: Arc<RwLock<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Drop for Group {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A partition held by this process: renewed in the background until
/// released or lost.
pub(crate) struct Lease {
    store: Arc<Store>,
    key: String,
    state: Arc<LeaseState>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct LeaseState {
    revision: AtomicU64,
    /// A renewal found the lease gone or taken: stop at once.
    lost: AtomicBool,
    /// Another member is preferred now: hand over at the next boundary.
    yielding: AtomicBool,
}

/// What came of asking for a partition.
pub(crate) enum Acquired {
    /// Taken; `handed_over` when its last holder gave it up (rather than
    /// dying with it, or there being none).
    Taken { lease: Lease, handed_over: bool },
    /// Another member holds it, or is preferred for it.
    Elsewhere,
}

impl Leases {
    /// The stream `<stream>_LEASES` on subjects `<prefix>.leases.>`,
    /// created if needed.
    pub(crate) async fn open(
        context: &Context,
        stream: &str,
        subject_prefix: &str,
        ttl: Duration,
        replicas: usize,
    ) -> Result<Self, Error> {
        let subjects = format!("{subject_prefix}.leases.");
        let stream = context
            .get_or_create_stream(StreamConfig {
                name: format!("{stream}{}", crate::LEASES),
                subjects: vec![format!("{subjects}>")],
                storage: StorageType::File,
                max_age: ttl,
                max_messages_per_subject: 1,
                discard: DiscardPolicy::Old,
                allow_direct: true,
                num_replicas: replicas,
                ..StreamConfig::default()
            })
            .await?;
        let member = format!("{}-{:08x}", std::process::id(), rand::random::<u32>());
        Ok(Self {
            store: Arc::new(Store {
                context: context.clone(),
                stream,
                subjects,
            }),
            member,
            ttl,
            groups: Mutex::new(HashMap::new()),
            joining: tokio::sync::Mutex::new(()),
        })
    }

    fn renew_every(&self) -> Duration {
        self.ttl / 4
    }

    /// Leaves every group this process joined, so that the other members
    /// (or this worker's successor) count without it at once instead of
    /// after its membership lapses. Its leases were released by their
    /// subscriptions.
    pub(crate) async fn leave(&self) {
        let groups: Vec<(String, Arc<Group>)> = self.groups.lock().drain().collect();
        for (consumer, group) in groups {
            group.task.abort();
            let key = format!("m.{consumer}.{}", self.member);
            if let Err(error) = self.store.forget(&key).await {
                tracing::warn!(%error, "cannot leave a group of workers; the membership lapses");
            }
        }
    }

    /// This process's membership of `consumer`'s group, joined on first use.
    async fn group(&self, consumer: &str) -> Arc<Group> {
        if let Some(group) = self.groups.lock().get(consumer) {
            return group.clone();
        }
        let _joining = self.joining.lock().await;
        if let Some(group) = self.groups.lock().get(consumer) {
            return group.clone();
        }
        let members = Arc::new(RwLock::new(vec![self.member.clone()]));
        let prefix = format!("m.{consumer}.");
        // Joined before the first partition is asked for, so that two
        // workers starting together see each other.
        refresh_members(&self.store, &prefix, &self.member, &members).await;
        let task = tokio::spawn({
            let (store, members, member) =
                (self.store.clone(), members.clone(), self.member.clone());
            let every = self.renew_every();
            async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    refresh_members(&store, &prefix, &member, &members).await;
                }
            }
        });
        let group = Arc::new(Group { members, task });
        self.groups
            .lock()
            .insert(consumer.to_owned(), group.clone());
        group
    }

    /// Takes `partition` of `consumer`'s group if this process is its
    /// preferred owner and nobody holds it.
    pub(crate) async fn acquire(&self, consumer: &str, partition: u32) -> Result<Acquired, Error> {
        let group = self.group(consumer).await;
        if preferred(&group.members.read(), partition) != self.member {
            return Ok(Acquired::Elsewhere);
        }
        let key = format!("l.{consumer}.{partition}");
        // Held while a holder's write is kept (renewed within the ttl); an
        // empty value is a release.
        let (expected, handed_over) = match self.store.read(&key).await? {
            Some((_, value)) if !value.is_empty() => return Ok(Acquired::Elsewhere),
            Some((sequence, _)) => (sequence, true),
            None => (0, false),
        };
        let revision = match self.store.write(&key, &self.member, Some(expected)).await? {
            Written::At(revision) => revision,
            Written::Conflict => return Ok(Acquired::Elsewhere),
        };
        let state = Arc::new(LeaseState {
            revision: AtomicU64::new(revision),
            ..LeaseState::default()
        });
        let task = tokio::spawn(renew(
            self.store.clone(),
            key.clone(),
            self.member.clone(),
            group.members.clone(),
            partition,
            state.clone(),
            self.renew_every(),
        ));
        Ok(Acquired::Taken {
            lease: Lease {
                store: self.store.clone(),
                key,
                state,
                task,
            },
            handed_over,
        })
    }
}

/// Renews this member's key and reads the group's live members.
async fn refresh_members(store: &Store, prefix: &str, member: &str, members: &RwLock<Vec<String>>) {
    if let Err(error) = store.write(&format!("{prefix}{member}"), "", None).await {
        tracing::warn!(%error, "cannot renew this worker's membership");
        return;
    }
    match store.keys(prefix).await {
        Ok(mut live) => {
            if !live.iter().any(|other| other == member) {
                live.push(member.to_owned());
            }
            live.sort();
            *members.write() = live;
        }
        Err(error) => tracing::warn!(%error, "cannot list the workers"),
    }
}

async fn renew(
    store: Arc<Store>,
    key: String,
    member: String,
    members: Arc<RwLock<Vec<String>>>,
    partition: u32,
    state: Arc<LeaseState>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        if preferred(&members.read(), partition) != member {
            state.yielding.store(true, Ordering::Release);
        }
        let revision = state.revision.load(Ordering::Acquire);
        match store.write(&key, &member, Some(revision)).await {
            Ok(Written::At(next)) => state.revision.store(next, Ordering::Release),
            Ok(Written::Conflict) => {
                tracing::warn!(%key, "a partition's lease was lost");
                state.lost.store(true, Ordering::Release);
                return;
            }
            // The broker did not answer: the lease may still be ours, and
            // lapses by itself if not renewed in time.
            Err(error) => tracing::warn!(%key, %error, "cannot renew a partition's lease"),
        }
    }
}

impl Lease {
    /// Lost, or to be handed over: the holder stops taking events.
    pub(crate) fn must_stop(&self) -> bool {
        self.state.lost.load(Ordering::Acquire) || self.state.yielding.load(Ordering::Acquire)
    }

    /// Gives the partition up: the next preferred member takes it at once.
    pub(crate) async fn release(self) {
        self.task.abort();
        if self.state.lost.load(Ordering::Acquire) {
            return;
        }
        let revision = self.state.revision.load(Ordering::Acquire);
        if let Err(error) = self.store.write(&self.key, "", Some(revision)).await {
            tracing::warn!(key = %self.key, %error, "cannot release a partition's lease; it lapses");
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The member `partition` goes to: the highest rendezvous weight.
pub(crate) fn preferred(members: &[String], partition: u32) -> String {
    members
        .iter()
        .max_by_key(|member| (weight(member, partition), *member))
        .cloned()
        .unwrap_or_default()
}

/// A fixed hash of a member and a partition (FNV-1a, then splitmix64's
/// finaliser), the same in every process and version.
fn weight(member: &str, partition: u32) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in member.bytes().chain(partition.to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_spread_over_members_and_move_only_as_members_change() {
        let two: Vec<String> = vec!["a".to_owned(), "b".to_owned()];
        let three: Vec<String> = vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let owners_two: Vec<String> = (0..64).map(|p| preferred(&two, p)).collect();
        let owners_three: Vec<String> = (0..64).map(|p| preferred(&three, p)).collect();
        for member in ["a", "b"] {
            let held = owners_two.iter().filter(|owner| *owner == member).count();
            assert!((16..=48).contains(&held), "{member} holds {held} of 64");
        }
        // A third member takes partitions only from the others; none move
        // between the first two.
        for (before, after) in owners_two.iter().zip(&owners_three) {
            assert!(after == before || after == "c", "{before} -> {after}");
        }
        assert!(owners_three.iter().any(|owner| owner == "c"));
        assert_eq!(preferred(&["solo".to_owned()], 7), "solo");
    }
}
