//! The account-deletion saga's runner. A deletion is a row at the step to
//! run next (`ports::DeletionStep`); the runner takes a due one (a lease,
//! so two instances never run it at once), runs its steps in order, and
//! records each step's completion before the next starts. Every step is
//! idempotent and works in bounded batches, so a process killed anywhere
//! leaves a row the next runner resumes from the start of that step. A
//! step that fails (object storage down, the database away) is recorded
//! with its error and tried again after a jittered, doubling back-off; the
//! state is visible to staff (`GET /admin/accounts/{id}`).
//!
//! What a step removes goes through the same writes as a person's own
//! actions (an unfollow, a post's delete), so counters stay exact and the
//! events reach the fan-out worker, the notifier and live streams as
//! usual.

use std::sync::Arc;
use std::time::Duration;

use starling_domain::{IdGenerator, Post, PostId, Timestamp, UserId, UserSummary};
use tokio_util::sync::CancellationToken;

use crate::accounts::Accounts;
use crate::error::{AppError, AppResult};
use crate::feed::Feed;
use crate::graph::Hiding;
use crate::ports::{
    BlobStore, Cache, Cached, DeletionRecord, DeletionStep, MediaSelection, PostDeleter, Relation,
    Store, StoreError,
};

/// How the runner paces itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeletionSettings {
    /// Rows (follows, posts, likes, uploads) per batch.
    pub batch_size: usize,
    /// A pause between batches, so that deleting a large account leaves
    /// the database to everyone else.
    pub batch_pause: Duration,
    /// How long a deleted account's handle stays reserved before anyone
    /// may register it (so nobody poses as the account just gone).
    pub handle_quarantine: Duration,
    /// How often the runner looks for due deletions.
    pub poll: Duration,
    /// How long a runner holds a deletion it took, renewed per batch: a
    /// runner that dies leaves it to another after this.
    pub lease: Duration,
    /// The first retry's ceiling after a failure; doubled per failure.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for DeletionSettings {
    fn default() -> Self {
        Self {
            batch_size: 500,
            batch_pause: Duration::from_millis(10),
            handle_quarantine: Duration::from_secs(30 * 24 * 3600),
            poll: Duration::from_secs(1),
            lease: Duration::from_secs(30),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
        }
    }
}

/// The runner, with what its steps touch.
pub struct AccountDeletions {
    store: Arc<dyn Store>,
    accounts: Arc<Accounts>,
    feed: Arc<Feed>,
    hiding: Arc<Hiding>,
    blobs: Arc<dyn BlobStore>,
    post_cache: Arc<dyn Cache<PostId, Cached<Arc<Post>>>>,
    user_cache: Arc<dyn Cache<UserId, Arc<UserSummary>>>,
    ids: Arc<IdGenerator>,
    settings: DeletionSettings,
}

impl AccountDeletions {
    pub fn new(app: &crate::App, settings: DeletionSettings) -> Self {
        let ports = app.ports();
        Self {
            store: ports.store.clone(),
            accounts: app.accounts_service().clone(),
            feed: app.feed().clone(),
            hiding: app.hiding().clone(),
            blobs: ports.blobs.clone(),
            post_cache: ports.caches.posts.clone(),
            user_cache: ports.caches.users.clone(),
            ids: app.ids().clone(),
            settings,
        }
    }

