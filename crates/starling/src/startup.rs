//! Wiring: builds the adapters, the application and the HTTP server from a
//! configuration, runs them, and drains them on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use starling_app::auth::{AccessTokens, PasswordHashing};
use starling_app::ports::{StoreHealth, TokenStore};
use starling_app::workers::{ConsumerOptions, FanoutWorker, run_consumer};
use starling_app::{App, Caches, Ports, Settings};
use starling_domain::{IdGenerator, Timestamp};
use starling_http::{HttpSettings, HttpState};
use starling_local::{LocalTimelines, MemoryCache, OutboxEventLog};
use starling_sql::{SqliteOptions, SqliteStore};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// Lifetime of a reader's cached list of followed high-fan-out accounts.
const HIGH_FANOUT_LIST_TTL: Duration = Duration::from_secs(30);
/// Lifetime of an author's cached recent post ids (read-time merge).
const AUTHOR_RECENT_TTL: Duration = Duration::from_secs(10);

/// How often handled outbox events are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// A built, bound, not yet running Starling.
pub struct Application {
    listener: TcpListener,
    address: SocketAddr,
    router: axum::Router,
    state: HttpState,
    app: Arc<App>,
    store: SqliteStore,
    events: Arc<OutboxEventLog>,
    config: Config,
}

impl Application {
    /// Opens the store (applying migrations), builds the application and
    /// binds the listener, so that the port is known before serving.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
        let store = SqliteStore::open(
            &config.data_dir.join("starling.db"),
            &SqliteOptions {
                synchronous: config.sqlite.synchronous,
                read_connections: config.sqlite.read_connections,
                ..SqliteOptions::default()
            },
        )
        .await?;
        let events = Arc::new(OutboxEventLog::new(
            Arc::new(store.clone()),
            Duration::from_millis(config.outbox.poll_interval_ms),
        ));
        let cache_ttl = Duration::from_secs(config.cache.ttl_secs);
        let ports = Ports {
            store: Arc::new(store.clone()),
            timelines: Arc::new(LocalTimelines::new(
                config.timeline.cap,
                config.timeline.max_cached_timelines,
            )),
            events: events.clone(),
            caches: Caches {
                posts: Arc::new(MemoryCache::new(
                    "posts",
                    config.cache.posts_capacity,
                    cache_ttl,
                )),
                users: Arc::new(MemoryCache::new(
                    "users",
                    config.cache.users_capacity,
                    cache_ttl,
                )),
                // Both are invalidated on change, but a reload racing the
                // change can store a stale copy: short lives bound that.
                high_fanout_followees: Arc::new(MemoryCache::new(
                    "high_fanout_followees",
                    config.cache.users_capacity,
                    HIGH_FANOUT_LIST_TTL,
                )),
                author_recent: Arc::new(MemoryCache::new(
                    "author_recent",
                    config.cache.users_capacity,
                    AUTHOR_RECENT_TTL,
                )),
                likes: Arc::new(MemoryCache::new(
                    "likes",
                    config.cache.users_capacity,
                    cache_ttl,
                )),
            },
        };
        let signing_key =
            starling_app::auth::tokens::load_or_create_signing_key(&config.signing_key_path())?;
        let app = Arc::new(App::new(
            ports,
            IdGenerator::resuming_after(config.node_id, store.highest_id().await?),
            PasswordHashing::new(config.auth.password_hashing)?,
            AccessTokens::from_pem(&signing_key, config.auth.access_token_ttl_secs)?,
            Settings {
                timeline_cap: config.timeline.cap,
                fanout_threshold: config.timeline.fanout_threshold,
                refresh_token_ttl_secs: config.auth.refresh_token_ttl_secs,
                ..Settings::default()
            },
        ));
        let gauges = crate::gauges::Gauges::new(
            store.clone(),
            app.ports().timelines.clone(),
            vec![FanoutWorker::CONSUMER],
        );
        let metrics = crate::telemetry::metrics_handle()?;
        crate::telemetry::describe_metrics(
            &[FanoutWorker::CONSUMER],
            &[
                "posts",
                "users",
                "high_fanout_followees",
                "author_recent",
                "likes",
                "audiences",
            ],
        );
        let state = HttpState::new(app.clone(), Some(metrics), Some(Arc::new(gauges)));

        let router = starling_http::router(
            state.clone(),
            &HttpSettings {
                request_timeout: Duration::from_secs(config.http.request_timeout_secs),
            },
        );
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let address = listener.local_addr()?;
        Ok(Self {
            listener,
            address,
            router,
            state,
            app,
            store,
            events,
            config,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// The application core, for tools and tests that drive use cases directly.
    pub fn app(&self) -> Arc<App> {
        self.app.clone()
    }

    /// The event log the workers consume.
    pub fn event_log(&self) -> Arc<OutboxEventLog> {
        self.events.clone()
    }

    /// Serves until `shutdown` completes, then stops taking connections,
    /// lets in-flight requests finish (up to the grace period), stops the
    /// workers after their current event and closes the store.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let workers = CancellationToken::new();
        let fanout = tokio::spawn(run_consumer(
            self.events.clone(),
            Arc::new(FanoutWorker::new(self.app.clone())),
            ConsumerOptions::default(),
            workers.clone(),
        ));
        let pruner = tokio::spawn(prune_periodically(
            self.store.clone(),
            self.events.clone(),
            Duration::from_secs(self.config.outbox.retention_hours * 3600),
            workers.clone(),
        ));

        let stopping = CancellationToken::new();
        let state = self.state.clone();
        let stop_signal = stopping.clone();
        let graceful = async move {
            shutdown.await;
            tracing::info!("shutting down: draining in-flight requests");
            state.start_draining();
            stop_signal.cancel();
        };
        let server = axum::serve(self.listener, self.router).with_graceful_shutdown(graceful);
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
        for task in [fanout, pruner] {
            if let Err(error) = task.await {
                tracing::error!(error = %error, "a worker ended abnormally");
            }
        }
        self.store.close().await;
        tracing::info!("stopped");
        served
    }
}

/// Deletes what nothing needs any more: handled outbox events past their
/// retention, expired refresh tokens.
async fn prune_periodically(
    store: SqliteStore,
    events: Arc<OutboxEventLog>,
    retention: Duration,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(PRUNE_EVERY) => {}
        }
        match events.prune(&[FanoutWorker::CONSUMER], retention).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "pruned handled outbox events"),
            Err(error) => tracing::warn!(error = %error, "cannot prune the outbox"),
        }
        match store.prune_refresh_tokens(Timestamp::now()).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "pruned expired refresh tokens"),
            Err(error) => tracing::warn!(error = %error, "cannot prune refresh tokens"),
        }
    }
}
