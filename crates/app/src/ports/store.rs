//! The SQL store port: the source of truth for accounts, credentials, the
//! follow graph, posts, likes and the outbox.
//!
//! Every method that changes state commits the change and its outbox event in
//! one transaction, so an event exists exactly when its change does. Which
//! event a change emits is the use case's decision (`announce`): the store
//! appends what it is given.
//!
//! The reads that take a `reader` tolerate replica lag: a store with read
//! replicas may serve them from one, except to an account that changed
//! something lately (the acting account every write names), which reads
//! from the primary and so always sees its own writes. Counters
//! (followers, following, posts, likes, replies) change in the same
//! transaction as the row they count and stay exact under concurrency.

use async_trait::async_trait;
use starling_domain::{
    AccountStatus, Email, Event, EventEnvelope, EventId, Handle, Media, MediaFile, MediaId,
    Mention, Notification, NotificationId, NotificationKind, Post, PostId, PostText, Role,
    Timestamp, User, UserId, UserSummary,
};

use super::announce::{Announce, NewEvent};
use super::timeline::TimelineEntry;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("handle is already taken")]
    HandleTaken,
    #[error("email is already registered")]
    EmailTaken,
    /// What the change names does not exist (or no longer does).
    #[error("{0} not found")]
    NotFound(Missing),
    /// The account acting does not exist (its token outlived it, or was
    /// signed for another installation).
    #[error("the acting account does not exist")]
    UnknownAccount,
    /// Media named for a post is not the author's, not ready, or attached
    /// to another post already.
    #[error("media unavailable for this post")]
    MediaUnavailable,
    #[error("store unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What a change named that is not there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// The other account of a follow, block or mute, or a profile changed.
    Account,
    /// The post liked, deleted or replied to: missing or deleted.
    Post,
    Media,
}

impl Missing {
    /// The word the API uses for it.
    pub fn noun(self) -> &'static str {
        match self {
            Missing::Account => "user",
            Missing::Post => "post",
            Missing::Media => "media",
        }
    }
}

impl std::fmt::Display for Missing {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.noun())
    }
}

/// Everything any use case needs from SQL, as one object.
pub trait Store:
    AccountStore
    + TokenStore
    + ApiKeyStore
    + AdminStore
    + DeletionStore
    + ExportStore
    + GraphStore
    + PostStore
    + NotificationStore
    + IdempotencyStore
    + RelationStore
    + MediaStore
    + OutboxStore
    + StoreHealth
{
}
impl<T> Store for T where
    T: AccountStore
        + TokenStore
        + ApiKeyStore
        + AdminStore
        + DeletionStore
        + ExportStore
        + GraphStore
        + PostStore
        + NotificationStore
        + IdempotencyStore
        + RelationStore
        + MediaStore
        + OutboxStore
        + StoreHealth
{
}

#[async_trait]
pub trait StoreHealth: Send + Sync {
    /// Answers once the store can serve a query; used by readiness probes.
    async fn ping(&self) -> StoreResult<()>;

    /// The highest id stored anywhere (0 when empty), so that a restarted id
    /// generator never repeats one.
    async fn highest_id(&self) -> StoreResult<i64>;
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: UserId,
    pub handle: Handle,
    pub email: Email,
    pub display_name: String,
    pub password_hash: String,
    pub created_at: Timestamp,
    /// `UserRegistered`, committed with the account.
    pub event: NewEvent,
}

#[derive(Debug, Clone)]
pub struct UserCredentials {
    pub user_id: UserId,
    pub password_hash: String,
}

#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Creates the account and commits its event with it.
    /// Errors: `HandleTaken` (ignoring case), `EmailTaken`.
    async fn create_user(&self, new_user: NewUser) -> StoreResult<User>;

    /// Finds credentials by handle (ignoring case) or by normalised email.
    async fn credentials_by_login(&self, login: &str) -> StoreResult<Option<UserCredentials>>;

    async fn user_by_id(&self, id: UserId) -> StoreResult<Option<User>>;

    /// `handle_canonical` is the lower-cased handle. Tolerates lag, not absence.
    async fn user_by_handle(
        &self,
        reader: Option<UserId>,
        handle_canonical: &str,
    ) -> StoreResult<Option<User>>;

    /// Summaries of the accounts that exist among `ids`, in no particular order.
    async fn user_summaries(&self, ids: &[UserId]) -> StoreResult<Vec<UserSummary>>;

    /// Summaries of the accounts whose lower-cased handles are among
    /// `handle_keys`, in no particular order (mentions are resolved so).
    async fn users_by_handles(&self, handle_keys: &[String]) -> StoreResult<Vec<UserSummary>>;

    /// Up to `limit` account ids above `after` (from the lowest when `None`),
    /// ascending: for jobs that visit every account.
    async fn user_ids_after(&self, after: Option<UserId>, limit: usize)
    -> StoreResult<Vec<UserId>>;

    /// Changes the given fields and commits `event` with them.
    /// Errors: `NotFound`.
    async fn update_profile(
        &self,
        id: UserId,
        display_name: Option<String>,
        bio: Option<String>,
        event: NewEvent,
        now: Timestamp,
    ) -> StoreResult<User>;
}

