//! Staff's side of the store: the admin listing (offset pages with
//! filters, search and an allow-listed sort), moderation writes, and the
//! audit log each of them writes in its own transaction.
//!
//! One implementation for both engines (see `shared/mod.rs`). The listing's
//! statement is assembled from fixed fragments only: the caller's values are
//! always bound, and the columns come from `AccountSortField`, never from
//! the request.

/// `mod admin` with `impl AdminStore` for `$store`, and `record_audit` for
/// the other modules' moderation writes (a moderator's post removal).
macro_rules! admin_store {
    ($store:ident) => {
        mod admin {
            use async_trait::async_trait;
            use starling_app::ports::{
                AccountQuery, AccountRecord, AccountSort, AccountSortField, AdminStore, AuditAction,
                AuditEntry, AuditQuery, Missing, NewEvent, StatusChange, StoreError,
            };
            use starling_domain::{AccountStatus, PostId, Role, Timestamp, UserId};

            use super::{$store, Tx, append_event, translate};
            use crate::{UserRow, limit_param};

            const ACCOUNT_COLUMNS: &str = "id, handle, display_name, bio, created_at, followers_count, \
                 following_count, posts_count, role, status, email, suspended_at";
            const STANDING: &str = "SELECT role, status FROM users WHERE id = $1";
            const EXISTS: &str = "SELECT count(*) FROM users WHERE id = $1";
            const SUSPEND: &str = "UPDATE users SET status = 'suspended', suspended_at = $2 \
                 WHERE id = $1 AND status = 'active'";
            const REINSTATE: &str = "UPDATE users SET status = 'active', suspended_at = NULL \
                 WHERE id = $1 AND status = 'suspended'";
            const SET_ROLE: &str = "UPDATE users SET role = $3 WHERE id = $1 AND role = $2";
            const INSERT_AUDIT: &str = "INSERT INTO audit_log \
                 (id, actor_id, action, target_user_id, target_post_id, reason, details, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
            const AUDIT_COLUMNS: &str =
                "id, actor_id, action, target_user_id, target_post_id, reason, details, created_at";

            #[derive(sqlx::FromRow)]
            struct AccountRow {
                #[sqlx(flatten)]
                user: UserRow,
                email: String,
                suspended_at: Option<i64>,
            }

            impl From<AccountRow> for AccountRecord {
                fn from(row: AccountRow) -> Self {
                    AccountRecord {
                        user: row.user.into(),
                        email: row.email,
                        suspended_at: row.suspended_at.map(Timestamp),
                        deletion: None,
                    }
                }
            }

            type AuditRow = (i64, Option<i64>, String, Option<i64>, Option<i64>, Option<String>, String, i64);

            fn audit_entry(row: AuditRow) -> Result<AuditEntry, StoreError> {
                let (id, actor, action, target_user, target_post, reason, details, created_at) = row;
                let action = AuditAction::parse(&action).ok_or_else(|| {
                    StoreError::Unexpected(anyhow::anyhow!("audit entry {id} has an unknown action {action:?}"))
                })?;
                Ok(AuditEntry {
                    id,
                    actor: actor.map(UserId),
                    action,
                    target_user: target_user.map(UserId),
                    target_post: target_post.map(PostId),
                    reason,
                    details,
                    created_at: Timestamp(created_at),
                })
            }

            /// Writes `entry` in `tx`: the action and its record commit together.
            pub(super) async fn record_audit(tx: &mut Tx, entry: &AuditEntry) -> Result<(), StoreError> {
                sqlx::query(INSERT_AUDIT)
                    .bind(entry.id)
                    .bind(entry.actor.map(UserId::get))
                    .bind(entry.action.as_str())
                    .bind(entry.target_user.map(UserId::get))
                    .bind(entry.target_post.map(PostId::get))
                    .bind(entry.reason.as_deref())
                    .bind(&entry.details)
                    .bind(entry.created_at.millis())
                    .execute(&mut **tx)
                    .await
                    .map_err(translate)?;
                Ok(())
            }

            /// A `LIKE` pattern finding `text` anywhere, its wildcards escaped
            /// (with `ESCAPE '\'`).
            fn containing(text: &str) -> String {
                let mut pattern = String::with_capacity(text.len() + 2);
                pattern.push('%');
                for c in text.chars() {
                    if matches!(c, '%' | '_' | '\\') {
                        pattern.push('\\');
                    }
                    pattern.push(c);
                }
                pattern.push('%');
                pattern
            }

            /// The `WHERE` clause of a listing (empty when it has no filter)
            /// and the texts it binds, from `$1` on.
            fn account_filter(query: &AccountQuery) -> (String, Vec<String>) {
                let mut clauses = Vec::new();
                let mut binds = Vec::new();
                if let Some(status) = query.status {
                    binds.push(status.as_str().to_owned());
                    clauses.push(format!("status = ${}", binds.len()));
                }
                if let Some(role) = query.role {
                    binds.push(role.as_str().to_owned());
                    clauses.push(format!("role = ${}", binds.len()));
                }
                if let Some(search) = &query.search {
                    binds.push(containing(search));
                    let n = binds.len();
                    clauses.push(format!(
                        "(handle_key LIKE ${n} ESCAPE '\\' OR lower(display_name) LIKE ${n} ESCAPE '\\' \
                         OR email LIKE ${n} ESCAPE '\\')"
                    ));
                }
                (where_clause(&clauses), binds)
            }

            fn where_clause(clauses: &[String]) -> String {
                if clauses.is_empty() {
                    String::new()
                } else {
                    format!(" WHERE {}", clauses.join(" AND "))
                }
            }

            /// `ORDER BY` from the allow-listed keys, ties broken by id (in
            /// the last key's direction) so that pages never overlap.
            fn account_order(sort: &[AccountSort]) -> String {
                let direction = |descending: bool| if descending { "DESC" } else { "ASC" };
                if sort.is_empty() {
                    return " ORDER BY created_at DESC, id DESC".to_owned();
                }
                let mut keys: Vec<String> = sort
                    .iter()
                    .map(|key| {
                        let column = match key.field {
                            AccountSortField::CreatedAt => "created_at",
                            AccountSortField::Handle => "handle_key",
                            AccountSortField::FollowersCount => "followers_count",
                            AccountSortField::PostsCount => "posts_count",
                        };
                        format!("{column} {}", direction(key.descending))
                    })
                    .collect();
                let last = sort.last().is_some_and(|key| key.descending);
                keys.push(format!("id {}", direction(last)));
                format!(" ORDER BY {}", keys.join(", "))
            }

            fn offset_param(offset: u64) -> i64 {
                i64::try_from(offset).unwrap_or(i64::MAX)
            }

            #[async_trait]
            impl AdminStore for $store {
                async fn standing_of(&self, user: UserId) -> Result<Option<(Role, AccountStatus)>, StoreError> {
                    let row: Option<(String, String)> = sqlx::query_as(STANDING)
                        .bind(user.get())
                        .fetch_optional(&mut *self.read().await?)
                        .await
                        .map_err(translate)?;
                    Ok(row.map(|(role, status)| (Role::stored(&role), AccountStatus::stored(&status))))
                }

                async fn find_accounts(
                    &self,
                    query: &AccountQuery,
                ) -> Result<(Vec<AccountRecord>, u64), StoreError> {
                    let (filter, binds) = account_filter(query);
                    let page = format!(
                        "SELECT {ACCOUNT_COLUMNS} FROM users{filter}{} LIMIT ${} OFFSET ${}",
                        account_order(&query.sort),
                        binds.len() + 1,
                        binds.len() + 2
                    );
                    let count = format!("SELECT count(*) FROM users{filter}");
                    let mut connection = self.read().await?;
                    let mut statement = sqlx::query_as::<_, AccountRow>(sqlx::AssertSqlSafe(page));
                    for bind in &binds {
                        statement = statement.bind(bind);
                    }
                    let rows = statement
                        .bind(limit_param(query.limit))
                        .bind(offset_param(query.offset))
                        .fetch_all(&mut *connection)
                        .await
                        .map_err(translate)?;
                    let mut statement = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(count));
                    for bind in &binds {
                        statement = statement.bind(bind);
                    }
                    let total = statement.fetch_one(&mut *connection).await.map_err(translate)?;
                    Ok((
                        rows.into_iter().map(AccountRecord::from).collect(),
                        u64::try_from(total).unwrap_or_default(),
                    ))
                }

                async fn account_record(&self, user: UserId) -> Result<Option<AccountRecord>, StoreError> {
                    let statement = format!("SELECT {ACCOUNT_COLUMNS} FROM users WHERE id = $1");
                    let row: Option<AccountRow> = sqlx::query_as(sqlx::AssertSqlSafe(statement))
                        .bind(user.get())
                        .fetch_optional(&mut *self.read().await?)
                        .await
                        .map_err(translate)?;
                    Ok(row.map(AccountRecord::from))
                }

                async fn set_suspended(
                    &self,
                    user: UserId,
                    suspended: bool,
                    audit: AuditEntry,
                    event: NewEvent,
                    now: Timestamp,
                ) -> Result<StatusChange, StoreError> {
                    let mut tx = self.begin().await?;
                    let changed = if suspended {
                        sqlx::query(SUSPEND).bind(user.get()).bind(now.millis())
                    } else {
                        sqlx::query(REINSTATE).bind(user.get())
                    }
                    .execute(&mut *tx)
                    .await
                    .map_err(translate)?
                    .rows_affected();
                    if changed == 0 {
                        return missing_or(&mut tx, user, StatusChange::Unchanged).await;
                    }
                    let ended_sessions = if suspended {
                        super::tokens::revoke_others(&mut tx, user, None, now).await?
                    } else {
                        Vec::new()
                    };
                    record_audit(&mut tx, &audit).await?;
                    append_event(&mut tx, &event, now).await?;
                    tx.commit().await.map_err(translate)?;
                    self.commits.committed();
                    Ok(StatusChange::Changed { ended_sessions })
                }

                async fn set_role(
                    &self,
                    user: UserId,
                    from: Role,
                    to: Role,
                    audit: AuditEntry,
                ) -> Result<bool, StoreError> {
                    let mut tx = self.begin().await?;
                    let changed = sqlx::query(SET_ROLE)
                        .bind(user.get())
                        .bind(from.as_str())
                        .bind(to.as_str())
                        .execute(&mut *tx)
                        .await
                        .map_err(translate)?
                        .rows_affected();
                    if changed == 0 {
                        return missing_or(&mut tx, user, false).await;
                    }
                    record_audit(&mut tx, &audit).await?;
                    tx.commit().await.map_err(translate)?;
                    Ok(true)
                }

                async fn audit_log(&self, query: &AuditQuery) -> Result<(Vec<AuditEntry>, u64), StoreError> {
                    let mut clauses = Vec::new();
                    let mut binds: Vec<AuditBind> = Vec::new();
                    if let Some(action) = query.action {
                        binds.push(AuditBind::Text(action.as_str()));
                        clauses.push(format!("action = ${}", binds.len()));
                    }
                    if let Some(actor) = query.actor {
                        binds.push(AuditBind::Id(actor.get()));
                        clauses.push(format!("actor_id = ${}", binds.len()));
                    }
                    if let Some(target) = query.target_user {
                        binds.push(AuditBind::Id(target.get()));
                        clauses.push(format!("target_user_id = ${}", binds.len()));
                    }
                    let filter = where_clause(&clauses);
                    let page = format!(
                        "SELECT {AUDIT_COLUMNS} FROM audit_log{filter} ORDER BY id DESC LIMIT ${} OFFSET ${}",
                        binds.len() + 1,
                        binds.len() + 2
                    );
                    let count = format!("SELECT count(*) FROM audit_log{filter}");
                    let mut connection = self.read().await?;
                    let mut statement = sqlx::query_as::<_, AuditRow>(sqlx::AssertSqlSafe(page));
                    for bind in &binds {
                        statement = match bind {
                            AuditBind::Text(text) => statement.bind(*text),
                            AuditBind::Id(id) => statement.bind(*id),
                        };
                    }
                    let rows = statement
                        .bind(limit_param(query.limit))
                        .bind(offset_param(query.offset))
                        .fetch_all(&mut *connection)
                        .await
                        .map_err(translate)?;
                    let mut statement = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(count));
                    for bind in &binds {
                        statement = match bind {
                            AuditBind::Text(text) => statement.bind(*text),
                            AuditBind::Id(id) => statement.bind(*id),
                        };
                    }
                    let total = statement.fetch_one(&mut *connection).await.map_err(translate)?;
                    let entries = rows.into_iter().map(audit_entry).collect::<Result<_, _>>()?;
                    Ok((entries, u64::try_from(total).unwrap_or_default()))
                }
            }

            enum AuditBind {
                Text(&'static str),
                Id(i64),
            }

            /// After an update that changed nothing: `NotFound` when there is
            /// no such account, else `unchanged`.
            async fn missing_or<T>(tx: &mut Tx, user: UserId, unchanged: T) -> Result<T, StoreError> {
                let found: i64 = sqlx::query_scalar(EXISTS)
                    .bind(user.get())
                    .fetch_one(&mut **tx)
                    .await
                    .map_err(translate)?;
                if found == 0 {
                    Err(StoreError::NotFound(Missing::Account))
                } else {
                    Ok(unchanged)
                }
            }
        }
    };
}
pub(crate) use admin_store;
