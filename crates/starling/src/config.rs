//! Typed configuration, layered: defaults < `starling.toml` (or `--config`)
//! < `STARLING_*` environment variables < command-line flags. Unknown keys
//! are errors; everything is validated once at start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use starling_app::auth::PasswordParams;
use starling_sql::Synchronous;

pub const DEFAULT_CONFIG_FILE: &str = "starling.toml";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP API listens on.
    pub listen: SocketAddr,
    /// Where the SQLite database and the token signing key live.
    pub data_dir: PathBuf,
    /// This process's number (0–1023) in generated ids; unique per process
    /// when several write to one database.
    pub node_id: u16,
    pub log_format: LogFormat,
    /// A tracing filter, e.g. `info` or `starling=debug,sqlx=warn`; `RUST_LOG` wins.
    pub log_level: String,
    /// What this process does; every role when empty (`--role`, repeatable).
    pub roles: Vec<Role>,
    /// PostgreSQL primary, e.g. `postgres://starling@db1/starling`. Unset:
    /// SQLite in `data_dir` (embedded mode).
    pub database_url: Option<String>,
    /// Streaming replicas of `database_url`, comma-separated: reads that
    /// tolerate lag go there while they keep up.
    pub replica_urls: Option<String>,
    /// Redis for timelines, e.g. `redis://cache1:6379`; with `redis.cluster`,
    /// a comma-separated list of seed nodes. Unset: timelines in process.
    pub redis_url: Option<String>,
    /// NATS with JetStream, e.g. `nats://nats1:4222`. Unset: workers tail
    /// the outbox in process.
    pub nats_url: Option<String>,
    pub auth: AuthConfig,
    pub timeline: TimelineConfig,
    pub cache: CacheConfig,
    pub sqlite: SqliteConfig,
    pub http: HttpConfig,
    pub rate_limits: RateLimitsConfig,
    pub stream: StreamConfig,
    pub media: MediaConfig,
    pub deletion: DeletionConfig,
    pub export: ExportConfig,
    pub outbox: OutboxConfig,
    pub traces: TracesConfig,
    pub postgres: PostgresConfig,
    pub redis: RedisConfig,
    pub nats: NatsConfig,
}