/// A refresh token as stored: only its SHA-256 hash, never the token.
#[derive(Debug, Clone)]
pub struct RefreshTokenRecord {
    pub token_hash: Vec<u8>,
    pub user_id: UserId,
    /// Every token rotated from one login shares the family id of the first.
    pub family_id: i64,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
}

/// A refresh-token family (one session) and its account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshFamily {
    pub user_id: UserId,
    pub family_id: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateOutcome {
    /// The presented token was live: it is now spent, and the replacement stored.
    Rotated(RefreshFamily),
    /// The presented token had been used or revoked before: the whole family is now revoked.
    Reused(RefreshFamily),
    Expired,
    Unknown,
}

/// A session as its account sees it: one sign-in, the refresh-token family
/// it started (`id` is the family id, the `sid` of its access tokens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: i64,
    pub user_id: UserId,
    pub created_at: Timestamp,
    /// The last refresh (access tokens are verified without the store).
    pub last_used_at: Timestamp,
    /// Its absolute end: no refresh carries the session past it.
    pub expires_at: Timestamp,
    pub user_agent: Option<String>,
    /// The address it signed in from.
    pub address: Option<String>,
}

#[async_trait]
pub trait TokenStore: Send + Sync {
    /// Opens the session `session` (its `id` is `first_token`'s family) with
    /// its first refresh token, both at once.
    async fn open_session(
        &self,
        session: SessionRecord,
        first_token: RefreshTokenRecord,
    ) -> StoreResult<()>;

    /// Atomically spends the token with `presented_hash` and stores its
    /// replacement in the same family, for the same account, expiring at
    /// `replacement_expires_at` or the session's end, whichever is first.
    /// Presenting a spent or revoked token revokes its whole family, except
    /// a token spent at or after `retry_since` whose replacement is still
    /// unspent: that is a retry whose answer was lost, so the replacement is
    /// spent in its stead (the family keeps one live token).
    async fn rotate_refresh_token(
        &self,
        presented_hash: &[u8],
        replacement_hash: &[u8],
        replacement_expires_at: Timestamp,
        retry_since: Timestamp,
        now: Timestamp,
    ) -> StoreResult<RotateOutcome>;

    /// Revokes the family of the token with this hash, and says which it
    /// was; unknown hashes are ignored (`None`).
    async fn revoke_refresh_family(
        &self,
        token_hash: &[u8],
        now: Timestamp,
    ) -> StoreResult<Option<RefreshFamily>>;

    /// Whether the session `family_id` names is still open at `now`: neither
    /// revoked nor past its end, and a token of the family is live.
    async fn session_is_open(&self, family_id: i64, now: Timestamp) -> StoreResult<bool>;

    /// `user`'s open sessions, newest first.
    async fn sessions_of(&self, user: UserId, now: Timestamp) -> StoreResult<Vec<SessionRecord>>;

    /// Ends `user`'s session `session` (with its tokens); `false` when the
    /// account has no such open session.
    async fn revoke_session(&self, user: UserId, session: i64, now: Timestamp)
    -> StoreResult<bool>;

    /// Ends every open session of `user` but `keep`; returns the ended ones.
    async fn revoke_sessions_of(
        &self,
        user: UserId,
        keep: Option<i64>,
        now: Timestamp,
    ) -> StoreResult<Vec<i64>>;

    /// Stores `user`'s new password hash and ends every other session of
    /// theirs than `keep`, in one transaction; returns the ended sessions.
    async fn change_password(
        &self,
        user: UserId,
        password_hash: &str,
        keep: Option<i64>,
        now: Timestamp,
    ) -> StoreResult<Vec<i64>>;

    /// The password hash of `user`, if the account has one.
    async fn password_hash_of(&self, user: UserId) -> StoreResult<Option<String>>;

    /// Sessions revoked at or after `since`: the access tokens every
    /// instance refuses, although their signatures are good.
    async fn sessions_revoked_since(&self, since: Timestamp) -> StoreResult<Vec<i64>>;

    /// Deletes tokens that expired before `expired_before` (spent, revoked or
    /// not: an expired token is refused either way), and sessions past
    /// their end or revoked a day before it; returns how many tokens went.
    async fn prune_refresh_tokens(&self, expired_before: Timestamp) -> StoreResult<u64>;
}

