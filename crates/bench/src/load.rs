//! The load engine: sends requests to a server and records what came back.
//!
//! **Open loop** (fixed arrival rate): request *i* is due at `start + i/rate`
//! whether or not earlier ones have answered, and its latency is measured
//! from that due time. A server that stalls therefore shows the stall in
//! every request that should have been sent meanwhile, instead of the load
//! generator politely waiting and hiding it (coordinated omission). This is
//! what `bench run` and every p99 figure use.
//!
//! **Closed loop** (fixed concurrency): each of N connections sends its next
//! request when the previous answers. That finds maximum throughput, and
//! its latencies are not to be quoted as user experience.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use rand::SeedableRng;
use rand::rngs::StdRng;
use reqwest::{Client, Method};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::machine::Machine;
use crate::report::{LatencySummary, OpReport, RunReport, new_histogram};

/// One request to send.
#[derive(Debug, Clone)]
pub struct Request {
    /// The request type, as reported (`feed`, `post`, ...).
    pub op: &'static str,
    pub method: Method,
    pub url: String,
    pub token: Option<String>,
    pub body: Option<serde_json::Value>,
}

/// Makes the next request; called from many tasks.
pub type RequestSource = Arc<dyn Fn(&mut StdRng) -> Request + Send + Sync>;

#[derive(Debug, Clone, Copy)]
pub enum Pacing {
    /// `rate` requests per second, at most `max_in_flight` outstanding.
    Open { rate: f64, max_in_flight: usize },
    /// `connections` requests outstanding at all times.
    Closed { connections: usize },
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub duration: Duration,
    /// Stop after this many requests even if time remains.
    pub max_requests: Option<u64>,
}

#[derive(Default)]
struct OpStats {
    histogram: Option<Histogram<u64>>,
    ok: u64,
    errors: BTreeMap<String, u64>,
}

#[derive(Default)]
struct Recorder {
    ops: Mutex<HashMap<&'static str, OpStats>>,
}

impl Recorder {
    fn record(&self, op: &'static str, outcome: Result<u16, String>, latency: Duration) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut ops = self.ops.lock();
        let stats = ops.entry(op).or_default();
        let histogram = stats.histogram.get_or_insert_with(new_histogram);
        histogram.saturating_record(micros);
        match outcome {
            Ok(status) if (200..300).contains(&status) => stats.ok += 1,
            Ok(status) => *stats.errors.entry(format!("status {status}")).or_default() += 1,
            Err(kind) => *stats.errors.entry(kind).or_default() += 1,
        }
    }
}

/// A client for load: HTTP/1.1 keep-alive, no proxy, generous pool.
pub fn client(connections: usize) -> anyhow::Result<Client> {
    Ok(Client::builder()
        .pool_max_idle_per_host(connections)
        .tcp_nodelay(true)
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()?)
}

async fn send(client: &Client, request: &Request) -> Result<u16, String> {
    let mut builder = client.request(request.method.clone(), &request.url);
    if let Some(token) = &request.token {
        builder = builder.bearer_auth(token);
    }
    if let Some(body) = &request.body {
        builder = builder.json(body);
    }
    match builder.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            // Read the whole body: the server's work includes sending it.
            match response.bytes().await {
                Ok(_) => Ok(status),
                Err(_) => Err("transport".to_owned()),
            }
        }
        Err(error) if error.is_timeout() => Err("timeout".to_owned()),
        Err(_) => Err("transport".to_owned()),
    }
}

/// Drives `source` against the server with the given pacing and limits.
pub async fn drive(
    client: Client,
    source: RequestSource,
    pacing: Pacing,
    limits: Limits,
) -> RunReport {
    let recorder = Arc::new(Recorder::default());
    let started = Instant::now();
    let deadline = started + limits.duration;
    let max_requests = limits.max_requests.unwrap_or(u64::MAX);
    let mut tasks = JoinSet::new();
    match pacing {
        Pacing::Open {
            rate,
            max_in_flight,
        } => {
            let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
            let slots = Arc::new(Semaphore::new(max_in_flight.max(1)));
            let mut rng = StdRng::from_entropy();
            let mut sent = 0u64;
            'schedule: loop {
                let now = Instant::now();
                // Everything due by now goes out now; then sleep to the next due time.
                loop {
                    let due = started + interval.mul_f64(sent as f64);
                    if due >= deadline || sent >= max_requests {
                        break 'schedule;
                    }
                    if due > now {
                        tokio::time::sleep_until(due.into()).await;
                        break;
                    }
                    let request = source(&mut rng);
                    let (client, recorder, slots) =
                        (client.clone(), recorder.clone(), slots.clone());
                    tasks.spawn(async move {
                        // Waiting for a slot counts: latency runs from the due time.
                        let Ok(_slot) = slots.acquire_owned().await else {
                            return;
                        };
                        let outcome = send(&client, &request).await;
                        recorder.record(request.op, outcome, due.elapsed());
                    });
                    sent += 1;
                }
                // Reap finished tasks so the set does not grow with the run.
                while tasks.try_join_next().is_some() {}
            }
        }
        Pacing::Closed { connections } => {
            let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
            for worker in 0..connections.max(1) {
                let (client, recorder, source, sent) = (
                    client.clone(),
                    recorder.clone(),
                    source.clone(),
                    sent.clone(),
                );
                tasks.spawn(async move {
                    let mut rng = StdRng::seed_from_u64(worker as u64 ^ 0x5eed);
                    while Instant::now() < deadline
                        && sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < max_requests
                    {
                        let request = source(&mut rng);
                        let began = Instant::now();
                        let outcome = send(&client, &request).await;
                        recorder.record(request.op, outcome, began.elapsed());
                    }
                });
            }
        }
    }
    // Let what was sent finish (bounded: every request has a 30 s timeout).
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed().as_secs_f64().max(0.001);
    summarise(&recorder, pacing, elapsed)
}

