//! Who is hidden from whom: the read side of blocks and mutes, asked by
//! every use case that shows accounts, posts or notifications to a viewer.
//! A service of its own because it is everyone's dependency and needs only
//! the relation rows and their cache.

use std::collections::HashSet;
use std::sync::Arc;

use starling_domain::UserId;

use crate::error::{AppError, AppResult};
use crate::ports::{Cache, Relation, RelationStore};

/// The accounts hidden from one viewer.
#[derive(Debug, Clone, Default)]
pub struct HiddenAccounts {
    /// Blocked by the viewer or blocking the viewer: hidden everywhere.
    pub blocked: HashSet<UserId>,
    /// Muted by the viewer: hidden from their feed, replies and notifications.
    pub muted: HashSet<UserId>,
}

impl HiddenAccounts {
    /// Whether posts and notifications by `author` stay out of view.
    pub fn hides_content_of(&self, author: UserId) -> bool {
        self.blocked.contains(&author) || self.muted.contains(&author)
    }
}

pub struct Hiding {
    relations: Arc<dyn RelationStore>,
    cache: Arc<dyn Cache<UserId, Arc<HiddenAccounts>>>,
}

impl Hiding {
    pub fn new(
        relations: Arc<dyn RelationStore>,
        cache: Arc<dyn Cache<UserId, Arc<HiddenAccounts>>>,
    ) -> Self {
        Self { relations, cache }
    }

    /// Who is hidden from `viewer`, through the cache (dropped on every
    /// change of the viewer's blocks and mutes, and of blocks of the viewer).
    pub async fn hidden_from(&self, viewer: UserId) -> AppResult<Arc<HiddenAccounts>> {
        if let Some(Some(hidden)) = self.cache.get_many(&[viewer]).await.pop() {
            return Ok(hidden);
        }
        let stored = self.relations.hidden_from(viewer).await?;
        let hidden = Arc::new(HiddenAccounts {
            blocked: stored.blocked.into_iter().collect(),
            muted: stored.muted.into_iter().collect(),
        });
        self.cache.fill_many(vec![(viewer, hidden.clone())]).await;
        Ok(hidden)
    }

    /// `NotFound("user")` when `viewer` and `other` block each other either
    /// way: what a viewer sees of an account that is not there.
    pub async fn ensure_not_blocked(&self, viewer: Option<UserId>, other: UserId) -> AppResult<()> {
        if let Some(viewer) = viewer
            && viewer != other
            && self.hidden_from(viewer).await?.blocked.contains(&other)
        {
            return Err(AppError::NotFound("user"));
        }
        Ok(())
    }

    /// Drops what the cache holds for the accounts a changed relation hides
    /// from (a block hides both ways, a mute from its owner only).
    pub(crate) async fn forget(&self, relation: Relation, owner: UserId, other: UserId) {
        self.cache.invalidate(&owner).await;
        if relation == Relation::Block {
            self.cache.invalidate(&other).await;
        }
    }
}