/// An API key as stored: its SHA-256, never the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: i64,
    pub user_id: UserId,
    pub name: String,
    /// The part of the key after `sk_` and before its secret: shown in
    /// lists so a person can tell their keys apart.
    pub prefix: String,
    pub key_hash: Vec<u8>,
    /// Space-separated scope names.
    pub scopes: String,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
}

#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    async fn insert_api_key(&self, key: ApiKeyRecord) -> StoreResult<()>;

    /// `user`'s live keys (neither revoked nor expired at `now`), newest first.
    async fn api_keys_of(&self, user: UserId, now: Timestamp) -> StoreResult<Vec<ApiKeyRecord>>;

    /// Revokes `user`'s key `id`; `false` when the account has no such live key.
    async fn revoke_api_key(&self, user: UserId, id: i64, now: Timestamp) -> StoreResult<bool>;

    /// The live key with this hash, its last use set to `now`; `None` when
    /// no such key is live (unknown, revoked or expired) or its account is
    /// suspended.
    async fn use_api_key(
        &self,
        key_hash: &[u8],
        now: Timestamp,
    ) -> StoreResult<Option<ApiKeyRecord>>;
}

/// An account as staff see it: the profile with its email and moderation state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRecord {
    pub user: User,
    pub email: String,
    pub suspended_at: Option<Timestamp>,
    /// Where its deletion stands, for an account being (or once) deleted;
    /// filled in by the admin use cases, not by `find_accounts`.
    pub deletion: Option<DeletionRecord>,
}

/// What the admin listing may be sorted by (an allow-list: no column is
/// named by the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountSortField {
    CreatedAt,
    Handle,
    FollowersCount,
    PostsCount,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountSort {
    pub field: AccountSortField,
    pub descending: bool,
}

/// One page of the admin listing: filters, search, sort keys (ties broken
/// by id, in the direction of the last key), and the rows to skip.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountQuery {
    pub status: Option<AccountStatus>,
    pub role: Option<Role>,
    /// Lower-cased text found in the handle, the display name or the email.
    pub search: Option<String>,
    /// Newest first when empty.
    pub sort: Vec<AccountSort>,
    pub offset: u64,
    pub limit: usize,
}

/// What an admin action did, as the audit log names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditAction {
    Suspend,
    Unsuspend,
    GrantRole,
    RemovePost,
}

impl AuditAction {
    pub const ALL: [AuditAction; 4] = [
        AuditAction::Suspend,
        AuditAction::Unsuspend,
        AuditAction::GrantRole,
        AuditAction::RemovePost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Suspend => "suspend",
            AuditAction::Unsuspend => "unsuspend",
            AuditAction::GrantRole => "grant_role",
            AuditAction::RemovePost => "remove_post",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|action| action.as_str() == text)
    }
}

/// One entry of the audit log, written in the transaction of the action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: i64,
    /// Who acted; `None` for an operator at the command line.
    pub actor: Option<UserId>,
    pub action: AuditAction,
    pub target_user: Option<UserId>,
    pub target_post: Option<PostId>,
    pub reason: Option<String>,
    /// What changed, as a JSON object.
    pub details: String,
    pub created_at: Timestamp,
}

/// A page of the audit log, newest first, with optional filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub action: Option<AuditAction>,
    pub actor: Option<UserId>,
    pub target_user: Option<UserId>,
    pub offset: u64,
    pub limit: usize,
}

/// What suspending or reinstating an account did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusChange {
    /// Changed; the sessions it ended (suspension ends them all).
    Changed { ended_sessions: Vec<i64> },
    /// The account was in that state already: nothing written.
    Unchanged,
}

/// Staff's reads and moderation writes. Each write commits its audit entry
/// (and event) with it.
#[async_trait]
pub trait AdminStore: Send + Sync {
    /// The role and status of `user`, read fresh from the primary (a
    /// demotion takes effect at once). `None` when there is no such account.
    async fn standing_of(&self, user: UserId) -> StoreResult<Option<(Role, AccountStatus)>>;

    /// The page `query` asks for and how many accounts match in all.
    async fn find_accounts(&self, query: &AccountQuery) -> StoreResult<(Vec<AccountRecord>, u64)>;

    async fn account_record(&self, user: UserId) -> StoreResult<Option<AccountRecord>>;

    /// Suspends (ending every session of the account) or reinstates `user`,
    /// with `audit` and `event`, all in one transaction; nothing is written
    /// when the account is suspended (or active) already, or being deleted.
    /// Errors: `NotFound`.
    async fn set_suspended(
        &self,
        user: UserId,
        suspended: bool,
        audit: AuditEntry,
        event: NewEvent,
        now: Timestamp,
    ) -> StoreResult<StatusChange>;

    /// Gives `user` the role `to` if it holds `from` now (compare and set),
    /// with `audit`; `false` when its role is not `from`. Errors: `NotFound`.
    async fn set_role(
        &self,
        user: UserId,
        from: Role,
        to: Role,
        audit: AuditEntry,
    ) -> StoreResult<bool>;

