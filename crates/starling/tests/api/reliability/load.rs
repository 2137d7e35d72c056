//! A bounded write and read load against one app, with what each request
//! got and how long it took: the figures the reliability scenarios report.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{TestApp, TestUser};

/// One request's outcome.
#[derive(Debug, Clone)]
pub struct Sample {
    pub kind: &'static str,
    /// 0: no answer (connection error).
    pub status: u16,
    pub latency: Duration,
    /// Since the load started.
    pub at: Duration,
}

#[derive(Default)]
pub struct Recorded {
    pub samples: Vec<Sample>,
    /// Posts the server answered 201 for.
    pub acknowledged: Vec<String>,
}

impl Recorded {
    /// How long after `since` (from the load's start) the first write sent
    /// then was answered 201.
    pub fn first_write_accepted_after(&self, since: Duration) -> Option<Duration> {
        self.samples
            .iter()
            .filter(|sample| sample.kind == "write" && sample.at >= since && sample.status == 201)
            .map(|sample| sample.at + sample.latency - since)
            .min()
    }
}

pub struct Load {
    pub started: Instant,
    pub recorded: Arc<Mutex<Recorded>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Starts `writers` tasks posting as `author` and `readers` tasks
    /// reading the feeds of `followers`, each pausing `pause` between
    /// requests, until `duration` has passed.
    pub fn start(
        app: &TestApp,
        author: &TestUser,
        followers: &[TestUser],
        writers: usize,
        readers: usize,
        pause: Duration,
        duration: Duration,
    ) -> Self {
        let started = Instant::now();
        let recorded = Arc::new(Mutex::new(Recorded::default()));
        let mut tasks = Vec::new();
        for writer in 0..writers {
            let (client, url, token) = (
                app.client.clone(),
                app.url("/api/v1/posts"),
                author.access_token.clone(),
            );
            let recorded = recorded.clone();
            tasks.push(tokio::spawn(async move {
                let mut index = 0;
                while started.elapsed() < duration {
                    let sent = Instant::now();
                    let response = client
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&json!({"text": format!("writer {writer} post {index}")}))
                        .send()
                        .await;
                    let (status, id) = match response {
                        Ok(response) => {
                            let status = response.status().as_u16();
                            let body: serde_json::Value = response.json().await.unwrap_or_default();
                            (status, body["id"].as_str().map(str::to_owned))
                        }
                        Err(_) => (0, None),
                    };
                    {
                        let mut recorded = recorded.lock().unwrap();
                        recorded.samples.push(Sample {
                            kind: "write",
                            status,
                            latency: sent.elapsed(),
                            at: sent - started,
                        });
                        if let (201, Some(id)) = (status, id) {
                            recorded.acknowledged.push(id);
                        }
                    }
                    index += 1;
                    tokio::time::sleep(pause).await;
                }
            }));
        }
        for reader in 0..readers {
            let client = app.client.clone();
            let url = app.url("/api/v1/feed?limit=20");
            let tokens: Vec<String> = followers.iter().map(|f| f.access_token.clone()).collect();
            let recorded = recorded.clone();
            tasks.push(tokio::spawn(async move {
                let mut turn = reader;
                while started.elapsed() < duration {
                    let token = &tokens[turn % tokens.len()];
                    turn += readers;
                    let sent = Instant::now();
                    let status = match client.get(&url).bearer_auth(token).send().await {
                        Ok(response) => {
                            let status = response.status().as_u16();
                            let _ = response.bytes().await;
                            status
                        }
                        Err(_) => 0,
                    };
                    recorded.lock().unwrap().samples.push(Sample {
                        kind: "read",
                        status,
                        latency: sent.elapsed(),
                        at: sent - started,
                    });
                    tokio::time::sleep(pause).await;
                }
            }));
        }
        Self {
            started,
            recorded,
            tasks,
        }
    }

    /// The scenarios' usual load: 2 writers and 8 readers, 10 ms apart.
    pub fn usual(
        app: &TestApp,
        author: &TestUser,
        followers: &[TestUser],
        duration: Duration,
    ) -> Self {
        Self::start(
            app,
            author,
            followers,
            2,
            8,
            Duration::from_millis(10),
            duration,
        )
    }

    /// Waits for every task to stop by itself.
    pub async fn finish(self) -> Recorded {
        for task in self.tasks {
            task.await.unwrap();
        }
        std::mem::take(&mut *self.recorded.lock().unwrap())
    }
}

/// What a run's samples of one kind (within `window`, when given) add up to.
pub struct Summary {
    pub requests: usize,
    pub by_status: BTreeMap<u16, usize>,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

pub fn summarise(samples: &[Sample], kind: &str, window: Option<(Duration, Duration)>) -> Summary {
    let mut latencies: Vec<Duration> = Vec::new();
    let mut by_status = BTreeMap::new();
    for sample in samples.iter().filter(|sample| sample.kind == kind) {
        if let Some((from, to)) = window
            && (sample.at < from || sample.at >= to)
        {
            continue;
        }
        latencies.push(sample.latency);
        *by_status.entry(sample.status).or_insert(0) += 1;
    }
    latencies.sort();
    let at = |share: f64| {
        latencies
            .get(((latencies.len() as f64 * share).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or_default()
    };
    Summary {
        requests: latencies.len(),
        by_status,
        p50: at(0.5),
        p99: at(0.99),
        max: latencies.last().copied().unwrap_or_default(),
    }
}

impl Summary {
    /// Every request got `status`.
    /// Only successes or 503 (no 500, no dropped connection).
    pub fn assert_success_or_503(&self) {
        let unexpected: Vec<u16> = self
            .by_status
            .keys()
            .copied()
            .filter(|status| ![200, 201, 503].contains(status))
            .collect();
        assert!(
            unexpected.is_empty(),
            "only success or 503 (no 500, no dropped connection): {self}"
        );
    }

    pub fn assert_only(&self, status: u16) {
        assert_eq!(
            self.by_status.keys().copied().collect::<Vec<_>>(),
            vec![status],
            "every request answered {status}: {self}"
        );
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let statuses: Vec<String> = self
            .by_status
            .iter()
            .map(|(status, count)| format!("{status}×{count}"))
            .collect();
        write!(
            f,
            "{} requests [{}], p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.requests,
            statuses.join(" "),
            self.p50.as_secs_f64() * 1000.0,
            self.p99.as_secs_f64() * 1000.0,
            self.max.as_secs_f64() * 1000.0
        )
    }
}
