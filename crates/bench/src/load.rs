//! The load engine: sends requests to a server and records what came back.
//!
//! It runs a fixed set of workers, each with its own keep-alive HTTP/1.1
//! connection (hyper's client connection, no pool, no task per request), so
//! that the generator spends as little of this 2-core machine as it can.
//!
//! **Open loop** (fixed arrival rate): request *i* is due at `start + i/rate`
//! and goes to worker `i mod N`; its latency is measured from its due time.
//! A worker still waiting for an earlier answer sends late, and the lateness
//! counts: a server that stalls shows the stall in every request that should
//! have been sent meanwhile, instead of the generator politely waiting and
//! hiding it (coordinated omission, corrected as wrk2 does). This is what
//! `starling-bench run` and every p99 figure use.
//!
//! **Closed loop** (fixed concurrency): each worker sends its next request
//! when the previous answers. That finds maximum throughput; its latencies
//! are not to be quoted as user experience.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use rand::SeedableRng;
use rand::rngs::StdRng;
use reqwest::{Client, Method};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::machine::Machine;
use crate::report::{LatencySummary, OpReport, RunReport, SecondReport, new_histogram};

/// One request to send.
#[derive(Debug, Clone)]
pub struct Request {
    /// The request type, as reported (`feed`, `post`, ...).
    pub op: &'static str,
    pub method: Method,
    /// Path and query, e.g. `/api/v1/feed?limit=20`.
    pub path: String,
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

struct Recorder {
    started: Instant,
    ops: Mutex<HashMap<&'static str, OpStats>>,
    /// Every request's latency by the second it was due in: a stall shows
    /// as the seconds it spans, which a whole run's percentiles average away.
    seconds: Mutex<BTreeMap<u64, Histogram<u64>>>,
}

impl Recorder {
    fn new(started: Instant) -> Self {
        Self {
            started,
            ops: Mutex::default(),
            seconds: Mutex::default(),
        }
    }

    fn record(&self, op: &'static str, outcome: Result<u16, String>, due: Instant) {
        let latency = due.elapsed();
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let second = due.saturating_duration_since(self.started).as_secs();
        self.seconds
            .lock()
            .entry(second)
            .or_insert_with(new_histogram)
            .saturating_record(micros);
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

/// A client for the light requests around a run (warm-ups, scrapes).
pub fn client(connections: usize) -> anyhow::Result<Client> {
    Ok(Client::builder()
        .pool_max_idle_per_host(connections)
        .tcp_nodelay(true)
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()?)
}

/// One worker's connection, reopened after a failure.
struct Connection {
    address: String,
    sender: Option<http1::SendRequest<Full<Bytes>>>,
}

impl Connection {
    fn new(address: String) -> Self {
        Self {
            address,
            sender: None,
        }
    }

    async fn open(&self) -> Result<http1::SendRequest<Full<Bytes>>, String> {
        let stream = TcpStream::connect(&self.address)
            .await
            .map_err(|_| "connect".to_owned())?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| "connect".to_owned())?;
        tokio::spawn(connection);
        Ok(sender)
    }

    async fn send(&mut self, request: &Request) -> Result<u16, String> {
        let outcome = tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(request)).await;
        let result = outcome.unwrap_or_else(|_| Err("timeout".to_owned()));
        if result.is_err() {
            // Whatever state the connection is in, start the next request afresh.
            self.sender = None;
        }
        result
    }

