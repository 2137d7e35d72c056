//! SQLite's half of group commit (`crate::group_commit`): a batch as one
//! transaction of multi-row statements on the single writer connection;
//! the round trips to SQLite's thread, not SQLite, bounded the rate when
//! each post paid its own.

use async_trait::async_trait;
use sqlx::{QueryBuilder, Sqlite, SqlitePool};
use starling_app::ports::StoreError;
use starling_domain::{Post, PostId};

use super::posts::accept;
use super::translate;
use crate::encode_event;
use crate::group_commit::{Pending, WriteBatch};

pub(crate) struct SqliteBatches(pub(crate) SqlitePool);

#[async_trait]
impl WriteBatch for SqliteBatches {
    async fn write(&self, batch: &[Pending]) -> Result<Vec<Result<Post, StoreError>>, StoreError> {
        write(&self.0, batch).await
    }
}

/// One transaction for `batch`: each post's outcome, or an error for all.
async fn write(
    writer: &SqlitePool,
    batch: &[Pending],
) -> Result<Vec<Result<Post, StoreError>>, StoreError> {
    let started = std::time::Instant::now();
    let mut tx = writer.begin().await.map_err(translate)?;
    crate::record_acquire("writer", started);
    let (outcomes, accepted) = accept(&mut tx, batch).await?;
    if !accepted.is_empty() {
        let mut statements: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO posts (id, author_id, text, reply_to, created_at, mentions, media) ",
        );
        let encoded = accepted
            .iter()
            .map(|entry| {
                Ok::<_, StoreError>((
                    crate::encode_mentions(&entry.post.mentions)?,
                    crate::encode_media(&entry.post.media)?,
                ))
            })
            .collect::<Result<Vec<_>, _>>()?;
        statements.push_values(
            accepted.iter().zip(encoded),
            |mut row, (entry, (mentions, media))| {
                let post = &entry.post;
                row.push_bind(post.id.get())
                    .push_bind(post.author_id.get())
                    .push_bind(post.text.as_str().to_owned())
                    .push_bind(post.reply_to.map(PostId::get))
                    .push_bind(post.created_at.millis())
                    .push_bind(mentions)
                    .push_bind(media);
            },
        );
        for entry in &accepted {
            statements
                .push("; UPDATE users SET posts_count = posts_count + 1 WHERE id = ")
                .push_bind(entry.post.author_id.get());
        }
        let mut events = Vec::with_capacity(accepted.len());
        for entry in &accepted {
            let event = &entry.post.event;
            events.push((entry, event.event.kind(), encode_event(&event.event)?));
        }
        statements
            .push("; INSERT INTO outbox (event_id, kind, payload, occurred_at, trace_parent) ");
        statements.push_values(events, |mut row, (entry, kind, payload)| {
            row.push_bind(entry.post.event.id.get())
                .push_bind(kind)
                .push_bind(payload)
                .push_bind(entry.post.created_at.millis())
                .push_bind(entry.post.event.trace_parent.clone());
        });
        statements
            .build()
            .execute(&mut *tx)
            .await
            .map_err(translate)?;
    }
    tx.commit().await.map_err(translate)?;
    Ok(outcomes)
}
