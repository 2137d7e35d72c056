//! `/api/v1/users/{user}/follow`, `/followers`, `/following`, `/block`,
//! `/mute`, and the caller's `/me/blocks` and `/me/mutes`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use starling_app::ports::Relation;
use starling_domain::UserId;

use crate::extract::{AppQuery, AuthUser, UserPath};
use crate::models::UserBody;
use crate::pagination::{PageBody, PageParams};
use crate::problem::{ApiError, Problem};
use crate::routes::resolve_user;
use crate::state::HttpState;

/// Follow a user. Idempotent.
#[utoipa::path(post, path = "/api/v1/users/{user}/follow", tag = "graph", security(("bearer" = [])),
    params(("user" = String, Path, description = "A user id, or @handle"), ("Idempotency-Key" = Option<String>, Header, description = "Retry safely: the same key and request within 24 h answer what the first did")),
    responses(
        (status = 204, description = "Following"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Following yourself", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn follow(
    State(state): State<HttpState>,
    AuthUser(caller): AuthUser,
    UserPath(which): UserPath,
) -> Result<StatusCode, ApiError> {
    let followee = resolve_user(&state, Some(caller), which).await?;
    state.app.graph().follow(caller, followee).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Stop following a user. Idempotent.
#[utoipa::path(delete, path = "/api/v1/users/{user}/follow", tag = "graph", security(("bearer" = [])),
    params(("user" = String, Path, description = "A user id, or @handle")),
    responses(
        (status = 204, description = "Not following"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn unfollow(
    State(state): State<HttpState>,
    AuthUser(caller): AuthUser,
    UserPath(which): UserPath,
) -> Result<StatusCode, ApiError> {
    let followee = resolve_user(&state, Some(caller), which).await?;
    state.app.graph().unfollow(caller, followee).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who follows a user, most recent first.
#[utoipa::path(get, path = "/api/v1/users/{user}/followers", tag = "graph",
    params(("user" = String, Path, description = "A user id, or @handle"), PageParams),
    responses(
        (status = 200, body = PageBody<UserBody>),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn followers(
    State(state): State<HttpState>,
    viewer: Option<AuthUser>,
    UserPath(which): UserPath,
    AppQuery(params): AppQuery<PageParams>,
) -> Result<Json<PageBody<UserBody>>, ApiError> {
    let viewer = viewer.map(|AuthUser(id)| id);
    let user = resolve_user(&state, viewer, which).await?;
    let list = format!("followers:{user}");
    let request = params.for_list(&list)?;
    let page = state
        .app
        .graph()
        .followers(viewer, user, request.after, request.limit)
        .await?;
    Ok(Json(PageBody::from_page(page, &list, UserBody::from)))
}

/// Whom a user follows, most recent first.
#[utoipa::path(get, path = "/api/v1/users/{user}/following", tag = "graph",
    params(("user" = String, Path, description = "A user id, or @handle"), PageParams),
    responses(
        (status = 200, body = PageBody<UserBody>),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn following(
    State(state): State<HttpState>,
    viewer: Option<AuthUser>,
    UserPath(which): UserPath,
    AppQuery(params): AppQuery<PageParams>,
) -> Result<Json<PageBody<UserBody>>, ApiError> {
    let viewer = viewer.map(|AuthUser(id)| id);
    let user = resolve_user(&state, viewer, which).await?;
    let list = format!("following:{user}");
    let request = params.for_list(&list)?;
    let page = state
        .app
        .graph()
        .following(viewer, user, request.after, request.limit)
        .await?;
    Ok(Json(PageBody::from_page(page, &list, UserBody::from)))
}

/// Block a user: follows both ways end, new ones are refused, and each is
/// hidden from the other (404). Idempotent.
#[utoipa::path(post, path = "/api/v1/users/{user}/block", tag = "graph", security(("bearer" = [])),
    params(("user" = String, Path, description = "A user id, or @handle")),
    responses(
        (status = 204, description = "Blocked"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Blocking yourself", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn block(
    State(state): State<HttpState>,
    AuthUser(caller): AuthUser,
    UserPath(which): UserPath,
) -> Result<StatusCode, ApiError> {
    let other = resolve_user(&state, Some(caller), which).await?;
    state.app.graph().block(caller, other).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Unblock a user. Idempotent.
#[utoipa::path(delete, path = "/api/v1/users/{user}/block", tag = "graph", security(("bearer" = [])),
    params(("user" = String, Path, description = "A user id, or @handle")),
    responses(
        (status = 204, description = "Not blocked"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn unblock(
    State(state): State<HttpState>,
    AuthUser(caller): AuthUser,
    UserPath(which): UserPath,
) -> Result<StatusCode, ApiError> {
    let other = resolve_user(&state, Some(caller), which).await?;
    state.app.graph().unblock(caller, other).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Mute a user: their posts and notifications are hidden from you only.
/// Idempotent.
#[utoipa::path(post, path = "/api/v1/users/{user}/mute", tag = "graph", security(("bearer" = [])),
    params(("user" = String, Path, description = "A user id, or @handle")),
    responses(
        (status = 204, description = "Muted"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Muting yourself", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn mute(
    State(state): State<HttpState>,
    AuthUser(caller): AuthUser,
    UserPath(which): UserPath,
) -> Result<StatusCode, ApiError> {
    let other = resolve_user(&state, Some(caller), which).await?;
    state.app.graph().mute(caller, other).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Unmute a user. Idempotent.
#[utoipa::path(delete, path = "/api/v1/users/{user}/mute", tag = "graph", security(("bearer" = [])),
    params(("user" = String, Path, description = "A user id, or @handle")),
    responses(
        (status = 204, description = "Not muted"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn unmute(
    State(state): State<HttpState>,
    AuthUser(caller): AuthUser,
    UserPath(which): UserPath,
) -> Result<StatusCode, ApiError> {
    let other = resolve_user(&state, Some(caller), which).await?;
    state.app.graph().unmute(caller, other).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The accounts you block, most recent first.
#[utoipa::path(get, path = "/api/v1/me/blocks", tag = "graph", security(("bearer" = [])),
    params(PageParams),
    responses(
        (status = 200, body = PageBody<UserBody>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn my_blocks(
    State(state): State<HttpState>,
    AuthUser(caller): AuthUser,
    AppQuery(params): AppQuery<PageParams>,
) -> Result<Json<PageBody<UserBody>>, ApiError> {
    relation_page(&state, Relation::Block, caller, &params).await
}

/// The accounts you mute, most recent first.
#[utoipa::path(get, path = "/api/v1/me/mutes", tag = "graph", security(("bearer" = [])),
    params(PageParams),
    responses(
        (status = 200, body = PageBody<UserBody>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn my_mutes(
    State(state): State<HttpState>,
    AuthUser(caller): AuthUser,
    AppQuery(params): AppQuery<PageParams>,
) -> Result<Json<PageBody<UserBody>>, ApiError> {
    relation_page(&state, Relation::Mute, caller, &params).await
}

async fn relation_page(
    state: &HttpState,
    relation: Relation,
    owner: UserId,
    params: &PageParams,
) -> Result<Json<PageBody<UserBody>>, ApiError> {
    let list = match relation {
        Relation::Block => "blocks",
        Relation::Mute => "mutes",
    };
    let request = params.for_list(list)?;
    let page = state
        .app
        .graph()
        .relations(relation, owner, request.after, request.limit)
        .await?;
    Ok(Json(PageBody::from_page(page, list, UserBody::from)))
}
