//! The application object: ports, settings and the services built on them.

use std::sync::Arc;

use starling_domain::{IdGenerator, Post, PostId, UserId, UserSummary};

use crate::accounts::{Accounts, AccountsParts, LoginBackoff};
use crate::admin::Admin;
use crate::auth::{AccessTokens, PasswordHashing};
use crate::export::DataExports;
use crate::feed::{Feed, Hydration, LikedPosts};
use crate::graph::{Graph, HiddenAccounts, Hiding};
use crate::media::MediaLibrary;
use crate::notifications::Notifications;
use crate::ports::{
    BlobStore, Cache, Cached, EventLog, LiveLog, LoginFailures, Store, TimelineEntry, TimelineStore,
};
use crate::posts::{Posts, PostsParts};

/// Tunables of the use cases.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Entries kept per home timeline (newest first).
    pub timeline_cap: usize,
    /// Accounts with at least this many followers are not fanned out on
    /// write; their posts are merged into timelines at read time.
    pub fanout_threshold: i64,
    pub refresh_token_ttl_secs: i64,
    /// A session's absolute lifetime: refreshes do not carry it further.
    pub session_max_age_secs: i64,
    /// How long after a refresh the same refresh token may be presented
    /// again as a retry of it (its answer lost) without ending the session.
    pub refresh_retry_grace_secs: i64,
    /// How long an API key checked is trusted before it is read again
    /// (and its last use recorded).
    pub api_key_recheck: std::time::Duration,
    /// Likes remembered per reader for `liked_by_me` (older ones are asked of SQL).
    pub liked_window: usize,
    pub media: crate::media::MediaSettings,
    pub login_backoff: LoginBackoff,
    pub exports: crate::export::ExportSettings,
}

impl Settings {
    /// Accounts with at least this many followers are merged at read time:
    /// a band (a tenth of the threshold, at least one follower) below the
    /// fan-out threshold. In the band an account's posts are both fanned
    /// out and merged (reads drop the duplicates), so crossing the threshold
    /// either way leaves no moment in which a reader gets them from neither
    /// source: not while followers' timelines are backfilled after it drops
    /// below, nor while readers' cached lists catch up as it rises.
    pub fn merge_threshold(&self) -> i64 {
        (self.fanout_threshold - (self.fanout_threshold / 10).max(1)).max(1)
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            timeline_cap: 800,
            fanout_threshold: 10_000,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            session_max_age_secs: 90 * 24 * 3600,
            refresh_retry_grace_secs: 30,
            api_key_recheck: std::time::Duration::from_secs(10),
            liked_window: 1_000,
            media: crate::media::MediaSettings::default(),
            login_backoff: LoginBackoff::default(),
            exports: crate::export::ExportSettings::default(),
        }
    }
}

/// The read-side caches. Each may forget anything at any time.
#[derive(Clone)]
pub struct Caches {
    pub posts: Arc<dyn Cache<PostId, Cached<Arc<Post>>>>,
    pub users: Arc<dyn Cache<UserId, Arc<UserSummary>>>,
    /// Per reader: the followed accounts above the fan-out threshold.
    pub high_fanout_followees: Arc<dyn Cache<UserId, Arc<Vec<UserId>>>>,
    /// Per author: their most recent posts, for read-time merging.
    pub author_recent: Arc<dyn Cache<UserId, Arc<Vec<TimelineEntry>>>>,
    /// Per reader: the posts they liked recently (`liked_by_me`).
    pub likes: Arc<dyn Cache<UserId, Arc<LikedPosts>>>,
    /// Per viewer: the accounts blocked either way, and muted.
    pub hidden: Arc<dyn Cache<UserId, Arc<HiddenAccounts>>>,
}

/// The adapters the use cases run on.
#[derive(Clone)]
pub struct Ports {
    pub store: Arc<dyn Store>,
    pub timelines: Arc<dyn TimelineStore>,
    pub events: Arc<dyn EventLog>,
    /// Where workers publish live updates for streaming clients.
    pub live: Arc<dyn LiveLog>,
    /// Image files (object storage).
    pub blobs: Arc<dyn BlobStore>,
    pub caches: Caches,
    /// Failed logins per account, for the login back-off.
    pub login_failures: Arc<dyn LoginFailures>,
}

/// The composition of the services: built once from the ports, settings
/// and credentials, and handed to the HTTP layer and the workers.
pub struct App {
    ports: Ports,
    ids: Arc<IdGenerator>,
    settings: Settings,
    hydration: Arc<Hydration>,
    notifications: Arc<Notifications>,
    feed: Arc<Feed>,
    graph: Graph,
    posts: Posts,
    accounts: Arc<Accounts>,
    admin: Admin,
    exports: Arc<DataExports>,
    media: Arc<MediaLibrary>,
    hiding: Arc<Hiding>,
}

