//! Refresh tokens: stored hashed, spent on use, revoked by family.
//!
//! One implementation for both engines: the statements are the same
//! (SQLite takes `$N` placeholders as PostgreSQL does), and so is the code
//! around them. Each engine's `mod.rs` instantiates it with the macro
//! below, which needs the store's `begin()` (a write transaction), `read()`
//! and `write()` (a connection for one statement) and `translate`.

/// `mod tokens` with `impl TokenStore` for `$store`. The reads that decide
/// a write lock their rows (`dialect!(for_update)`).
macro_rules! token_store {
    ($store:ident) => {
        mod tokens {
            use async_trait::async_trait;
            use starling_app::ports::{
                RefreshFamily, RefreshTokenRecord, RotateOutcome, StoreError, TokenStore,
            };
            use starling_domain::{Timestamp, UserId};

            use super::{$store, translate};

            const INSERT_TOKEN: &str = "INSERT INTO refresh_tokens (token_hash, user_id, family_id, issued_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5)";
            // FOR UPDATE: two refreshes with the same token serialise here, so exactly
            // one spends it and the other sees it spent.
            const TOKEN_BY_HASH: &str = concat!("SELECT user_id, family_id, expires_at, used_at, revoked_at \
                 FROM refresh_tokens WHERE token_hash = $1", dialect!(for_update));
            const SPEND_TOKEN: &str = "UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1";
            const REVOKE_FAMILY: &str =
                "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL";
            const FAMILY_OF_TOKEN: &str = "SELECT user_id, family_id FROM refresh_tokens WHERE token_hash = $1";
            const OPEN_SESSION: &str = "SELECT EXISTS (SELECT 1 FROM refresh_tokens \
                 WHERE family_id = $1 AND revoked_at IS NULL AND expires_at > $2)";
            const PRUNE_TOKENS: &str = "DELETE FROM refresh_tokens WHERE expires_at < $1";

            #[async_trait]
            impl TokenStore for $store {
                async fn insert_refresh_token(&self, record: RefreshTokenRecord) -> Result<(), StoreError> {
                    sqlx::query(INSERT_TOKEN)
                        .bind(record.token_hash)
                        .bind(record.user_id.get())
                        .bind(record.family_id)
                        .bind(record.issued_at.millis())
                        .bind(record.expires_at.millis())
                        .execute(&mut *self.write().await?)
                        .await
                        .map_err(translate)?;
                    Ok(())
                }

                async fn rotate_refresh_token(
                    &self,
                    presented_hash: &[u8],
                    replacement_hash: &[u8],
                    replacement_expires_at: Timestamp,
                    now: Timestamp,
                ) -> Result<RotateOutcome, StoreError> {
                    let mut tx = self.begin().await?;
                    let row: Option<(i64, i64, i64, Option<i64>, Option<i64>)> = sqlx::query_as(TOKEN_BY_HASH)
                        .bind(presented_hash)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(translate)?;
                    let Some((user_id, family_id, expires_at, used_at, revoked_at)) = row else {
                        return Ok(RotateOutcome::Unknown);
                    };
                    let family = RefreshFamily {
                        user_id: UserId(user_id),
                        family_id,
                    };
                    if used_at.is_some() || revoked_at.is_some() {
                        sqlx::query(REVOKE_FAMILY)
                            .bind(family_id)
                            .bind(now.millis())
                            .execute(&mut *tx)
                            .await
                            .map_err(translate)?;
                        tx.commit().await.map_err(translate)?;
                        return Ok(RotateOutcome::Reused(family));
                    }
                    if expires_at <= now.millis() {
                        return Ok(RotateOutcome::Expired);
                    }
                    sqlx::query(SPEND_TOKEN)
                        .bind(presented_hash)
                        .bind(now.millis())
                        .execute(&mut *tx)
                        .await
                        .map_err(translate)?;
                    sqlx::query(INSERT_TOKEN)
                        .bind(replacement_hash)
                        .bind(user_id)
                        .bind(family_id)
                        .bind(now.millis())
                        .bind(replacement_expires_at.millis())
                        .execute(&mut *tx)
                        .await
                        .map_err(translate)?;
                    tx.commit().await.map_err(translate)?;
                    Ok(RotateOutcome::Rotated(family))
                }

                async fn session_is_open(&self, family_id: i64, now: Timestamp) -> Result<bool, StoreError> {
                    sqlx::query_scalar(OPEN_SESSION)
                        .bind(family_id)
                        .bind(now.millis())
                        .fetch_one(&mut *self.read().await?)
                        .await
                        .map_err(translate)
                }

                async fn prune_refresh_tokens(&self, expired_before: Timestamp) -> Result<u64, StoreError> {
                    let done = sqlx::query(PRUNE_TOKENS)
                        .bind(expired_before.millis())
                        .execute(&mut *self.write().await?)
                        .await
                        .map_err(translate)?;
                    Ok(done.rows_affected())
                }

                async fn revoke_refresh_family(
                    &self,
                    token_hash: &[u8],
                    now: Timestamp,
                ) -> Result<Option<RefreshFamily>, StoreError> {
                    // A family's id and account never change: read, then revoke by id.
                    let row: Option<(i64, i64)> = sqlx::query_as(FAMILY_OF_TOKEN)
                        .bind(token_hash)
                        .fetch_optional(&mut *self.read().await?)
                        .await
                        .map_err(translate)?;
                    let Some((user_id, family_id)) = row else {
                        return Ok(None);
                    };
                    sqlx::query(REVOKE_FAMILY)
                        .bind(family_id)
                        .bind(now.millis())
                        .execute(&mut *self.write().await?)
                        .await
                        .map_err(translate)?;
                    Ok(Some(RefreshFamily {
                        user_id: UserId(user_id),
                        family_id,
                    }))
                }
            }
        }
    };
}
pub(crate) use token_store;
