//! Blocks and mutes. A block removes follows both ways, stops new ones, and
//! hides the two accounts from each other everywhere (answering 404, so the
//! block is not revealed); a mute hides the muted account's posts and
//! notifications from the muter only. Both apply at read time, so they
//! cover what timelines already hold, not only what comes after.

use starling_domain::{Timestamp, User, UserId, ValidationErrors};

use crate::error::AppResult;
use crate::graph::Graph;
use crate::page::Page;
use crate::ports::Relation;

impl Graph {
    #[tracing::instrument(skip_all, fields(owner = %owner, other = %other))]
    pub async fn block(&self, owner: UserId, other: UserId) -> AppResult<()> {
        self.relate(Relation::Block, owner, other).await?;
        // Follows both ways go, as unfollows do (events, counters, timelines).
        // Done after the block row exists, so no follow can slip in between;
        // a block repeated after a crash finishes what was left.
        self.unfollow(owner, other).await?;
        self.unfollow(other, owner).await?;
        Ok(())
    }

    pub async fn unblock(&self, owner: UserId, other: UserId) -> AppResult<()> {
        self.unrelate(Relation::Block, owner, other).await
    }

    pub async fn mute(&self, owner: UserId, other: UserId) -> AppResult<()> {
        self.relate(Relation::Mute, owner, other).await
    }

    pub async fn unmute(&self, owner: UserId, other: UserId) -> AppResult<()> {
        self.unrelate(Relation::Mute, owner, other).await
    }

    /// Whom `owner` blocks (or mutes), most recent first.
    pub async fn relations(
        &self,
        relation: Relation,
        owner: UserId,
        before: Option<i64>,
        limit: usize,
    ) -> AppResult<Page<User>> {
        let rows = self
            .relations
            .relations(relation, owner, before, limit + 1)
            .await?;
        let page = Page::from_overfetch(rows, limit, |(position, _)| *position);
        Ok(Page {
            items: page.items.into_iter().map(|(_, user)| user).collect(),
            next: page.next,
        })
    }

    async fn relate(&self, relation: Relation, owner: UserId, other: UserId) -> AppResult<()> {
        if owner == other {
            let what = match relation {
                Relation::Block => "you cannot block yourself",
                Relation::Mute => "you cannot mute yourself",
            };
            return Err(ValidationErrors::single("id", what).into());
        }
        self.relations
            .add_relation(
                relation,
                owner,
                other,
                self.ids.next_raw(),
                Timestamp::now(),
            )
            .await?;
        self.hiding.forget(relation, owner, other).await;
        Ok(())
    }

    async fn unrelate(&self, relation: Relation, owner: UserId, other: UserId) -> AppResult<()> {
        if owner == other {
            return Ok(());
        }
        crate::accounts::existing_user(self.accounts.as_ref(), other).await?;
        self.relations
            .remove_relation(relation, owner, other)
            .await?;
        self.hiding.forget(relation, owner, other).await;
        Ok(())
    }
}