impl App {
    pub fn new(
        ports: Ports,
        ids: IdGenerator,
        passwords: PasswordHashing,
        tokens: AccessTokens,
        settings: Settings,
    ) -> Self {
        // The event log is woken by the store's commits, not by each use
        // case after it writes. (Weak: the log may hold the store.)
        let log = Arc::downgrade(&ports.events);
        ports.store.notify_commits(Arc::new(move || {
            if let Some(log) = log.upgrade() {
                log.wake();
            }
        }));
        let ids = Arc::new(ids);
        let media = Arc::new(MediaLibrary::new(
            ports.store.clone(),
            ports.blobs.clone(),
            ids.clone(),
            settings.media.clone(),
        ));
        let hiding = Arc::new(Hiding::new(
            ports.store.clone(),
            ports.caches.hidden.clone(),
        ));
        let hydration = Arc::new(Hydration::new(
            ports.store.clone(),
            &ports.caches,
            settings.liked_window,
        ));
        let notifications = Arc::new(Notifications::new(
            ports.store.clone(),
            hiding.clone(),
            hydration.clone(),
        ));
        let feed = Arc::new(Feed::new(
            ports.store.clone(),
            ports.timelines.clone(),
            &ports.caches,
            hiding.clone(),
            hydration.clone(),
            &settings,
        ));
        let graph = Graph::new(
            ports.store.clone(),
            ids.clone(),
            hiding.clone(),
            feed.clone(),
        );
        let posts = Posts::new(
            ports.store.clone(),
            PostsParts {
                post_cache: ports.caches.posts.clone(),
                ids: ids.clone(),
                hiding: hiding.clone(),
                hydration: hydration.clone(),
                media: media.clone(),
                feed: feed.clone(),
            },
        );
        let accounts = Arc::new(Accounts::new(
            ports.store.clone(),
            AccountsParts {
                login_failures: ports.login_failures.clone(),
                live: ports.live.clone(),
                user_cache: ports.caches.users.clone(),
                ids: ids.clone(),
                passwords,
                tokens,
                hiding: hiding.clone(),
                refresh_token_ttl_secs: settings.refresh_token_ttl_secs,
                session_max_age_secs: settings.session_max_age_secs,
                refresh_retry_grace_secs: settings.refresh_retry_grace_secs,
                api_key_recheck: settings.api_key_recheck,
                login_backoff: settings.login_backoff,
            },
        ));
        let admin = Admin::new(
            ports.store.clone(),
            accounts.clone(),
            ports.caches.users.clone(),
            ids.clone(),
        );
        let exports = Arc::new(DataExports::new(
            ports.store.clone(),
            ports.blobs.clone(),
            ids.clone(),
            settings.exports,
        ));
        Self {
            ports,
            ids,
            settings,
            notifications,
            feed,
            graph,
            posts,
            accounts,
            admin,
            exports,
            hydration,
            media,
            hiding,
        }
    }

    /// Who is hidden from whom (blocks and mutes, read side).
    pub fn hiding(&self) -> &Arc<Hiding> {
        &self.hiding
    }

    /// Images: uploads, thumbnails, files, the sweep.
    pub fn media(&self) -> &Arc<MediaLibrary> {
        &self.media
    }

    /// Registration, sessions, access tokens and profiles.
    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    /// The same, shared (for the workers that end sessions).
    pub(crate) fn accounts_service(&self) -> &Arc<Accounts> {
        &self.accounts
    }

    /// Staff's use cases: accounts, suspension, roles, the audit log.
    pub fn admin(&self) -> &Admin {
        &self.admin
    }

    /// Data exports: asked for, built, downloaded, expired.
    pub fn exports(&self) -> &Arc<DataExports> {
        &self.exports
    }

    /// Writing, liking, deleting and reading posts.
    pub fn posts(&self) -> &Posts {
        &self.posts
    }

    /// Follows, blocks and mutes.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The home timeline: reading it and keeping it right.
    pub fn feed(&self) -> &Arc<Feed> {
        &self.feed
    }

    /// The recipient's side of notifications.
    pub fn notifications(&self) -> &Arc<Notifications> {
        &self.notifications
    }

    /// Posts ready to show: loads through the caches, authors, likes.
    pub fn hydration(&self) -> &Arc<Hydration> {
        &self.hydration
    }

    /// The id generator the services share (for the workers built here).
    pub(crate) fn ids(&self) -> &Arc<IdGenerator> {
        &self.ids
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn ports(&self) -> &Ports {
        &self.ports
    }
}
