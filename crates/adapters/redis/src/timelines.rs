//! Home timelines in Redis: per user a sorted set of entries (all scores 0,
//! members ordered by post id) and a small hash with its state and floor.
//! Each operation is one Lua script over one user's keys, so it is atomic
//! and lands on one cluster slot; fan-out to many users sends the scripts
//! together over the multiplexed connection (pipelined, one round trip per
//! batch, not per user).
//!
//! A timeline nobody reads for `idle_ttl` expires and is rebuilt from SQL
//! on the next read, as an evicted one is in embedded mode.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt, stream};
use parking_lot::Mutex;
use redis::{Script, Value};
use starling_app::ports::{
    TimelineEntry, TimelineError, TimelineRead, TimelineResult, TimelineSlice, TimelineStore,
};
use starling_domain::{PostId, UserId};

use crate::connection::RedisConnection;

macro_rules! script {
    ($file:literal) => {
        LazyLock::new(|| {
            Script::new(concat!(
                include_str!("lua/common.lua"),
                include_str!(concat!("lua/", $file))
            ))
        })
    };
}

static READ: LazyLock<Script> = script!("read.lua");
static INSERT_MANY: LazyLock<Script> = script!("insert_many.lua");
static INSERT_PAIRS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/insert_pairs.lua")));
static REMOVE_POST: LazyLock<Script> = script!("remove_post.lua");
static REMOVE_AUTHOR: LazyLock<Script> = script!("remove_author.lua");
static BEGIN_REBUILD: LazyLock<Script> = script!("begin_rebuild.lua");
static FINISH_REBUILD: LazyLock<Script> = script!("finish_rebuild.lua");

/// Pairs inserted by one script call: Redis runs a script to its end before
/// anything else, so a call stays short (about a millisecond).
const PAIRS_PER_CALL: usize = 128;

/// Calls one operation has in flight at once. A fan-out batch is hundreds
/// of calls (thousands on a cluster, a call per user); sent all at once,
/// a few partitions' batches overflowed the connection's bulkhead and
/// failed whole (seen in `starling-bench scaled`'s burst, then retried for
/// seconds). A few in flight keep Redis as busy: it runs one at a time.
const CALLS_AT_ONCE: usize = 8;

/// Runs `calls`, `CALLS_AT_ONCE` at a time; the first error ends it.
async fn at_most_at_once<T, E>(
    calls: Vec<impl std::future::Future<Output = Result<T, E>>>,
) -> Result<Vec<T>, E> {
    stream::iter(calls)
        .buffer_unordered(CALLS_AT_ONCE)
        .try_collect()
        .await
}

/// How long a counted number of timelines is reused (counting scans keys).
const COUNT_REUSE: Duration = Duration::from_secs(60);

pub struct RedisTimelines {
    connection: RedisConnection,
    prefix: String,
    cap: usize,
    idle_ttl_ms: u64,
    count_reuse: Duration,
    counted: Mutex<Option<(Instant, u64)>>,
}

