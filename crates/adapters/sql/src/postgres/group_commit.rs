//! PostgreSQL's half of group commit (`crate::group_commit`): a batch as
//! one transaction, so one WAL flush carries many posts. Each post's
//! checks (its uploads, the post it answers) run one by one, as a post may
//! fail alone; the rows themselves go in as one `UNNEST` statement per
//! table.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use sqlx::postgres::PgPool;
use starling_app::ports::StoreError;
use starling_domain::{Post, PostId};

use super::posts::accept;
use super::{Tx, record_acquire, translate};
use crate::encode_event;
use crate::group_commit::{Pending, WriteBatch, written};

const INSERT_POSTS: &str = "INSERT INTO posts (id, author_id, text, reply_to, created_at, mentions, media) \
     SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[], \
     $6::text[], $7::text[])";
/// The rows a batch updates (the posts it answers, then its authors), locked
/// first in id order: batches written at once then never wait for each
/// other in a cycle (a deadlock PostgreSQL would break after a second).
/// `NO KEY UPDATE` is the lock the updates take, and lets foreign-key checks
/// of other inserts through.
const LOCK_PARENTS: &str = "SELECT id FROM posts WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE";
const LOCK_AUTHORS: &str = "SELECT id FROM users WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE";
const COUNT_POSTS: &str = "UPDATE users SET posts_count = posts_count + counted.n \
     FROM UNNEST($1::bigint[], $2::bigint[]) AS counted(id, n) WHERE users.id = counted.id";
const INSERT_EVENTS: &str = "INSERT INTO outbox (event_id, kind, payload, occurred_at, trace_parent) \
     SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[])";
/// `write_plain`'s statement. The authors are locked first, in id order,
/// as `LOCK_AUTHORS` does: the update waits for the lock subquery (an
/// init plan, run before the update's scan), and counting every locked row
/// makes it lock them all; a plain SELECT in a WITH is otherwise run only
/// as far as it is read. An author that does not exist fails the posts'
/// foreign key, as in the transaction.
const WRITE_PLAIN_BATCH: &str = "WITH locked AS MATERIALIZED ( \
         SELECT id FROM users WHERE id = ANY($8) ORDER BY id FOR NO KEY UPDATE), \
     inserted AS ( \
         INSERT INTO posts (id, author_id, text, reply_to, created_at, mentions, media) \
         SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[], \
         $6::text[], $7::text[])), \
     counted AS ( \
         UPDATE users SET posts_count = posts_count + counted.n \
         FROM UNNEST($8::bigint[], $9::bigint[]) AS counted(id, n) \
         WHERE users.id = counted.id AND (SELECT count(*) FROM locked) > 0) \
     INSERT INTO outbox (event_id, kind, payload, occurred_at, trace_parent) \
     SELECT * FROM UNNEST($10::bigint[], $11::text[], $12::text[], $5::bigint[], $13::text[])";
pub(crate) struct PgBatches(pub(crate) PgPool);

#[async_trait]
impl WriteBatch for PgBatches {
    async fn write(&self, batch: &[Pending]) -> Result<Vec<Result<Post, StoreError>>, StoreError> {
        let plain = batch
            .iter()
            .all(|entry| entry.post.media.is_empty() && entry.post.reply_to.is_none());
        if plain {
            write_plain(&self.0, batch).await?;
            return Ok(batch.iter().map(|entry| Ok(written(&entry.post))).collect());
        }
        let started = std::time::Instant::now();
        let mut tx = self.0.begin().await.map_err(translate)?;
        record_acquire("primary", started);
        if batch.len() > 1 {
            // (One post updates its parent, then its author: that order.)
            lock_in_order(&mut tx, batch).await?;
        }
        let (outcomes, accepted) = accept(&mut tx, batch).await?;
        if !accepted.is_empty() {
            insert_rows(&mut tx, &accepted).await?;
        }
        tx.commit().await.map_err(translate)?;
        Ok(outcomes)
    }
}

async fn lock_in_order(tx: &mut Tx, batch: &[Pending]) -> Result<(), StoreError> {
    let parents: BTreeSet<i64> = batch
        .iter()
        .filter_map(|entry| entry.post.reply_to.map(PostId::get))
        .collect();
    if !parents.is_empty() {
        sqlx::query(LOCK_PARENTS)
            .bind(parents.into_iter().collect::<Vec<_>>())
            .execute(&mut **tx)
            .await
            .map_err(translate)?;
    }
    let authors: BTreeSet<i64> = batch
        .iter()
        .map(|entry| entry.post.author_id.get())
        .collect();
    sqlx::query(LOCK_AUTHORS)
        .bind(authors.into_iter().collect::<Vec<_>>())
        .execute(&mut **tx)
        .await
        .map_err(translate)?;
    Ok(())
}

