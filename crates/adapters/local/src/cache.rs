//! The cache port on moka: bounded by entry count, each entry living for a
//! TTL with ±10% jitter so that entries loaded together do not all expire in
//! the same instant (no avalanche onto SQL).

use std::hash::Hash;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use moka::Expiry;
use starling_app::ports::Cache;

pub struct MokaCache<K, V> {
    inner: moka::sync::Cache<K, V>,
    name: &'static str,
}

struct JitteredTtl {
    ttl: Duration,
}

impl<K, V> Expiry<K, V> for JitteredTtl {
    fn expire_after_create(&self, _key: &K, _value: &V, _created_at: Instant) -> Option<Duration> {
        // A cheap per-entry jitter with no RNG on the hot path: the clock's nanoseconds.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.subsec_nanos());
        let spread = (f64::from(nanos % 2001) / 10_000.0) - 0.1;
        Some(self.ttl.mul_f64(1.0 + spread))
    }
}

impl<K, V> MokaCache<K, V>
where
    K: Hash + Eq + Send + Sync + Clone + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub fn new(name: &'static str, max_entries: u64, ttl: Duration) -> Self {
        Self {
            inner: moka::sync::Cache::builder()
                .name(name)
                .max_capacity(max_entries)
                .expire_after(JitteredTtl { ttl })
                .build(),
            name,
        }
    }

    pub fn entry_count(&self) -> u64 {
        self.inner.entry_count()
    }
}

#[async_trait]
impl<K, V> Cache<K, V> for MokaCache<K, V>
where
    K: Hash + Eq + Send + Sync + Clone + 'static,
    V: Clone + Send + Sync + 'static,
{
    async fn get_many(&self, keys: &[K]) -> Vec<Option<V>> {
        let found: Vec<Option<V>> = keys.iter().map(|key| self.inner.get(key)).collect();
        let hits = found.iter().filter(|slot| slot.is_some()).count() as u64;
        metrics::counter!("starling_cache_hits_total", "cache" => self.name).increment(hits);
        metrics::counter!("starling_cache_misses_total", "cache" => self.name)
            .increment(keys.len() as u64 - hits);
        found
    }

    async fn put_many(&self, entries: Vec<(K, V)>) {
        for (key, value) in entries {
            self.inner.insert(key, value);
        }
    }

    async fn fill_many(&self, entries: Vec<(K, V)>) {
        for (key, value) in entries {
            self.inner.entry(key).or_insert(value);
        }
    }

    async fn invalidate(&self, key: &K) {
        self.inner.invalidate(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_in_key_order_and_forgets_invalidated_keys() {
        let cache: MokaCache<u32, &'static str> =
            MokaCache::new("test", 100, Duration::from_secs(60));
        cache.put_many(vec![(1, "one"), (3, "three")]).await;
        assert_eq!(
            cache.get_many(&[3, 2, 1]).await,
            vec![Some("three"), None, Some("one")]
        );
        cache.invalidate(&3).await;
        assert_eq!(cache.get_many(&[3]).await, vec![None]);
    }

    #[tokio::test]
    async fn filling_never_replaces_what_a_writer_stored() {
        let cache: MokaCache<u32, &'static str> =
            MokaCache::new("test", 100, Duration::from_secs(60));
        cache.put_many(vec![(1, "tombstone")]).await;
        cache
            .fill_many(vec![(1, "stale live post"), (2, "loaded")])
            .await;
        assert_eq!(
            cache.get_many(&[1, 2]).await,
            vec![Some("tombstone"), Some("loaded")]
        );
    }

    #[tokio::test]
    async fn entries_expire_after_their_ttl() {
        let cache: MokaCache<u32, u32> = MokaCache::new("test", 100, Duration::from_millis(50));
        cache.put_many(vec![(1, 1)]).await;
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(cache.get_many(&[1]).await, vec![None]);
    }
}