fn summarise(recorder: &Recorder, pacing: Pacing, elapsed: f64) -> RunReport {
    let ops = recorder.ops.lock();
    let mut overall = new_histogram();
    let mut reports: Vec<OpReport> = ops
        .iter()
        .map(|(name, stats)| {
            let histogram = stats.histogram.clone().unwrap_or_else(new_histogram);
            let _ = overall.add(&histogram);
            OpReport {
                name: (*name).to_owned(),
                completed: histogram.len(),
                ok: stats.ok,
                errors: stats.errors.clone(),
                throughput_per_s: histogram.len() as f64 / elapsed,
                latency: LatencySummary::of(&histogram),
            }
        })
        .collect();
    reports.sort_by_key(|op| std::cmp::Reverse(op.completed));
    let errors = reports
        .iter()
        .map(|op| op.errors.values().sum::<u64>())
        .sum();
    let (label, target) = match pacing {
        Pacing::Open { rate, .. } => ("open", Some(rate)),
        Pacing::Closed { .. } => ("closed", None),
    };
    RunReport {
        machine: Machine::this(),
        pacing: label.to_owned(),
        target_rate_per_s: target,
        duration_s: elapsed,
        throughput_per_s: overall.len() as f64 / elapsed,
        errors,
        overall: LatencySummary::of(&overall),
        ops: reports,
        fanout_lag: None,
    }
}

#[cfg(test)]
mod tests {
    use axum::routing::get;

    use super::*;

    async fn slow_server(delay: Duration) -> String {
        let app = axum::Router::new().route(
            "/",
            get(move || async move {
                tokio::time::sleep(delay).await;
                "ok"
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{address}/")
    }

    fn get_source(url: String) -> RequestSource {
        Arc::new(move |_| Request {
            op: "get",
            method: Method::GET,
            url: url.clone(),
            token: None,
            body: None,
        })
    }

    #[tokio::test]
    async fn open_loop_keeps_its_rate_and_charges_queueing_to_latency() {
        let url = slow_server(Duration::from_millis(50)).await;
        // 200/s for 1 s with only 2 requests in flight: each takes 50 ms, so
        // at most 40/s can be served and the rest queue. Their latency must
        // show the queueing, not just the 50 ms of service.
        let report = drive(
            client(4).unwrap(),
            get_source(url),
            Pacing::Open {
                rate: 200.0,
                max_in_flight: 2,
            },
            Limits {
                duration: Duration::from_secs(1),
                max_requests: None,
            },
        )
        .await;
        let op = &report.ops[0];
        assert!(
            (195..=200).contains(&op.completed),
            "every scheduled request is sent: {}",
            op.completed
        );
        assert_eq!(op.ok, op.completed);
        assert!(
            op.latency.p99_ms > 1_000.0,
            "queueing is visible: {:?}",
            op.latency
        );
        assert!(op.latency.p50_ms > 500.0, "{:?}", op.latency);
    }

    #[tokio::test]
    async fn closed_loop_is_bounded_by_its_connections_and_request_cap() {
        let url = slow_server(Duration::from_millis(20)).await;
        let report = drive(
            client(4).unwrap(),
            get_source(url),
            Pacing::Closed { connections: 4 },
            Limits {
                duration: Duration::from_secs(10),
                max_requests: Some(40),
            },
        )
        .await;
        assert_eq!(report.ops[0].completed, 40);
        assert!(
            report.duration_s < 5.0,
            "the request cap ended the run early"
        );
        assert!(report.ops[0].latency.p50_ms >= 20.0);
    }
}
