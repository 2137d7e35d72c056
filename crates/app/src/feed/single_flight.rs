//! Single-flight loading: concurrent misses for one key share one load. A
//! post that goes viral while out of the cache would otherwise send every
//! reader to SQL at once (a stampede).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use parking_lot::Mutex;

use crate::error::{AppError, AppResult};

/// One load's outcome, shared by everyone waiting on it. Errors travel as
/// text: the first caller has the original in its log.
type Outcome<K, V> = Result<Arc<HashMap<K, V>>, Arc<str>>;
type Flight<K, V> = Shared<BoxFuture<'static, Outcome<K, V>>>;

pub(crate) struct SingleFlight<K, V> {
    name: &'static str,
    flights: Mutex<HashMap<K, Flight<K, V>>>,
    /// Loads started (each one query, however many keys and waiters).
    loads: AtomicU64,
}

impl<K, V> SingleFlight<K, V>
where
    K: Eq + Hash + Copy + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub(crate) fn new(name: &'static str) -> Self {
        Self {
            name,
            flights: Mutex::new(HashMap::new()),
            loads: AtomicU64::new(0),
        }
    }

    /// Loads started so far.
    pub(crate) fn loads(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
    }

    /// The values of `keys` that exist, loading with `load` only the keys no
    /// other caller is loading already; the rest wait for those loads.
    pub(crate) async fn load<F, Fut>(&self, keys: &[K], load: F) -> AppResult<HashMap<K, V>>
    where
        F: FnOnce(Vec<K>) -> Fut,
        Fut: Future<Output = AppResult<Vec<(K, V)>>> + Send + 'static,
    {
        let mut waits: Vec<Flight<K, V>> = Vec::new();
        {
            let mut flights = self.flights.lock();
            let mut mine = Vec::new();
            for key in keys {
                match flights.get(key) {
                    Some(flight) => {
                        if !waits.iter().any(|known| known.ptr_eq(flight)) {
                            waits.push(flight.clone());
                        }
                    }
                    None => mine.push(*key),
                }
            }
            let joined = keys.len() - mine.len();
            if joined > 0 {
                metrics::counter!(crate::metric::CACHE_LOADS_COALESCED_TOTAL, "cache" => self.name)
                    .increment(joined as u64);
            }
            if !mine.is_empty() {
                metrics::counter!(crate::metric::CACHE_LOADS_TOTAL, "cache" => self.name)
                    .increment(1);
                self.loads.fetch_add(1, Ordering::Relaxed);
                let flight = load(mine.clone())
                    .map(|loaded| match loaded {
                        Ok(rows) => Ok(Arc::new(rows.into_iter().collect())),
                        Err(error) => Err(Arc::from(format!("{error:#}"))),
                    })
                    .boxed()
                    .shared();
                for key in mine {
                    flights.insert(key, flight.clone());
                }
                waits.push(flight);
            }
        }
        let mut found = HashMap::with_capacity(keys.len());
        let mut failure = None;
        for flight in waits {
            let outcome = flight.clone().await;
            // Whoever sees a flight land takes it off the board, so that the
            // next miss loads afresh.
            self.flights
                .lock()
                .retain(|_, waiting| !waiting.ptr_eq(&flight));
            match outcome {
                Ok(values) => found.extend(values.iter().map(|(key, value)| (*key, value.clone()))),
                Err(error) => failure = Some(error),
            }
        }
        if let Some(error) = failure {
            return Err(AppError::Unavailable(anyhow::anyhow!("{error}")));
        }
        found.retain(|key, _| keys.contains(key));
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn concurrent_misses_share_one_load() {
        let flights = Arc::new(SingleFlight::<u64, u64>::new("test"));
        let loads = Arc::new(AtomicUsize::new(0));
        let readers = (0..100)
            .map(|_| {
                let (flights, loads) = (flights.clone(), loads.clone());
                tokio::spawn(async move {
                    flights
                        .load(&[7], |keys| {
                            loads.fetch_add(1, Ordering::SeqCst);
                            async move {
                                tokio::time::sleep(Duration::from_millis(50)).await;
                                Ok(keys.into_iter().map(|key| (key, key * 10)).collect())
                            }
                        })
                        .await
                        .unwrap()
                })
            })
            .collect::<Vec<_>>();
        for reader in readers {
            assert_eq!(reader.await.unwrap()[&7], 70);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        // Landed flights are gone: the next miss loads again.
        let again = flights
            .load(&[7, 8], |keys| {
                loads.fetch_add(1, Ordering::SeqCst);
                async move { Ok(keys.into_iter().map(|key| (key, key)).collect()) }
            })
            .await
            .unwrap();
        assert_eq!(again.len(), 2);
        assert_eq!(loads.load(Ordering::SeqCst), 2);
        assert!(flights.flights.lock().is_empty());
    }

    #[tokio::test]
    async fn a_failed_load_fails_its_waiters_and_is_not_kept() {
        let flights = SingleFlight::<u64, u64>::new("test");
        let failed = flights
            .load(&[1], |_| async {
                Err(AppError::Unavailable(anyhow::anyhow!("down")))
            })
            .await;
        assert!(matches!(failed, Err(AppError::Unavailable(_))));
        let loaded = flights
            .load(&[1], |keys| async move {
                Ok(keys.into_iter().map(|key| (key, 5)).collect())
            })
            .await
            .unwrap();
        assert_eq!(loaded[&1], 5);
    }

    #[tokio::test]
    async fn a_load_whose_leader_went_away_is_finished_by_a_waiter() {
        let flights = Arc::new(SingleFlight::<u64, u64>::new("test"));
        let leader = {
            let flights = flights.clone();
            tokio::spawn(async move {
                flights
                    .load(&[3], |keys| async move {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(keys.into_iter().map(|key| (key, 33)).collect())
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        let second_load = Arc::new(AtomicUsize::new(0));
        let waiter = {
            let (flights, second_load) = (flights.clone(), second_load.clone());
            tokio::spawn(async move {
                flights
                    .load(&[3], |_| {
                        second_load.fetch_add(1, Ordering::SeqCst);
                        async { Ok(Vec::new()) }
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        leader.abort();
        assert_eq!(waiter.await.unwrap().unwrap()[&3], 33);
        assert_eq!(
            second_load.load(Ordering::SeqCst),
            0,
            "the flight in the air was joined"
        );
    }
}
