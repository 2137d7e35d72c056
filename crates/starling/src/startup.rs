//! Wiring: builds the adapters, the application and the HTTP server from a
//! configuration, runs them, and drains them on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::serve::ListenerExt;
use futures::{FutureExt, StreamExt};
use starling_app::auth::{AccessTokens, PasswordHashing};
use starling_app::live::{HubSettings, LiveHub};
use starling_app::ports::EventLog;
use starling_app::workers::{
    AccountDeletions, ConsumerOptions, EventHandler, FanoutWorker, Notifier, RELAY_CONSUMER,
    Thumbnailer, run_consumer, run_relay,
};
use starling_app::{App, Ports, Settings};
use starling_domain::{IdGenerator, Timestamp};
use starling_http::{HttpSettings, HttpState, LoadShedding, Streaming, TrustedProxies};
use starling_local::OutboxEventLog;
use starling_nats::JetStream;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Role};
use crate::engines::{self, SqlStore};

/// How often handled outbox events are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// A built, bound, not yet running Starling.
pub struct Application {
    listener: TcpListener,
    address: SocketAddr,
    router: axum::Router,
    state: HttpState,
    app: Arc<App>,
    store: SqlStore,
    events: Arc<OutboxEventLog>,
    jetstream: Option<JetStream>,
    /// The in-process rate limiter, cleaned of idle clients periodically.
    local_limiter: Option<starling_local::LocalRateLimiter>,
    config: Config,
    /// Held while serving, embedded: see `DataDirLock`.
    _data_dir_lock: Option<crate::data_dir::DataDirLock>,
}

/// Binds the service port; a port taken or refused is explained.
async fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
    match starling_http::listen(address) {
        Ok(listener) => Ok(listener),
        Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => anyhow::bail!(
            "{address} is already in use (another Starling, or another program, listens \
             there): stop it, or choose another address with --listen or STARLING_LISTEN"
        ),
        Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => anyhow::bail!(
            "not allowed to listen on {address} ({error}; ports below 1024 need privileges): \
             choose another address with --listen or STARLING_LISTEN"
        ),
        Err(error) => Err(anyhow::Error::new(error).context(format!("binding {address}"))),
    }
}