/// The parts of Starling one process can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The HTTP API (stateless; run several behind a load balancer).
    Api,
    /// Moves committed outbox events to NATS JetStream (with `nats_url`).
    Relay,
    /// Keeps home timelines up to date from the event log.
    Fanout,
    /// Turns follows, likes, replies and mentions into notifications, from
    /// the event log.
    Notifier,
    /// Every role, in one process.
    All,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    pub max_connections: u32,
    /// Apply pending migrations at start (they take a lock, so several
    /// instances starting together are safe). Off: run `starling migrate`.
    pub migrate_on_start: bool,
    /// A replica further behind serves no reads until it catches up.
    pub replica_max_lag_ms: u64,
    /// Group commit: new posts written per transaction at most (one WAL
    /// flush for all); 1 writes each post in a transaction of its own.
    pub post_batch: usize,
    /// Transactions writing new posts at once (each a connection). Fewer
    /// make larger batches: a transaction's fixed cost (its round trips)
    /// dominates a small one. 2 measured as 1 (`starling-bench scaled`, 2026-12-06:
    /// write path 3,500–3,600 posts/s against 2,660 with 4), and one slow
    /// transaction does not hold up every post of the instance.
    pub post_writers: usize,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            max_connections: 16,
            migrate_on_start: true,
            replica_max_lag_ms: 1000,
            post_batch: 64,
            post_writers: 2,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis_url` lists seed nodes of a Redis Cluster.
    pub cluster: bool,
    /// Prefix of every key Starling writes.
    pub key_prefix: String,
    /// A home timeline nobody reads for this long expires (rebuilt on read).
    pub timeline_idle_ttl_secs: u64,
    /// A command not answered in this time fails.
    pub response_timeout_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            cluster: false,
            key_prefix: "starling:".to_owned(),
            timeline_idle_ttl_secs: 7 * 24 * 3600,
            response_timeout_ms: 2000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    pub stream: String,
    pub subject_prefix: String,
    /// Fixed for the life of a stream.
    pub partitions: u32,
    /// Deliveries after which an event is parked on the dead-letter subject.
    pub max_deliveries: i64,
    /// Events of one partition handed to its worker at once (a batch). A
    /// partition has one worker at a time, so order holds at any size.
    pub max_in_flight: usize,
    /// An event delivered and not acknowledged within this is delivered
    /// again: how long the events a worker held when it died wait. A live
    /// worker reports progress every quarter of it, however slow.
    pub ack_wait_secs: u64,
    /// How long a dead worker's hold on its partitions outlives it.
    pub lease_secs: u64,
    /// A publish or stream query slower than this fails and counts against
    /// the broker's circuit breaker.
    pub call_timeout_ms: u64,
    /// Copies of every stream a JetStream cluster keeps: 3 on a cluster of
    /// three servers survives the loss of one (`nats_url` then names them
    /// all, separated by commas). Fixed when the streams are made.
    pub replicas: usize,
}

impl Default for NatsConfig {
    /// The adapter's own defaults, so the two cannot drift apart.
    fn default() -> Self {
        let defaults = starling_nats::JetStreamOptions::default();
        Self {
            stream: defaults.stream,
            subject_prefix: defaults.subject_prefix,
            partitions: defaults.partitions,
            max_deliveries: defaults.max_deliveries,
            max_in_flight: defaults.max_in_flight,
            ack_wait_secs: defaults.ack_wait.as_secs(),
            lease_secs: defaults.lease_ttl.as_secs(),
            call_timeout_ms: u64::try_from(defaults.call_timeout.as_millis()).unwrap_or(u64::MAX),
            replicas: defaults.replicas,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, for a terminal.
    Pretty,
    /// One JSON object per line, for log shippers.
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub access_token_ttl_secs: i64,
    pub refresh_token_ttl_secs: i64,
    /// A session's absolute lifetime: after it the person signs in again,
    /// however often the session was refreshed.
    pub session_max_age_secs: i64,
    /// A refresh token presented again within this many seconds of its
    /// refresh, while the token that refresh handed out is unspent, is a
    /// retry whose answer was lost: it gets a new pair instead of ending
    /// the session as reuse of a spent token does (0: no grace).
    pub refresh_retry_grace_secs: i64,
    /// How often each API instance reads the sessions ended anywhere, whose
    /// access tokens it then refuses (an ended session's tokens work at
    /// most this much longer on the other instances).
    pub revocation_poll_ms: u64,
    /// How long an instance trusts an API key it checked before reading it
    /// again (which records its last use): a revoked key works at most this
    /// long on the other instances.
    pub api_key_recheck_secs: u64,
    /// Ed25519 private key (PKCS#8 PEM). Default: `<data_dir>/jwt-ed25519.pem`,
    /// created on first start. Every API instance must share it.
    pub signing_key_file: Option<PathBuf>,
    pub password_hashing: PasswordParams,
    /// Failed logins to one account in a row that cost nothing; each one
    /// after them doubles the wait before the next attempt (from 1 s).
    pub login_free_failures: u32,
    /// The longest wait between attempts (0: no per-account back-off).
    pub login_max_backoff_secs: u64,
    /// Failed logins are forgotten this long after the last one.
    pub login_failures_forgotten_after_secs: u64,
}

impl AuthConfig {
    pub fn login_backoff(&self) -> starling_app::accounts::LoginBackoff {
        starling_app::accounts::LoginBackoff {
            free_failures: self.login_free_failures,
            max_wait: std::time::Duration::from_secs(self.login_max_backoff_secs),
            forget_after: std::time::Duration::from_secs(
                self.login_failures_forgotten_after_secs.max(1),
            ),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimelineConfig {
    /// Post ids kept per home timeline.
    pub cap: usize,
    /// Accounts with this many followers are merged at read time instead of fanned out.
    pub fanout_threshold: i64,
    /// Home timelines kept in memory (embedded mode); the rest are rebuilt on read.
    pub max_cached_timelines: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    pub posts_capacity: u64,
    pub users_capacity: u64,
    /// Mebibytes of posts' JSON kept written for the next read (0: none).
    pub rendered_posts_mb: u64,
    /// Time to live of cached entries (±10% jitter).
    pub ttl_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqliteConfig {
    pub synchronous: Synchronous,
    pub read_connections: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub request_timeout_secs: u64,
    /// On SIGTERM/SIGINT, how long in-flight requests get to finish.
    pub shutdown_grace_secs: u64,
    /// API requests running at once; past it a request waits up to
    /// `max_queue_wait_ms` for a slot, then gets 503 + `Retry-After`.
    /// 0: no limit.
    pub max_in_flight: usize,
    pub max_queue_wait_ms: u64,
    /// Proxies whose `X-Forwarded-For` names the client (for rate limits):
    /// addresses (`10.0.0.5`) or networks (`10.0.0.0/24`).
    pub trusted_proxies: Vec<starling_http::AddressRange>,
    /// The kernel's send buffer per connection (`SO_SNDBUF`); 0: the
    /// operating system's default, which grows to megabytes per socket.
    /// Bounds what a live stream's client that stopped reading can hold in
    /// kernel memory before its stream notices and drops it.
    pub send_buffer_bytes: usize,
}

/// Requests per client and route class: per account with a token, per
/// address without (and for auth routes, always per address).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitsConfig {
    pub enabled: bool,
    pub read: QuotaConfig,
    pub write: QuotaConfig,
    pub auth: QuotaConfig,
    /// Each API key's own quota, whatever it does.
    pub api_key: QuotaConfig,
}

/// `limit` requests per `window_secs`, all of which may come at once.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    pub limit: u32,
    pub window_secs: u64,
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            read: QuotaConfig {
                limit: 600,
                window_secs: 60,
            },
            write: QuotaConfig {
                limit: 120,
                window_secs: 60,
            },
            auth: QuotaConfig {
                limit: 20,
                window_secs: 60,
            },
            api_key: QuotaConfig {
                limit: 300,
                window_secs: 60,
            },
        }
    }
}

impl RateLimitsConfig {
    /// The quotas, when limiting is on.
    pub fn limits(&self) -> Option<starling_app::ports::RateLimits> {
        let quota = |config: QuotaConfig| starling_app::ports::Quota {
            limit: config.limit,
            window: std::time::Duration::from_secs(config.window_secs),
        };
        self.enabled.then(|| starling_app::ports::RateLimits {
            read: quota(self.read),
            write: quota(self.write),
            auth: quota(self.auth),
            api_key: quota(self.api_key),
        })
    }
}

/// Account deletion: how the saga that removes a deleted account's data
/// paces itself (run by the fan-out role).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeletionConfig {
    /// Follows, posts, likes or uploads removed per batch.
    pub batch_size: usize,
    /// A pause between batches, leaving the database to everyone else.
    pub batch_pause_ms: u64,
    /// How long a deleted account's handle stays reserved.
    pub handle_quarantine_secs: u64,
    /// How often due deletions are looked for.
    pub poll_ms: u64,
    /// A process that dies running a deletion leaves it to another after
    /// this long (the runner renews it between batches).
    pub lease_secs: u64,
}

impl Default for DeletionConfig {
    fn default() -> Self {
        let defaults = starling_app::workers::DeletionSettings::default();
        Self {
            batch_size: defaults.batch_size,
            batch_pause_ms: u64::try_from(defaults.batch_pause.as_millis()).unwrap_or(10),
            handle_quarantine_secs: defaults.handle_quarantine.as_secs(),
            poll_ms: u64::try_from(defaults.poll.as_millis()).unwrap_or(1_000),
            lease_secs: defaults.lease.as_secs(),
        }
    }
}

impl DeletionConfig {
    pub fn settings(&self) -> starling_app::workers::DeletionSettings {
        starling_app::workers::DeletionSettings {
            batch_size: self.batch_size,
            batch_pause: std::time::Duration::from_millis(self.batch_pause_ms),
            handle_quarantine: std::time::Duration::from_secs(self.handle_quarantine_secs),
            poll: std::time::Duration::from_millis(self.poll_ms),
            lease: std::time::Duration::from_secs(self.lease_secs),
            ..starling_app::workers::DeletionSettings::default()
        }
    }
}

/// Data exports (built by the fan-out role).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExportConfig {
    /// How long a built archive can be downloaded before it is deleted.
    pub retention_secs: u64,
    /// Images past this many bytes in all stay out of an archive (listed
    /// with their URLs instead).
    pub max_media_bytes: u64,
    /// How often due exports are looked for.
    pub poll_ms: u64,
}

impl Default for ExportConfig {
    fn default() -> Self {
        let defaults = starling_app::export::ExportSettings::default();
        Self {
            retention_secs: defaults.retention.as_secs(),
            max_media_bytes: defaults.max_media_bytes,
            poll_ms: u64::try_from(defaults.poll.as_millis()).unwrap_or(1_000),
        }
    }
}

impl ExportConfig {
    pub fn settings(&self) -> starling_app::export::ExportSettings {
        starling_app::export::ExportSettings {
            retention: std::time::Duration::from_secs(self.retention_secs),
            max_media_bytes: self.max_media_bytes,
            poll: std::time::Duration::from_millis(self.poll_ms),
            ..starling_app::export::ExportSettings::default()
        }
    }
}

/// Uploaded images and where their files are kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// Bytes of one upload.
    pub max_upload_bytes: usize,
    /// Width and height of an image, each, at most.
    pub max_dimension: u32,
    /// Pixels of an image (× frames for an animation) at most.
    pub max_pixels: u64,
    /// Thumbnails fit in a square of this side.
    pub thumbnail_size: u32,
    /// Where clients fetch files: empty for this server's `/media/...`, or
    /// a CDN's base URL (e.g. `https://cdn.example.org`).
    pub public_base_url: String,
    /// An S3-compatible bucket for the files; unset: `<data_dir>/media`.
    pub s3_bucket: Option<String>,
    /// E.g. `http://127.0.0.1:9000` (MinIO); unset: AWS.
    pub s3_endpoint: Option<String>,
    pub s3_region: String,
    pub s3_access_key_id: String,
    pub s3_secret_access_key: String,
}

