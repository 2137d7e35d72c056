//! The hydration caches shared by every instance: each keeps its own
//! in-memory tier (L1), Redis holds a shared one (L2), and a change made on
//! one instance reaches the others as an invalidation message, so a deleted
//! post or a changed profile leaves every L1 at once rather than at the end
//! of its lifetime.
//!
//! - `get_many`: L1, then L2 for what L1 lacks (kept in L1), then the caller
//!   loads from SQL and fills.
//! - `put_many` (writers: the value is current): L1 and L2 are replaced and
//!   the other instances drop their L1 copy.
//! - `fill_many` (loaders: the value may already be old): L2 is set only
//!   where absent (`SET NX GET`), and what L2 holds is what L1 keeps, so a
//!   tombstone stored meanwhile is never replaced by the live post a slow
//!   reader loaded.
//! - `invalidate`: both tiers, everywhere.
//!
//! Caches of values that never leave the process (per-reader lists) are a
//! `BroadcastCache`, without an L2: their invalidations still reach every
//! instance, which is how a fan-out worker's invalidations reach the API
//! instances.
//!
//! Invalidation messages are fire-and-forget (Redis pub/sub). When the
//! subscription breaks, messages may be lost, so on reconnecting every L1
//! of this process is cleared.

use std::collections::HashMap;
use std::fmt::Display;
use std::hash::Hash;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::future::join_all;
use parking_lot::Mutex;
use starling_app::ports::Cache;
use starling_local::MemoryCache;

use crate::connection::RedisConnection;

/// One message: `<instance> <cache> <key> [<key> ...]`.
struct Invalidation<'a> {
    instance: &'a str,
    cache: &'a str,
    keys: Vec<&'a str>,
}

fn parse(message: &str) -> Option<Invalidation<'_>> {
    let mut words = message.split(' ');
    Some(Invalidation {
        instance: words.next()?,
        cache: words.next()?,
        keys: words.filter(|key| !key.is_empty()).collect(),
    })
}

/// What an L1 does when told: drop these keys, or everything.
trait Local: Send + Sync {
    fn drop_keys(&self, keys: &[&str]);
    fn clear(&self);
}

/// Carries invalidations between the instances' L1 tiers.
pub struct InvalidationBus {
    connection: RedisConnection,
    channel: String,
    instance: String,
    locals: Mutex<HashMap<&'static str, Arc<dyn Local>>>,
    /// Keys to announce per cache, sent by `send_pending`: whatever piled
    /// up while one message was on its way goes in the next, so a busy
    /// instance sends a message per round trip to Redis, not one per
    /// change, and every other process wakes that much less.
    pending: Mutex<HashMap<&'static str, Vec<String>>>,
    queued: Arc<tokio::sync::Notify>,
}

/// Keys per message at most.
const KEYS_PER_MESSAGE: usize = 256;

impl InvalidationBus {
    /// Publishes on `connection` and listens through a subscription of its
    /// own to `pubsub_url` (one node of a cluster is enough: messages are
    /// broadcast to every node).
    pub async fn start(
        connection: RedisConnection,
        pubsub_url: &str,
        prefix: &str,
    ) -> anyhow::Result<Arc<Self>> {
        let bus = Arc::new(Self {
            connection,
            channel: format!("{prefix}invalidate"),
            instance: format!("{:016x}", rand::random::<u64>()),
            locals: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            queued: Arc::new(tokio::sync::Notify::new()),
        });
        let client = redis::Client::open(pubsub_url)?;
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(&bus.channel).await?;
        tokio::spawn(listen(Arc::downgrade(&bus), client, pubsub));
        tokio::spawn(send_pending(Arc::downgrade(&bus), bus.queued.clone()));
        Ok(bus)
    }

    fn register(&self, cache: &'static str, local: Arc<dyn Local>) {
        self.locals.lock().insert(cache, local);
    }

    /// Queues `keys` for the other instances to drop from their `cache`;
    /// they go out at once, or with the message after the one on its way
    /// (fire-and-forget either way: Redis pub/sub promises no delivery).
    fn publish(&self, cache: &'static str, keys: &[String]) {
        if keys.is_empty() {
            return;
        }
        self.pending
            .lock()
            .entry(cache)
            .or_default()
            .extend_from_slice(keys);
        self.queued.notify_one();
    }

