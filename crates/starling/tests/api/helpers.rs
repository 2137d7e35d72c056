//! `spawn_app` and typed client helpers.

use std::future::Future;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use starling::{Application, Config};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct TestApp {
    /// Where clients go: the app, or nginx in front of it.
    pub address: String,
    /// The app itself, for operations endpoints nginx keeps from the public.
    pub direct: String,
    pub client: reqwest::Client,
    /// The application core, for tests that play a worker (e.g. redelivering
    /// events as a broker would after a crash).
    pub core: std::sync::Arc<starling_app::App>,
    data_dir: Option<TempDir>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    /// The engines' per-test databases, key prefixes and streams, removed
    /// when the app is dropped.
    engines: Option<Engines>,
    /// In front of the app when scaled out (and nginx is configured).
    nginx: Option<starling_bench::nginx::Nginx>,
}

/// What a stopped app leaves behind, to start it again on.
pub struct Stopped {
    data_dir: TempDir,
    engines: Option<Engines>,
}

/// What a scaled-out test app runs on, each piece its own. No read replica:
/// these tests read other accounts' writes at once, which replicas promise
/// only within their lag; the replica has tests of its own.
pub struct Engines {
    pub database: starling_testing::TestDatabase,
    pub redis: starling_testing::RedisPrefix,
    pub nats: starling_testing::NatsStream,
}

impl Engines {
    /// Fresh engines, or `None` (with the reason printed) when a service is
    /// not configured.
    pub async fn new() -> Option<Self> {
        Some(Self {
            database: starling_testing::test_database().await?,
            redis: starling_testing::RedisPrefix::new()?,
            nats: starling_testing::NatsStream::new()?,
        })
    }

    /// Points `config` at these engines: PostgreSQL, Redis and JetStream.
    pub fn configure(&self, config: &mut Config) {
        config.database_url = Some(self.database.url.clone());
        config.redis_url = Some(self.redis.url.clone());
        config.redis.key_prefix = self.redis.prefix.clone();
        config.nats_url = Some(self.nats.url.clone());
        config.nats.stream = self.nats.stream.clone();
        config.nats.subject_prefix = self.nats.subject_prefix.clone();
        config.nats.partitions = 4;
    }
}

#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: String,
    pub access_token: String,
    pub refresh_token: String,
}

