//! Every metric Starling exports, named once: the code that records one
//! uses its constant here (`metrics::counter!(metric::FANOUT_POSTS)`), and
//! the binary describes them all from `ALL` at start, so a name cannot be
//! misspelt at a use nor go undescribed.

use metrics::Unit;

/// What kind of metric a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// A metric's name, kind, unit and help text.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub unit: Option<Unit>,
    pub help: &'static str,
    /// Exported at zero from the start (an unlabelled counter), so that
    /// `rate()` sees its first increment.
    pub zero_at_start: bool,
}

pub const EXPORTS_TOTAL: &str = "starling_exports_total";
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "http_request_duration_seconds";
pub const HTTP_REQUESTS_IN_FLIGHT: &str = "http_requests_in_flight";
pub const HTTP_REQUESTS_TOTAL: &str = "http_requests_total";
pub const ACCOUNT_DELETIONS_STARTED_TOTAL: &str = "starling_account_deletions_started_total";
pub const ACCOUNT_DELETION_STEPS_TOTAL: &str = "starling_account_deletion_steps_total";
pub const ADMIN_ACTIONS_TOTAL: &str = "starling_admin_actions_total";
pub const ADMIN_REFUSALS_TOTAL: &str = "starling_admin_refusals_total";
pub const API_KEYS_CHECKED_TOTAL: &str = "starling_api_keys_checked_total";
pub const API_KEYS_CREATED_TOTAL: &str = "starling_api_keys_created_total";
pub const API_KEYS_REVOKED_TOTAL: &str = "starling_api_keys_revoked_total";
pub const BREAKER_REJECTIONS_TOTAL: &str = "starling_breaker_rejections_total";
pub const BREAKER_STATE: &str = "starling_breaker_state";
pub const BREAKER_TRANSITIONS_TOTAL: &str = "starling_breaker_transitions_total";
pub const BULKHEAD_REJECTIONS_TOTAL: &str = "starling_bulkhead_rejections_total";
pub const CACHE_ERRORS_TOTAL: &str = "starling_cache_errors_total";
pub const CACHE_HITS_TOTAL: &str = "starling_cache_hits_total";
pub const CACHE_INVALIDATIONS_LOST_TOTAL: &str = "starling_cache_invalidations_lost_total";
pub const CACHE_INVALIDATIONS_RECEIVED_TOTAL: &str = "starling_cache_invalidations_received_total";
pub const CACHE_LOADS_COALESCED_TOTAL: &str = "starling_cache_loads_coalesced_total";
pub const CACHE_LOADS_TOTAL: &str = "starling_cache_loads_total";
pub const CACHE_MISSES_TOTAL: &str = "starling_cache_misses_total";
pub const DB_POOL_ACQUIRE_SECONDS: &str = "starling_db_pool_acquire_seconds";
pub const DB_POOL_CONNECTIONS: &str = "starling_db_pool_connections";
pub const DB_PRIMARY_CHANGES_TOTAL: &str = "starling_db_primary_changes_total";
pub const DB_READS_TOTAL: &str = "starling_db_reads_total";
pub const DB_REPLICA_HEALTHY: &str = "starling_db_replica_healthy";
pub const DB_REPLICA_LAG_SECONDS: &str = "starling_db_replica_lag_seconds";
pub const DEPENDENCY_RETRIES_TOTAL: &str = "starling_dependency_retries_total";
pub const DEPENDENCY_TIMEOUTS_TOTAL: &str = "starling_dependency_timeouts_total";
pub const EVENT_BATCH_EVENTS: &str = "starling_event_batch_events";
pub const EVENT_HANDLING_LAG_SECONDS: &str = "starling_event_handling_lag_seconds";
pub const EVENT_PULLS_UNFINISHED_TOTAL: &str = "starling_event_pulls_unfinished_total";
pub const EVENT_RETRIES_TOTAL: &str = "starling_event_retries_total";
pub const EVENTS_DEAD_LETTERED_TOTAL: &str = "starling_events_dead_lettered_total";
pub const EVENTS_HANDLED_TOTAL: &str = "starling_events_handled_total";
pub const EVENTS_REDELIVERED_TOTAL: &str = "starling_events_redelivered_total";
pub const FANOUT_LAG_SECONDS: &str = "starling_fanout_lag_seconds";
pub const FANOUT_POSTS_TOTAL: &str = "starling_fanout_posts_total";
pub const FANOUT_SKIPPED_HIGH_FANOUT_TOTAL: &str = "starling_fanout_skipped_high_fanout_total";
pub const FANOUT_TIMELINE_INSERTS_TOTAL: &str = "starling_fanout_timeline_inserts_total";
pub const FEED_PAGES_CUT_SHORT_TOTAL: &str = "starling_feed_pages_cut_short_total";
pub const FEED_SQL_FALLBACKS_TOTAL: &str = "starling_feed_sql_fallbacks_total";
pub const IDEMPOTENT_REPLAYS_TOTAL: &str = "starling_idempotent_replays_total";
pub const LIVE_PUBLISHED_TOTAL: &str = "starling_live_published_total";
pub const LOGIN_FAILURES_FALLBACKS_TOTAL: &str = "starling_login_failures_fallbacks_total";
pub const LOGINS_BACKED_OFF_TOTAL: &str = "starling_logins_backed_off_total";
pub const MEDIA_SERVED_TOTAL: &str = "starling_media_served_total";
pub const MEDIA_SWEPT_TOTAL: &str = "starling_media_swept_total";
pub const MEDIA_THUMBNAILS_TOTAL: &str = "starling_media_thumbnails_total";
pub const MEDIA_UPLOADED_TOTAL: &str = "starling_media_uploaded_total";
pub const NOTIFICATIONS_CREATED_TOTAL: &str = "starling_notifications_created_total";
pub const OUTBOX_BACKLOG_EVENTS: &str = "starling_outbox_backlog_events";
pub const OUTBOX_OLDEST_UNHANDLED_AGE_SECONDS: &str =
    "starling_outbox_oldest_unhandled_age_seconds";