impl Default for MediaConfig {
    fn default() -> Self {
        let app = starling_app::media::MediaSettings::default();
        Self {
            max_upload_bytes: app.max_upload_bytes,
            max_dimension: app.limits.max_dimension,
            max_pixels: app.limits.max_pixels,
            thumbnail_size: app.thumbnail_size,
            public_base_url: String::new(),
            s3_bucket: None,
            s3_endpoint: None,
            s3_region: "us-east-1".to_owned(),
            s3_access_key_id: String::new(),
            s3_secret_access_key: String::new(),
        }
    }
}

impl MediaConfig {
    pub fn settings(&self) -> starling_app::media::MediaSettings {
        starling_app::media::MediaSettings {
            max_upload_bytes: self.max_upload_bytes,
            limits: starling_app::media::ImageLimits {
                max_dimension: self.max_dimension,
                max_pixels: self.max_pixels,
                // What could have been uploaded directly, and no more.
                max_stored_bytes: self.max_upload_bytes,
            },
            thumbnail_size: self.thumbnail_size,
        }
    }
}

/// Live streams (`GET /api/v1/stream`) and the live-update log behind them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    /// A comment line is sent this often on an idle stream, so proxies and
    /// clients do not take it for dead.
    pub heartbeat_secs: u64,
    /// Updates are kept this long for clients resuming with `Last-Event-ID`.
    pub retention_secs: u64,
    /// Updates queued per stream; a client that lets them pile up past this
    /// is dropped (and resumes on reconnecting).
    pub queue: usize,
    /// Streams one instance holds; past it a new one gets 503.
    pub max_connections: usize,
    /// Streams one account may hold at once; past it a new one gets 429.
    pub max_per_account: usize,
    /// Embedded: updates kept per topic at most. Scaled out: bytes the
    /// live stream keeps in NATS at most.
    pub topic_capacity: usize,
    pub nats_max_bytes: i64,
}

