//! Gauges sampled when `/metrics` is scraped: database pool usage, timeline
//! store size, outbox backlog, and the async runtime's own figures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;
use starling_app::ports::{OutboxStore, TimelineStore};
use starling_domain::Timestamp;
use starling_http::RefreshGauges;
use starling_nats::JetStream;

use crate::engines::SqlStore;

/// How long one source of gauges may take before a scrape goes on without
/// it. Its gauges then read `NaN`, unknown: a last value kept would say
/// "caught up" (or "fine") about a source that could not tell.
const SLOW_SOURCE: Duration = Duration::from_secs(1);

/// Sources that cost their engine real work (a backlog asks the broker for
/// every partition's consumer) are measured at most this often, however
/// often `/metrics` is scraped: a benchmark polling for "drained" must not
/// load the broker it is measuring.
const MEASURE_EVERY: Duration = Duration::from_secs(1);

pub struct Gauges {
    sql: SqlStore,
    store: Arc<dyn OutboxStore>,
    timelines: Arc<dyn TimelineStore>,
    /// Consumers of the SQL outbox.
    consumers: Vec<&'static str>,
    jetstream: Option<JetStream>,
    runtime: tokio::runtime::Handle,
    /// When the runtime was last sampled and its workers' busy time then.
    last_busy: Mutex<(Instant, Duration)>,
    /// When the engines' figures were last measured.
    last_measured: Mutex<Option<Instant>>,
}

impl Gauges {
    pub fn new(
        sql: SqlStore,
        timelines: Arc<dyn TimelineStore>,
        consumers: Vec<&'static str>,
        jetstream: Option<JetStream>,
    ) -> Self {
        let runtime = tokio::runtime::Handle::current();
        let busy = total_busy(&runtime);
        Self {
            store: sql.port(),
            sql,
            timelines,
            consumers,
            jetstream,
            runtime,
            last_busy: Mutex::new((Instant::now(), busy)),
            last_measured: Mutex::new(None),
        }
    }

    fn sample_runtime(&self) {
        let figures = self.runtime.metrics();
        let workers = figures.num_workers();
        metrics::gauge!(starling_app::metric::RUNTIME_WORKERS).set(workers as f64);
        metrics::gauge!(starling_app::metric::RUNTIME_ALIVE_TASKS)
            .set(figures.num_alive_tasks() as f64);
        metrics::gauge!(starling_app::metric::RUNTIME_GLOBAL_QUEUE_DEPTH)
            .set(figures.global_queue_depth() as f64);
        let busy = total_busy(&self.runtime);
        let now = Instant::now();
        let mut last = self.last_busy.lock();
        let elapsed = now.duration_since(last.0).as_secs_f64() * workers as f64;
        if elapsed > 0.0 {
            let ratio = busy.saturating_sub(last.1).as_secs_f64() / elapsed;
            metrics::gauge!(starling_app::metric::RUNTIME_BUSY_RATIO).set(ratio.clamp(0.0, 1.0));
        }
        *last = (now, busy);
    }
}

fn total_busy(runtime: &tokio::runtime::Handle) -> Duration {
    let figures = runtime.metrics();
    (0..figures.num_workers())
        .map(|worker| figures.worker_total_busy_duration(worker))
        .sum()
}

#[async_trait]
impl RefreshGauges for Gauges {
    async fn refresh(&self) {
        for (pool, open, idle) in self.sql.pool_usage() {
            metrics::gauge!(starling_app::metric::DB_POOL_CONNECTIONS, "pool" => pool, "state" => "idle")
                .set(idle as f64);
            metrics::gauge!(starling_app::metric::DB_POOL_CONNECTIONS, "pool" => pool, "state" => "in_use")
                .set(f64::from(open).max(idle as f64) - idle as f64);
        }
        self.sample_runtime();
        {
            let mut last = self.last_measured.lock();
            if last.is_some_and(|at| at.elapsed() < MEASURE_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        match tokio::time::timeout(SLOW_SOURCE, self.timelines.materialised_count()).await {
            Ok(Ok(count)) => {
                metrics::gauge!(starling_app::metric::TIMELINES_MATERIALISED).set(count as f64)
            }
            Ok(Err(error)) => {
                tracing::warn!(error = %error, "cannot count timelines");
                metrics::gauge!(starling_app::metric::TIMELINES_MATERIALISED).set(f64::NAN);
            }
            Err(_) => {
                tracing::warn!("counting timelines took too long");
                metrics::gauge!(starling_app::metric::TIMELINES_MATERIALISED).set(f64::NAN);
            }
        }
        for consumer in &self.consumers {
            let (count, age_s) =
                match tokio::time::timeout(SLOW_SOURCE, self.store.backlog(consumer)).await {
                    Ok(Ok((count, oldest))) => {
                        let age_ms = oldest
                            .map_or(0, |oldest| (Timestamp::now_ms() - oldest.millis()).max(0));
                        (count as f64, age_ms as f64 / 1000.0)
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(error = %error, "cannot measure the outbox backlog");
                        (f64::NAN, f64::NAN)
                    }
                    Err(_) => {
                        tracing::warn!("the outbox backlog took too long to measure");
                        (f64::NAN, f64::NAN)
                    }
                };
            metrics::gauge!(starling_app::metric::OUTBOX_BACKLOG_EVENTS, "consumer" => *consumer)
                .set(count);
            metrics::gauge!(starling_app::metric::OUTBOX_OLDEST_UNHANDLED_AGE_SECONDS, "consumer" => *consumer)
                .set(age_s);
        }
        if let Some(jetstream) = &self.jetstream {
            let consumers = [
                starling_app::workers::FanoutWorker::CONSUMER,
                starling_app::workers::Notifier::CONSUMER,
            ];
            // A broker that is down must not hold up the scrape: measured
            // together, within one deadline, or unknown.
            let measured = tokio::time::timeout(SLOW_SOURCE, async {
                let (fanout, notifier) = tokio::join!(
                    jetstream.backlog(consumers[0]),
                    jetstream.backlog(consumers[1])
                );
                [fanout, notifier]
            })
            .await;
            if measured.is_err() {
                tracing::warn!("the stream backlog took too long to measure");
            }
            for (index, consumer) in consumers.into_iter().enumerate() {
                let count = match &measured {
                    Ok(backlogs) => match &backlogs[index] {
                        Ok(count) => *count as f64,
                        Err(error) => {
                            tracing::warn!(error = %error, "cannot measure the stream backlog");
                            f64::NAN
                        }
                    },
                    Err(_) => f64::NAN,
                };
                metrics::gauge!(starling_app::metric::STREAM_BACKLOG_EVENTS, "consumer" => consumer)
                    .set(count);
            }
        }
    }
}