    /// Runs due deletions until `stop` is cancelled.
    pub async fn run(self, stop: CancellationToken) {
        // Every step's counters show from the start, so that a rule on
        // failures sees the first one.
        for step in DeletionStep::ALL
            .into_iter()
            .filter(|step| *step != DeletionStep::Done)
        {
            for outcome in ["done", "failed"] {
                metrics::counter!(crate::metric::ACCOUNT_DELETION_STEPS_TOTAL, "step" => step.as_str(), "outcome" => outcome)
                    .increment(0);
            }
        }
        loop {
            // A stop does not wait for a long step: dropping it midway is
            // safe (steps are idempotent; its lease lapses and whoever runs
            // next resumes the step).
            tokio::select! {
                () = stop.cancelled() => return,
                result = self.run_due() => {
                    if let Err(error) = result {
                        tracing::warn!(error = %error, "cannot look for account deletions");
                    }
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(self.settings.poll) => {}
            }
        }
    }

    /// Runs every deletion due now as far as it goes; how many it took.
    pub async fn run_due(&self) -> AppResult<usize> {
        let due = self.store.due_deletions(Timestamp::now(), 16).await?;
        let mut taken = 0;
        for deletion in due {
            let now = Timestamp::now();
            let until = now.plus(self.settings.lease);
            if !self
                .store
                .claim_deletion(deletion.user_id, now, until)
                .await?
            {
                continue;
            }
            taken += 1;
            self.run_one(deletion).await?;
        }
        Ok(taken)
    }

    /// Runs `deletion`'s steps from where it is, until it is done, waits
    /// (the quarantine), or a step fails (recorded, retried later).
    async fn run_one(&self, deletion: DeletionRecord) -> AppResult<()> {
        let user = deletion.user_id;
        let mut step = deletion.step;
        let mut failures = deletion.attempts;
        while step != DeletionStep::Done {
            let label = step.as_str();
            match self.run_step(user, step).await {
                Ok(()) => {
                    metrics::counter!(crate::metric::ACCOUNT_DELETION_STEPS_TOTAL, "step" => label, "outcome" => "done")
                        .increment(1);
                    let next = step.next();
                    let now = Timestamp::now();
                    let due = match next {
                        DeletionStep::ReleaseHandle => now.plus(self.settings.handle_quarantine),
                        _ => now,
                    };
                    if !self
                        .store
                        .advance_deletion(user, step, next, due, now)
                        .await?
                    {
                        // Another runner moved it (its lease ran out on us).
                        return Ok(());
                    }
                    tracing::info!(user_id = %user, step = label, "account deletion step done");
                    if due > now {
                        return Ok(());
                    }
                    // The lease went with the step: take the next one afresh
                    // (another runner may have, in the moment between).
                    let until = now.plus(self.settings.lease);
                    if !self.store.claim_deletion(user, now, until).await? {
                        return Ok(());
                    }
                    step = next;
                    failures = 0;
                }
                Err(error) => {
                    metrics::counter!(crate::metric::ACCOUNT_DELETION_STEPS_TOTAL, "step" => label, "outcome" => "failed")
                        .increment(1);
                    let wait = crate::resilience::job_retry_wait(
                        self.settings.initial_backoff,
                        self.settings.max_backoff,
                        failures,
                    );
                    tracing::warn!(user_id = %user, step = label, error = %error, retry_in_ms = wait.as_millis() as u64, "account deletion step failed");
                    let retry_at = Timestamp::now().plus(wait);
                    self.store
                        .deletion_failed(user, step, &error.to_string(), retry_at)
                        .await?;
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    async fn run_step(&self, user: UserId, step: DeletionStep) -> AppResult<()> {
        match step {
            DeletionStep::RevokeCredentials => self.revoke_credentials(user).await,
            DeletionStep::RemoveFollows => self.remove_follows(user).await,
            DeletionStep::PurgeTimelines => self.purge_timelines(user).await,
            DeletionStep::DeletePosts => self.delete_posts(user).await,
            DeletionStep::DeleteMedia => self.delete_media(user).await,
            DeletionStep::ReleaseHandle => Ok(self.store.release_handle(user).await?),
            DeletionStep::Tombstone => {
                self.store.scrub_account(user).await?;
                self.user_cache.invalidate(&user).await;
                Ok(())
            }
            DeletionStep::Done => Ok(()),
        }
    }

    /// Between batches: a pause, and the lease held on.
    async fn pause(&self, user: UserId) -> AppResult<()> {
        tokio::time::sleep(self.settings.batch_pause).await;
        let until = Timestamp::now().plus(self.settings.lease);
        self.store.renew_deletion_lease(user, until).await?;
        Ok(())
    }

    /// Sessions ended when the deletion began; a session opened in a race
    /// with it, and every API key, end here.
    async fn revoke_credentials(&self, user: UserId) -> AppResult<()> {
        let now = Timestamp::now();
        let ended = self.store.revoke_sessions_of(user, None, now).await?;
        self.accounts.sessions_ended(user, &ended, "deleted").await;
        self.store.revoke_api_keys_of(user, now).await?;
        Ok(())
    }

    /// Each follow from or to the account, removed as its follower would
    /// unfollow (counters and the `Unfollowed` event with it), and the
    /// account's posts taken out of each former follower's timeline at
    /// once (the event's handler does it again, idempotently, should this
    /// process die first).
    async fn remove_follows(&self, user: UserId) -> AppResult<()> {
        loop {
            let follows = self
                .store
                .follows_of(user, self.settings.batch_size)
                .await?;
            if follows.is_empty() {
                return Ok(());
            }
            for (follower, followee) in follows {
                let announce =
                    crate::graph::unfollowed(self.ids.next_event_id(), follower, followee);
                self.store
                    .unfollow(follower, followee, announce, Timestamp::now())
                    .await?;
                self.feed.forget_high_fanout_followees(follower).await;
                if followee == user {
                    self.feed.timelines().remove_author(follower, user).await?;
                }
            }
            self.pause(user).await?;
        }
    }

    /// The account's own timeline, and the caches of its recent posts.
    async fn purge_timelines(&self, user: UserId) -> AppResult<()> {
        self.feed.timelines().evict(user).await?;
        self.feed.forget_authors_recent(&[user]).await;
        Ok(())
    }

    /// Posts tombstoned as their author would delete them (replies by
    /// others stay, answering a deleted post), then likes, blocks, mutes
    /// and notifications to and from the account.
    async fn delete_posts(&self, user: UserId) -> AppResult<()> {
        loop {
            let posts = self
                .store
                .author_entries(user, None, self.settings.batch_size)
                .await?;
            if posts.is_empty() {
                break;
            }
            for entry in posts {
                let post = entry.post_id;
                let announce = crate::posts::deleted(self.ids.next_event_id(), post);
                match self
                    .store
                    .delete_post(post, PostDeleter::Author(user), announce, Timestamp::now())
                    .await
                {
                    Ok(_) | Err(StoreError::NotFound(_)) => {}
                    Err(error) => return Err(error.into()),
                }
                self.post_cache
                    .put_many(vec![(
                        post,
                        Cached::Found(Arc::new(Post::tombstone(post, user))),
                    )])
                    .await;
            }
            self.pause(user).await?;
        }
        loop {
            let liked = self
                .store
                .remove_likes_of(user, self.settings.batch_size)
                .await?;
            if liked.is_empty() {
                break;
            }
            for post in liked {
                self.post_cache.invalidate(&post).await;
            }
            self.pause(user).await?;
        }
        let related = self.store.remove_relations_of(user).await?;
        for other in related {
            self.hiding.forget(Relation::Block, user, other).await;
        }
        Ok(())
    }

    /// Uploads and their files; a file store that fails fails the step
    /// (retried), and the rows stay until their files are gone.
    async fn delete_media(&self, user: UserId) -> AppResult<()> {
        let batch = self.settings.batch_size;
        loop {
            let removed = self
                .store
                .remove_media(
                    MediaSelection::OwnedBy {
                        owner: user,
                        limit: batch,
                    },
                    self.blobs.as_ref(),
                )
                .await
                .map_err(AppError::from)?;
            if removed == 0 {
                return Ok(());
            }
            self.pause(user).await?;
        }
    }
}