    /// Sends what is queued, a message per cache (and per
    /// `KEYS_PER_MESSAGE` keys).
    async fn send(&self) {
        let pending = std::mem::take(&mut *self.pending.lock());
        for (cache, keys) in pending {
            for chunk in keys.chunks(KEYS_PER_MESSAGE) {
                let message = format!("{} {cache} {}", self.instance, chunk.join(" "));
                let mut connection = self.connection.clone();
                let sent: redis::RedisResult<()> = redis::cmd("PUBLISH")
                    .arg(&self.channel)
                    .arg(message)
                    .query_async(&mut connection)
                    .await;
                if let Err(error) = sent {
                    // The other instances' copies live out their (short) lifetime.
                    metrics::counter!(starling_app::metric::CACHE_INVALIDATIONS_LOST_TOTAL)
                        .increment(1);
                    tracing::warn!(error = %error, cache, "cannot publish a cache invalidation");
                }
            }
        }
    }

    fn deliver(&self, message: &str) {
        let Some(invalidation) = parse(message) else {
            return;
        };
        if invalidation.instance == self.instance {
            return;
        }
        let local = self.locals.lock().get(invalidation.cache).cloned();
        if let Some(local) = local {
            local.drop_keys(&invalidation.keys);
            metrics::counter!(starling_app::metric::CACHE_INVALIDATIONS_RECEIVED_TOTAL)
                .increment(1);
        }
    }

    fn clear_all(&self) {
        let locals: Vec<_> = self.locals.lock().values().cloned().collect();
        for local in locals {
            local.clear();
        }
    }
}

/// Sends queued invalidations until the bus is dropped.
async fn send_pending(bus: std::sync::Weak<InvalidationBus>, queued: Arc<tokio::sync::Notify>) {
    loop {
        // A change queued while a message was on its way left a permit:
        // this wait then ends at once and nothing is missed.
        if tokio::time::timeout(Duration::from_secs(1), queued.notified())
            .await
            .is_err()
        {
            if bus.strong_count() == 0 {
                return;
            }
            continue;
        }
        let Some(bus) = bus.upgrade() else {
            return;
        };
        bus.send().await;
    }
}

/// Delivers messages until the bus is dropped; resubscribes after a break,
/// clearing every L1 (messages may have been missed).
async fn listen(
    bus: std::sync::Weak<InvalidationBus>,
    client: redis::Client,
    mut pubsub: redis::aio::PubSub,
) {
    loop {
        {
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                let Some(bus) = bus.upgrade() else {
                    return;
                };
                if let Ok(text) = message.get_payload::<String>() {
                    bus.deliver(&text);
                }
            }
        }
        tracing::warn!("cache invalidation subscription lost; resubscribing");
        loop {
            let Some(channel) = bus.upgrade().map(|bus| bus.channel.clone()) else {
                return;
            };
            tokio::time::sleep(Duration::from_millis(500)).await;
            let Ok(mut fresh) = client.get_async_pubsub().await else {
                continue;
            };
            if fresh.subscribe(&channel).await.is_ok() {
                pubsub = fresh;
                if let Some(bus) = bus.upgrade() {
                    bus.clear_all();
                }
                break;
            }
        }
    }
}

/// Keys as text, for Redis keys and invalidation messages.
pub trait CacheKey: Display + FromStr + Hash + Eq + Clone + Send + Sync + 'static {}
impl<K> CacheKey for K where K: Display + FromStr + Hash + Eq + Clone + Send + Sync + 'static {}

struct LocalTier<K, V>(Arc<MemoryCache<K, V>>);

impl<K: CacheKey, V: Clone + Send + Sync + 'static> Local for LocalTier<K, V> {
    fn drop_keys(&self, keys: &[&str]) {
        for key in keys {
            if let Ok(key) = key.parse::<K>() {
                self.0.remove(&key);
            }
        }
    }

    fn clear(&self) {
        self.0.clear();
    }
}

/// An L1-only cache whose writes and invalidations reach every instance's
/// L1 (for values that never leave the process).
pub struct BroadcastCache<K, V> {
    name: &'static str,
    local: Arc<MemoryCache<K, V>>,
    bus: Arc<InvalidationBus>,
}

impl<K, V> BroadcastCache<K, V>
where
    K: CacheKey,
    V: Clone + Send + Sync + 'static,
{
    pub fn new(name: &'static str, local: MemoryCache<K, V>, bus: Arc<InvalidationBus>) -> Self {
        let local = Arc::new(local);
        bus.register(name, Arc::new(LocalTier(local.clone())));
        Self { name, local, bus }
    }
}

