//! The ports: what the use cases need from the outside world, as traits.
//!
//! Adapters live in crates named after the engine they talk to; every adapter
//! of a port runs the same contract suite (`contract`, behind the
//! `contract-tests` feature), so embedded and scaled-out modes cannot drift.

pub mod announce;
pub mod blobs;
pub mod cache;
pub mod events;
pub mod live;
pub mod login_failures;
pub mod rate_limit;
pub mod store;
pub mod timeline;

#[cfg(feature = "contract-tests")]
pub mod contract;

pub use announce::{Announce, NewEvent};
pub use blobs::{BlobError, BlobStore};
pub use cache::{Cache, Cached};
pub use events::{EventLog, EventLogError, EventPublisher, EventSubscription};
pub use live::{LiveError, LiveLog, LiveMessage, LiveSink, Replay};
pub use login_failures::{Failures, LoginFailures, LoginFailuresError};
pub use rate_limit::{Quota, RateDecision, RateLimitError, RateLimiter, RateLimits, RouteClass};
pub use store::{
    AccountQuery, AccountRecord, AccountSort, AccountSortField, AccountStore, AdminStore,
    ApiKeyRecord, ApiKeyStore, AuditAction, AuditEntry, AuditQuery, CommitListener, DeleteOutcome,
    DeletionRecord, DeletionStep, DeletionStore, ExportRecord, ExportState, ExportStore,
    FollowOutcome, GraphStore, Hidden, IdempotencyClaim, IdempotencyStore, LikeOutcome,
    MediaSelection, MediaStore, Missing, NewPost, NewUser, NotificationState, NotificationStore,
    OutboxStore, PostDeleter, PostStore, RefreshFamily, RefreshTokenRecord, Relation,
    RelationStore, RotateOutcome, SessionRecord, StatusChange, Store, StoreError, StoreHealth,
    StoreResult, StoredResponse, TokenStore, UndecodableEvent, UnfollowOutcome, UnlikeOutcome,
    UserCredentials,
};
pub use timeline::{
    TimelineEntry, TimelineError, TimelineRead, TimelineResult, TimelineSlice, TimelineStore,
};
