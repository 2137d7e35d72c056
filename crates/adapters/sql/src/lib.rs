//! The SQL store port on SQLite, the source of truth of embedded mode.
//!
//! WAL journal, one writer connection (SQLite allows one writer; a single
//! connection serialises write transactions without `SQLITE_BUSY`), a pool
//! of read-only connections that never wait for the writer, and migrations
//! embedded in the binary and applied at start.

mod group_commit;
mod postgres;
mod shared;
mod sqlite;

use starling_app::ports::{IdempotencyClaim, StoreError, StoredResponse};
use starling_domain::{
    Attachment, Handle, Media, MediaFile, MediaId, MediaState, Mention, Notification,
    NotificationId, NotificationKind, PostId, Timestamp, UserId, UserSummary,
};

/// A profile as both engines read it.
#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    id: i64,
    handle: String,
    display_name: String,
    bio: String,
    created_at: i64,
    followers_count: i64,
    following_count: i64,
    posts_count: i64,
    role: String,
    status: String,
}

impl From<UserRow> for starling_domain::User {
    fn from(row: UserRow) -> Self {
        starling_domain::User {
            id: UserId(row.id),
            handle: Handle::stored(row.handle),
            display_name: row.display_name,
            bio: row.bio,
            created_at: Timestamp(row.created_at),
            followers_count: row.followers_count,
            following_count: row.following_count,
            posts_count: row.posts_count,
            role: starling_domain::Role::stored(&row.role),
            status: starling_domain::AccountStatus::stored(&row.status),
        }
    }
}

/// A post's mentions as stored (a JSON array; see the migrations).
fn encode_mentions(mentions: &[Mention]) -> Result<String, StoreError> {
    serde_json::to_string(mentions).map_err(|error| {
        StoreError::Unexpected(anyhow::Error::new(error).context("encoding mentions"))
    })
}

/// The stored mentions of post `id`. A column this version cannot read
/// (damaged by hand) shows as no mentions, not as a post that cannot load.
fn decode_mentions(id: i64, stored: &str) -> Vec<Mention> {
    serde_json::from_str(stored).unwrap_or_else(|error| {
        tracing::error!(post_id = id, error = %error, "cannot decode a post's mentions");
        Vec::new()
    })
}

/// A post's images as stored (a JSON array; see the migrations).
fn encode_media(media: &[Attachment]) -> Result<String, StoreError> {
    serde_json::to_string(media).map_err(|error| {
        StoreError::Unexpected(anyhow::Error::new(error).context("encoding a post's media"))
    })
}

/// The stored images of post `id`; a column this version cannot read shows
/// as none, not as a post that cannot load.
fn decode_media(id: i64, stored: &str) -> Vec<Attachment> {
    if stored == "[]" {
        return Vec::new();
    }
    serde_json::from_str(stored).unwrap_or_else(|error| {
        tracing::error!(post_id = id, error = %error, "cannot decode a post's media");
        Vec::new()
    })
}

fn encode_file(file: &MediaFile) -> Result<String, StoreError> {
    serde_json::to_string(file).map_err(|error| {
        StoreError::Unexpected(anyhow::Error::new(error).context("encoding a media file"))
    })
}

/// An upload's row, as both engines read it.
#[derive(sqlx::FromRow)]
struct MediaRow {
    id: i64,
    owner_id: i64,
    state: String,
    file: String,
    thumbnail: Option<String>,
    alt: String,
    post_id: Option<i64>,
    created_at: i64,
}

impl TryFrom<MediaRow> for Media {
    type Error = StoreError;

    fn try_from(row: MediaRow) -> Result<Self, StoreError> {
        let broken = |what: &str| {
            StoreError::Unexpected(anyhow::anyhow!("media {} has a broken {what}", row.id))
        };
        let file = serde_json::from_str(&row.file).map_err(|_| broken("file"))?;
        let thumbnail = match &row.thumbnail {
            Some(text) => Some(serde_json::from_str(text).map_err(|_| broken("thumbnail"))?),
            None => None,
        };
        Ok(Media {
            id: MediaId(row.id),
            owner: UserId(row.owner_id),
            state: MediaState::parse(&row.state).ok_or_else(|| broken("state"))?,
            file,
            thumbnail,
            alt: row.alt,
            post: row.post_id.map(PostId),
            created_at: Timestamp(row.created_at),
        })
    }
}

pub use postgres::{PostgresOptions, PostgresStore};
pub use sqlite::{
    BulkFollow, BulkLoad, BulkPost, BulkUser, SqliteOptions, SqliteStore, Synchronous,
};

/// An idempotency key's row, as both engines read it.
#[derive(sqlx::FromRow)]
struct IdempotencyRow {
    fingerprint: Vec<u8>,
    status: Option<i32>,
    headers: Option<String>,
    body: Option<Vec<u8>>,
    created_at: i64,
}