#[async_trait]
impl<K, V> Cache<K, V> for BroadcastCache<K, V>
where
    K: CacheKey,
    V: Clone + Send + Sync + 'static,
{
    async fn get_many(&self, keys: &[K]) -> Vec<Option<V>> {
        self.local.get_many(keys).await
    }

    async fn put_many(&self, entries: Vec<(K, V)>) {
        let keys: Vec<String> = entries.iter().map(|(key, _)| key.to_string()).collect();
        self.local.put_many(entries).await;
        self.bus.publish(self.name, &keys);
    }

    async fn fill_many(&self, entries: Vec<(K, V)>) {
        self.local.fill_many(entries).await;
    }

    async fn invalidate(&self, key: &K) {
        self.local.invalidate(key).await;
        self.bus.publish(self.name, &[key.to_string()]);
    }

    async fn invalidate_many(&self, keys: &[K]) {
        for key in keys {
            self.local.invalidate(key).await;
        }
        let names: Vec<String> = keys.iter().map(ToString::to_string).collect();
        self.bus.publish(self.name, &names);
    }
}

/// What a lookup in the Redis tier came to.
enum L2 {
    Hit,
    Miss,
    Error,
}

/// An L1 per instance in front of an L2 in Redis (keys
/// `<prefix>c:<name>:<key>`), invalidations shared through the bus.
pub struct TieredCache<K, V> {
    l1: BroadcastCache<K, V>,
    /// This tier's hit, miss and error counters (label `<name>_l2`),
    /// resolved once: looked up by label on every lookup, such counters
    /// took most of the metrics share of a warm read's CPU.
    hits: metrics::Counter,
    misses: metrics::Counter,
    errors: metrics::Counter,
    connection: RedisConnection,
    prefix: String,
    ttl_secs: u64,
}

impl<K, V> TieredCache<K, V>
where
    K: CacheKey,
    V: Clone + serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    pub fn new(
        l1: BroadcastCache<K, V>,
        connection: RedisConnection,
        prefix: &str,
        ttl: Duration,
    ) -> Self {
        let label = format!("{}_l2", l1.name);
        Self {
            hits: metrics::counter!(starling_app::metric::CACHE_HITS_TOTAL, "cache" => label.clone()),
            misses: metrics::counter!(starling_app::metric::CACHE_MISSES_TOTAL, "cache" => label.clone()),
            errors: metrics::counter!(starling_app::metric::CACHE_ERRORS_TOTAL, "cache" => label),
            l1,
            // GET, SET and SET NX of one value: safe to resend.
            connection: connection.for_idempotent_commands(),
            prefix: prefix.to_owned(),
            ttl_secs: ttl.as_secs().max(1),
        }
    }

    fn redis_key(&self, key: &K) -> String {
        format!("{}c:{}:{key}", self.prefix, self.l1.name)
    }

    fn count(&self, outcome: L2) {
        match outcome {
            L2::Hit => &self.hits,
            L2::Miss => &self.misses,
            L2::Error => &self.errors,
        }
        .increment(1);
    }
}