    /// The page `query` asks for, newest first, and how many entries match.
    async fn audit_log(&self, query: &AuditQuery) -> StoreResult<(Vec<AuditEntry>, u64)>;
}

/// The steps of an account's deletion, in order. Each is idempotent: a
/// step interrupted anywhere is run again from its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DeletionStep {
    /// Sessions (done when the deletion starts) and API keys.
    RevokeCredentials,
    /// Follows both ways, counts corrected; the account's posts leave the
    /// timelines of those who followed it.
    RemoveFollows,
    /// The account's own timeline and what the caches hold of it.
    PurgeTimelines,
    /// Posts (tombstoned: replies to them stay, answering a deleted post),
    /// likes, blocks, mutes, notifications to and from it.
    DeletePosts,
    /// Uploads, and their files in object storage.
    DeleteMedia,
    /// Waits out the handle's quarantine, then frees it.
    ReleaseHandle,
    /// The row is left as a tombstone: no email, name or bio.
    Tombstone,
    Done,
}

impl DeletionStep {
    pub const ALL: [DeletionStep; 8] = [
        DeletionStep::RevokeCredentials,
        DeletionStep::RemoveFollows,
        DeletionStep::PurgeTimelines,
        DeletionStep::DeletePosts,
        DeletionStep::DeleteMedia,
        DeletionStep::ReleaseHandle,
        DeletionStep::Tombstone,
        DeletionStep::Done,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeletionStep::RevokeCredentials => "revoke_credentials",
            DeletionStep::RemoveFollows => "remove_follows",
            DeletionStep::PurgeTimelines => "purge_timelines",
            DeletionStep::DeletePosts => "delete_posts",
            DeletionStep::DeleteMedia => "delete_media",
            DeletionStep::ReleaseHandle => "release_handle",
            DeletionStep::Tombstone => "tombstone",
            DeletionStep::Done => "done",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|step| step.as_str() == text)
    }

    /// The step after this one (`Done` stays).
    pub fn next(self) -> Self {
        let index = Self::ALL.iter().position(|step| *step == self).unwrap_or(0);
        Self::ALL
            .get(index + 1)
            .copied()
            .unwrap_or(DeletionStep::Done)
    }
}

/// Where an account's deletion stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletionRecord {
    pub user_id: UserId,
    /// The step to run next (`Done` when finished).
    pub step: DeletionStep,
    /// Failed attempts of this step so far.
    pub attempts: u32,
    pub last_error: Option<String>,
    pub started_at: Timestamp,
    /// Not before then: after a failure (back-off) or for the quarantine.
    pub next_attempt_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

/// Account deletion as a durable saga: its state, and the batch steps that
/// remove what the account had. Every method is idempotent.
#[async_trait]
pub trait DeletionStore: Send + Sync {
    /// Starts deleting `user`, in one transaction: status `deleting`, its
    /// password and every session gone, the saga recorded at its first
    /// step. Returns the sessions ended; `None` when the account is not
    /// active (missing, suspended, or being deleted already).
    async fn begin_deletion(&self, user: UserId, now: Timestamp) -> StoreResult<Option<Vec<i64>>>;

    async fn deletion_of(&self, user: UserId) -> StoreResult<Option<DeletionRecord>>;

    /// Unfinished deletions whose next attempt is due at `now` and that no
    /// runner holds, oldest first.
    async fn due_deletions(&self, now: Timestamp, limit: usize)
    -> StoreResult<Vec<DeletionRecord>>;

    /// Takes `user`'s deletion for one runner until `until` (a lease, so two
    /// instances do not run it at once); `false` when another holds it.
    async fn claim_deletion(
        &self,
        user: UserId,
        now: Timestamp,
        until: Timestamp,
    ) -> StoreResult<bool>;

    /// Holds `user`'s deletion until `until` (the runner that took it,
    /// between batches of a long step).
    async fn renew_deletion_lease(&self, user: UserId, until: Timestamp) -> StoreResult<()>;

    /// Moves `user`'s deletion from `from` to `to`, due at `due`, its
    /// failures forgotten and its lease let go; `Done` finishes it (status
    /// `deleted`). `false` when it was not at `from`.
    async fn advance_deletion(
        &self,
        user: UserId,
        from: DeletionStep,
        to: DeletionStep,
        due: Timestamp,
        now: Timestamp,
    ) -> StoreResult<bool>;

    /// Records a failed attempt of `step`: tried again at `retry_at`.
    async fn deletion_failed(
        &self,
        user: UserId,
        step: DeletionStep,
        error: &str,
        retry_at: Timestamp,
    ) -> StoreResult<()>;

