//! Posts: create, delete, like, and read one post or one author's posts.

mod create;
pub(crate) use delete::deleted;
#[cfg(feature = "contract-tests")]
pub(crate) use like::{liked, unliked};
mod delete;
pub use delete::REASON_MAX_CHARS;
pub(crate) use delete::moderation_reason;
mod like;
mod read;

use std::sync::Arc;

use starling_domain::{IdGenerator, Post, PostId};

use crate::feed::{Feed, Hydration};
use crate::graph::Hiding;
use crate::media::MediaLibrary;
use crate::ports::{AccountStore, AdminStore, Cache, Cached, PostStore, RelationStore};

/// Posts as a service: writing, liking and deleting them, and reading one
/// post, an author's posts or a thread. A new post reaches its author's
/// timeline through the feed service; its images come from the media
/// service; what it shows is hydrated and filtered by those services.
pub struct Posts {
    posts: Arc<dyn PostStore>,
    accounts: Arc<dyn AccountStore>,
    /// Asked directly (not through the cache) by the checks that decide a
    /// write: see `post_to_act_on`.
    relations: Arc<dyn RelationStore>,
    /// Roles, for a moderator's removal.
    staff: Arc<dyn AdminStore>,
    post_cache: Arc<dyn Cache<PostId, Cached<Arc<Post>>>>,
    ids: Arc<IdGenerator>,
    hiding: Arc<Hiding>,
    hydration: Arc<Hydration>,
    media: Arc<MediaLibrary>,
    feed: Arc<Feed>,
}

/// What `Posts` is built from besides the store.
pub struct PostsParts {
    pub post_cache: Arc<dyn Cache<PostId, Cached<Arc<Post>>>>,
    pub ids: Arc<IdGenerator>,
    pub hiding: Arc<Hiding>,
    pub hydration: Arc<Hydration>,
    pub media: Arc<MediaLibrary>,
    pub feed: Arc<Feed>,
}

impl Posts {
    pub fn new(store: Arc<dyn crate::ports::Store>, parts: PostsParts) -> Self {
        Self {
            posts: store.clone(),
            accounts: store.clone(),
            staff: store.clone(),
            relations: store,
            post_cache: parts.post_cache,
            ids: parts.ids,
            hiding: parts.hiding,
            hydration: parts.hydration,
            media: parts.media,
            feed: parts.feed,
        }
    }
}
