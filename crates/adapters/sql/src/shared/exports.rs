//! Data exports: their rows, claimed by lease, built, failed with a retry
//! time, expired. One implementation for both engines (see `shared/mod.rs`).

/// `mod exports` with `impl ExportStore` for `$store`.
macro_rules! export_store {
    ($store:ident) => {
        mod exports {
            use async_trait::async_trait;
            use starling_app::ports::{ExportRecord, ExportState, ExportStore, StoreError};
            use starling_domain::{Timestamp, UserId};

            use super::{$store, translate};
            use crate::limit_param;

            const COLUMNS: &str = "id, user_id, state, requested_at, finished_at, archive_key, size, \
                 expires_at, attempts, last_error";
            const INSERT: &str = "INSERT INTO exports (id, user_id, state, requested_at, next_attempt_at) \
                 VALUES ($1, $2, 'pending', $3, $3)";
            const CLAIM: &str = "UPDATE exports SET lease_until = $3 WHERE id = $1 AND state = 'pending' \
                 AND (lease_until IS NULL OR lease_until <= $2)";
            const READY: &str = "UPDATE exports SET state = 'ready', archive_key = $2, size = $3, \
                 expires_at = $4, finished_at = $5, lease_until = NULL, last_error = NULL \
                 WHERE id = $1 AND state = 'pending'";
            const FAILED: &str = "UPDATE exports SET attempts = attempts + 1, last_error = $2, \
                 next_attempt_at = $3, lease_until = NULL WHERE id = $1 AND state = 'pending'";
            const EXPIRING: &str = "SELECT id, archive_key FROM exports WHERE state = 'ready' \
                 AND expires_at <= $1 ORDER BY expires_at LIMIT $2";
            const EXPIRED: &str = "UPDATE exports SET state = 'expired' WHERE id = $1 AND state = 'ready'";

            type Row = (i64, i64, String, i64, Option<i64>, Option<String>, Option<i64>, Option<i64>, i64, Option<String>);

            fn record(row: Row) -> Result<ExportRecord, StoreError> {
                let (id, user_id, state, requested_at, finished_at, archive_key, size, expires_at, attempts, last_error) = row;
                let state = ExportState::parse(&state).ok_or_else(|| {
                    StoreError::Unexpected(anyhow::anyhow!("export {id} is in an unknown state {state:?}"))
                })?;
                Ok(ExportRecord {
                    id,
                    user_id: UserId(user_id),
                    state,
                    requested_at: Timestamp(requested_at),
                    finished_at: finished_at.map(Timestamp),
                    archive_key,
                    size: size.and_then(|size| u64::try_from(size).ok()),
                    expires_at: expires_at.map(Timestamp),
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                    last_error,
                })
            }

            #[async_trait]
            impl ExportStore for $store {
                async fn request_export(&self, id: i64, user: UserId, now: Timestamp) -> Result<ExportRecord, StoreError> {
                    let mut tx = self.begin().await?;
                    let pending = format!(
                        "SELECT {COLUMNS} FROM exports WHERE user_id = $1 AND state = 'pending' ORDER BY id DESC LIMIT 1{}",
                        dialect!(for_update)
                    );
                    let found: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(pending))
                        .bind(user.get())
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(translate)?;
                    if let Some(row) = found {
                        return record(row);
                    }
                    sqlx::query(INSERT)
                        .bind(id)
                        .bind(user.get())
                        .bind(now.millis())
                        .execute(&mut *tx)
                        .await
                        .map_err(translate)?;
                    tx.commit().await.map_err(translate)?;
                    Ok(ExportRecord {
                        id,
                        user_id: user,
                        state: ExportState::Pending,
                        requested_at: now,
                        finished_at: None,
                        archive_key: None,
                        size: None,
                        expires_at: None,
                        attempts: 0,
                        last_error: None,
                    })
                }

                async fn latest_export(&self, user: UserId) -> Result<Option<ExportRecord>, StoreError> {
                    let statement = format!("SELECT {COLUMNS} FROM exports WHERE user_id = $1 ORDER BY id DESC LIMIT 1");
                    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(statement))
                        .bind(user.get())
                        .fetch_optional(&mut *self.read().await?)
                        .await
                        .map_err(translate)?;
                    row.map(record).transpose()
                }

                async fn due_exports(&self, now: Timestamp, limit: usize) -> Result<Vec<ExportRecord>, StoreError> {
                    let statement = format!(
                        "SELECT {COLUMNS} FROM exports WHERE state = 'pending' AND next_attempt_at <= $1 \
                         AND (lease_until IS NULL OR lease_until <= $1) ORDER BY next_attempt_at LIMIT $2"
                    );
                    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(statement))
                        .bind(now.millis())
                        .bind(limit_param(limit))
                        .fetch_all(&mut *self.read().await?)
                        .await
                        .map_err(translate)?;
                    rows.into_iter().map(record).collect()
                }

                async fn claim_export(&self, id: i64, now: Timestamp, until: Timestamp) -> Result<bool, StoreError> {
                    let claimed = sqlx::query(CLAIM)
                        .bind(id)
                        .bind(now.millis())
                        .bind(until.millis())
                        .execute(&mut *self.write().await?)
                        .await
                        .map_err(translate)?
                        .rows_affected();
                    Ok(claimed > 0)
                }

                async fn export_ready(
                    &self,
                    id: i64,
                    archive_key: &str,
                    size: u64,
                    expires_at: Timestamp,
                    now: Timestamp,
                ) -> Result<(), StoreError> {
                    sqlx::query(READY)
                        .bind(id)
                        .bind(archive_key)
                        .bind(i64::try_from(size).unwrap_or(i64::MAX))
                        .bind(expires_at.millis())
                        .bind(now.millis())
                        .execute(&mut *self.write().await?)
                        .await
                        .map_err(translate)?;
                    Ok(())
                }

                async fn export_failed(&self, id: i64, error: &str, retry_at: Timestamp) -> Result<(), StoreError> {
                    sqlx::query(FAILED)
                        .bind(id)
                        .bind(error)
                        .bind(retry_at.millis())
                        .execute(&mut *self.write().await?)
                        .await
                        .map_err(translate)?;
                    Ok(())
                }

                async fn expired_exports(&self, now: Timestamp, limit: usize) -> Result<Vec<(i64, String)>, StoreError> {
                    let rows: Vec<(i64, Option<String>)> = sqlx::query_as(EXPIRING)
                        .bind(now.millis())
                        .bind(limit_param(limit))
                        .fetch_all(&mut *self.read().await?)
                        .await
                        .map_err(translate)?;
                    Ok(rows
                        .into_iter()
                        .filter_map(|(id, key)| Some((id, key?)))
                        .collect())
                }

                async fn export_expired(&self, id: i64) -> Result<(), StoreError> {
                    sqlx::query(EXPIRED)
                        .bind(id)
                        .execute(&mut *self.write().await?)
                        .await
                        .map_err(translate)?;
                    Ok(())
                }
            }
        }
    };
}
pub(crate) use export_store;