/// A batch's rows, column by column, as `UNNEST` takes them.
struct Rows {
    ids: Vec<i64>,
    authors: Vec<i64>,
    texts: Vec<String>,
    replies_to: Vec<Option<i64>>,
    created: Vec<i64>,
    mentions: Vec<String>,
    media: Vec<String>,
    /// Each author once, in id order, and how many posts it gains.
    counted_authors: Vec<i64>,
    counts: Vec<i64>,
    event_ids: Vec<i64>,
    kinds: Vec<&'static str>,
    payloads: Vec<String>,
    trace_parents: Vec<Option<String>>,
}

impl Rows {
    fn of(accepted: &[&Pending]) -> Result<Self, StoreError> {
        let posts = || accepted.iter().map(|entry| &entry.post);
        let mut per_author: BTreeMap<i64, i64> = BTreeMap::new();
        for post in posts() {
            *per_author.entry(post.author_id.get()).or_default() += 1;
        }
        let mut kinds = Vec::with_capacity(accepted.len());
        let mut payloads = Vec::with_capacity(accepted.len());
        for post in posts() {
            kinds.push(post.event.event.kind());
            payloads.push(encode_event(&post.event.event)?);
        }
        Ok(Self {
            ids: posts().map(|post| post.id.get()).collect(),
            authors: posts().map(|post| post.author_id.get()).collect(),
            texts: posts().map(|post| post.text.as_str().to_owned()).collect(),
            replies_to: posts().map(|post| post.reply_to.map(PostId::get)).collect(),
            created: posts().map(|post| post.created_at.millis()).collect(),
            mentions: posts()
                .map(|post| crate::encode_mentions(&post.mentions))
                .collect::<Result<_, _>>()?,
            media: posts()
                .map(|post| crate::encode_media(&post.media))
                .collect::<Result<_, _>>()?,
            counted_authors: per_author.keys().copied().collect(),
            counts: per_author.values().copied().collect(),
            event_ids: posts().map(|post| post.event.id.get()).collect(),
            kinds,
            payloads,
            trace_parents: posts()
                .map(|post| post.event.trace_parent.clone())
                .collect(),
        })
    }
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

impl Rows {
    /// Binds the posts' columns as `$1` to `$7`, as both statements that
    /// insert them take them.
    fn bind_posts<'q>(&'q self, query: PgQuery<'q>) -> PgQuery<'q> {
        query
            .bind(&self.ids)
            .bind(&self.authors)
            .bind(&self.texts)
            .bind(&self.replies_to)
            .bind(&self.created)
            .bind(&self.mentions)
            .bind(&self.media)
    }
}

/// The rows of a batch whose posts were checked one by one in `tx`.
async fn insert_rows(tx: &mut Tx, accepted: &[&Pending]) -> Result<(), StoreError> {
    let rows = Rows::of(accepted)?;
    rows.bind_posts(sqlx::query(INSERT_POSTS))
        .execute(&mut **tx)
        .await
        .map_err(translate)?;
    sqlx::query(COUNT_POSTS)
        .bind(&rows.counted_authors)
        .bind(&rows.counts)
        .execute(&mut **tx)
        .await
        .map_err(translate)?;
    sqlx::query(INSERT_EVENTS)
        .bind(&rows.event_ids)
        .bind(&rows.kinds)
        .bind(&rows.payloads)
        .bind(&rows.created)
        .bind(&rows.trace_parents)
        .execute(&mut **tx)
        .await
        .map_err(translate)?;
    Ok(())
}

/// A batch with nothing to check post by post (no uploads, no replies),
/// written by one statement, which PostgreSQL runs as its own
/// transaction: one round trip instead of six (BEGIN, the authors' locks,
/// three inserts and updates, COMMIT). Its parts see one snapshot and
/// commit together.
async fn write_plain(pool: &PgPool, batch: &[Pending]) -> Result<(), StoreError> {
    let accepted: Vec<&Pending> = batch.iter().collect();
    let rows = Rows::of(&accepted)?;
    let started = std::time::Instant::now();
    let mut connection = pool.acquire().await.map_err(translate)?;
    record_acquire("primary", started);
    rows.bind_posts(sqlx::query(WRITE_PLAIN_BATCH))
        .bind(&rows.counted_authors)
        .bind(&rows.counts)
        .bind(&rows.event_ids)
        .bind(&rows.kinds)
        .bind(&rows.payloads)
        .bind(&rows.trace_parents)
        .execute(&mut *connection)
        .await
        .map_err(translate)?;
    Ok(())
}
