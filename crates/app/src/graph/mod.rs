//! The follow graph: follow, unfollow, the lists of followers and followees,
//! and blocks and mutes.

mod follow;
#[cfg(feature = "contract-tests")]
pub(crate) use follow::followed;
pub(crate) use follow::unfollowed;
mod hiding;
mod lists;
mod relations;

pub use hiding::{HiddenAccounts, Hiding};

use std::sync::Arc;

use starling_domain::IdGenerator;

use crate::feed::Feed;
use crate::ports::{AccountStore, GraphStore, RelationStore};

/// The follow graph as a service: follows and their lists, blocks and
/// mutes. A follow changes the follower's timeline at once through the
/// feed service (the fan-out worker repeats it from the event).
pub struct Graph {
    follows: Arc<dyn GraphStore>,
    relations: Arc<dyn RelationStore>,
    accounts: Arc<dyn AccountStore>,
    ids: Arc<IdGenerator>,
    hiding: Arc<Hiding>,
    feed: Arc<Feed>,
}

impl Graph {
    pub fn new(
        store: Arc<dyn crate::ports::Store>,
        ids: Arc<IdGenerator>,
        hiding: Arc<Hiding>,
        feed: Arc<Feed>,
    ) -> Self {
        Self {
            follows: store.clone(),
            relations: store.clone(),
            accounts: store,
            ids,
            hiding,
            feed,
        }
    }
}
