//! API keys: stored as the SHA-256 of the whole key, listed by their
//! prefix, revoked by their owner, and touched (last use) when an instance
//! checks one again. A suspended account's keys are refused while it is.
//!
//! One implementation for both engines (see `shared/mod.rs`).

/// `mod api_keys` with `impl ApiKeyStore` for `$store`.
macro_rules! api_key_store {
    ($store:ident) => {
        mod api_keys {
            use async_trait::async_trait;
            use starling_app::ports::{ApiKeyRecord, ApiKeyStore, StoreError};
            use starling_domain::{Timestamp, UserId};

            use super::{$store, translate};

            const INSERT_KEY: &str = "INSERT INTO api_keys \
                 (id, user_id, name, prefix, key_hash, scopes, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
            const KEY_COLUMNS: &str = "id, user_id, name, prefix, key_hash, scopes, created_at, last_used_at, expires_at";
            const LIVE: &str = "revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)";
            const REVOKE_KEY: &str = "UPDATE api_keys SET revoked_at = $3 \
                 WHERE id = $1 AND user_id = $4 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)";

            type KeyRow = (i64, i64, String, String, Vec<u8>, String, i64, Option<i64>, Option<i64>);

            fn record(row: KeyRow) -> ApiKeyRecord {
                let (id, user_id, name, prefix, key_hash, scopes, created_at, last_used_at, expires_at) = row;
                ApiKeyRecord {
                    id,
                    user_id: UserId(user_id),
                    name,
                    prefix,
                    key_hash,
                    scopes,
                    created_at: Timestamp(created_at),
                    last_used_at: last_used_at.map(Timestamp),
                    expires_at: expires_at.map(Timestamp),
                }
            }

            #[async_trait]
            impl ApiKeyStore for $store {
                async fn insert_api_key(&self, key: ApiKeyRecord) -> Result<(), StoreError> {
                    sqlx::query(INSERT_KEY)
                        .bind(key.id)
                        .bind(key.user_id.get())
                        .bind(key.name)
                        .bind(key.prefix)
                        .bind(key.key_hash)
                        .bind(key.scopes)
                        .bind(key.created_at.millis())
                        .bind(key.expires_at.map(Timestamp::millis))
                        .execute(&mut *self.write().await?)
                        .await
                        .map_err(translate)?;
                    Ok(())
                }

                async fn api_keys_of(
                    &self,
                    user: UserId,
                    now: Timestamp,
                ) -> Result<Vec<ApiKeyRecord>, StoreError> {
                    let statement = format!(
                        "SELECT {KEY_COLUMNS} FROM api_keys WHERE user_id = $1 AND {LIVE} ORDER BY id DESC"
                    );
                    let rows: Vec<KeyRow> = sqlx::query_as(sqlx::AssertSqlSafe(statement))
                        .bind(user.get())
                        .bind(now.millis())
                        .fetch_all(&mut *self.read().await?)
                        .await
                        .map_err(translate)?;
                    Ok(rows.into_iter().map(record).collect())
                }

                async fn revoke_api_key(
                    &self,
                    user: UserId,
                    id: i64,
                    now: Timestamp,
                ) -> Result<bool, StoreError> {
                    let done = sqlx::query(REVOKE_KEY)
                        .bind(id)
                        .bind(now.millis())
                        .bind(now.millis())
                        .bind(user.get())
                        .execute(&mut *self.write().await?)
                        .await
                        .map_err(translate)?;
                    Ok(done.rows_affected() > 0)
                }

                async fn use_api_key(
                    &self,
                    key_hash: &[u8],
                    now: Timestamp,
                ) -> Result<Option<ApiKeyRecord>, StoreError> {
                    let statement = format!(
                        "UPDATE api_keys SET last_used_at = $2 WHERE key_hash = $1 AND {LIVE} \
                         AND user_id IN (SELECT id FROM users WHERE status = 'active') RETURNING {KEY_COLUMNS}"
                    );
                    let row: Option<KeyRow> = sqlx::query_as(sqlx::AssertSqlSafe(statement))
                        .bind(key_hash)
                        .bind(now.millis())
                        .fetch_optional(&mut *self.write().await?)
                        .await
                        .map_err(translate)?;
                    Ok(row.map(record))
                }
            }
        }
    };
}
pub(crate) use api_key_store;