impl RedisTimelines {
    /// Timelines under keys starting with `prefix` (e.g. `starling:`), each
    /// capped at `cap` entries and expiring after `idle_ttl` unread.
    pub fn new(connection: RedisConnection, prefix: &str, cap: usize, idle_ttl: Duration) -> Self {
        Self {
            // Every timeline script is idempotent (inserting a known entry
            // or removing an absent one changes nothing): safe to resend.
            connection: connection.for_idempotent_commands(),
            prefix: prefix.to_owned(),
            cap,
            idle_ttl_ms: u64::try_from(idle_ttl.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
            count_reuse: COUNT_REUSE,
            counted: Mutex::new(None),
        }
    }

    /// How long a count of timelines (a key scan) is reused; 60 s by default.
    pub fn reusing_counts_for(mut self, reuse: Duration) -> Self {
        self.count_reuse = reuse;
        self
    }

    /// The four keys of `user`'s timeline, in the order the scripts expect.
    fn keys(&self, user: UserId) -> [String; 4] {
        let (prefix, id) = (&self.prefix, user.0);
        [
            format!("{prefix}tl:{{{id}}}"),
            format!("{prefix}tm:{{{id}}}"),
            format!("{prefix}trp:{{{id}}}"),
            format!("{prefix}tra:{{{id}}}"),
        ]
    }

    async fn run(
        &self,
        script: &Script,
        user: UserId,
        args: impl IntoIterator<Item = String>,
    ) -> TimelineResult<Value> {
        let mut invocation = script.prepare_invoke();
        for key in self.keys(user) {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(arg);
        }
        let mut connection = self.connection.clone();
        invocation
            .invoke_async(&mut connection)
            .await
            .map_err(unavailable)
    }

    /// Runs `script` for each of `users` at once (pipelined).
    async fn run_each(
        &self,
        script: &Script,
        users: &[UserId],
        args: &[String],
    ) -> TimelineResult<()> {
        let calls: Vec<_> = users
            .iter()
            .map(|user| self.run(script, *user, args.iter().cloned()))
            .collect();
        at_most_at_once(calls).await?;
        Ok(())
    }

    /// Inserts each member into its user's timeline. A script call per
    /// chunk of pairs saves Redis the fixed cost of a call per user (half
    /// of an insert's time, measured); on a cluster each call holds one
    /// user's keys (they share a slot), so there it is a call per user.
    async fn insert_pairs(&self, pairs: &[(UserId, String)]) -> TimelineResult<()> {
        let calls: Vec<&[(UserId, String)]> = if self.connection.cluster().is_some() {
            pairs.chunk_by(|a, b| a.0 == b.0).collect()
        } else {
            pairs.chunks(PAIRS_PER_CALL).collect()
        };
        let calls: Vec<_> = calls
            .into_iter()
            .map(|chunk| async move {
                let mut invocation = INSERT_PAIRS.prepare_invoke();
                invocation.arg(self.cap);
                for (user, member) in chunk {
                    let (prefix, id) = (&self.prefix, user.0);
                    invocation
                        .key(format!("{prefix}tl:{{{id}}}"))
                        .key(format!("{prefix}tm:{{{id}}}"))
                        .arg(member);
                }
                let mut connection = self.connection.clone();
                invocation
                    .invoke_async::<Value>(&mut connection)
                    .await
                    .map_err(unavailable)
            })
            .collect();
        at_most_at_once(calls).await?;
        Ok(())
    }

    /// The arguments of the scripts that merge a list in: cap, the list's
    /// floor, its entries.
    fn merge_args(
        &self,
        entries: &[TimelineEntry],
        source_floor: Option<PostId>,
    ) -> impl Iterator<Item = String> {
        [self.cap.to_string(), floor_arg(source_floor)]
            .into_iter()
            .chain(entries.iter().map(member))
    }

    async fn count_keys(&self) -> TimelineResult<u64> {
        let pattern = format!("{}tm:*", self.prefix);
        let mut total = 0u64;
        for node in self.nodes().await? {
            let mut cursor = 0u64;
            loop {
                let mut command = redis::cmd("SCAN");
                command
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000);
                let (next, keys): (u64, Vec<String>) = match &node {
                    None => {
                        let mut connection = self.connection.clone();
                        command
                            .query_async(&mut connection)
                            .await
                            .map_err(unavailable)?
                    }
                    Some(address) => self.on_node(address, &command).await?,
                };
                total += keys.len() as u64;
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        Ok(total)
    }

    /// The nodes to scan: `None` for the single Redis, else each cluster
    /// primary's `host:port`.
    async fn nodes(&self) -> TimelineResult<Vec<Option<(String, u16)>>> {
        if self.connection.cluster().is_none() {
            return Ok(vec![None]);
        }
        let mut connection = self.connection.clone();
        let listing: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        Ok(primaries(&listing).into_iter().map(Some).collect())
    }

    async fn on_node<T: redis::FromRedisValue>(
        &self,
        (host, port): &(String, u16),
        command: &redis::Cmd,
    ) -> TimelineResult<T> {
        use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
        let Some(connection) = self.connection.cluster() else {
            return Err(unavailable("not a cluster"));
        };
        let mut connection = connection.clone();
        let value = connection
            .route_command(
                command.clone(),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: host.clone(),
                    port: *port,
                }),
            )
            .await
            .map_err(unavailable)?;
        redis::from_redis_value(value).map_err(unavailable)
    }
}