    /// Revokes every live API key of `user`; how many.
    async fn revoke_api_keys_of(&self, user: UserId, now: Timestamp) -> StoreResult<u64>;

    /// Up to `limit` follows from or to `user`, as `(follower, followee)`.
    async fn follows_of(&self, user: UserId, limit: usize) -> StoreResult<Vec<(UserId, UserId)>>;

    /// Removes up to `limit` of `user`'s likes, each post's count
    /// corrected, in one transaction; the posts whose counts changed.
    async fn remove_likes_of(&self, user: UserId, limit: usize) -> StoreResult<Vec<PostId>>;

    /// Removes `user`'s blocks and mutes both ways, and notifications to
    /// and from it; the other accounts whose blocks or mutes changed.
    async fn remove_relations_of(&self, user: UserId) -> StoreResult<Vec<UserId>>;

    /// Frees `user`'s handle for others (the row keeps it for the record).
    async fn release_handle(&self, user: UserId) -> StoreResult<()>;

    /// Erases `user`'s email, display name and bio.
    async fn scrub_account(&self, user: UserId) -> StoreResult<()>;
}

/// Where a data export stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExportState {
    /// Asked for; the worker builds it (again, after a failure).
    Pending,
    /// Built: the archive can be downloaded until it expires.
    Ready,
    /// Gone past its expiry (its archive deleted).
    Expired,
}

impl ExportState {
    pub const ALL: [ExportState; 3] = [
        ExportState::Pending,
        ExportState::Ready,
        ExportState::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ExportState::Pending => "pending",
            ExportState::Ready => "ready",
            ExportState::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == text)
    }
}

/// A data export as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRecord {
    pub id: i64,
    pub user_id: UserId,
    pub state: ExportState,
    pub requested_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// Where the archive is kept in object storage, once built.
    pub archive_key: Option<String>,
    pub size: Option<u64>,
    pub expires_at: Option<Timestamp>,
    /// Failed attempts to build it so far.
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// Data exports: asked for by a person, built by a worker (one at a time
/// per export, by lease), expired after a while.
#[async_trait]
pub trait ExportStore: Send + Sync {
    /// Records a new export of `user` as `Pending`, due at once, unless
    /// one is pending already: then that one comes back (one at a time).
    async fn request_export(
        &self,
        id: i64,
        user: UserId,
        now: Timestamp,
    ) -> StoreResult<ExportRecord>;

    /// `user`'s most recent export.
    async fn latest_export(&self, user: UserId) -> StoreResult<Option<ExportRecord>>;

    /// Pending exports due at `now` that no worker holds, oldest first.
    async fn due_exports(&self, now: Timestamp, limit: usize) -> StoreResult<Vec<ExportRecord>>;

    /// Takes export `id` for one worker until `until`; `false` when held.
    async fn claim_export(&self, id: i64, now: Timestamp, until: Timestamp) -> StoreResult<bool>;