impl Default for StreamConfig {
    fn default() -> Self {
        let hub = starling_app::live::HubSettings::default();
        Self {
            heartbeat_secs: 15,
            retention_secs: 300,
            queue: hub.queue,
            max_connections: hub.max_connections,
            max_per_account: hub.max_per_account,
            topic_capacity: 1_000,
            nats_max_bytes: 256 << 20,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// Consumers look for new events at least this often (they are also woken on commit).
    pub poll_interval_ms: u64,
    /// Handled events are deleted after this long.
    pub retention_hours: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracesConfig {
    /// OTLP/HTTP collector, e.g. `http://127.0.0.1:4318`. Unset: no tracing at all.
    pub otlp_endpoint: Option<String>,
    pub service_name: String,
    /// Share of new traces recorded (0.0–1.0); requests that arrive with a
    /// sampled `traceparent` are always followed.
    pub sample_ratio: f64,
}

impl Default for TracesConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "starling".to_owned(),
            sample_ratio: 1.0,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            node_id: 0,
            log_format: LogFormat::Pretty,
            log_level: "info".to_owned(),
            roles: Vec::new(),
            database_url: None,
            replica_urls: None,
            redis_url: None,
            nats_url: None,
            auth: AuthConfig::default(),
            timeline: TimelineConfig::default(),
            cache: CacheConfig::default(),
            sqlite: SqliteConfig::default(),
            http: HttpConfig::default(),
            rate_limits: RateLimitsConfig::default(),
            stream: StreamConfig::default(),
            media: MediaConfig::default(),
            deletion: DeletionConfig::default(),
            export: ExportConfig::default(),
            outbox: OutboxConfig::default(),
            traces: TracesConfig::default(),
            postgres: PostgresConfig::default(),
            redis: RedisConfig::default(),
            nats: NatsConfig::default(),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            access_token_ttl_secs: 15 * 60,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            session_max_age_secs: 90 * 24 * 3600,
            refresh_retry_grace_secs: 30,
            revocation_poll_ms: 1_000,
            api_key_recheck_secs: 10,
            signing_key_file: None,
            password_hashing: PasswordParams::default(),
            login_free_failures: 5,
            login_max_backoff_secs: 15 * 60,
            login_failures_forgotten_after_secs: 24 * 3600,
        }
    }
}