/// The primaries' addresses in a `CLUSTER NODES` listing.
fn primaries(listing: &str) -> Vec<(String, u16)> {
    listing
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let _id = fields.next()?;
            let address = fields.next()?;
            let flags = fields.next()?;
            if !flags.split(',').any(|flag| flag == "master") || flags.contains("fail") {
                return None;
            }
            // host:port@cluster-port
            let (host, port) = address.split('@').next()?.rsplit_once(':')?;
            Some((host.to_owned(), port.parse().ok()?))
        })
        .collect()
}

fn unavailable(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> TimelineError {
    TimelineError::Unavailable(error.into())
}

fn hex(id: i64) -> String {
    format!("{id:016x}")
}

fn member(entry: &TimelineEntry) -> String {
    format!("{:016x}{:016x}", entry.post_id.0, entry.author_id.0)
}

fn parse_member(member: &[u8]) -> Option<TimelineEntry> {
    let text = std::str::from_utf8(member).ok()?;
    if text.len() != 32 {
        return None;
    }
    Some(TimelineEntry {
        post_id: PostId(i64::from_str_radix(&text[..16], 16).ok()?),
        author_id: UserId(i64::from_str_radix(&text[16..], 16).ok()?),
    })
}

fn floor_arg(floor: Option<PostId>) -> String {
    floor.map(|floor| hex(floor.0)).unwrap_or_default()
}

fn parse_read(value: Value) -> TimelineResult<TimelineRead> {
    let malformed = || unavailable("unexpected reply from the timeline read script");
    let Value::Array(parts) = value else {
        return Err(malformed());
    };
    let mut parts = parts.into_iter();
    match parts.next() {
        Some(Value::Int(1)) => {}
        Some(Value::Int(0)) => return Ok(TimelineRead::NotMaterialised),
        _ => return Err(malformed()),
    }
    let floor = match parts.next() {
        Some(Value::BulkString(floor)) if floor.is_empty() => None,
        Some(Value::BulkString(floor)) => Some(PostId(
            std::str::from_utf8(&floor)
                .ok()
                .and_then(|text| i64::from_str_radix(text, 16).ok())
                .ok_or_else(malformed)?,
        )),
        _ => return Err(malformed()),
    };
    let Some(Value::Array(members)) = parts.next() else {
        return Err(malformed());
    };
    let entries = members
        .into_iter()
        .map(|member| match member {
            Value::BulkString(bytes) => parse_member(&bytes).ok_or_else(malformed),
            _ => Err(malformed()),
        })
        .collect::<TimelineResult<Vec<_>>>()?;
    Ok(TimelineRead::Ready(TimelineSlice { entries, floor }))
}

#[async_trait]
impl TimelineStore for RedisTimelines {
    async fn read(
        &self,
        user: UserId,
        before: Option<PostId>,
        limit: usize,
    ) -> TimelineResult<TimelineRead> {
        let reply = self
            .run(
                &READ,
                user,
                [
                    floor_arg(before),
                    limit.to_string(),
                    self.idle_ttl_ms.to_string(),
                ],
            )
            .await?;
        parse_read(reply)
    }

    async fn insert(&self, users: &[UserId], entry: TimelineEntry) -> TimelineResult<()> {
        let member = member(&entry);
        let pairs: Vec<(UserId, String)> =
            users.iter().map(|user| (*user, member.clone())).collect();
        self.insert_pairs(&pairs).await
    }

    async fn insert_each(&self, pairs: &[(UserId, TimelineEntry)]) -> TimelineResult<()> {
        let mut pairs: Vec<(UserId, String)> = pairs
            .iter()
            .map(|(user, entry)| (*user, member(entry)))
            .collect();
        if self.connection.cluster().is_some() {
            // A call per user there: its pairs side by side.
            pairs.sort_by_key(|(user, _)| *user);
        }
        self.insert_pairs(&pairs).await
    }

    async fn insert_many(
        &self,
        user: UserId,
        entries: &[TimelineEntry],
        source_floor: Option<PostId>,
    ) -> TimelineResult<()> {
        self.run(&INSERT_MANY, user, self.merge_args(entries, source_floor))
            .await?;
        Ok(())
    }

    async fn remove_post(&self, users: &[UserId], post: PostId) -> TimelineResult<()> {
        self.run_each(&REMOVE_POST, users, &[hex(post.0)]).await
    }

    async fn remove_author(&self, user: UserId, author: UserId) -> TimelineResult<()> {
        self.run(&REMOVE_AUTHOR, user, [hex(author.0)]).await?;
        Ok(())
    }

    async fn begin_rebuild(&self, user: UserId) -> TimelineResult<()> {
        self.run(&BEGIN_REBUILD, user, [self.idle_ttl_ms.to_string()])
            .await?;
        Ok(())
    }

    async fn finish_rebuild(
        &self,
        user: UserId,
        entries: &[TimelineEntry],
        source_floor: Option<PostId>,
    ) -> TimelineResult<()> {
        self.run(
            &FINISH_REBUILD,
            user,
            self.merge_args(entries, source_floor),
        )
        .await?;
        Ok(())
    }

    async fn evict(&self, user: UserId) -> TimelineResult<()> {
        let mut connection = self.connection.clone();
        redis::cmd("DEL")
            .arg(&self.keys(user))
            .query_async::<()>(&mut connection)
            .await
            .map_err(unavailable)
    }

    async fn materialised_count(&self) -> TimelineResult<u64> {
        if let Some((at, count)) = *self.counted.lock()
            && at.elapsed() < self.count_reuse
        {
            return Ok(count);
        }
        let count = self.count_keys().await?;
        *self.counted.lock() = Some((Instant::now(), count));
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use starling_testing::RedisPrefix;

    use super::*;
    use crate::RedisOptions;

    async fn make(cap: usize) -> Option<(Arc<dyn TimelineStore>, RedisPrefix)> {
        let prefix = RedisPrefix::new()?;
        let connection =
            RedisConnection::connect(std::slice::from_ref(&prefix.url), &RedisOptions::default())
                .await
                .expect("connect to STARLING_TEST_REDIS_URL");
        let store = RedisTimelines::new(connection, &prefix.prefix, cap, Duration::from_secs(3600))
            .reusing_counts_for(Duration::ZERO);
        Some((Arc::new(store), prefix))
    }

    starling_app::timeline_store_contract!(make);

    /// A fan-out batch of thousands of inserts goes through a connection
    /// that allows only a few calls in flight (as a busy worker's shared
    /// connection has only a few to spare): an operation never sends more
    /// at once than that.
    #[tokio::test]
    async fn a_large_fan_out_stays_within_the_calls_allowed_in_flight() {
        use starling_app::ports::TimelineRead;
        let Some(prefix) = RedisPrefix::new() else {
            return;
        };
        let options = RedisOptions {
            max_concurrent: CALLS_AT_ONCE,
            ..RedisOptions::default()
        };
        let connection = RedisConnection::connect(std::slice::from_ref(&prefix.url), &options)
            .await
            .expect("connect to STARLING_TEST_REDIS_URL");
        let store = RedisTimelines::new(connection, &prefix.prefix, 800, Duration::from_secs(3600));
        let reader = UserId(7);
        store.begin_rebuild(reader).await.unwrap();
        store.finish_rebuild(reader, &[], None).await.unwrap();
        // 40 posts to 200 followers each: 8,000 pairs, 63 calls.
        let pairs: Vec<(UserId, TimelineEntry)> = (1..=40)
            .flat_map(|post| {
                (1..=200).map(move |user| {
                    (
                        UserId(user),
                        TimelineEntry {
                            post_id: PostId(post),
                            author_id: UserId(1_000),
                        },
                    )
                })
            })
            .collect();
        store.insert_each(&pairs).await.unwrap();
        let users: Vec<UserId> = (1..=200).map(UserId).collect();
        store.remove_post(&users, PostId(40)).await.unwrap();
        match store.read(reader, None, 100).await.unwrap() {
            TimelineRead::Ready(slice) => assert_eq!(slice.entries.len(), 39),
            TimelineRead::NotMaterialised => panic!("not materialised"),
        }
    }

    /// A full timeline is trimmed in steps: it may grow an eighth past its
    /// cap, then goes back to the cap with its floor raised.
    #[tokio::test]
    async fn trimming_waits_for_an_eighth_over_the_cap() {
        use starling_app::ports::TimelineRead;
        let Some((store, _prefix)) = make(16).await else {
            return;
        };
        let reader = UserId(1);
        store.begin_rebuild(reader).await.unwrap();
        store.finish_rebuild(reader, &[], None).await.unwrap();
        let entry = |post: i64| TimelineEntry {
            post_id: PostId(post),
            author_id: UserId(2),
        };
        let read = || async {
            match store.read(reader, None, 100).await.unwrap() {
                TimelineRead::Ready(slice) => slice,
                TimelineRead::NotMaterialised => panic!("not materialised"),
            }
        };
        for post in 1..=18 {
            store.insert(&[reader], entry(post)).await.unwrap();
        }
        let slice = read().await;
        assert_eq!(slice.entries.len(), 18, "16 plus the slack of 2");
        assert_eq!(slice.floor, None);
        store.insert(&[reader], entry(19)).await.unwrap();
        let slice = read().await;
        assert_eq!(slice.entries.len(), 16);
        assert_eq!(
            slice.entries.last().map(|entry| entry.post_id),
            Some(PostId(4))
        );
        assert_eq!(slice.floor, Some(PostId(4)));
    }

    /// The same contract on a Redis Cluster of three masters: every script
    /// touches one user's keys, which share a hash slot.
    mod on_a_cluster {
        use super::*;

        async fn make(cap: usize) -> Option<(Arc<dyn TimelineStore>, RedisPrefix)> {
            let prefix = RedisPrefix::on_cluster()?;
            let connection = RedisConnection::connect(
                &prefix.nodes,
                &RedisOptions {
                    cluster: true,
                    ..RedisOptions::default()
                },
            )
            .await
            .expect("connect to STARLING_TEST_REDIS_CLUSTER_URLS");
            let store =
                RedisTimelines::new(connection, &prefix.prefix, cap, Duration::from_secs(3600))
                    .reusing_counts_for(Duration::ZERO);
            Some((Arc::new(store), prefix))
        }

        starling_app::timeline_store_contract!(make);

        #[tokio::test]
        async fn a_fan_out_batch_reaches_users_on_every_master() {
            let Some((store, prefix)) = make(100).await else {
                return;
            };
            let users: Vec<UserId> = (1..=64).map(UserId).collect();
            for user in &users {
                store.begin_rebuild(*user).await.unwrap();
                store.finish_rebuild(*user, &[], None).await.unwrap();
            }
            let entry = TimelineEntry {
                post_id: PostId(500),
                author_id: UserId(9),
            };
            store.insert(&users, entry).await.unwrap();
            for user in &users {
                let TimelineRead::Ready(slice) = store.read(*user, None, 10).await.unwrap() else {
                    panic!("timeline of {user:?} is not materialised");
                };
                assert_eq!(slice.entries, vec![entry]);
            }
            // The keys really are spread over the masters.
            let mut masters_used = 0;
            for node in &prefix.nodes {
                let client = redis::Client::open(node.as_str()).unwrap();
                let mut connection = client.get_multiplexed_async_connection().await.unwrap();
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(format!("{}tl:*", prefix.prefix))
                    .query_async(&mut connection)
                    .await
                    .unwrap();
                if !keys.is_empty() {
                    masters_used += 1;
                }
            }
            assert_eq!(masters_used, prefix.nodes.len());
            assert_eq!(store.materialised_count().await.unwrap(), 64);
        }
    }

    #[test]
    fn members_sort_as_their_post_ids_and_round_trip() {
        let entries =
            [(1, 9), (255, 1), (256, 1), (i64::MAX, 2)].map(|(post, author)| TimelineEntry {
                post_id: PostId(post),
                author_id: UserId(author),
            });
        let members: Vec<String> = entries.iter().map(member).collect();
        let mut sorted = members.clone();
        sorted.sort();
        assert_eq!(sorted, members);
        for (entry, member) in entries.iter().zip(&members) {
            assert_eq!(parse_member(member.as_bytes()), Some(*entry));
        }
    }

    #[test]
    fn cluster_listings_give_the_live_primaries() {
        let listing = "a 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460\n\
                       b 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922\n\
                       c 127.0.0.1:7003@17003 slave a 0 0 1 connected\n\
                       d 127.0.0.1:7002@17002 master,fail - 0 0 3 disconnected\n";
        assert_eq!(
            primaries(listing),
            vec![
                ("127.0.0.1".to_owned(), 7000),
                ("127.0.0.1".to_owned(), 7001)
            ]
        );
    }
}