pub const PASSWORD_HASHING_SATURATED_TOTAL: &str = "starling_password_hashing_saturated_total";
pub const POST_COMMIT_BATCH_SIZE: &str = "starling_post_commit_batch_size";
pub const RATE_LIMIT_FALLBACKS_TOTAL: &str = "starling_rate_limit_fallbacks_total";
pub const RATE_LIMITED_TOTAL: &str = "starling_rate_limited_total";
pub const READINESS_CHECKS_TOTAL: &str = "starling_readiness_checks_total";
pub const RELAY_DUPLICATES_TOTAL: &str = "starling_relay_duplicates_total";
pub const RELAY_LAG_SECONDS: &str = "starling_relay_lag_seconds";
pub const RELAY_PUBLISH_FAILURES_TOTAL: &str = "starling_relay_publish_failures_total";
pub const RELAY_PUBLISHED_TOTAL: &str = "starling_relay_published_total";
pub const REQUESTS_SHED_TOTAL: &str = "starling_requests_shed_total";
pub const RETRY_BUDGET_EXHAUSTED_TOTAL: &str = "starling_retry_budget_exhausted_total";
pub const RUNTIME_ALIVE_TASKS: &str = "starling_runtime_alive_tasks";
pub const RUNTIME_BUSY_RATIO: &str = "starling_runtime_busy_ratio";
pub const RUNTIME_GLOBAL_QUEUE_DEPTH: &str = "starling_runtime_global_queue_depth";
pub const RUNTIME_WORKERS: &str = "starling_runtime_workers";
pub const SESSIONS_ENDED_TOTAL: &str = "starling_sessions_ended_total";
pub const SESSIONS_OPENED_TOTAL: &str = "starling_sessions_opened_total";
pub const SESSIONS_REVOKED_KNOWN: &str = "starling_sessions_revoked_known";
pub const STREAM_BACKLOG_EVENTS: &str = "starling_stream_backlog_events";
pub const STREAM_CONNECTIONS: &str = "starling_stream_connections";
pub const STREAM_DROPPED_TOTAL: &str = "starling_stream_dropped_total";
pub const STREAM_EVENTS_TOTAL: &str = "starling_stream_events_total";
pub const STREAM_REFUSED_TOTAL: &str = "starling_stream_refused_total";
pub const STREAM_RESUMES_TOTAL: &str = "starling_stream_resumes_total";
pub const TIMELINE_REBUILDS_TOTAL: &str = "starling_timeline_rebuilds_total";
pub const TIMELINES_MATERIALISED: &str = "starling_timelines_materialised";

