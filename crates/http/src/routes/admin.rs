//! `/api/v1/admin/...`: staff find accounts, suspend and reinstate them,
//! change roles, remove posts and read the audit log. Only a person signed
//! in calls these (no API key); the use cases check the role.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use starling_app::ports::{AccountQuery, AccountSort, AccountSortField, AuditAction, AuditQuery};
use starling_domain::{AccountStatus, PostId, Role, UserId};
use utoipa::IntoParams;

use crate::extract::{AppJson, AppQuery, AuthSession, JsonOrEmpty};
use crate::models::admin::{
    ACCOUNT_FIELDS, AdminAccountBody, AdminAccountsBody, AuditBody, ModerationRequest,
    RemovePostRequest, SetRoleRequest,
};
use crate::pagination::OffsetRequest;
use crate::problem::{ApiError, Problem};
use crate::state::HttpState;

/// The longest `?search=`, in characters.
const SEARCH_MAX_CHARS: usize = 100;
/// The most `?sort=` keys.
const SORT_MAX_KEYS: usize = 4;

/// Query parameters of the admin account listing.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AccountsParams {
    /// The page, from 1 (default 1).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 10000)]
    pub page: Option<String>,
    /// Accounts per page, 1 to 100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// Only accounts in this state: `active`, `suspended`, `deleting` or
    /// `deleted`.
    #[param(example = "suspended")]
    pub status: Option<String>,
    /// Only accounts with this role: `user`, `moderator` or `admin`.
    #[param(example = "moderator")]
    pub role: Option<String>,
    /// Comma-separated keys among `created_at`, `handle`,
    /// `followers_count`, `posts_count`; `-` sorts one descending
    /// (default `-created_at`).
    #[param(example = "-created_at,handle")]
    pub sort: Option<String>,
    /// Text found in the handle, display name or email (ignoring case).
    #[param(example = "ada")]
    pub search: Option<String>,
    /// Comma-separated fields to answer (`id` always comes).
    #[param(example = "id,handle,email,status")]
    pub fields: Option<String>,
}

impl AccountsParams {
    fn query(&self, page: OffsetRequest) -> Result<AccountQuery, ApiError> {
        let status = match self.status.as_deref() {
            None => None,
            Some(text) => Some(AccountStatus::parse(text).ok_or_else(|| {
                ApiError::invalid_parameter(
                    "status",
                    "must be active, suspended, deleting or deleted",
                )
            })?),
        };
        let search = match self.search.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) if text.chars().count() > SEARCH_MAX_CHARS => {
                return Err(ApiError::invalid_parameter(
                    "search",
                    format!("must be at most {SEARCH_MAX_CHARS} characters long"),
                ));
            }
            Some(text) => Some(text.to_lowercase()),
        };
        Ok(AccountQuery {
            status,
            role: parse_role(self.role.as_deref(), "role")?,
            search,
            sort: parse_sort(self.sort.as_deref())?,
            offset: page.offset(),
            limit: page.limit,
        })
    }
}

fn parse_role(text: Option<&str>, field: &str) -> Result<Option<Role>, ApiError> {
    text.map(|text| {
        Role::parse(text)
            .ok_or_else(|| ApiError::invalid_parameter(field, "must be user, moderator or admin"))
    })
    .transpose()
}

/// `?sort=-created_at,handle` against the allow-list.
fn parse_sort(text: Option<&str>) -> Result<Vec<AccountSort>, ApiError> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    let invalid = || {
        ApiError::invalid_parameter(
            "sort",
            format!(
                "must be up to {SORT_MAX_KEYS} distinct comma-separated keys among created_at, \
                 handle, followers_count and posts_count, each optionally prefixed with - \
                 (descending)"
            ),
        )
    };
    let mut keys: Vec<AccountSort> = Vec::new();
    for key in text.split(',').map(str::trim) {
        let (descending, name) = match key.strip_prefix('-') {
            Some(name) => (true, name),
            None => (false, key),
        };
        let field = match name {
            "created_at" => AccountSortField::CreatedAt,
            "handle" => AccountSortField::Handle,
            "followers_count" => AccountSortField::FollowersCount,
            "posts_count" => AccountSortField::PostsCount,
            _ => return Err(invalid()),
        };
        if keys.iter().any(|known| known.field == field) || keys.len() == SORT_MAX_KEYS {
            return Err(invalid());
        }
        keys.push(AccountSort { field, descending });
    }
    Ok(keys)
}

/// `?fields=` against the account's fields; `None` for all of them.
fn parse_fields(text: Option<&str>) -> Result<Option<Vec<&'static str>>, ApiError> {
    let Some(text) = text else {
        return Ok(None);
    };
    let mut fields = vec!["id"];
    for name in text.split(',').map(str::trim) {
        let field = ACCOUNT_FIELDS
            .iter()
            .find(|field| **field == name)
            .ok_or_else(|| {
                ApiError::invalid_parameter(
                    "fields",
                    format!(
                        "must be comma-separated fields among {}",
                        ACCOUNT_FIELDS.join(", ")
                    ),
                )
            })?;
        if !fields.contains(field) {
            fields.push(field);
        }
    }
    Ok(Some(fields))
}

