//! Group commit for new posts, shared by both SQL engines. Concurrent
//! `create_post` calls queue here; a writer task takes whatever has queued
//! (up to a batch size, `MAX_BATCH` by default), writes it as one transaction, then answers each
//! caller. A post is answered only after its transaction commits, so a 2xx
//! still means durable; one commit (one WAL flush) carries many posts where
//! each used to pay its own.
//!
//! If a batch fails as a whole, its posts are written one by one, so one
//! bad post (say, by an account that no longer exists) fails alone.

use std::sync::Arc;

use async_trait::async_trait;
use starling_app::ports::{NewPost, StoreError};
use starling_domain::Post;
use tokio::sync::{Mutex, mpsc, oneshot};

/// Posts written per transaction at most, by default.
pub(crate) const MAX_BATCH: usize = 64;

pub(crate) struct Pending {
    pub(crate) post: NewPost,
    answer: oneshot::Sender<Result<Post, StoreError>>,
}

/// Writes a batch of new posts in one transaction: each post's outcome
/// (a post may fail alone, e.g. replying to a post that is gone), or an
/// error for the whole batch.
#[async_trait]
pub(crate) trait WriteBatch: Send + Sync + 'static {
    async fn write(&self, batch: &[Pending]) -> Result<Vec<Result<Post, StoreError>>, StoreError>;
}

/// Where new posts queue for the writer tasks.
#[derive(Clone)]
pub(crate) struct PostQueue(mpsc::Sender<Pending>);

impl PostQueue {
    /// Starts `writers` tasks taking batches off one queue: one for an
    /// engine with a single writer (SQLite); a few for one that commits
    /// in parallel (PostgreSQL), so one batch fills while another commits.
    /// A batch of 1 is a transaction per post, as without group commit.
    pub(crate) fn start(
        writer: Arc<dyn WriteBatch>,
        writers: usize,
        max_batch: usize,
        commits: crate::CommitSignal,
    ) -> Self {
        let max_batch = max_batch.max(1);
        let (queue, pending) = mpsc::channel(max_batch * 16);
        let pending = Arc::new(Mutex::new(pending));
        for _ in 0..writers.max(1) {
            tokio::spawn(write_batches(
                writer.clone(),
                pending.clone(),
                max_batch,
                commits.clone(),
            ));
        }
        Self(queue)
    }

    /// Queues `post` and waits for its outcome.
    pub(crate) async fn create(&self, post: NewPost) -> Result<Post, StoreError> {
        let (answer, outcome) = oneshot::channel();
        let pending = Pending { post, answer };
        let closed = || StoreError::Unavailable(anyhow::anyhow!("the store is closed"));
        self.0.send(pending).await.map_err(|_| closed())?;
        outcome.await.map_err(|_| closed())?
    }
}

async fn write_batches(
    writer: Arc<dyn WriteBatch>,
    pending: Arc<Mutex<mpsc::Receiver<Pending>>>,
    max_batch: usize,
    commits: crate::CommitSignal,
) {
    let mut batch = Vec::with_capacity(max_batch);
    loop {
        // Only the taking is under the lock: another task fills its batch
        // while this one writes.
        if pending.lock().await.recv_many(&mut batch, max_batch).await == 0 {
            return;
        }
        metrics::histogram!(starling_app::metric::POST_COMMIT_BATCH_SIZE)
            .record(batch.len() as f64);
        match writer.write(&batch).await {
            Ok(outcomes) => {
                commits.committed();
                for (entry, outcome) in batch.drain(..).zip(outcomes) {
                    let _ = entry.answer.send(outcome);
                }
            }
            Err(_) if batch.len() > 1 => {
                for entry in batch.drain(..) {
                    let outcome =
                        match writer.write(std::slice::from_ref(&entry)).await {
                            Ok(mut outcomes) => {
                                commits.committed();
                                outcomes.pop().unwrap_or(Err(StoreError::Unexpected(
                                    anyhow::anyhow!("no outcome"),
                                )))
                            }
                            Err(error) => Err(error),
                        };
                    let _ = entry.answer.send(outcome);
                }
            }
            Err(error) => {
                for entry in batch.drain(..) {
                    let _ = entry.answer.send(Err(clone_error(&error)));
                }
            }
        }
    }
}

fn clone_error(error: &StoreError) -> StoreError {
    match error {
        StoreError::HandleTaken => StoreError::HandleTaken,
        StoreError::EmailTaken => StoreError::EmailTaken,
        StoreError::NotFound(missing) => StoreError::NotFound(*missing),
        StoreError::UnknownAccount => StoreError::UnknownAccount,
        StoreError::MediaUnavailable => StoreError::MediaUnavailable,
        StoreError::Unavailable(cause) => StoreError::Unavailable(anyhow::anyhow!("{cause:#}")),
        StoreError::Unexpected(cause) => StoreError::Unexpected(anyhow::anyhow!("{cause:#}")),
    }
}

/// The post a written `NewPost` is.
pub(crate) fn written(post: &NewPost) -> Post {
    Post {
        id: post.id,
        author_id: post.author_id,
        text: post.text.clone(),
        reply_to: post.reply_to,
        created_at: post.created_at,
        like_count: 0,
        reply_count: 0,
        deleted: false,
        mentions: post.mentions.clone(),
        media: post.media.clone(),
    }
}
