//! `/api/v1/users/{user}/follow`, `/followers`, `/following`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

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
    let followee = resolve_user(&state, which).await?;
    state.app.follow(caller, followee).await?;
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
    let followee = resolve_user(&state, which).await?;
    state.app.unfollow(caller, followee).await?;
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
    UserPath(which): UserPath,
    AppQuery(params): AppQuery<PageParams>,
) -> Result<Json<PageBody<UserBody>>, ApiError> {
    let user = resolve_user(&state, which).await?;
    let list = format!("followers:{user}");
    let request = params.for_list(&list)?;
    let page = state
        .app
        .followers(user, request.after, request.limit)
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
    UserPath(which): UserPath,
    AppQuery(params): AppQuery<PageParams>,
) -> Result<Json<PageBody<UserBody>>, ApiError> {
    let user = resolve_user(&state, which).await?;
    let list = format!("following:{user}");
    let request = params.for_list(&list)?;
    let page = state
        .app
        .following(user, request.after, request.limit)
        .await?;
    Ok(Json(PageBody::from_page(page, &list, UserBody::from)))
}