/// Every metric, described at start (`describe_all`).
pub const ALL: &[Metric] = &[
    Metric {
        name: HTTP_REQUEST_DURATION_SECONDS,
        kind: Kind::Histogram,
        unit: Some(Unit::Seconds),
        help: "Time to answer an HTTP request",
        zero_at_start: false,
    },
    Metric {
        name: HTTP_REQUESTS_IN_FLIGHT,
        kind: Kind::Gauge,
        unit: None,
        help: "HTTP requests being answered",
        zero_at_start: false,
    },
    Metric {
        name: HTTP_REQUESTS_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "HTTP requests answered, by method, route template and status",
        zero_at_start: false,
    },
    Metric {
        name: ACCOUNT_DELETIONS_STARTED_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Account deletions started by their owners (DELETE /me)",
        zero_at_start: true,
    },
    Metric {
        name: ACCOUNT_DELETION_STEPS_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Steps of the account-deletion saga run (by step and outcome: done, or failed and retried with back-off)",
        zero_at_start: false,
    },
    Metric {
        name: EXPORTS_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Data-export archives built (outcome ready) or attempts that failed and are retried (outcome failed)",
        zero_at_start: false,
    },
    Metric {
        name: ADMIN_ACTIONS_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Moderation actions taken by staff (by action: suspend, unsuspend, grant_role, remove_post), each with its audit entry",
        zero_at_start: false,
    },
    Metric {
        name: ADMIN_REFUSALS_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Admin API calls refused because the caller's role is too low",
        zero_at_start: true,
    },
    Metric {
        name: API_KEYS_CHECKED_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "API keys read from the store to authenticate a request (a key checked is trusted for auth.api_key_recheck_secs)",
        zero_at_start: true,
    },
    Metric {
        name: API_KEYS_CREATED_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "API keys made",
        zero_at_start: true,
    },
    Metric {
        name: API_KEYS_REVOKED_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "API keys revoked by their owner",
        zero_at_start: true,
    },
    Metric {
        name: BREAKER_REJECTIONS_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Calls failed at once by an open circuit breaker",
        zero_at_start: false,
    },
    Metric {
        name: BREAKER_STATE,
        kind: Kind::Gauge,
        unit: None,
        help: "Circuit breaker per dependency: 0 closed, 1 half-open, 2 open",
        zero_at_start: false,
    },
    Metric {
        name: BREAKER_TRANSITIONS_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Circuit breaker state changes, by dependency and new state",
        zero_at_start: false,
    },
    Metric {
        name: BULKHEAD_REJECTIONS_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Calls failed at once because a dependency had too many in flight",
        zero_at_start: false,
    },
    Metric {
        name: CACHE_ERRORS_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Shared cache (Redis) lookups that failed and were answered as misses, by cache",
        zero_at_start: false,
    },
    Metric {
        name: CACHE_HITS_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Cache lookups that found the key",
        zero_at_start: false,
    },
    Metric {
        name: CACHE_INVALIDATIONS_LOST_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Cache invalidations that could not be broadcast to the other instances (their copies live out their short lifetime)",
        zero_at_start: false,
    },
    Metric {
        name: CACHE_INVALIDATIONS_RECEIVED_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Cache invalidations received from other instances and applied to this one's local tier",
        zero_at_start: false,
    },
    Metric {
        name: CACHE_LOADS_COALESCED_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Cache misses that joined a load already in flight instead of querying",
        zero_at_start: false,
    },
    Metric {
        name: CACHE_LOADS_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "SQL loads on cache misses (one query each, shared by concurrent misses)",
        zero_at_start: false,
    },
    Metric {
        name: CACHE_MISSES_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Cache lookups that did not",
        zero_at_start: false,
    },
    Metric {
        name: DB_POOL_ACQUIRE_SECONDS,
        kind: Kind::Histogram,
        unit: Some(Unit::Seconds),
        help: "Time spent waiting for a database connection",
        zero_at_start: false,
    },
    Metric {
        name: DB_POOL_CONNECTIONS,
        kind: Kind::Gauge,
        unit: None,
        help: "Database connections, by pool and state",
        zero_at_start: false,
    },
    Metric {
        name: DB_PRIMARY_CHANGES_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Times the PostgreSQL primary moved to another of the database URL's hosts (a failover)",
        zero_at_start: true,
    },
    Metric {
        name: DB_READS_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Reads that tolerate replica lag, by the pool that served them (replica or primary)",
        zero_at_start: false,
    },
    Metric {
        name: DB_REPLICA_HEALTHY,
        kind: Kind::Gauge,
        unit: None,
        help: "Per read replica: 1 when reachable and within the lag allowed, else 0",
        zero_at_start: false,
    },
    Metric {
        name: DB_REPLICA_LAG_SECONDS,
        kind: Kind::Gauge,
        unit: Some(Unit::Seconds),
        help: "Per read replica: how far its replay is behind the primary",
        zero_at_start: false,
    },
    Metric {
        name: DEPENDENCY_RETRIES_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Idempotent calls to a dependency sent again after a failure",
        zero_at_start: false,
    },
    Metric {
        name: DEPENDENCY_TIMEOUTS_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Calls to a dependency that got no answer within their timeout",
        zero_at_start: false,
    },
    Metric {
        name: EVENT_BATCH_EVENTS,
        kind: Kind::Histogram,
        unit: Some(Unit::Count),
        help: "Events a consumer took from the log at once",
        zero_at_start: false,
    },
    Metric {
        name: EVENT_HANDLING_LAG_SECONDS,
        kind: Kind::Histogram,
        unit: Some(Unit::Seconds),
        help: "From an event's commit to its handling",
        zero_at_start: false,
    },
    Metric {
        name: EVENT_PULLS_UNFINISHED_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Pulls from the event stream that the broker did not end by their expiry",
        zero_at_start: false,
    },
    Metric {
        name: EVENT_RETRIES_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Event handling attempts that failed and were retried",
        zero_at_start: false,
    },
    Metric {
        name: EVENTS_DEAD_LETTERED_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Events parked after failing for good",
        zero_at_start: false,
    },
    Metric {
        name: EVENTS_HANDLED_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Events handled, by consumer and kind",
        zero_at_start: false,
    },
    Metric {
        name: EVENTS_REDELIVERED_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Events the stream delivered again (their worker died, or a delivery was lost)",
        zero_at_start: false,
    },
    Metric {
        name: FANOUT_LAG_SECONDS,
        kind: Kind::Histogram,
        unit: Some(Unit::Seconds),
        help: "From a post's commit to its arrival in its last follower's timeline",
        zero_at_start: false,
    },
    Metric {
        name: FANOUT_POSTS_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Posts fanned out to followers' timelines",
        zero_at_start: true,
    },
    Metric {
        name: FANOUT_SKIPPED_HIGH_FANOUT_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Posts of high-fan-out accounts, merged at read time instead",
        zero_at_start: true,
    },
    Metric {
        name: FANOUT_TIMELINE_INSERTS_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Timeline inserts made by fan-out",
        zero_at_start: true,
    },
    Metric {
        name: FEED_PAGES_CUT_SHORT_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Feed pages cut short (with a cursor that goes on) after looking at their scan budget of hidden or deleted posts",
        zero_at_start: true,
    },
    Metric {
        name: FEED_SQL_FALLBACKS_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Feed pages served from SQL because the timeline store failed",
        zero_at_start: true,
    },
    Metric {
        name: IDEMPOTENT_REPLAYS_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Creates answered from an idempotency key's kept answer",
        zero_at_start: true,
    },
    Metric {
        name: LIVE_PUBLISHED_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Live updates published by the workers (one per topic)",
        zero_at_start: true,
    },
    Metric {
        name: LOGIN_FAILURES_FALLBACKS_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Failed logins counted in process because Redis could not answer",
        zero_at_start: true,
    },
    Metric {
        name: LOGINS_BACKED_OFF_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Logins refused unchecked because their account's failed logins back off",
        zero_at_start: true,
    },
    Metric {
        name: MEDIA_SERVED_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "GET /media/{hash} answers, by status (200, 206, 304, 404, 416)",
        zero_at_start: false,
    },
    Metric {
        name: MEDIA_SWEPT_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Uploads removed because no post attached them within a day",
        zero_at_start: true,
    },
    Metric {
        name: MEDIA_THUMBNAILS_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Thumbnails made by the thumbnailer",
        zero_at_start: true,
    },
    Metric {
        name: MEDIA_UPLOADED_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Images accepted by POST /api/v1/media, by kind detected from their bytes",
        zero_at_start: false,
    },
    Metric {
        name: NOTIFICATIONS_CREATED_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Notifications stored by the notifier (repeats of one already stored not counted)",
        zero_at_start: false,
    },
    Metric {
        name: OUTBOX_BACKLOG_EVENTS,
        kind: Kind::Gauge,
        unit: None,
        help: "Outbox events a consumer has not handled yet",
        zero_at_start: false,
    },
    Metric {
        name: OUTBOX_OLDEST_UNHANDLED_AGE_SECONDS,
        kind: Kind::Gauge,
        unit: Some(Unit::Seconds),
        help: "Age of the oldest event a consumer has not handled",
        zero_at_start: false,
    },
    Metric {
        name: PASSWORD_HASHING_SATURATED_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Logins and registrations refused because every hashing slot stayed busy",
        zero_at_start: true,
    },
    Metric {
        name: POST_COMMIT_BATCH_SIZE,
        kind: Kind::Histogram,
        unit: None,
        help: "New posts written per group-commit transaction",
        zero_at_start: false,
    },
    Metric {
        name: RATE_LIMIT_FALLBACKS_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Requests judged by the local limiter because the shared one (Redis) failed or its breaker was open",
        zero_at_start: true,
    },
    Metric {
        name: RATE_LIMITED_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Requests refused with 429, by route class",
        zero_at_start: false,
    },
    Metric {
        name: READINESS_CHECKS_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Readiness checks that asked the store (at most one a second, however many probes arrive)",
        zero_at_start: false,
    },
    Metric {
        name: RELAY_DUPLICATES_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Events the broker already held when the relay published them (a retry, or a second relay)",
        zero_at_start: false,
    },
    Metric {
        name: RELAY_LAG_SECONDS,
        kind: Kind::Histogram,
        unit: Some(Unit::Seconds),
        help: "From an event's commit to its publication on the broker by the relay",
        zero_at_start: false,
    },
    Metric {
        name: RELAY_PUBLISH_FAILURES_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Relay batches the broker did not take (retried)",
        zero_at_start: false,
    },
    Metric {
        name: RELAY_PUBLISHED_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Events published to the broker by the relay",
        zero_at_start: false,
    },
    Metric {
        name: REQUESTS_SHED_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "API requests answered 503 at once because too many were in flight",
        zero_at_start: true,
    },
    Metric {
        name: RETRY_BUDGET_EXHAUSTED_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Failed idempotent calls not retried because retries were over budget",
        zero_at_start: false,
    },
    Metric {
        name: RUNTIME_ALIVE_TASKS,
        kind: Kind::Gauge,
        unit: None,
        help: "Async tasks alive",
        zero_at_start: false,
    },
    Metric {
        name: RUNTIME_BUSY_RATIO,
        kind: Kind::Gauge,
        unit: None,
        help: "Share of time the runtime's workers were busy since the last scrape",
        zero_at_start: false,
    },
    Metric {
        name: RUNTIME_GLOBAL_QUEUE_DEPTH,
        kind: Kind::Gauge,
        unit: None,
        help: "Tasks waiting in the runtime's global queue",
        zero_at_start: false,
    },
    Metric {
        name: RUNTIME_WORKERS,
        kind: Kind::Gauge,
        unit: None,
        help: "Async runtime worker threads",
        zero_at_start: false,
    },
    Metric {
        name: SESSIONS_ENDED_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Sessions ended before their end, by why (logout, logout_everywhere, ended, password, reuse)",
        zero_at_start: false,
    },
    Metric {
        name: SESSIONS_OPENED_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Sessions opened by a login or registration",
        zero_at_start: true,
    },
    Metric {
        name: SESSIONS_REVOKED_KNOWN,
        kind: Kind::Gauge,
        unit: None,
        help: "Ended sessions whose unexpired access tokens this instance refuses",
        zero_at_start: false,
    },
    Metric {
        name: STREAM_BACKLOG_EVENTS,
        kind: Kind::Gauge,
        unit: None,
        help: "Events in the broker's stream a consumer has not acknowledged yet",
        zero_at_start: false,
    },
    Metric {
        name: STREAM_CONNECTIONS,
        kind: Kind::Gauge,
        unit: None,
        help: "Live streams (Server-Sent Events) open on this instance",
        zero_at_start: false,
    },
    Metric {
        name: STREAM_DROPPED_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Live streams ended by the server: slow (a client not reading filled its queue) or gap (an update never arrived)",
        zero_at_start: false,
    },
    Metric {
        name: STREAM_EVENTS_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Events sent on live streams, by type",
        zero_at_start: false,
    },
    Metric {
        name: STREAM_REFUSED_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Streams refused: the account or the instance holds as many as allowed",
        zero_at_start: false,
    },
    Metric {
        name: STREAM_RESUMES_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Streams opened with Last-Event-ID: replayed, reset (position outside the window) or failed",
        zero_at_start: false,
    },
    Metric {
        name: TIMELINE_REBUILDS_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Home timelines rebuilt from SQL",
        zero_at_start: true,
    },
    Metric {
        name: TIMELINES_MATERIALISED,
        kind: Kind::Gauge,
        unit: None,
        help: "Home timelines held by the timeline store",
        zero_at_start: false,
    },
];