/// A response read whole: status, headers and body (JSON when it parses).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub fn content_type(&self) -> &str {
        self.headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
    }

    /// Asserts an RFC 9457 problem document with this status.
    pub fn assert_problem(&self, status: u16) -> &Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.text
        );
        assert_eq!(
            self.content_type(),
            "application/problem+json",
            "body: {}",
            self.text
        );
        assert_eq!(self.body["status"], status, "body: {}", self.text);
        for field in ["type", "title", "detail"] {
            assert!(
                self.body[field].is_string(),
                "problem lacks {field}: {}",
                self.text
            );
        }
        self
    }

    pub fn field_errors(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .map(|error| error["field"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Which engines a test's app runs on; `#[both_modes]` runs a test in each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// SQLite, in-process caches, timelines and event log.
    Embedded,
    /// PostgreSQL, Redis and JetStream of the test's own (a database, a key
    /// prefix and streams), with the relay between outbox and stream and
    /// the fan-out worker reading partitions as separate roles would, and
    /// the client talking to it through nginx running the shipped
    /// `deploy/nginx/starling.conf`.
    ScaledOut,
}

/// A fresh app on its own data directory (scaled out: on engines of its
/// own, behind nginx), or `None` when `mode` needs engines that are not
/// configured: the test is skipped (the reason is printed, and the run's
/// end counts it).
pub async fn spawn_app(mode: Mode) -> Option<TestApp> {
    spawn_app_with(mode, |_| {}).await
}

pub async fn spawn_app_with(mode: Mode, configure: impl FnOnce(&mut Config)) -> Option<TestApp> {
    Some(spawn_app_on(mode_engines(mode).await?, configure).await)
}

/// What `mode`'s apps run on: `Some(None)` embedded, `Some(Some(_))` fresh
/// scaled-out engines, `None` (skip) when those are not configured.
pub async fn mode_engines(mode: Mode) -> Option<Option<Engines>> {
    match mode {
        Mode::Embedded => Some(None),
        Mode::ScaledOut => Some(Some(Engines::new().await?)),
    }
}

/// A fresh app on its own data directory and on `engines` (embedded
/// without).
pub async fn spawn_app_on(
    engines: Option<Engines>,
    configure: impl FnOnce(&mut Config),
) -> TestApp {
    let stopped = Stopped {
        data_dir: tempfile::tempdir().unwrap(),
        engines,
    };
    restart(stopped, configure).await
}

/// Starts Starling again on what a stopped app left: its data directory
/// and, scaled out, its engines.
pub async fn restart(stopped: Stopped, configure: impl FnOnce(&mut Config)) -> TestApp {
    let Stopped { data_dir, engines } = stopped;
    let mut config = Config::for_test(data_dir.path());
    if let Some(engines) = &engines {
        engines.configure(&mut config);
    }
    configure(&mut config);
    let application = Application::build(config)
        .await
        .expect("the application builds");
    // Scaled out, clients reach the instance through nginx with the shipped
    // configuration, as in production.
    let nginx = match &engines {
        Some(_) => match starling_testing::optional_service_url("STARLING_TEST_NGINX", "nginx") {
            Some(binary) => Some(
                starling_bench::nginx::Nginx::start(&binary, &[application.address().to_string()])
                    .await
                    .expect("nginx starts"),
            ),
            None => None,
        },
        None => None,
    };
    let direct = format!("http://{}", application.address());
    let address = nginx
        .as_ref()
        .map_or_else(|| direct.clone(), |nginx| nginx.base.clone());
    let core = application.app();
    let (shutdown, stop) = oneshot::channel::<()>();
    let server = tokio::spawn(application.run_until_stopped(async {
        let _ = stop.await;
    }));
    TestApp {
        address,
        direct,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        core,
        data_dir: Some(data_dir),
        shutdown: Some(shutdown),
        server: Some(server),
        engines,
        nginx,
    }
}

impl TestApp {
    /// Whether this app runs on the scaled-out engines (PostgreSQL, Redis,
    /// JetStream), not embedded.
    pub fn scaled_out(&self) -> bool {
        self.engines.is_some()
    }

    /// Whether clients reach this app through nginx (and its caches).
    pub fn behind_nginx(&self) -> bool {
        self.nginx.is_some()
    }

    /// Stops the server gracefully and hands back what it ran on.
    pub async fn stop(mut self) -> Stopped {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().expect("the server stops cleanly");
        }
        Stopped {
            data_dir: self.data_dir.take().unwrap(),
            engines: self.engines.take(),
        }
    }

    /// `starling admin grant <handle> <role>`: the real command, on this
    /// app's database while it runs, as an operator makes the first admin.
    /// Its output, whatever the exit.
    pub async fn grant(&self, handle: &str, role: &str) -> std::process::Output {
        let data_dir = self.data_dir.as_ref().unwrap().path().to_owned();
        let database = self
            .engines
            .as_ref()
            .map(|engines| engines.database.url.clone());
        let (handle, role) = (handle.to_owned(), role.to_owned());
        tokio::task::spawn_blocking(move || {
            let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_starling"));
            command
                .args(["admin", "grant", &handle, &role])
                .env_remove("RUST_LOG")
                .env("STARLING_LOG_LEVEL", "warn")
                .env_remove("STARLING_DATABASE_URL")
                .env("STARLING_DATA_DIR", &data_dir)
                .current_dir(&data_dir);
            if let Some(url) = database {
                command.env("STARLING_DATABASE_URL", url);
            }
            command.output().expect("starling admin runs")
        })
        .await
        .unwrap()
    }

    /// The app's Prometheus text, read from the app itself.
    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.direct))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request.send().await.expect("the request is sent")).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub async fn register(&self, handle: &str) -> TestUser {
        let reply = self
            .post(
                "/api/v1/auth/register",
                None,
                json!({"handle": handle, "email": format!("{handle}@example.org"), "password": "correct horse battery"}),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::CREATED,
            "register {handle}: {}",
            reply.text
        );
        session_user(&reply.body)
    }

    /// `POST /auth/login` with the password every test account has.
    pub async fn login(&self, login: &str) -> Reply {
        self.post(
            "/api/v1/auth/login",
            None,
            json!({"login": login, "password": "correct horse battery"}),
        )
        .await
    }

    /// `POST /auth/refresh` (or `/auth/logout`: `what` is `refresh` or `logout`).
    pub async fn spend_refresh_token(&self, what: &str, refresh_token: &str) -> Reply {
        self.post(
            &format!("/api/v1/auth/{what}"),
            None,
            json!({ "refresh_token": refresh_token }),
        )
        .await
    }

    pub async fn create_post(&self, author: &TestUser, text: &str) -> String {
        let reply = self
            .post(
                "/api/v1/posts",
                Some(&author.access_token),
                json!({ "text": text }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "post: {}", reply.text);
        reply.body["id"].as_str().unwrap().to_owned()
    }

    pub async fn follow(&self, follower: &TestUser, followee: &TestUser) {
        let reply = self
            .call(
                Method::POST,
                &format!("/api/v1/users/{}/follow", followee.id),
                Some(&follower.access_token),
                None,
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::NO_CONTENT,
            "follow: {}",
            reply.text
        );
    }

    pub async fn unfollow(&self, follower: &TestUser, followee: &TestUser) {
        let reply = self
            .call(
                Method::DELETE,
                &format!("/api/v1/users/{}/follow", followee.id),
                Some(&follower.access_token),
                None,
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::NO_CONTENT,
            "unfollow: {}",
            reply.text
        );
    }

    pub async fn delete_post(&self, author: &TestUser, post: &str) -> Reply {
        self.call(
            Method::DELETE,
            &format!("/api/v1/posts/{post}"),
            Some(&author.access_token),
            None,
        )
        .await
    }

    pub async fn feed_page(&self, reader: &TestUser, cursor: Option<&str>, limit: usize) -> Reply {
        let mut path = format!("/api/v1/feed?limit={limit}");
        if let Some(cursor) = cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let reply = self.get(&path, Some(&reader.access_token)).await;
        assert_eq!(reply.status, StatusCode::OK, "feed: {}", reply.text);
        reply
    }

    /// Every post id of a paged list, following `next_cursor` to the end.
    pub async fn all_pages(&self, path: &str, token: Option<&str>, limit: usize) -> Vec<String> {
        let mut ids = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let separator = if path.contains('?') { '&' } else { '?' };
            let mut url = format!("{path}{separator}limit={limit}");
            if let Some(cursor) = &cursor {
                url.push_str(&format!("&cursor={cursor}"));
            }
            let reply = self.get(&url, token).await;
            assert_eq!(reply.status, StatusCode::OK, "{url}: {}", reply.text);
            let data = reply.body["data"].as_array().unwrap();
            assert!(data.len() <= limit);
            ids.extend(
                data.iter()
                    .map(|item| item["id"].as_str().unwrap().to_owned()),
            );
            let pagination = &reply.body["pagination"];
            match pagination["next_cursor"].as_str() {
                Some(next) => {
                    assert_eq!(pagination["has_more"], true);
                    cursor = Some(next.to_owned());
                }
                None => {
                    assert_eq!(pagination["has_more"], false);
                    return ids;
                }
            }
        }
    }

    pub async fn feed_ids(&self, reader: &TestUser) -> Vec<String> {
        self.all_pages("/api/v1/feed", Some(&reader.access_token), 100)
            .await
    }
}