    async fn exchange(&mut self, request: &Request) -> Result<u16, String> {
        let mut sender = match self.sender.take() {
            Some(sender) if !sender.is_closed() => sender,
            _ => self.open().await?,
        };
        sender.ready().await.map_err(|_| "transport".to_owned())?;
        let mut builder = hyper::Request::builder()
            .method(request.method.clone())
            .uri(&request.path)
            .header(HOST, &self.address);
        if let Some(token) = &request.token {
            builder = builder.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match &request.body {
            Some(json) => {
                builder = builder.header(CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(
                    serde_json::to_vec(json).map_err(|_| "encode".to_owned())?,
                ))
            }
            None => Full::new(Bytes::new()),
        };
        let http_request = builder.body(body).map_err(|_| "encode".to_owned())?;
        let response = sender
            .send_request(http_request)
            .await
            .map_err(|_| "transport".to_owned())?;
        let status = response.status().as_u16();
        // Read the whole body: the server's work includes sending it.
        response
            .into_body()
            .collect()
            .await
            .map_err(|_| "transport".to_owned())?;
        self.sender = Some(sender);
        Ok(status)
    }
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Drives `source` against the server at `address` (`host:port`) with the
/// given pacing and limits.
pub async fn drive(
    address: &str,
    source: RequestSource,
    pacing: Pacing,
    limits: Limits,
) -> RunReport {
    let started = Instant::now();
    let recorder = Arc::new(Recorder::new(started));
    let deadline = started + limits.duration;
    let max_requests = limits.max_requests.unwrap_or(u64::MAX);
    let (workers, interval) = match pacing {
        Pacing::Open {
            rate,
            max_in_flight,
        } => (
            max_in_flight.max(1),
            Some(Duration::from_secs_f64(1.0 / rate.max(0.001))),
        ),
        Pacing::Closed { connections } => (connections.max(1), None),
    };
    let sent = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for worker in 0..workers {
        let (recorder, source, sent) = (recorder.clone(), source.clone(), sent.clone());
        let mut connection = Connection::new(address.to_owned());
        tasks.spawn(async move {
            let mut rng = StdRng::seed_from_u64(worker as u64 ^ 0x5eed);
            let mut index = worker as u64;
            loop {
                let due = match interval {
                    // Worker k sends requests k, k + N, k + 2N, ... at their due times.
                    Some(interval) => {
                        let due = started + interval.mul_f64(index as f64);
                        if due >= deadline || index >= max_requests {
                            break;
                        }
                        index += workers as u64;
                        if due > Instant::now() {
                            tokio::time::sleep_until(due.into()).await;
                        }
                        due
                    }
                    None => {
                        if Instant::now() >= deadline
                            || sent.fetch_add(1, Ordering::Relaxed) >= max_requests
                        {
                            break;
                        }
                        Instant::now()
                    }
                };
                let request = source(&mut rng);
                let outcome = connection.send(&request).await;
                recorder.record(request.op, outcome, due);
            }
        });
    }
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
        seconds: recorder
            .seconds
            .lock()
            .iter()
            .map(|(second, histogram)| SecondReport {
                second: *second,
                requests: histogram.len(),
                p99_ms: histogram.value_at_quantile(0.99) as f64 / 1000.0,
                max_ms: histogram.max() as f64 / 1000.0,
            })
            .collect(),
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
        address.to_string()
    }

    fn get_source() -> RequestSource {
        Arc::new(move |_| Request {
            op: "get",
            method: Method::GET,
            path: "/".to_owned(),
            token: None,
            body: None,
        })
    }

    #[tokio::test]
    async fn open_loop_keeps_its_rate_and_charges_queueing_to_latency() {
        let address = slow_server(Duration::from_millis(50)).await;
        // 200/s for 1 s with only 2 requests in flight: each takes 50 ms, so
        // at most 40/s can be served and the rest queue. Their latency must
        // show the queueing, not just the 50 ms of service.
        let report = drive(
            &address,
            get_source(),
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
        // Every request was due within the first second, and that second
        // carries their queueing.
        assert_eq!(report.seconds.len(), 1, "{:?}", report.seconds);
        assert_eq!(report.seconds[0].second, 0);
        assert_eq!(report.seconds[0].requests, op.completed);
        assert!(report.seconds[0].p99_ms > 1_000.0, "{:?}", report.seconds);
    }

    #[tokio::test]
    async fn closed_loop_is_bounded_by_its_connections_and_request_cap() {
        let address = slow_server(Duration::from_millis(20)).await;
        let report = drive(
            &address,
            get_source(),
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