/// The account as JSON, with only `fields` when given.
fn selected(account: AdminAccountBody, fields: Option<&[&str]>) -> serde_json::Value {
    let mut value = serde_json::to_value(account).unwrap_or_default();
    if let (Some(fields), serde_json::Value::Object(object)) = (fields, &mut value) {
        object.retain(|key, _| fields.contains(&key.as_str()));
    }
    value
}

/// The account a path names. A malformed id names none: the use case
/// still checks the caller's role first (a user gets 403, never a 404 that
/// says the route exists for them), then finds nothing.
fn account_id(text: &str) -> UserId {
    UserId(positive_id(text).unwrap_or(0))
}

/// An id as a path or query gives it: a positive 64-bit integer.
fn positive_id(text: &str) -> Option<i64> {
    text.parse::<i64>().ok().filter(|id| *id > 0)
}

/// Accounts, filtered, searched and sorted, by offset pages with a total
/// (moderators and admins).
#[utoipa::path(get, path = "/api/v1/admin/accounts", tag = "admin", security(("bearer" = [])),
    params(AccountsParams),
    responses(
        (status = 200, body = AdminAccountsBody),
        (status = 400, description = "A parameter is not one the listing knows", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not staff (or asked with an API key)", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn accounts(
    State(state): State<HttpState>,
    AuthSession(caller): AuthSession,
    AppQuery(params): AppQuery<AccountsParams>,
) -> Result<Json<AdminAccountsBody>, ApiError> {
    let page = OffsetRequest::parse(params.page.as_deref(), params.limit.as_deref())?;
    let query = params.query(page)?;
    let fields = parse_fields(params.fields.as_deref())?;
    let found = state.app.admin().accounts(caller.user, query).await?;
    Ok(Json(AdminAccountsBody {
        data: found
            .accounts
            .into_iter()
            .map(|account| selected(account.into(), fields.as_deref()))
            .collect(),
        pagination: page.pagination(found.total),
    }))
}

/// One account as staff see it, suspended or not.
#[utoipa::path(get, path = "/api/v1/admin/accounts/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "The account's id")),
    responses(
        (status = 200, body = AdminAccountBody),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn account(
    State(state): State<HttpState>,
    AuthSession(caller): AuthSession,
    Path(id): Path<String>,
) -> Result<Json<AdminAccountBody>, ApiError> {
    let record = state
        .app
        .admin()
        .account(caller.user, account_id(&id))
        .await?;
    Ok(Json(record.into()))
}

/// Suspend an account: it cannot sign in, its sessions end everywhere
/// (live streams at once, access tokens within `auth.revocation_poll_ms`),
/// its API keys are refused, and its profile and posts disappear from
/// feeds, profiles, threads and notifications until it is reinstated.
/// Staff act only on accounts of a lower role. Idempotent.
#[utoipa::path(post, path = "/api/v1/admin/accounts/{id}/suspend", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "The account's id")),
    request_body(content = ModerationRequest, description = "Optional: the reason, kept in the audit log"),
    responses(
        (status = 200, description = "The account, suspended", body = AdminAccountBody),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not staff, or the account's role is not below the caller's", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn suspend(
    State(state): State<HttpState>,
    AuthSession(caller): AuthSession,
    Path(id): Path<String>,
    JsonOrEmpty(request): JsonOrEmpty<ModerationRequest>,
) -> Result<Json<AdminAccountBody>, ApiError> {
    moderate(&state, caller.user, &id, request, true).await
}

/// Reinstate a suspended account: its profile and posts are back at once;
/// it signs in again. Idempotent.
#[utoipa::path(post, path = "/api/v1/admin/accounts/{id}/unsuspend", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "The account's id")),
    request_body(content = ModerationRequest, description = "Optional: the reason, kept in the audit log"),
    responses(
        (status = 200, description = "The account, active", body = AdminAccountBody),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn unsuspend(
    State(state): State<HttpState>,
    AuthSession(caller): AuthSession,
    Path(id): Path<String>,
    JsonOrEmpty(request): JsonOrEmpty<ModerationRequest>,
) -> Result<Json<AdminAccountBody>, ApiError> {
    moderate(&state, caller.user, &id, request, false).await
}

/// Suspends (or reinstates) the account `id` names.
async fn moderate(
    state: &HttpState,
    caller: UserId,
    id: &str,
    request: ModerationRequest,
    suspend: bool,
) -> Result<Json<AdminAccountBody>, ApiError> {
    let (admin, id, reason) = (state.app.admin(), account_id(id), request.reason);
    let record = if suspend {
        admin.suspend(caller, id, reason.as_deref()).await?
    } else {
        admin.unsuspend(caller, id, reason.as_deref()).await?
    };
    Ok(Json(record.into()))
}

/// Give an account a role (admins only, never their own).
#[utoipa::path(put, path = "/api/v1/admin/accounts/{id}/role", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "The account's id")),
    request_body = SetRoleRequest,
    responses(
        (status = 200, description = "The account with its new role", body = AdminAccountBody),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin, or the caller's own account", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The role changed meanwhile", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn set_role(
    State(state): State<HttpState>,
    AuthSession(caller): AuthSession,
    Path(id): Path<String>,
    AppJson(request): AppJson<SetRoleRequest>,
) -> Result<Json<AdminAccountBody>, ApiError> {
    let id = account_id(&id);
    let role = Role::parse(&request.role).ok_or_else(|| {
        ApiError::from(starling_app::AppError::Validation(
            starling_domain::ValidationErrors::single("role", "must be user, moderator or admin"),
        ))
    })?;
    let record = state.app.admin().set_role(caller.user, id, role).await?;
    Ok(Json(record.into()))
}

/// Remove someone's post (moderators and admins), with a reason: it
/// disappears as if its author had deleted it, and the audit log keeps the
/// reason and the text removed.
#[utoipa::path(delete, path = "/api/v1/admin/posts/{post}", tag = "admin", security(("bearer" = [])),
    params(("post" = String, Path, description = "The post's id")),
    request_body = RemovePostRequest,
    responses(
        (status = 204, description = "Removed"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such post, or deleted already", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No reason, or one over 1000 characters", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn remove_post(
    State(state): State<HttpState>,
    AuthSession(caller): AuthSession,
    Path(post): Path<String>,
    AppJson(request): AppJson<RemovePostRequest>,
) -> Result<StatusCode, ApiError> {
    // A malformed id names no post (see `account_id`).
    let post = PostId(positive_id(&post).unwrap_or(0));
    state
        .app
        .posts()
        .remove(caller.user, post, &request.reason)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Query parameters of the audit log.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditParams {
    /// The page, from 1 (default 1).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 10000)]
    pub page: Option<String>,
    /// Entries per page, 1 to 100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// Only this action: `suspend`, `unsuspend`, `grant_role`, `remove_post`.
    pub action: Option<String>,
    /// Only actions by this account (id).
    pub actor: Option<String>,
    /// Only actions on this account (id).
    pub target: Option<String>,
}

fn id_parameter(text: Option<&str>, field: &str) -> Result<Option<UserId>, ApiError> {
    text.map(|text| {
        positive_id(text)
            .map(UserId)
            .ok_or_else(|| ApiError::invalid_parameter(field, "must be an account id"))
    })
    .transpose()
}

/// Every admin action, newest first (moderators and admins).
#[utoipa::path(get, path = "/api/v1/admin/audit", tag = "admin", security(("bearer" = [])),
    params(AuditParams),
    responses(
        (status = 200, body = AuditBody),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn audit(
    State(state): State<HttpState>,
    AuthSession(caller): AuthSession,
    AppQuery(params): AppQuery<AuditParams>,
) -> Result<Json<AuditBody>, ApiError> {
    let page = OffsetRequest::parse(params.page.as_deref(), params.limit.as_deref())?;
    let action = match params.action.as_deref() {
        None => None,
        Some(text) => Some(AuditAction::parse(text).ok_or_else(|| {
            ApiError::invalid_parameter(
                "action",
                "must be suspend, unsuspend, grant_role or remove_post",
            )
        })?),
    };
    let query = AuditQuery {
        action,
        actor: id_parameter(params.actor.as_deref(), "actor")?,
        target_user: id_parameter(params.target.as_deref(), "target")?,
        offset: page.offset(),
        limit: page.limit,
    };
    let found = state.app.admin().audit(caller.user, query).await?;
    Ok(Json(AuditBody {
        data: found.entries.into_iter().map(Into::into).collect(),
        pagination: page.pagination(found.total),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_keys_come_from_the_allow_list_only() {
        let keys = parse_sort(Some("-created_at, handle")).unwrap();
        assert_eq!(
            keys,
            [
                AccountSort {
                    field: AccountSortField::CreatedAt,
                    descending: true
                },
                AccountSort {
                    field: AccountSortField::Handle,
                    descending: false
                },
            ]
        );
        for bad in [
            "email",
            "id;DROP TABLE users",
            "handle,handle",
            "",
            "--handle",
            "created_at,handle,posts_count,followers_count,handle",
        ] {
            assert!(parse_sort(Some(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn fields_are_selected_with_the_id() {
        assert_eq!(parse_fields(None).unwrap(), None);
        assert_eq!(
            parse_fields(Some("email,handle,email")).unwrap(),
            Some(vec!["id", "email", "handle"])
        );
        assert!(parse_fields(Some("password_hash")).is_err());
    }
}