pub fn session_user(body: &Value) -> TestUser {
    TestUser {
        id: body["user"]["id"].as_str().unwrap().to_owned(),
        access_token: body["access_token"].as_str().unwrap().to_owned(),
        refresh_token: body["refresh_token"].as_str().unwrap().to_owned(),
    }
}

pub async fn read(response: reqwest::Response) -> Reply {
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
        text,
    }
}

/// Polls `check` until it returns true or `timeout` passes; panics with
/// `what` on timeout. For effects of the asynchronous fan-out worker.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How long asynchronous fan-out may take in tests (generous for slow CI).
pub const FANOUT_WAIT: Duration = Duration::from_secs(10);

/// One Server-Sent Event as a client parses it.
#[derive(Debug, Clone, Default)]
pub struct SseEvent {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or(Value::Null)
    }
}

/// What reading a stream gave.
#[derive(Debug)]
pub enum SseRead {
    Event(SseEvent),
    /// The server ended the stream.
    Ended,
    TimedOut,
}

/// A live stream opened as a client would, parsed as it arrives.
pub struct EventStream {
    pub response: reqwest::Response,
    buffer: String,
    /// Comment lines seen (heartbeats).
    pub comments: usize,
}

impl TestApp {
    /// Opens `user`'s stream (resuming after `last_event_id`) and waits for
    /// its `ready` event, so that what happens next reaches it.
    pub async fn open_stream(&self, user: &TestUser, last_event_id: Option<&str>) -> EventStream {
        EventStream::open(&self.client, &self.address, user, last_event_id).await
    }
}

