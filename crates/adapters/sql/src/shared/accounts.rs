//! Accounts and profiles.
//!
//! Written once for both engines and instantiated in each engine's
//! `mod.rs` (see `crate::shared`).

/// `mod accounts` for `$store`.
macro_rules! account_store {
    ($store:ident) => {
        mod accounts {
            use async_trait::async_trait;
            use starling_app::ports::{AccountStore, Missing, NewEvent, NewUser, StoreError, UserCredentials};
            use starling_domain::{Timestamp, User, UserId, UserSummary};

            use super::{$store, append_event, email_conflict, id_list, text_list, translate};
            use crate::UserRow;

            macro_rules! user_columns {
                () => {
                    "id, handle, display_name, bio, created_at, followers_count, following_count, posts_count, role, status"
                };
            }

            const INSERT_USER: &str = "INSERT INTO users (id, handle, handle_key, email, display_name, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6)";
            const INSERT_CREDENTIALS: &str =
                "INSERT INTO credentials (user_id, password_hash, updated_at) VALUES ($1, $2, $3)";
            const CREDENTIALS_BY_LOGIN: &str = "SELECT c.user_id, c.password_hash FROM users u \
                 JOIN credentials c ON c.user_id = u.id WHERE u.handle_key = $1 OR u.email = $1 LIMIT 1";
            const USER_BY_ID: &str = concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1");
            const USER_BY_HANDLE: &str = concat!(
                "SELECT ",
                user_columns!(),
                " FROM users WHERE handle_key = $1"
            );
            const USER_SUMMARIES: &str =
                concat!("SELECT id, handle, display_name, status FROM users WHERE id ", dialect!(any 1));
            const USERS_BY_HANDLES: &str =
                concat!("SELECT id, handle, display_name, status FROM users WHERE handle_key ", dialect!(any 1));
            const USER_IDS_AFTER: &str = "SELECT id FROM users WHERE id > $1 ORDER BY id LIMIT $2";
            const UPDATE_PROFILE: &str = concat!(
                "UPDATE users SET display_name = COALESCE($2, display_name), bio = COALESCE($3, bio), updated_at = $4 \
                 WHERE id = $1 RETURNING ",
                user_columns!()
            );

            #[async_trait]
            impl AccountStore for $store {
                async fn create_user(&self, new_user: NewUser) -> Result<User, StoreError> {
                    self.wrote(new_user.id);
                    let mut tx = self.begin().await?;
                    let inserted = sqlx::query(INSERT_USER)
                        .bind(new_user.id.get())
                        .bind(new_user.handle.as_str())
                        .bind(new_user.handle.canonical())
                        .bind(new_user.email.as_str())
                        .bind(&new_user.display_name)
                        .bind(new_user.created_at.millis())
                        .execute(&mut *tx)
                        .await;
                    if let Err(error) = inserted {
                        return Err(match &error {
                            sqlx::Error::Database(database) if database.is_unique_violation() => {
                                if email_conflict(database.as_ref()) {
                                    StoreError::EmailTaken
                                } else {
                                    StoreError::HandleTaken
                                }
                            }
                            _ => translate(error),
                        });
                    }
                    sqlx::query(INSERT_CREDENTIALS)
                        .bind(new_user.id.get())
                        .bind(&new_user.password_hash)
                        .bind(new_user.created_at.millis())
                        .execute(&mut *tx)
                        .await
                        .map_err(translate)?;
                    append_event(&mut tx, &new_user.event, new_user.created_at).await?;
                    tx.commit().await.map_err(translate)?;
                    self.commits.committed();
                    Ok(User {
                        id: new_user.id,
                        handle: new_user.handle,
                        display_name: new_user.display_name,
                        bio: String::new(),
                        created_at: new_user.created_at,
                        followers_count: 0,
                        following_count: 0,
                        posts_count: 0,
                        role: starling_domain::Role::User,
                        status: starling_domain::AccountStatus::Active,
                    })
                }

                async fn credentials_by_login(
                    &self,
                    login: &str,
                ) -> Result<Option<UserCredentials>, StoreError> {
                    // No handle or email holds NUL (and PostgreSQL text cannot).
                    if login.contains('\0') {
                        return Ok(None);
                    }
                    let row: Option<(i64, String)> = sqlx::query_as(CREDENTIALS_BY_LOGIN)
                        .bind(login)
                        .fetch_optional(&mut *self.read().await?)
                        .await
                        .map_err(translate)?;
                    Ok(row.map(|(user_id, password_hash)| UserCredentials {
                        user_id: UserId(user_id),
                        password_hash,
                    }))
                }

                async fn user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
                    let row: Option<UserRow> = sqlx::query_as(USER_BY_ID)
                        .bind(id.get())
                        .fetch_optional(&mut *self.read().await?)
                        .await
                        .map_err(translate)?;
                    Ok(row.map(User::from))
                }

                async fn user_by_handle(
                    &self,
                    reader: Option<UserId>,
                    handle_canonical: &str,
                ) -> Result<Option<User>, StoreError> {
                    if handle_canonical.contains('\0') {
                        return Ok(None);
                    }
                    // Not on a replica (yet) is asked of the primary before
                    // answering that there is no such account.
                    let row = self
                        .read_found(reader, |pool| async move {
                            sqlx::query_as::<_, UserRow>(USER_BY_HANDLE)
                                .bind(handle_canonical)
                                .fetch_optional(&pool)
                                .await
                        })
                        .await?;
                    Ok(row.map(User::from))
                }

                async fn users_by_handles(
                    &self,
                    handle_keys: &[String],
                ) -> Result<Vec<UserSummary>, StoreError> {
                    if handle_keys.is_empty() {
                        return Ok(Vec::new());
                    }
                    // On the primary: a mention of an account registered a moment ago
                    // must resolve.
                    let rows: Vec<(i64, String, String, String)> = sqlx::query_as(USERS_BY_HANDLES)
                        .bind(text_list(handle_keys))
                        .fetch_all(&mut *self.read().await?)
                        .await
                        .map_err(translate)?;
                    Ok(crate::summaries(rows))
                }

                async fn user_summaries(&self, ids: &[UserId]) -> Result<Vec<UserSummary>, StoreError> {
                    if ids.is_empty() {
                        return Ok(Vec::new());
                    }
                    // On the primary, as posts are: hydration's results are cached.
                    let rows: Vec<(i64, String, String, String)> = sqlx::query_as(USER_SUMMARIES)
                        .bind(id_list(ids, |id| id.get()))
                        .fetch_all(&mut *self.read().await?)
                        .await
                        .map_err(translate)?;
                    Ok(crate::summaries(rows))
                }

                async fn user_ids_after(
                    &self,
                    after: Option<UserId>,
                    limit: usize,
                ) -> Result<Vec<UserId>, StoreError> {
                    let rows: Vec<(i64,)> = sqlx::query_as(USER_IDS_AFTER)
                        .bind(after.map_or(i64::MIN, |id| id.0))
                        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                        .fetch_all(&mut *self.read().await?)
                        .await
                        .map_err(translate)?;
                    Ok(rows.into_iter().map(|(id,)| UserId(id)).collect())
                }

                async fn update_profile(
                    &self,
                    id: UserId,
                    display_name: Option<String>,
                    bio: Option<String>,
                    event: NewEvent,
                    now: Timestamp,
                ) -> Result<User, StoreError> {
                    self.wrote(id);
                    let mut tx = self.begin().await?;
                    let row: Option<UserRow> = sqlx::query_as(UPDATE_PROFILE)
                        .bind(id.get())
                        .bind(display_name)
                        .bind(bio)
                        .bind(now.millis())
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(translate)?;
                    let Some(row) = row else {
                        return Err(StoreError::NotFound(Missing::Account));
                    };
                    append_event(&mut tx, &event, now).await?;
                    tx.commit().await.map_err(translate)?;
                    self.commits.committed();
                    Ok(row.into())
                }
            }
        }
    };
}
pub(crate) use account_store;