/// What a claim finds in an existing row: `None` when the row may be taken
/// over (expired, or left in progress by an attempt that died).
fn judge_idempotency_row(
    row: IdempotencyRow,
    fingerprint: &[u8],
    stale_before: Timestamp,
    expired_before: Timestamp,
) -> Option<IdempotencyClaim> {
    if row.created_at < expired_before.millis()
        || (row.status.is_none() && row.created_at < stale_before.millis())
    {
        return None;
    }
    if row.fingerprint != fingerprint {
        return Some(IdempotencyClaim::Mismatch);
    }
    let Some(status) = row.status else {
        return Some(IdempotencyClaim::InProgress);
    };
    let headers = row
        .headers
        .as_deref()
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default();
    Some(IdempotencyClaim::Completed(StoredResponse {
        status: u16::try_from(status).unwrap_or(500),
        headers,
        body: row.body.unwrap_or_default(),
    }))
}

fn encode_headers(response: &StoredResponse) -> Result<String, StoreError> {
    serde_json::to_string(&response.headers).map_err(|error| {
        StoreError::Unexpected(anyhow::Error::new(error).context("encoding response headers"))
    })
}

/// A notification's row, as both engines read it.
#[derive(sqlx::FromRow)]
struct NotificationRow {
    id: i64,
    recipient_id: i64,
    kind: String,
    actor_id: i64,
    post_id: i64,
    created_at: i64,
}

impl TryFrom<NotificationRow> for Notification {
    type Error = StoreError;

    fn try_from(row: NotificationRow) -> Result<Self, StoreError> {
        let kind = NotificationKind::parse(&row.kind).ok_or_else(|| {
            StoreError::Unexpected(anyhow::anyhow!("unknown notification kind {:?}", row.kind))
        })?;
        Ok(Notification {
            id: NotificationId(row.id),
            recipient: UserId(row.recipient_id),
            kind,
            actor: UserId(row.actor_id),
            // 0 is the stored form of "no post" (see the migrations).
            post: (row.post_id != 0).then_some(PostId(row.post_id)),
            created_at: Timestamp(row.created_at),
        })
    }
}

/// `(id, handle, display_name)` rows, as both engines read summaries.
fn summaries(rows: Vec<(i64, String, String, String)>) -> Vec<UserSummary> {
    rows.into_iter()
        .map(|(id, handle, display_name, status)| UserSummary {
            id: UserId(id),
            handle: Handle::stored(handle),
            display_name,
            hidden: !starling_domain::AccountStatus::stored(&status).is_visible(),
        })
        .collect()
}

/// An event as the outbox stores it.
fn encode_event(event: &starling_domain::Event) -> Result<String, StoreError> {
    serde_json::to_string(event).map_err(|error| {
        StoreError::Unexpected(anyhow::Error::new(error).context("encoding an event"))
    })
}

/// A page size as both engines bind it.
fn limit_param(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// An outbox row as both engines read it (`position`: its place in the log).
#[derive(sqlx::FromRow)]
struct OutboxRow {
    position: i64,
    event_id: i64,
    kind: String,
    payload: String,
    occurred_at: i64,
    trace_parent: Option<String>,
}

impl OutboxRow {
    fn decode(
        self,
    ) -> Result<starling_domain::EventEnvelope, starling_app::ports::UndecodableEvent> {
        match serde_json::from_str::<starling_domain::Event>(&self.payload) {
            Ok(event) => Ok(starling_domain::EventEnvelope {
                id: starling_domain::EventId(self.event_id),
                sequence: self.position,
                occurred_at: Timestamp(self.occurred_at),
                event,
                trace_parent: self.trace_parent,
            }),
            Err(error) => Err(starling_app::ports::UndecodableEvent {
                sequence: self.position,
                id: starling_domain::EventId(self.event_id),
                kind: self.kind,
                payload: self.payload,
                error: error.to_string(),
            }),
        }
    }
}

/// How long a query waited for a connection: the pool's saturation signal.
fn record_acquire(pool: &'static str, started: std::time::Instant) {
    metrics::histogram!(starling_app::metric::DB_POOL_ACQUIRE_SECONDS, "pool" => pool)
        .record(started.elapsed().as_secs_f64());
}

/// Who is told after a commit that appended events (the event log's wake,
/// `OutboxStore::notify_commits`); shared by a store's clones and its
/// group-commit writers.
#[derive(Clone, Default)]
pub(crate) struct CommitSignal(
    std::sync::Arc<std::sync::OnceLock<starling_app::ports::CommitListener>>,
);

impl CommitSignal {
    fn connect(&self, listener: starling_app::ports::CommitListener) {
        if self.0.set(listener).is_err() {
            tracing::warn!("the store already tells a listener of its commits; ignored");
        }
    }

    /// Events were committed: tells the listener, if there is one.
    fn committed(&self) {
        if let Some(listener) = self.0.get() {
            listener();
        }
    }
}