#[async_trait]
impl<K, V> Cache<K, V> for TieredCache<K, V>
where
    K: CacheKey,
    V: Clone + serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    async fn get_many(&self, keys: &[K]) -> Vec<Option<V>> {
        let mut found = self.l1.get_many(keys).await;
        let missing: Vec<usize> = (0..keys.len())
            .filter(|index| found[*index].is_none())
            .collect();
        if missing.is_empty() {
            return found;
        }
        // One GET per key, sent together (one cache's keys span slots).
        let replies = join_all(missing.iter().map(|index| {
            let mut connection = self.connection.clone();
            let key = self.redis_key(&keys[*index]);
            async move {
                redis::cmd("GET")
                    .arg(key)
                    .query_async::<Option<Vec<u8>>>(&mut connection)
                    .await
            }
        }))
        .await;
        let mut filled = Vec::new();
        for (index, reply) in missing.into_iter().zip(replies) {
            match reply.map(|bytes| bytes.map(|bytes| serde_json::from_slice::<V>(&bytes))) {
                Ok(Some(Ok(value))) => {
                    self.count(L2::Hit);
                    filled.push((keys[index].clone(), value.clone()));
                    found[index] = Some(value);
                }
                Ok(Some(Err(_)) | None) => self.count(L2::Miss),
                // Redis unavailable: a miss; the caller loads from SQL.
                Err(_) => self.count(L2::Error),
            }
        }
        if !filled.is_empty() {
            self.l1.local.fill_many(filled).await;
        }
        found
    }

    async fn put_many(&self, entries: Vec<(K, V)>) {
        join_all(entries.iter().filter_map(|(key, value)| {
            let bytes = serde_json::to_vec(value).ok()?;
            let mut connection = self.connection.clone();
            let key = self.redis_key(key);
            Some(async move {
                let stored: redis::RedisResult<()> = redis::cmd("SET")
                    .arg(key)
                    .arg(bytes)
                    .arg("EX")
                    .arg(self.ttl_secs)
                    .query_async(&mut connection)
                    .await;
                if stored.is_err() {
                    self.count(L2::Error);
                }
            })
        }))
        .await;
        self.l1.put_many(entries).await;
    }

    async fn fill_many(&self, entries: Vec<(K, V)>) {
        // What L2 holds wins: set only where absent, else keep what is
        // there (a writer's value, or a tombstone).
        let kept = join_all(entries.into_iter().map(|(key, value)| {
            let mut connection = self.connection.clone();
            let redis_key = self.redis_key(&key);
            async move {
                let Ok(bytes) = serde_json::to_vec(&value) else {
                    return (key, value);
                };
                let previous: redis::RedisResult<Option<Vec<u8>>> = redis::cmd("SET")
                    .arg(redis_key)
                    .arg(bytes)
                    .arg("NX")
                    .arg("GET")
                    .arg("EX")
                    .arg(self.ttl_secs)
                    .query_async(&mut connection)
                    .await;
                match previous.map(|bytes| bytes.map(|bytes| serde_json::from_slice::<V>(&bytes))) {
                    Ok(Some(Ok(existing))) => (key, existing),
                    _ => (key, value),
                }
            }
        }))
        .await;
        self.l1.fill_many(kept).await;
    }

    async fn invalidate(&self, key: &K) {
        let mut connection = self.connection.clone();
        let deleted: redis::RedisResult<()> = redis::cmd("DEL")
            .arg(self.redis_key(key))
            .query_async(&mut connection)
            .await;
        if deleted.is_err() {
            self.count(L2::Error);
        }
        self.l1.invalidate(key).await;
    }
}

#[cfg(test)]
mod tests {
    use starling_domain::{Post, PostId, Timestamp, UserId};
    use starling_testing::RedisPrefix;

    use super::*;
    use crate::RedisOptions;

    /// One instance's view: a posts cache (L1 + L2) and a per-reader list
    /// cache (L1 only), on its own bus.
    struct Instance {
        posts: TieredCache<PostId, Arc<Post>>,
        lists: BroadcastCache<UserId, Arc<Vec<UserId>>>,
    }

    async fn instance(prefix: &RedisPrefix) -> Instance {
        let connection =
            RedisConnection::connect(std::slice::from_ref(&prefix.url), &RedisOptions::default())
                .await
                .unwrap();
        let bus = InvalidationBus::start(connection.clone(), &prefix.url, &prefix.prefix)
            .await
            .unwrap();
        let ttl = Duration::from_secs(60);
        Instance {
            posts: TieredCache::new(
                BroadcastCache::new("posts", MemoryCache::new("posts", 1000, ttl), bus.clone()),
                connection,
                &prefix.prefix,
                ttl,
            ),
            lists: BroadcastCache::new("lists", MemoryCache::new("lists", 1000, ttl), bus),
        }
    }

    fn post(id: i64, likes: i64) -> Arc<Post> {
        Arc::new(Post {
            id: PostId(id),
            author_id: UserId(1),
            text: starling_domain::PostText::parse(&format!("post {id}")).unwrap(),
            reply_to: None,
            created_at: Timestamp(1_700_000_000_000),
            like_count: likes,
            reply_count: 0,
            deleted: false,
            mentions: Vec::new(),
            media: Vec::new(),
        })
    }