    /// Export `id` is built: `Ready`, with its archive, until `expires_at`.
    async fn export_ready(
        &self,
        id: i64,
        archive_key: &str,
        size: u64,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<()>;

    /// A failed attempt to build export `id`: tried again at `retry_at`.
    async fn export_failed(&self, id: i64, error: &str, retry_at: Timestamp) -> StoreResult<()>;

    /// Ready exports past their expiry at `now`: `(id, archive key)`.
    async fn expired_exports(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> StoreResult<Vec<(i64, String)>>;

    /// Export `id`'s archive is deleted: `Expired`.
    async fn export_expired(&self, id: i64) -> StoreResult<()>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowOutcome {
    Followed { followee_followers: i64 },
    AlreadyFollowing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnfollowOutcome {
    Unfollowed { followee_followers: i64 },
    NotFollowing,
}

#[async_trait]
pub trait GraphStore: Send + Sync {
    /// Idempotent: a second follow changes nothing and commits nothing;
    /// a follow commits what `announce` makes of its outcome.
    /// `follow_id` orders follower/following lists. Errors: `NotFound` (followee).
    async fn follow(
        &self,
        follower: UserId,
        followee: UserId,
        follow_id: i64,
        announce: Announce<FollowOutcome>,
        now: Timestamp,
    ) -> StoreResult<FollowOutcome>;

    /// Idempotent, as `follow`. Errors: `NotFound` (followee).
    async fn unfollow(
        &self,
        follower: UserId,
        followee: UserId,
        announce: Announce<UnfollowOutcome>,
        now: Timestamp,
    ) -> StoreResult<UnfollowOutcome>;

    /// Whether `follower` follows `followee` now.
    async fn is_following(&self, follower: UserId, followee: UserId) -> StoreResult<bool>;

    /// Accounts following `user`, most recent follow first, with the follow's
    /// id as the keyset position; only follows with id < `before`.
    async fn followers(
        &self,
        reader: Option<UserId>,
        user: UserId,
        before: Option<i64>,
        limit: usize,
    ) -> StoreResult<Vec<(i64, User)>>;

    /// Accounts `user` follows, most recent follow first (same keyset as `followers`).
    async fn following(
        &self,
        reader: Option<UserId>,
        user: UserId,
        before: Option<i64>,
        limit: usize,
    ) -> StoreResult<Vec<(i64, User)>>;

    /// Follower ids with their follow's keyset position, oldest follow first,
    /// after position `after`: fan-out walks them in batches.
    async fn follower_ids(
        &self,
        user: UserId,
        after: Option<i64>,
        limit: usize,
    ) -> StoreResult<Vec<(i64, UserId)>>;

    /// The accounts `user` follows that have at least `threshold` followers
    /// (their posts are merged into timelines at read time, not fanned out).
    async fn followed_with_followers_at_least(
        &self,
        user: UserId,
        threshold: i64,
    ) -> StoreResult<Vec<UserId>>;
}

#[derive(Debug, Clone)]
pub struct NewPost {
    pub id: PostId,
    pub author_id: UserId,
    pub text: PostText,
    pub reply_to: Option<PostId>,
    /// Resolved by the use case; stored with the post and named in its event.
    pub mentions: Vec<Mention>,
    /// Ready uploads of the author, checked by the use case and attached
    /// in the post's transaction only if still unattached.
    pub media: Vec<starling_domain::Attachment>,
    pub created_at: Timestamp,
    /// `PostCreated`, committed with the post.
    pub event: NewEvent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted {
        author: UserId,
        reply_to: Option<PostId>,
    },
    NotAuthor,
}

/// Who deletes a post: its author, or a moderator (whose removal is
/// audited in the same transaction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostDeleter {
    Author(UserId),
    Moderator(AuditEntry),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LikeOutcome {
    Liked { post_author: UserId },
    AlreadyLiked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnlikeOutcome {
    Unliked,
    NotLiked,
}

#[async_trait]
pub trait PostStore: Send + Sync {
    /// Stores the post, bumps the author's post count (and the parent's reply
    /// count) and commits its event. Errors: `NotFound` when `reply_to`
    /// names no live post.
    async fn create_post(&self, new_post: NewPost) -> StoreResult<Post>;

    /// Tombstones the post (text erased, row kept for threads) and commits
    /// what `announce` makes of it; an author deletes only their own
    /// (`NotAuthor`), a moderator any, with its audit entry. Errors:
    /// `NotFound` for a missing or deleted post.
    async fn delete_post(
        &self,
        post: PostId,
        requester: PostDeleter,
        announce: Announce<DeleteOutcome>,
        now: Timestamp,
    ) -> StoreResult<DeleteOutcome>;

    /// The posts that exist among `ids`, tombstones included, in no particular order.
    async fn posts_by_ids(&self, ids: &[PostId]) -> StoreResult<Vec<Post>>;

    /// Live posts by `author`, newest first, with id < `before`.
    async fn posts_by_author(
        &self,
        reader: Option<UserId>,
        author: UserId,
        before: Option<PostId>,
        limit: usize,
    ) -> StoreResult<Vec<Post>>;

    /// Live replies to `parent`, oldest first (conversation order), with
    /// id > `after`.
    async fn replies(
        &self,
        reader: Option<UserId>,
        parent: PostId,
        after: Option<PostId>,
        limit: usize,
    ) -> StoreResult<Vec<Post>>;

    /// Like `posts_by_author`, ids only: backfills and read-time merges.
    async fn author_entries(
        &self,
        author: UserId,
        before: Option<PostId>,
        limit: usize,
    ) -> StoreResult<Vec<TimelineEntry>>;

    /// Fan-out on read: live posts by `user` and by everyone `user` follows,
    /// newest first, with id < `before`. With `exclude_followers_at_least`,
    /// followed accounts with at least that many followers are left out
    /// (their posts are merged at read time instead).
    async fn home_entries(
        &self,
        user: UserId,
        exclude_followers_at_least: Option<i64>,
        before: Option<PostId>,
        limit: usize,
    ) -> StoreResult<Vec<TimelineEntry>>;

    /// Idempotent (a second like commits nothing). Errors: `NotFound` for a
    /// missing or deleted post.
    async fn like(
        &self,
        user: UserId,
        post: PostId,
        announce: Announce<LikeOutcome>,
        now: Timestamp,
    ) -> StoreResult<LikeOutcome>;

    /// Idempotent, as `like`. Errors: `NotFound` for a missing or deleted post.
    async fn unlike(
        &self,
        user: UserId,
        post: PostId,
        announce: Announce<UnlikeOutcome>,
        now: Timestamp,
    ) -> StoreResult<UnlikeOutcome>;

    /// Which of `posts` `user` has liked.
    async fn liked_among(&self, user: UserId, posts: &[PostId]) -> StoreResult<Vec<PostId>>;

    /// The posts `user` liked, highest post id first, at most `limit`.
    async fn recent_likes(&self, user: UserId, limit: usize) -> StoreResult<Vec<PostId>>;
}

/// Where an account stands with its notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotificationState {
    /// Every notification with an id up to this one is read (0: none yet).
    pub read_through: i64,
    /// How many are above `read_through`, counted up to the cap asked for.
    pub unread: u64,
}

/// Notifications, written by the notifier and read by their recipient.
/// Unlike the rest of the store, these writes commit no event: they are the
/// effect of one.
#[async_trait]
pub trait NotificationStore: Send + Sync {
    /// Stores the notifications that are new and returns, for each one
    /// given (in order), the id it is stored under: its own when it was new.
    /// One already stored for the same recipient, kind, actor and post stays
    /// as it is (its id comes back), so a redelivered event or a like given
    /// twice notifies once.
    async fn add_notifications(
        &self,
        notifications: &[Notification],
    ) -> StoreResult<Vec<NotificationId>>;

    /// `recipient`'s notifications of the given kinds (all when empty),
    /// newest first, with id < `before`.
    async fn notifications(
        &self,
        recipient: UserId,
        kinds: &[NotificationKind],
        before: Option<NotificationId>,
        limit: usize,
    ) -> StoreResult<Vec<Notification>>;

    /// Marks read every notification of `recipient` up to `through` (up to
    /// the newest when `None`; never beyond the newest) and returns the read
    /// position, which never moves back.
    async fn mark_notifications_read(
        &self,
        recipient: UserId,
        through: Option<NotificationId>,
    ) -> StoreResult<i64>;

    /// The read position and the unread count, counted up to `cap`.
    async fn notification_state(
        &self,
        recipient: UserId,
        cap: u64,
    ) -> StoreResult<NotificationState>;

    /// Removes the `kind` notification by `actor` about `post` when it
    /// happened at or after `since` (an action taken back soon after).
    async fn withdraw_notification(
        &self,
        kind: NotificationKind,
        actor: UserId,
        post: PostId,
        since: Timestamp,
    ) -> StoreResult<u64>;

    /// Removes every notification about `post` (it was deleted).
    async fn remove_post_notifications(&self, post: PostId) -> StoreResult<u64>;
}

/// Blocks and mutes between accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// Hides both accounts from each other and forbids follows between them.
    Block,
    /// Hides the muted account's posts and notifications from the muter.
    Mute,
}

/// The accounts hidden from one viewer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hidden {
    /// Blocked by the viewer, or blocking the viewer.
    pub blocked: Vec<UserId>,
    /// Muted by the viewer.
    pub muted: Vec<UserId>,
}

#[async_trait]
pub trait RelationStore: Send + Sync {
    /// Idempotent; true when it is new. Errors: `NotFound` (the other account).
    async fn add_relation(
        &self,
        relation: Relation,
        owner: UserId,
        other: UserId,
        position: i64,
        now: Timestamp,
    ) -> StoreResult<bool>;

    /// Idempotent; true when there was one.
    async fn remove_relation(
        &self,
        relation: Relation,
        owner: UserId,
        other: UserId,
    ) -> StoreResult<bool>;

    /// The accounts `owner` blocks (or mutes), newest first, with position
    /// < `before`.
    async fn relations(
        &self,
        relation: Relation,
        owner: UserId,
        before: Option<i64>,
        limit: usize,
    ) -> StoreResult<Vec<(i64, User)>>;

    /// Whether either account blocks the other.
    async fn blocked_either_way(&self, first: UserId, second: UserId) -> StoreResult<bool>;

    /// Everyone hidden from `viewer`.
    async fn hidden_from(&self, viewer: UserId) -> StoreResult<Hidden>;
}

/// A response kept for an idempotency key, to answer its retries with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    /// The headers worth replaying (content type, location), as name/value pairs.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What became of claiming an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// New (or expired, or abandoned by a crashed attempt): run the request.
    Claimed,
    /// Another attempt with the same request is running now.
    InProgress,
    /// Answered before: replay this.
    Completed(StoredResponse),
    /// The key was used for a different request.
    Mismatch,
}

/// Idempotency keys: a retried create answers what the first attempt did.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims `key` within `scope` (the caller) for the request whose digest
    /// is `fingerprint`. A key older than `expired_before` counts as new; so
    /// does one still in progress since before `stale_before` (its attempt
    /// died without finishing).
    async fn claim_idempotency_key(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &[u8],
        now: Timestamp,
        stale_before: Timestamp,
        expired_before: Timestamp,
    ) -> StoreResult<IdempotencyClaim>;