impl Application {
    /// Opens the engines (applying migrations), builds the application and
    /// binds the listener, so that the port is known before serving.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        // First: adapters register metrics as they are built (a breaker's
        // state, its counters at zero), which a recorder installed later
        // would never see.
        let metrics = crate::telemetry::metrics_handle()?;
        crate::data_dir::prepare(&config.data_dir)?;
        // Fully embedded, timelines, caches and the event log's readers
        // live in this process: one server per data directory.
        let data_dir_lock = if config.database_url.is_none() && config.redis_url.is_none() {
            Some(crate::data_dir::DataDirLock::acquire(&config.data_dir)?)
        } else {
            None
        };
        let store = SqlStore::open(&config).await?;
        let jetstream = engines::jetstream(&config).await?;
        let mut events = OutboxEventLog::new(
            store.port(),
            Duration::from_millis(config.outbox.poll_interval_ms),
        );
        if let Some(jetstream) = &jetstream {
            // The relay is another process: tell it of each commit.
            events = events.announcing_with(jetstream.outbox_announcer());
        }
        let events = Arc::new(events);
        let redis = engines::redis(&config).await?;
        let ports = Ports {
            store: store.port(),
            timelines: engines::timelines(&config, redis.as_ref()),
            events: events.clone(),
            live: engines::live_log(&config, jetstream.as_ref()).await?,
            blobs: engines::blobs(&config)?,
            caches: engines::caches(&config, redis.as_ref()).await?,
            login_failures: engines::login_failures(&config, redis.as_ref()),
        };
        let signing_key =
            starling_app::auth::tokens::load_or_create_signing_key(&config.signing_key_path())?;
        let app = Arc::new(App::new(
            ports,
            IdGenerator::resuming_after(config.node_id, store.port().highest_id().await?),
            PasswordHashing::new(config.auth.password_hashing)?,
            AccessTokens::from_pem(&signing_key, config.auth.access_token_ttl_secs)?,
            Settings {
                timeline_cap: config.timeline.cap,
                fanout_threshold: config.timeline.fanout_threshold,
                refresh_token_ttl_secs: config.auth.refresh_token_ttl_secs,
                session_max_age_secs: config.auth.session_max_age_secs,
                refresh_retry_grace_secs: config.auth.refresh_retry_grace_secs,
                api_key_recheck: Duration::from_secs(config.auth.api_key_recheck_secs),
                media: config.media.settings(),
                login_backoff: config.auth.login_backoff(),
                exports: config.export.settings(),
                ..Settings::default()
            },
        ));
        let gauges = crate::gauges::Gauges::new(
            store.clone(),
            app.ports().timelines.clone(),
            outbox_consumers(jetstream.as_ref()).to_vec(),
            jetstream.clone(),
        );
        crate::telemetry::describe_metrics(
            &[
                FanoutWorker::CONSUMER,
                Notifier::CONSUMER,
                Thumbnailer::CONSUMER,
                RELAY_CONSUMER,
            ],
            &[
                "posts",
                "users",
                "high_fanout_followees",
                "author_recent",
                "likes",
                "audiences",
                "hidden",
            ],
        );
        let rate_limiting = engines::rate_limiter(&config, redis.as_ref());
        let streaming = if config.runs(Role::Api) {
            let stream = &config.stream;
            let hub = LiveHub::start(
                app.ports().live.clone(),
                HubSettings {
                    queue: stream.queue,
                    max_connections: stream.max_connections,
                    max_per_account: stream.max_per_account,
                },
            )
            .await
            .context("following the live-update log")?;
            Some(Streaming {
                hub,
                heartbeat: Duration::from_secs(stream.heartbeat_secs),
            })
        } else {
            None
        };
        let state = HttpState::new(
            app.clone(),
            Some(metrics),
            Some(Arc::new(gauges)),
            rate_limiting
                .as_ref()
                .map(|limiting| (limiting.limiter.clone(), limiting.limits)),
        )
        .with_streaming(streaming);