/// Gives every metric its help text (and unit), and exports the unlabelled
/// counters marked so at zero.
pub fn describe_all() {
    for metric in ALL {
        let (name, help) = (metric.name, metric.help);
        match (metric.kind, metric.unit) {
            (Kind::Counter, Some(unit)) => metrics::describe_counter!(name, unit, help),
            (Kind::Counter, None) => metrics::describe_counter!(name, help),
            (Kind::Gauge, Some(unit)) => metrics::describe_gauge!(name, unit, help),
            (Kind::Gauge, None) => metrics::describe_gauge!(name, help),
            (Kind::Histogram, Some(unit)) => metrics::describe_histogram!(name, unit, help),
            (Kind::Histogram, None) => metrics::describe_histogram!(name, help),
        }
        if metric.zero_at_start && metric.kind == Kind::Counter {
            metrics::counter!(name).increment(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_named_once_and_described() {
        let mut names: Vec<&str> = ALL.iter().map(|metric| metric.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "a metric is listed twice");
        for metric in ALL {
            assert!(
                metric.name.starts_with("starling_") || metric.name.starts_with("http_"),
                "{}",
                metric.name
            );
            assert!(!metric.help.is_empty(), "{} has no help", metric.name);
            if metric.kind == Kind::Counter {
                assert!(metric.name.ends_with("_total"), "{}", metric.name);
            }
        }
    }
}