impl EventStream {
    /// `user`'s stream on the server at `base`, once it is `ready`.
    pub async fn open(
        client: &reqwest::Client,
        base: &str,
        user: &TestUser,
        last_event_id: Option<&str>,
    ) -> Self {
        let mut request = client
            .get(format!("{base}/api/v1/stream"))
            .bearer_auth(&user.access_token);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.expect("the stream request is sent");
        assert_eq!(response.status(), StatusCode::OK, "opening the stream");
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "an event stream"
        );
        let mut stream = EventStream {
            response,
            buffer: String::new(),
            comments: 0,
        };
        let ready = stream.next_event(FANOUT_WAIT).await;
        assert_eq!(ready.event, "ready", "{ready:?}");
        stream
    }
}

impl EventStream {
    /// The next event, the end of the stream, or a timeout.
    pub async fn read(&mut self, timeout: Duration) -> SseRead {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent {
                    event: "message".to_owned(),
                    ..SseEvent::default()
                };
                let mut fields = false;
                for line in block.lines().filter(|line| !line.is_empty()) {
                    if line.starts_with(':') {
                        self.comments += 1;
                        continue;
                    }
                    let (name, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    fields = true;
                    match name {
                        "event" => event.event = value.to_owned(),
                        "id" => event.id = Some(value.to_owned()),
                        "data" => {
                            if !event.data.is_empty() {
                                event.data.push('\n');
                            }
                            event.data.push_str(value);
                        }
                        _ => {}
                    }
                }
                if fields {
                    return SseRead::Event(event);
                }
                continue;
            }
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Err(_) => return SseRead::TimedOut,
                Ok(Ok(Some(chunk))) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
                Ok(Ok(None)) | Ok(Err(_)) => return SseRead::Ended,
            }
        }
    }

    /// The next event; panics on an end or a timeout.
    pub async fn next_event(&mut self, timeout: Duration) -> SseEvent {
        match self.read(timeout).await {
            SseRead::Event(event) => event,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    /// Asserts no event arrives within `wait`.
    pub async fn assert_quiet(&mut self, wait: Duration) {
        if let SseRead::Event(event) = self.read(wait).await {
            panic!("expected no event, got {event:?}");
        }
    }
}