impl Default for TimelineConfig {
    fn default() -> Self {
        Self {
            cap: 800,
            fanout_threshold: 10_000,
            max_cached_timelines: 100_000,
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            posts_capacity: 200_000,
            users_capacity: 100_000,
            rendered_posts_mb: 64,
            ttl_secs: 300,
        }
    }
}

impl Default for SqliteConfig {
    fn default() -> Self {
        Self {
            synchronous: Synchronous::Normal,
            read_connections: 4,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            request_timeout_secs: 30,
            shutdown_grace_secs: 30,
            max_in_flight: 1024,
            max_queue_wait_ms: 50,
            trusted_proxies: vec![
                std::net::IpAddr::from([127, 0, 0, 1]).into(),
                std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST).into(),
            ],
            send_buffer_bytes: 0,
        }
    }
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            poll_interval_ms: 500,
            retention_hours: 24,
        }
    }
}

/// Top-level keys that may come from `STARLING_*` variables. Other
/// `STARLING_*` variables (test settings, say) are not configuration.
const ENV_KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "node_id",
    "log_format",
    "log_level",
    "auth",
    "timeline",
    "cache",
    "sqlite",
    "http",
    "rate_limits",
    "stream",
    "media",
    "deletion",
    "export",
    "outbox",
    "traces",
    "roles",
    "database_url",
    "replica_urls",
    "redis_url",
    "nats_url",
    "postgres",
    "redis",
    "nats",
];