    /// Keeps the response of a claimed key.
    async fn complete_idempotency_key(
        &self,
        scope: &str,
        key: &str,
        response: &StoredResponse,
    ) -> StoreResult<()>;

    /// Lets go of a claimed key whose attempt failed in a way worth retrying.
    async fn release_idempotency_key(&self, scope: &str, key: &str) -> StoreResult<()>;

    /// Deletes keys created before `expired_before`; returns how many went.
    async fn prune_idempotency_keys(&self, expired_before: Timestamp) -> StoreResult<u64>;
}

/// An outbox row this version cannot read (written by a newer release, or damaged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UndecodableEvent {
    pub sequence: i64,
    pub id: EventId,
    pub kind: String,
    pub payload: String,
    pub error: String,
}

/// The outbox as a log: read in commit order, with a checkpoint per consumer.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Events with sequence > `after`, in sequence order, at most `limit`.
    /// A row this version cannot decode comes back as an error in its place,
    /// so that one bad row cannot stop the log.
    async fn events_after(
        &self,
        after: i64,
        limit: usize,
    ) -> StoreResult<Vec<Result<EventEnvelope, UndecodableEvent>>>;

    /// The last sequence `consumer` has handled (0 when it never ran).
    async fn checkpoint(&self, consumer: &str) -> StoreResult<i64>;

    /// Records that `consumer` handled every event up to `sequence`. Never moves back.
    async fn save_checkpoint(&self, consumer: &str, sequence: i64) -> StoreResult<()>;

    /// How many events `consumer` has not handled yet, and when the oldest
    /// of them happened (`None` when there are none).
    async fn backlog(&self, consumer: &str) -> StoreResult<(u64, Option<Timestamp>)>;

    /// Parks a row that could not be decoded, so the rest of the log flows.
    async fn dead_letter_undecodable(
        &self,
        consumer: &str,
        row: &UndecodableEvent,
        now: Timestamp,
    ) -> StoreResult<()>;

    /// Parks an event that kept failing, so the rest of the log flows.
    async fn dead_letter(
        &self,
        consumer: &str,
        envelope: &EventEnvelope,
        error: &str,
        now: Timestamp,
    ) -> StoreResult<()>;

    /// Deletes events every consumer in `consumers` has handled and that are
    /// older than `older_than`; returns how many went.
    async fn prune_outbox(&self, consumers: &[&str], older_than: Timestamp) -> StoreResult<u64>;

    /// Appends an event outside any other change (used by tests and tools).
    async fn append_event(&self, id: EventId, event: &Event, now: Timestamp) -> StoreResult<()>;

    /// From now on, `listener` is called after every commit that appended
    /// events (the event log's wake), so that no use case has to remember
    /// to. Set once, at start; a second listener is ignored.
    fn notify_commits(&self, listener: CommitListener);
}

