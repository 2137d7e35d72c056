//! Sessions and their refresh tokens: tokens stored hashed, spent on use,
//! revoked with their session (family); passwords change with the other
//! sessions ending in the same transaction.
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
                Missing, RefreshFamily, RefreshTokenRecord, RotateOutcome, SessionRecord,
                StoreError, TokenStore,
            };
            use starling_domain::{Timestamp, UserId};

            use super::{$store, Tx, translate};

            const INSERT_SESSION: &str = "INSERT INTO sessions \
                 (id, user_id, created_at, last_used_at, expires_at, user_agent, address) \
                 VALUES ($1, $2, $3, $3, $4, $5, $6)";
            const INSERT_TOKEN: &str = "INSERT INTO refresh_tokens (token_hash, user_id, family_id, issued_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5)";
            // FOR UPDATE: two refreshes with the same token serialise here, so exactly
            // one spends it and the other sees it spent.
            const TOKEN_BY_HASH: &str = concat!("SELECT user_id, family_id, expires_at, used_at, revoked_at, replaced_by \
                 FROM refresh_tokens WHERE token_hash = $1", dialect!(for_update));
            const SESSION_END: &str = "SELECT expires_at, revoked_at FROM sessions WHERE id = $1";
            const SPEND_TOKEN: &str =
                "UPDATE refresh_tokens SET used_at = $2, replaced_by = $3 WHERE token_hash = $1";
            const TOUCH_SESSION: &str = "UPDATE sessions SET last_used_at = $2 WHERE id = $1";
            const REVOKE_FAMILY: &str =
                "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL";
            const REVOKE_SESSION: &str =
                "UPDATE sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL";
            const REVOKE_OWN_SESSION: &str = "UPDATE sessions SET revoked_at = $3 \
                 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL AND expires_at > $3";
            // Tokens first, while their sessions still read as open.
            const REVOKE_TOKENS_OF_USER: &str = "UPDATE refresh_tokens SET revoked_at = $3 \
                 WHERE revoked_at IS NULL AND family_id IN \
                 (SELECT id FROM sessions WHERE user_id = $1 AND id <> $2 AND revoked_at IS NULL)";
            const REVOKE_SESSIONS_OF_USER: &str = "UPDATE sessions SET revoked_at = $3 \
                 WHERE user_id = $1 AND id <> $2 AND revoked_at IS NULL RETURNING id";
            const SET_PASSWORD: &str =
                "UPDATE credentials SET password_hash = $2, updated_at = $3 WHERE user_id = $1";
            const PASSWORD_HASH: &str = "SELECT password_hash FROM credentials WHERE user_id = $1";
            const FAMILY_OF_TOKEN: &str = "SELECT user_id, family_id FROM refresh_tokens WHERE token_hash = $1";
            const OPEN_SESSION: &str = "SELECT EXISTS (SELECT 1 FROM sessions s \
                 WHERE s.id = $1 AND s.revoked_at IS NULL AND s.expires_at > $2 AND EXISTS \
                 (SELECT 1 FROM refresh_tokens WHERE family_id = $1 AND revoked_at IS NULL AND expires_at > $2))";
            const SESSIONS_OF: &str = "SELECT id, user_id, created_at, last_used_at, expires_at, user_agent, address \
                 FROM sessions s WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 AND EXISTS \
                 (SELECT 1 FROM refresh_tokens WHERE family_id = s.id AND revoked_at IS NULL AND expires_at > $2) \
                 ORDER BY id DESC";
            const REVOKED_SINCE: &str =
                "SELECT id FROM sessions WHERE revoked_at >= $1 ORDER BY revoked_at";
            const PRUNE_TOKENS: &str = "DELETE FROM refresh_tokens WHERE expires_at < $1";
            const PRUNE_SESSIONS: &str =
                "DELETE FROM sessions WHERE expires_at < $1 OR revoked_at < $2";

            type SessionRow = (i64, i64, i64, i64, i64, Option<String>, Option<String>);

            fn session_record(row: SessionRow) -> SessionRecord {
                let (id, user_id, created_at, last_used_at, expires_at, user_agent, address) = row;
                SessionRecord {
                    id,
                    user_id: UserId(user_id),
                    created_at: Timestamp(created_at),
                    last_used_at: Timestamp(last_used_at),
                    expires_at: Timestamp(expires_at),
                    user_agent,
                    address,
                }
            }

            /// No session id is negative: `<> -1` keeps every one.
            const KEEP_NONE: i64 = -1;

            #[async_trait]
            impl TokenStore for $store {
                async fn open_session(
                    &self,
                    session: SessionRecord,
                    first_token: RefreshTokenRecord,
                ) -> Result<(), StoreError> {
                    let mut tx = self.begin().await?;
                    sqlx::query(INSERT_SESSION)
                        .bind(session.id)
                        .bind(session.user_id.get())
                        .bind(session.created_at.millis())
                        .bind(session.expires_at.millis())
                        .bind(session.user_agent)
                        .bind(session.address)
                        .execute(&mut *tx)
                        .await
                        .map_err(translate)?;
                    sqlx::query(INSERT_TOKEN)
                        .bind(first_token.token_hash)
                        .bind(first_token.user_id.get())
                        .bind(first_token.family_id)
                        .bind(first_token.issued_at.millis())
                        .bind(first_token.expires_at.millis().min(session.expires_at.millis()))
                        .execute(&mut *tx)
                        .await
                        .map_err(translate)?;
                    tx.commit().await.map_err(translate)?;
                    Ok(())
                }

                async fn rotate_refresh_token(
                    &self,
                    presented_hash: &[u8],
                    replacement_hash: &[u8],
                    replacement_expires_at: Timestamp,
                    retry_since: Timestamp,
                    now: Timestamp,
                ) -> Result<RotateOutcome, StoreError> {
                    type TokenRow = (i64, i64, i64, Option<i64>, Option<i64>, Option<Vec<u8>>);
                    let mut tx = self.begin().await?;
                    let row: Option<TokenRow> = sqlx::query_as(TOKEN_BY_HASH)
                        .bind(presented_hash)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(translate)?;
                    let Some((user_id, family_id, expires_at, used_at, revoked_at, replaced_by)) = row else {
                        return Ok(RotateOutcome::Unknown);
                    };
                    let family = RefreshFamily {
                        user_id: UserId(user_id),
                        family_id,
                    };
                    // The token to spend: the presented one, or for a retry
                    // within the grace window, the replacement it was given.
                    let mut spend = presented_hash.to_vec();
                    if revoked_at.is_none()
                        && let Some(used_at) = used_at
                    {
                        let retried = match replaced_by {
                            Some(replacement) if used_at >= retry_since.millis() => {
                                let next: Option<TokenRow> = sqlx::query_as(TOKEN_BY_HASH)
                                    .bind(&replacement)
                                    .fetch_optional(&mut *tx)
                                    .await
                                    .map_err(translate)?;
                                next.filter(|next| next.3.is_none() && next.4.is_none())
                                    .map(|_| replacement)
                            }
                            _ => None,
                        };
                        match retried {
                            Some(replacement) => spend = replacement,
                            None => {
                                revoke_family(&mut tx, family_id, now).await?;
                                tx.commit().await.map_err(translate)?;
                                return Ok(RotateOutcome::Reused(family));
                            }
                        }
                    } else if revoked_at.is_some() {
                        revoke_family(&mut tx, family_id, now).await?;
                        tx.commit().await.map_err(translate)?;
                        return Ok(RotateOutcome::Reused(family));
                    }
                    if expires_at <= now.millis() {
                        return Ok(RotateOutcome::Expired);
                    }
                    let session: Option<(i64, Option<i64>)> = sqlx::query_as(SESSION_END)
                        .bind(family_id)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(translate)?;
                    let session_end = match session {
                        Some((end, None)) if end > now.millis() => end,
                        _ => return Ok(RotateOutcome::Expired),
                    };
                    sqlx::query(SPEND_TOKEN)
                        .bind(&spend)
                        .bind(now.millis())
                        .bind(replacement_hash)
                        .execute(&mut *tx)
                        .await
                        .map_err(translate)?;
                    sqlx::query(INSERT_TOKEN)
                        .bind(replacement_hash)
                        .bind(user_id)
                        .bind(family_id)
                        .bind(now.millis())
                        .bind(replacement_expires_at.millis().min(session_end))
                        .execute(&mut *tx)
                        .await
                        .map_err(translate)?;
                    sqlx::query(TOUCH_SESSION)
                        .bind(family_id)
                        .bind(now.millis())
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

                async fn sessions_of(
                    &self,
                    user: UserId,
                    now: Timestamp,
                ) -> Result<Vec<SessionRecord>, StoreError> {
                    let rows: Vec<SessionRow> = sqlx::query_as(SESSIONS_OF)
                        .bind(user.get())
                        .bind(now.millis())
                        .fetch_all(&mut *self.read().await?)
                        .await
                        .map_err(translate)?;
                    Ok(rows.into_iter().map(session_record).collect())
                }

                async fn revoke_session(
                    &self,
                    user: UserId,
                    session: i64,
                    now: Timestamp,
                ) -> Result<bool, StoreError> {
                    let mut tx = self.begin().await?;
                    let ended = sqlx::query(REVOKE_OWN_SESSION)
                        .bind(session)
                        .bind(user.get())
                        .bind(now.millis())
                        .execute(&mut *tx)
                        .await
                        .map_err(translate)?
                        .rows_affected()
                        > 0;
                    if ended {
                        sqlx::query(REVOKE_FAMILY)
                            .bind(session)
                            .bind(now.millis())
                            .execute(&mut *tx)
                            .await
                            .map_err(translate)?;
                    }
                    tx.commit().await.map_err(translate)?;
                    Ok(ended)
                }

                async fn revoke_sessions_of(
                    &self,
                    user: UserId,
                    keep: Option<i64>,
                    now: Timestamp,
                ) -> Result<Vec<i64>, StoreError> {
                    let mut tx = self.begin().await?;
                    let ended = revoke_others(&mut tx, user, keep, now).await?;
                    tx.commit().await.map_err(translate)?;
                    Ok(ended)
                }

                async fn change_password(
                    &self,
                    user: UserId,
                    password_hash: &str,
                    keep: Option<i64>,
                    now: Timestamp,
                ) -> Result<Vec<i64>, StoreError> {
                    let mut tx = self.begin().await?;
                    let changed = sqlx::query(SET_PASSWORD)
                        .bind(user.get())
                        .bind(password_hash)
                        .bind(now.millis())
                        .execute(&mut *tx)
                        .await
                        .map_err(translate)?
                        .rows_affected();
                    if changed == 0 {
                        return Err(StoreError::NotFound(Missing::Account));
                    }
                    let ended = revoke_others(&mut tx, user, keep, now).await?;
                    tx.commit().await.map_err(translate)?;
                    Ok(ended)
                }

                async fn password_hash_of(&self, user: UserId) -> Result<Option<String>, StoreError> {
                    sqlx::query_scalar(PASSWORD_HASH)
                        .bind(user.get())
                        .fetch_optional(&mut *self.read().await?)
                        .await
                        .map_err(translate)
                }

                async fn sessions_revoked_since(&self, since: Timestamp) -> Result<Vec<i64>, StoreError> {
                    sqlx::query_scalar(REVOKED_SINCE)
                        .bind(since.millis())
                        .fetch_all(&mut *self.read().await?)
                        .await
                        .map_err(translate)
                }

                async fn prune_refresh_tokens(&self, expired_before: Timestamp) -> Result<u64, StoreError> {
                    let mut connection = self.write().await?;
                    let done = sqlx::query(PRUNE_TOKENS)
                        .bind(expired_before.millis())
                        .execute(&mut *connection)
                        .await
                        .map_err(translate)?;
                    // Revoked sessions stay a day: every instance's poll of
                    // the revocations sees them long before.
                    sqlx::query(PRUNE_SESSIONS)
                        .bind(expired_before.millis())
                        .bind(expired_before.plus_seconds(-24 * 3600).millis())
                        .execute(&mut *connection)
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
                    let mut tx = self.begin().await?;
                    revoke_family(&mut tx, family_id, now).await?;
                    tx.commit().await.map_err(translate)?;
                    Ok(Some(RefreshFamily {
                        user_id: UserId(user_id),
                        family_id,
                    }))
                }
            }

            /// The family's tokens and its session, revoked.
            async fn revoke_family(
                tx: &mut Tx,
                family_id: i64,
                now: Timestamp,
            ) -> Result<(), StoreError> {
                for statement in [REVOKE_FAMILY, REVOKE_SESSION] {
                    sqlx::query(statement)
                        .bind(family_id)
                        .bind(now.millis())
                        .execute(&mut **tx)
                        .await
                        .map_err(translate)?;
                }
                Ok(())
            }

            /// Every open session of `user` but `keep`, with its tokens, revoked.
            pub(super) async fn revoke_others(
                tx: &mut Tx,
                user: UserId,
                keep: Option<i64>,
                now: Timestamp,
            ) -> Result<Vec<i64>, StoreError> {
                let keep = keep.unwrap_or(KEEP_NONE);
                sqlx::query(REVOKE_TOKENS_OF_USER)
                    .bind(user.get())
                    .bind(keep)
                    .bind(now.millis())
                    .execute(&mut **tx)
                    .await
                    .map_err(translate)?;
                sqlx::query_scalar(REVOKE_SESSIONS_OF_USER)
                    .bind(user.get())
                    .bind(keep)
                    .bind(now.millis())
                    .fetch_all(&mut **tx)
                    .await
                    .map_err(translate)
            }
        }
    };
}
pub(crate) use token_store;