/// Values given on the command line, the last layer.
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<Role>>,
}

impl Config {
    /// Loads the layers. `file` must exist when given; otherwise
    /// `./starling.toml` is read if present.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) => {
                if !path.is_file() {
                    bail!("config file {} does not exist", path.display());
                }
                figment = figment.merge(Toml::file_exact(path));
            }
            None => figment = figment.merge(Toml::file(DEFAULT_CONFIG_FILE)),
        }
        let env = Env::prefixed("STARLING_")
            .filter(|key| {
                let top = key.as_str().split("__").next().unwrap_or_default();
                ENV_KEYS.iter().any(|known| known.eq_ignore_ascii_case(top))
            })
            .split("__");
        let config: Config = figment
            .merge(env)
            .merge(Serialized::defaults(overrides))
            .extract()
            .context("invalid configuration")?;
        config.validate()?;
        Ok(config)
    }

    /// A configuration for tests: port 0, the given data directory, cheap
    /// password hashing, quick polling.
    pub fn for_test(data_dir: &Path) -> Self {
        let mut config = Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.to_owned(),
            log_level: "warn".to_owned(),
            ..Config::default()
        };
        config.auth.password_hashing = PasswordParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        };
        config.outbox.poll_interval_ms = 50;
        // Tests drive many accounts from one address as fast as they can;
        // the rate-limit tests turn limiting back on.
        config.rate_limits.enabled = false;
        config
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.node_id > starling_domain::id::MAX_NODE {
            bail!("node_id must be at most {}", starling_domain::id::MAX_NODE);
        }
        if self.timeline.cap == 0 {
            bail!("timeline.cap must be at least 1");
        }
        if self.timeline.fanout_threshold < 1 {
            bail!("timeline.fanout_threshold must be at least 1");
        }
        if self.auth.session_max_age_secs < 1
            || self.auth.refresh_retry_grace_secs < 0
            || self.auth.revocation_poll_ms < 10
        {
            bail!(
                "auth.session_max_age_secs must be at least 1, auth.refresh_retry_grace_secs at least 0, and auth.revocation_poll_ms at least 10"
            );
        }
        if self.auth.access_token_ttl_secs < 1 || self.auth.refresh_token_ttl_secs < 1 {
            bail!("token lifetimes must be at least one second");
        }
        if self.deletion.batch_size == 0
            || self.deletion.poll_ms == 0
            || self.deletion.lease_secs == 0
        {
            bail!(
                "deletion.batch_size, deletion.poll_ms and deletion.lease_secs must be at least 1"
            );
        }
        if self.export.retention_secs == 0 || self.export.poll_ms == 0 {
            bail!("export.retention_secs and export.poll_ms must be at least 1");
        }
        if self.media.max_upload_bytes == 0 || self.media.thumbnail_size == 0 {
            bail!("media.max_upload_bytes and media.thumbnail_size must be at least 1");
        }
        if self.stream.heartbeat_secs == 0 || self.stream.retention_secs == 0 {
            bail!("stream.heartbeat_secs and stream.retention_secs must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.traces.sample_ratio) {
            bail!("traces.sample_ratio must be between 0 and 1");
        }
        for (name, quota) in [
            ("read", self.rate_limits.read),
            ("write", self.rate_limits.write),
            ("auth", self.rate_limits.auth),
            ("api_key", self.rate_limits.api_key),
        ] {
            if quota.limit == 0 || quota.window_secs == 0 {
                bail!("rate_limits.{name} needs a limit and a window of at least 1");
            }
        }
        if self.postgres.post_batch == 0 || self.postgres.post_writers == 0 {
            bail!("postgres.post_batch and postgres.post_writers must be at least 1");
        }
        if self.postgres.post_writers >= self.postgres.max_connections as usize {
            bail!(
                "postgres.post_writers must leave connections of postgres.max_connections to the rest"
            );
        }
        if self.sqlite.read_connections == 0 {
            bail!("sqlite.read_connections must be at least 1");
        }
        if self.nats.partitions == 0
            || self.nats.max_in_flight == 0
            || self.nats.ack_wait_secs == 0
            || self.nats.lease_secs == 0
        {
            bail!(
                "nats.partitions, nats.max_in_flight, nats.ack_wait_secs and nats.lease_secs \
                 must be at least 1"
            );
        }
        if self.replica_urls.is_some() && self.database_url.is_none() {
            bail!("replica_urls needs database_url (replicas are of PostgreSQL)");
        }
        if self.roles.contains(&Role::Relay) && self.nats_url.is_none() {
            bail!("the relay role needs nats_url");
        }
        Ok(())
    }

    /// Whether this process runs `role`.
    pub fn runs(&self, role: Role) -> bool {
        self.roles.is_empty() || self.roles.contains(&Role::All) || self.roles.contains(&role)
    }

    /// The Redis URLs: one, or the seed nodes of a cluster.
    pub fn redis_urls(&self) -> Vec<String> {
        split_urls(self.redis_url.as_deref())
    }

    /// The read replicas' URLs.
    pub fn replica_urls(&self) -> Vec<String> {
        split_urls(self.replica_urls.as_deref())
    }

    pub fn signing_key_path(&self) -> PathBuf {
        self.auth
            .signing_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("jwt-ed25519.pem"))
    }
}