        let router = starling_http::router(
            state.clone(),
            &HttpSettings {
                request_timeout: Duration::from_secs(config.http.request_timeout_secs),
                serve_api: config.runs(Role::Api),
                trusted_proxies: TrustedProxies(config.http.trusted_proxies.clone()),
                load_shedding: (config.http.max_in_flight > 0).then(|| LoadShedding {
                    max_in_flight: config.http.max_in_flight,
                    max_queue_wait: Duration::from_millis(config.http.max_queue_wait_ms),
                }),
                media_base_url: config.media.public_base_url.clone(),
                rendered_posts_bytes: config.cache.rendered_posts_mb << 20,
            },
        );
        let listener = bind(config.listen).await?;
        let address = listener.local_addr()?;
        Ok(Self {
            listener,
            address,
            router,
            state,
            app,
            store,
            events,
            jetstream,
            local_limiter: rate_limiting.map(|limiting| limiting.local),
            config,
            _data_dir_lock: data_dir_lock,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Closes the engines without serving (for one-off commands).
    pub async fn close(self) {
        self.store.close().await;
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// The application core, for tools and tests that drive use cases directly.
    pub fn app(&self) -> Arc<App> {
        self.app.clone()
    }

    /// The outbox, as an event log (what the embedded workers consume).
    pub fn event_log(&self) -> Arc<OutboxEventLog> {
        self.events.clone()
    }

    /// Starts the workers this process's roles call for.
    fn spawn_workers(&self, stop: &CancellationToken) -> Vec<JoinHandle<()>> {
        let config = &self.config;
        let mut handlers: Vec<Arc<dyn EventHandler>> = Vec::new();
        if config.runs(Role::Fanout) {
            handlers.push(Arc::new(FanoutWorker::new(&self.app)));
        }
        if config.runs(Role::Fanout) {
            handlers.push(Arc::new(Thumbnailer::new(self.app.media().clone())));
        }
        if config.runs(Role::Notifier) {
            handlers.push(Arc::new(Notifier::new(&self.app)));
        }
        let mut tasks = Vec::new();
        match &self.jetstream {
            None => {
                for handler in handlers {
                    tasks.push(tokio::spawn(run_consumer(
                        self.events.clone(),
                        handler,
                        ConsumerOptions::default(),
                        stop.clone(),
                    )));
                }
            }
            Some(jetstream) => {
                if config.runs(Role::Relay) {
                    tasks.push(tokio::spawn(wake_on_announcements(
                        jetstream.clone(),
                        self.events.clone(),
                        stop.clone(),
                    )));
                    tasks.push(tokio::spawn(run_relay(
                        self.events.clone(),
                        Arc::new(jetstream.clone()),
                        ConsumerOptions::default(),
                        stop.clone(),
                    )));
                }
                // One consumer per partition and handler; other processes
                // with the same role pull from the same durable consumers
                // and share the load.
                for handler in handlers {
                    for partition in 0..jetstream.options().partitions {
                        let log: Arc<dyn EventLog> = Arc::new(jetstream.partition(partition));
                        tasks.push(tokio::spawn(run_consumer(
                            log,
                            handler.clone(),
                            ConsumerOptions {
                                batch_size: config.nats.max_in_flight,
                                ..ConsumerOptions::default()
                            },
                            stop.clone(),
                        )));
                    }
                }
            }
        }
        if let Some(limiter) = self.local_limiter.clone() {
            tasks.push(tokio::spawn(forget_idle_clients(limiter, stop.clone())));
        }
        // Account deletions are run beside the fan-out (their steps unfollow
        // and delete as people do), and so are data exports; several such
        // processes share them by lease.
        if config.runs(Role::Fanout) {
            let deletions = AccountDeletions::new(&self.app, config.deletion.settings());
            tasks.push(tokio::spawn(deletions.run(stop.clone())));
            tasks.push(tokio::spawn(self.app.exports().clone().run(stop.clone())));
        }
        if config.runs(Role::Api) {
            tasks.push(tokio::spawn(learn_revocations(
                self.app.clone(),
                Duration::from_millis(config.auth.revocation_poll_ms),
                stop.clone(),
            )));
        }
        // The outbox is pruned by whoever consumes it; tokens by the API.
        let outbox_reader = if self.jetstream.is_some() {
            config.runs(Role::Relay)
        } else {
            config.runs(Role::Fanout) || config.runs(Role::Notifier)
        };
        tasks.push(tokio::spawn(prune_periodically(
            self.store.clone(),
            outbox_reader.then(|| {
                (
                    self.events.clone(),
                    outbox_consumers(self.jetstream.as_ref()),
                )
            }),
            config.runs(Role::Api),
            config.runs(Role::Api).then(|| self.app.clone()),
            Duration::from_secs(config.outbox.retention_hours * 3600),
            stop.clone(),
        )));
        tasks
    }

    /// Serves until `shutdown` completes, then stops taking connections,
    /// lets in-flight requests finish (up to the grace period), stops the
    /// workers after their current event and closes the store.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let workers = CancellationToken::new();
        let tasks = self.spawn_workers(&workers);

        let stopping = CancellationToken::new();
        let state = self.state.clone();
        let stop_signal = stopping.clone();
        let graceful = async move {
            shutdown.await;
            tracing::info!("shutting down: draining in-flight requests");
            state.start_draining();
            stop_signal.cancel();
        };
        // With the peer's address: rate limits key on it.
        let send_buffer = self.config.http.send_buffer_bytes;
        let listener = self.listener.tap_io(move |connection| {
            if send_buffer > 0
                && let Err(error) =
                    socket2::SockRef::from(&*connection).set_send_buffer_size(send_buffer)
            {
                tracing::warn!(error = %error, "cannot size a connection's send buffer");
            }
        });
        let server = axum::serve(
            listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(graceful);
        let grace = Duration::from_secs(self.config.http.shutdown_grace_secs);
        let served = tokio::select! {
            served = server => served.context("serving HTTP"),
            () = async {
                stopping.cancelled().await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!("grace period over; dropping the requests still running");
                Ok(())
            }
        };

        workers.cancel();
        for task in tasks {
            if let Err(error) = task.await {
                tracing::error!(error = %error, "a worker ended abnormally");
            }
        }
        if let Some(jetstream) = &self.jetstream {
            jetstream.leave().await;
        }
        self.store.close().await;
        tracing::info!("stopped");
        served
    }
}

/// The consumers that read the SQL outbox: the relay when a broker carries
/// events on, else the workers themselves. An event is pruned once every one
/// of them has handled it.
fn outbox_consumers(jetstream: Option<&JetStream>) -> &'static [&'static str] {
    if jetstream.is_some() {
        &[RELAY_CONSUMER]
    } else {
        &[
            FanoutWorker::CONSUMER,
            Thumbnailer::CONSUMER,
            Notifier::CONSUMER,
        ]
    }
}

/// The relay reads the outbox at most this often on announcements alone
/// (it reads on without waiting while a read finds events).
const ANNOUNCED_WAKES_APART: Duration = Duration::from_millis(20);

/// Wakes the relay's read of the outbox whenever a process announces a
/// commit; it polls as well, so an announcement lost costs only latency.
async fn wake_on_announcements(
    jetstream: JetStream,
    events: Arc<OutboxEventLog>,
    stop: CancellationToken,
) {
    loop {
        match jetstream.outbox_announcements().await {
            Ok(mut announcements) => loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    announced = announcements.next() => match announced {
                        Some(()) => {
                            events.wake_readers();
                            // A busy deployment announces hundreds of
                            // commits a second; a read of the outbox per
                            // commit cost the database more than the
                            // commits. The first wakes at once, the next
                            // no sooner than this after it, for all that
                            // came meanwhile.
                            tokio::time::sleep(ANNOUNCED_WAKES_APART).await;
                            while let Some(Some(())) = announcements.next().now_or_never() {}
                        }
                        // The client closed: subscribe again.
                        None => break,
                    },
                }
            },
            Err(error) => {
                tracing::warn!(error = %error, "cannot hear outbox announcements; polling only");
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Drops the rate-limit state of clients whose buckets are full again, so
/// that memory does not grow with every address ever seen.
async fn forget_idle_clients(limiter: starling_local::LocalRateLimiter, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(60)) => limiter.forget_idle(),
        }
    }
}

/// Reads the sessions ended anywhere every `every`, so that this instance
/// refuses their access tokens (see `starling_app::auth::revoked`).
async fn learn_revocations(app: Arc<App>, every: Duration, stop: CancellationToken) {
    loop {
        if let Err(error) = app.accounts().sync_revocations().await {
            tracing::warn!(error = %error, "cannot read the ended sessions");
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// Deletes what nothing needs any more: outbox events its reader handled,
/// past their retention; expired refresh tokens and idempotency keys;
/// uploads never posted within a day, with their files.
async fn prune_periodically(
    store: SqlStore,
    outbox: Option<(Arc<OutboxEventLog>, &'static [&'static str])>,
    tokens: bool,
    media: Option<Arc<App>>,
    retention: Duration,
    stop: CancellationToken,
) {
    let store = store.port();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(PRUNE_EVERY) => {}
        }
        if let Some((events, consumers)) = &outbox {
            match events.prune(consumers, retention).await {
                Ok(0) => {}
                Ok(pruned) => tracing::info!(pruned, "pruned handled outbox events"),
                Err(error) => tracing::warn!(error = %error, "cannot prune the outbox"),
            }
        }
        if let Some(app) = &media {
            match app.media().sweep().await {
                Ok(0) => {}
                Ok(swept) => tracing::info!(swept, "removed uploads never posted"),
                Err(error) => tracing::warn!(error = %error, "cannot sweep uploads"),
            }
        }
        if tokens {
            match store.prune_refresh_tokens(Timestamp::now()).await {
                Ok(0) => {}
                Ok(pruned) => tracing::info!(pruned, "pruned expired refresh tokens"),
                Err(error) => tracing::warn!(error = %error, "cannot prune refresh tokens"),
            }
            let day_ago = Timestamp::now().plus_seconds(-24 * 3600);
            match store.prune_idempotency_keys(day_ago).await {
                Ok(0) => {}
                Ok(pruned) => tracing::info!(pruned, "pruned expired idempotency keys"),
                Err(error) => tracing::warn!(error = %error, "cannot prune idempotency keys"),
            }
        }
    }
}
