//! Idempotency keys: claimed before a create runs, completed with its
//! response, replayed to retries.
//!
//! One implementation for both engines: the statements are the same
//! (SQLite takes `$N` placeholders as PostgreSQL does), and so is the code
//! around them. Each engine's `mod.rs` instantiates it with the macro
//! below, which needs the store's `begin()` (a write transaction), `read()`
//! and `write()` (a connection for one statement) and `translate`.

/// `mod idempotency` with `impl IdempotencyStore` for `$store`. The reads that decide
/// a write lock their rows (`dialect!(for_update)`).
macro_rules! idempotency_store {
    ($store:ident) => {
        mod idempotency {
            use async_trait::async_trait;
            use starling_app::ports::{IdempotencyClaim, IdempotencyStore, StoreError, StoredResponse};
            use starling_domain::Timestamp;

            use super::{$store, translate};
            use crate::{IdempotencyRow, encode_headers, judge_idempotency_row};

            const INSERT: &str = "INSERT INTO idempotency_keys (scope, key, fingerprint, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
            const FIND: &str = concat!("SELECT fingerprint, status, headers, body, created_at FROM idempotency_keys WHERE scope = $1 AND key = $2", dialect!(for_update));
            const TAKE_OVER: &str = "UPDATE idempotency_keys SET fingerprint = $3, status = NULL, headers = NULL, body = NULL, created_at = $4 WHERE scope = $1 AND key = $2";
            const COMPLETE: &str = "UPDATE idempotency_keys SET status = $3, headers = $4, body = $5 WHERE scope = $1 AND key = $2";
            const RELEASE: &str =
                "DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND status IS NULL";
            const PRUNE: &str = "DELETE FROM idempotency_keys WHERE created_at < $1";

            #[async_trait]
            impl IdempotencyStore for $store {
                async fn claim_idempotency_key(
                    &self,
                    scope: &str,
                    key: &str,
                    fingerprint: &[u8],
                    now: Timestamp,
                    stale_before: Timestamp,
                    expired_before: Timestamp,
                ) -> Result<IdempotencyClaim, StoreError> {
                    let mut tx = self.begin().await?;
                    let inserted = sqlx::query(INSERT)
                        .bind(scope)
                        .bind(key)
                        .bind(fingerprint)
                        .bind(now.millis())
                        .execute(&mut *tx)
                        .await
                        .map_err(translate)?
                        .rows_affected();
                    if inserted == 0 {
                        let row: IdempotencyRow = sqlx::query_as(FIND)
                            .bind(scope)
                            .bind(key)
                            .fetch_one(&mut *tx)
                            .await
                            .map_err(translate)?;
                        if let Some(found) =
                            judge_idempotency_row(row, fingerprint, stale_before, expired_before)
                        {
                            tx.commit().await.map_err(translate)?;
                            return Ok(found);
                        }
                        sqlx::query(TAKE_OVER)
                            .bind(scope)
                            .bind(key)
                            .bind(fingerprint)
                            .bind(now.millis())
                            .execute(&mut *tx)
                            .await
                            .map_err(translate)?;
                    }
                    tx.commit().await.map_err(translate)?;
                    Ok(IdempotencyClaim::Claimed)
                }

                async fn complete_idempotency_key(
                    &self,
                    scope: &str,
                    key: &str,
                    response: &StoredResponse,
                ) -> Result<(), StoreError> {
                    sqlx::query(COMPLETE)
                        .bind(scope)
                        .bind(key)
                        .bind(i32::from(response.status))
                        .bind(encode_headers(response)?)
                        .bind(&response.body)
                        .execute(&mut *self.write().await?)
                        .await
                        .map_err(translate)?;
                    Ok(())
                }

                async fn release_idempotency_key(&self, scope: &str, key: &str) -> Result<(), StoreError> {
                    sqlx::query(RELEASE)
                        .bind(scope)
                        .bind(key)
                        .execute(&mut *self.write().await?)
                        .await
                        .map_err(translate)?;
                    Ok(())
                }

                async fn prune_idempotency_keys(&self, expired_before: Timestamp) -> Result<u64, StoreError> {
                    Ok(sqlx::query(PRUNE)
                        .bind(expired_before.millis())
                        .execute(&mut *self.write().await?)
                        .await
                        .map_err(translate)?
                        .rows_affected())
                }
            }
        }
    };
}
pub(crate) use idempotency_store;