fn split_urls(urls: Option<&str>) -> Vec<String> {
    urls.into_iter()
        .flat_map(|urls| urls.split(','))
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
// figment's `Jail` closures return its (large) error type by design.
#[allow(clippy::result_large_err)]
mod tests {

    use super::*;

    #[test]
    fn defaults_match_the_documented_ones() {
        let config = Config::default();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert_eq!(config.timeline.cap, 800);
        assert_eq!(config.timeline.fanout_threshold, 10_000);
    }

    #[test]
    fn every_setting_can_come_from_the_environment() {
        let defaults = serde_json::to_value(Config::default()).unwrap();
        for key in defaults.as_object().unwrap().keys() {
            assert!(
                ENV_KEYS.contains(&key.as_str()),
                "STARLING_{} would be ignored: add {key:?} to ENV_KEYS",
                key.to_uppercase()
            );
        }
    }

    #[test]
    fn file_then_env_then_flags_win_in_turn() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "custom.toml",
                "listen = \"127.0.0.1:9000\"\ndata_dir = \"/from/file\"\n[timeline]\ncap = 50\n",
            )?;
            jail.set_env("STARLING_DATA_DIR", "/from/env");
            jail.set_env("STARLING_TIMELINE__FANOUT_THRESHOLD", "77");
            jail.set_env("STARLING_REQUIRE_SERVICES", "1");
            let overrides = Overrides {
                listen: Some(SocketAddr::from(([0, 0, 0, 0], 7000))),
                ..Overrides::default()
            };
            let config = Config::load(Some(Path::new("custom.toml")), &overrides)
                .map_err(|error| error.to_string())?;
            assert_eq!(config.listen.to_string(), "0.0.0.0:7000");
            assert_eq!(config.data_dir, PathBuf::from("/from/env"));
            assert_eq!(config.timeline.cap, 50);
            assert_eq!(config.timeline.fanout_threshold, 77);
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("starling.toml", "lisen = \"127.0.0.1:1\"\n")?;
            assert!(Config::load(None, &Overrides::default()).is_err());
            jail.create_file("starling.toml", "[timeline]\ncap = 0\n")?;
            assert!(Config::load(None, &Overrides::default()).is_err());
            jail.create_file("starling.toml", "")?;
            jail.set_env("STARLING_LISTEN", "not an address");
            assert!(Config::load(None, &Overrides::default()).is_err());
            Ok(())
        });
    }
}