/// Told that events were committed (see `OutboxStore::notify_commits`).
pub type CommitListener = std::sync::Arc<dyn Fn() + Send + Sync>;

/// Which uploads to remove.
#[derive(Debug, Clone, Copy)]
pub enum MediaSelection {
    /// One upload (a failed upload's compensation).
    One(MediaId),
    /// Uploads never attached to a post, or detached by its deletion,
    /// created before the time; at most `limit`.
    UnattachedBefore { before: Timestamp, limit: usize },
    /// Uploads of `owner` (its account is deleted); at most `limit`.
    OwnedBy { owner: UserId, limit: usize },
}

/// Uploaded images. A row is made before its file is stored, so that a file
/// is never in storage without a row naming it (except while removal is
/// under way).
#[async_trait]
pub trait MediaStore: Send + Sync {
    /// Records an upload in state `Uploading`, before its file is stored.
    async fn add_media(&self, media: &Media) -> StoreResult<()>;

    /// Its file is stored: state `Processing`, and `event` committed with
    /// it (`MediaUploaded`, the thumbnailer's cue).
    async fn media_stored(&self, id: MediaId, event: NewEvent, now: Timestamp) -> StoreResult<()>;

    async fn media_by_ids(&self, ids: &[MediaId]) -> StoreResult<Vec<Media>>;

    /// Records the thumbnail and makes the upload `Ready`; false when the
    /// upload is gone or was not `Processing`.
    async fn set_thumbnail(&self, id: MediaId, thumbnail: &MediaFile) -> StoreResult<bool>;

    /// Removes the selected uploads and, for every file no remaining upload
    /// names, deletes it from `files` before the removal commits, while no
    /// new upload of the same file can commit its row (so a concurrent
    /// upload of identical bytes never loses its file). Returns how many
    /// uploads were removed.
    async fn remove_media(
        &self,
        which: MediaSelection,
        files: &dyn crate::ports::BlobStore,
    ) -> StoreResult<u64>;
}
