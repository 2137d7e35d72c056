//! Uploaded images. A row naming a file and the file's deletion are kept
//! apart: an upload takes the file's lock (`lock_file`) to write its row,
//! a removal holds it from its check that no row names the file until it
//! has deleted the file and committed. On PostgreSQL the lock is a
//! transaction-scoped advisory lock on the file's hash; SQLite has one
//! writer, so every write transaction already holds it.
//!
//! Written once for both engines and instantiated in each engine's
//! `mod.rs` (see `crate::shared`).

/// `mod media` for `$store`.
macro_rules! media_store {
    ($store:ident) => {
        mod media {
            use async_trait::async_trait;
            use starling_app::ports::{BlobStore, MediaSelection, MediaStore, Missing, NewEvent, StoreError};
            use starling_domain::{Media, MediaFile, MediaId, MediaState, Timestamp};

            use super::{$store, append_event, id_list, lock_file, translate};
            use crate::{MediaRow, encode_file, limit_param};

            const INSERT: &str = "INSERT INTO media \
                 (id, owner_id, state, hash, file, thumb_hash, thumbnail, alt, post_id, created_at) \
                 VALUES ($1, $2, $3, $4, $5, NULL, NULL, $6, NULL, $7)";
            const STORED: &str = "UPDATE media SET state = 'processing' WHERE id = $1 AND state = 'uploading'";
            const THUMBNAIL: &str = "UPDATE media SET state = 'ready', thumb_hash = $2, thumbnail = $3 \
                 WHERE id = $1 AND state = 'processing'";
            const BY_IDS: &str = concat!(
                "SELECT id, owner_id, state, file, thumbnail, alt, post_id, created_at FROM media WHERE id ",
                dialect!(any 1)
            );
            const ONE: &str = "DELETE FROM media WHERE id = $1 RETURNING hash, thumb_hash";
            const SWEEP: &str = concat!(
                "DELETE FROM media WHERE id IN \
                 (SELECT id FROM media WHERE post_id IS NULL AND created_at < $1 ORDER BY created_at LIMIT $2",
                dialect!(skip_locked),
                ") RETURNING hash, thumb_hash"
            );
            const OWNED: &str = concat!(
                "DELETE FROM media WHERE id IN (SELECT id FROM media WHERE owner_id = $1 LIMIT $2",
                dialect!(skip_locked),
                ") RETURNING hash, thumb_hash"
            );
            const NAMED: &str = "SELECT EXISTS (SELECT 1 FROM media WHERE hash = $1) \
                 OR EXISTS (SELECT 1 FROM media WHERE thumb_hash = $1)";

            #[async_trait]
            impl MediaStore for $store {
                async fn add_media(&self, media: &Media) -> Result<(), StoreError> {
                    let mut tx = self.begin().await?;
                    lock_file(&mut tx, &media.file.hash).await?;
                    sqlx::query(INSERT)
                        .bind(media.id.get())
                        .bind(media.owner.get())
                        .bind(MediaState::Uploading.as_str())
                        .bind(&media.file.hash)
                        .bind(encode_file(&media.file)?)
                        .bind(&media.alt)
                        .bind(media.created_at.millis())
                        .execute(&mut *tx)
                        .await
                        .map_err(translate)?;
                    tx.commit().await.map_err(translate)
                }

                async fn media_stored(
                    &self,
                    id: MediaId,
                    event: NewEvent,
                    now: Timestamp,
                ) -> Result<(), StoreError> {
                    let mut tx = self.begin().await?;
                    let updated = sqlx::query(STORED)
                        .bind(id.get())
                        .execute(&mut *tx)
                        .await
                        .map_err(translate)?;
                    if updated.rows_affected() == 0 {
                        return Err(StoreError::NotFound(Missing::Media));
                    }
                    append_event(&mut tx, &event, now).await?;
                    tx.commit().await.map_err(translate)?;
                    self.commits.committed();
                    Ok(())
                }

                async fn media_by_ids(&self, ids: &[MediaId]) -> Result<Vec<Media>, StoreError> {
                    if ids.is_empty() {
                        return Ok(Vec::new());
                    }
                    // On the primary: a thumbnail just made must be seen by the post
                    // that attaches it next.
                    let rows: Vec<MediaRow> = sqlx::query_as(BY_IDS)
                        .bind(id_list(ids, |id| id.get()))
                        .fetch_all(&mut *self.read().await?)
                        .await
                        .map_err(translate)?;
                    rows.into_iter().map(Media::try_from).collect()
                }

                async fn set_thumbnail(&self, id: MediaId, thumbnail: &MediaFile) -> Result<bool, StoreError> {
                    let mut tx = self.begin().await?;
                    lock_file(&mut tx, &thumbnail.hash).await?;
                    let updated = sqlx::query(THUMBNAIL)
                        .bind(id.get())
                        .bind(&thumbnail.hash)
                        .bind(encode_file(thumbnail)?)
                        .execute(&mut *tx)
                        .await
                        .map_err(translate)?;
                    tx.commit().await.map_err(translate)?;
                    Ok(updated.rows_affected() > 0)
                }

                async fn remove_media(
                    &self,
                    which: MediaSelection,
                    files: &dyn BlobStore,
                ) -> Result<u64, StoreError> {
                    let mut tx = self.begin().await?;
                    let removed: Vec<(String, Option<String>)> = match which {
                        MediaSelection::One(id) => sqlx::query_as(ONE).bind(id.get()).fetch_all(&mut *tx),
                        MediaSelection::UnattachedBefore { before, limit } => sqlx::query_as(SWEEP)
                            .bind(before.millis())
                            .bind(limit_param(limit))
                            .fetch_all(&mut *tx),
                        MediaSelection::OwnedBy { owner, limit } => sqlx::query_as(OWNED)
                            .bind(owner.get())
                            .bind(limit_param(limit))
                            .fetch_all(&mut *tx),
                    }
                    .await
                    .map_err(translate)?;
                    let mut hashes: Vec<String> = removed
                        .iter()
                        .flat_map(|(hash, thumb)| std::iter::once(hash.clone()).chain(thumb.clone()))
                        .collect();
                    // One order for every remover: no two wait on each other's locks.
                    hashes.sort();
                    hashes.dedup();
                    for hash in hashes {
                        lock_file(&mut tx, &hash).await?;
                        let named: bool = sqlx::query_scalar(NAMED)
                            .bind(&hash)
                            .fetch_one(&mut *tx)
                            .await
                            .map_err(translate)?;
                        if !named {
                            files
                                .delete(&hash)
                                .await
                                .map_err(|error| StoreError::Unavailable(anyhow::Error::new(error)))?;
                        }
                    }
                    tx.commit().await.map_err(translate)?;
                    Ok(removed.len() as u64)
                }
            }
        }
    };
}
pub(crate) use media_store;