    async fn eventually<F, Fut>(what: &str, mut condition: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !condition().await {
            assert!(std::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[test]
    fn messages_name_their_sender_cache_and_keys() {
        let message = parse("abc posts 1 22 333").unwrap();
        assert_eq!(message.instance, "abc");
        assert_eq!(message.cache, "posts");
        assert_eq!(message.keys, vec!["1", "22", "333"]);
        assert!(parse("").is_none());
        assert!(parse("abc").is_none());
    }

    /// A burst of changes on one instance reaches the others as a few
    /// messages carrying every key, not a message per change.
    #[tokio::test]
    async fn a_burst_of_invalidations_goes_out_in_few_messages_with_every_key() {
        let Some(prefix) = RedisPrefix::new() else {
            return;
        };
        let client = redis::Client::open(prefix.url.as_str()).unwrap();
        let mut listener = client.get_async_pubsub().await.unwrap();
        listener
            .subscribe(format!("{}invalidate", prefix.prefix))
            .await
            .unwrap();
        let a = instance(&prefix).await;
        for id in 0..1_000 {
            a.lists.invalidate(&UserId(id)).await;
        }
        let mut keys = std::collections::BTreeSet::new();
        let mut messages = 0;
        let mut incoming = listener.on_message();
        while keys.len() < 1_000 {
            let message = tokio::time::timeout(Duration::from_secs(5), incoming.next())
                .await
                .expect("every key arrives")
                .unwrap();
            let text: String = message.get_payload().unwrap();
            let invalidation = parse(&text).unwrap();
            assert_eq!(invalidation.cache, "lists");
            keys.extend(
                invalidation
                    .keys
                    .iter()
                    .map(|key| key.parse::<i64>().unwrap()),
            );
            messages += 1;
        }
        assert_eq!(keys, (0..1_000).collect());
        assert!(messages < 100, "{messages} messages for 1,000 changes");
    }

    #[tokio::test]
    async fn what_one_instance_loads_another_finds_in_redis() {
        let Some(prefix) = RedisPrefix::new() else {
            return;
        };
        let (a, b) = (instance(&prefix).await, instance(&prefix).await);
        a.posts.fill_many(vec![(PostId(1), post(1, 0))]).await;
        let found = b.posts.get_many(&[PostId(1), PostId(2)]).await;
        assert_eq!(found[0].as_deref(), Some(&*post(1, 0)));
        assert!(found[1].is_none());
    }

    #[tokio::test]
    async fn a_write_on_one_instance_replaces_every_instances_copy() {
        let Some(prefix) = RedisPrefix::new() else {
            return;
        };
        let (a, b) = (instance(&prefix).await, instance(&prefix).await);
        a.posts.fill_many(vec![(PostId(1), post(1, 0))]).await;
        // B holds the post in its own memory.
        assert!(b.posts.get_many(&[PostId(1)]).await[0].is_some());
        let tombstone = Arc::new(Post::tombstone(PostId(1), UserId(1)));
        a.posts.put_many(vec![(PostId(1), tombstone)]).await;
        eventually("B sees the tombstone", || async {
            b.posts.get_many(&[PostId(1)]).await[0]
                .as_ref()
                .is_some_and(|post| post.deleted)
        })
        .await;
    }

    #[tokio::test]
    async fn a_slow_loader_never_replaces_a_writers_value() {
        let Some(prefix) = RedisPrefix::new() else {
            return;
        };
        let (a, b) = (instance(&prefix).await, instance(&prefix).await);
        let tombstone = Arc::new(Post::tombstone(PostId(5), UserId(1)));
        a.posts.put_many(vec![(PostId(5), tombstone)]).await;
        // B read the live post from SQL just before the delete, fills now.
        b.posts.fill_many(vec![(PostId(5), post(5, 3))]).await;
        for instance in [&a, &b] {
            let found = instance.posts.get_many(&[PostId(5)]).await;
            assert!(found[0].as_ref().is_some_and(|post| post.deleted));
        }
    }

    #[tokio::test]
    async fn invalidating_a_local_only_entry_reaches_every_instance() {
        let Some(prefix) = RedisPrefix::new() else {
            return;
        };
        let (a, b) = (instance(&prefix).await, instance(&prefix).await);
        let list = Arc::new(vec![UserId(7)]);
        b.lists.fill_many(vec![(UserId(3), list.clone())]).await;
        a.lists.fill_many(vec![(UserId(3), list)]).await;
        // The fan-out worker (A) learns the list changed.
        a.lists.invalidate(&UserId(3)).await;
        assert!(a.lists.get_many(&[UserId(3)]).await[0].is_none());
        eventually("B forgets its copy", || async {
            b.lists.get_many(&[UserId(3)]).await[0].is_none()
        })
        .await;
    }
}
