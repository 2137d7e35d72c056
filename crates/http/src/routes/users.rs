//! `/api/v1/me` and `/api/v1/users/{user}`: profiles and a user's posts.

use axum::Extension;
use axum::Json;
use axum::extract::State;
use starling_app::accounts::ProfileChanges;

use crate::extract::{AppJson, AppQuery, AuthSession, AuthUser, UserPath};
use crate::models::{
    DeleteAccountRequest, DeletionAcceptedBody, MeBody, PostBody, RenderedPosts,
    UpdateProfileRequest, UserBody,
};
use crate::pagination::{PageBody, PageParams};
use crate::problem::{ApiError, Problem};
use crate::routes::posts_page;
use crate::routes::resolve_user;
use crate::state::HttpState;
use axum::response::Response;
use starling_domain::PostId;

/// The caller's own profile.
#[utoipa::path(get, path = "/api/v1/me", tag = "users", security(("bearer" = [])),
    responses(
        (status = 200, body = MeBody),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn me(
    State(state): State<HttpState>,
    AuthUser(caller): AuthUser,
) -> Result<Json<MeBody>, ApiError> {
    let user = state.app.accounts().me(caller).await?;
    let notifications = state.app.notifications().state(caller).await?;
    Ok(Json(MeBody {
        role: user.role.as_str(),
        user: user.into(),
        unread_notifications: notifications.unread,
    }))
}

/// Delete the caller's account, confirmed by its password. From the answer
/// on the account is gone for everyone: it cannot sign in, every session
/// has ended, and its profile and posts are hidden. Its follows, posts,
/// likes, blocks, mutes, notifications and uploads are then removed in the
/// background by a resumable saga (staff see its progress); its handle is
/// freed after `deletion.handle_quarantine_secs`.
#[utoipa::path(delete, path = "/api/v1/me", tag = "users", security(("bearer" = [])),
    request_body = DeleteAccountRequest,
    responses(
        (status = 202, description = "Deletion started", body = DeletionAcceptedBody),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Wrong password, or asked with an API key", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The account is suspended, or being deleted already", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many wrong passwords: wait for `Retry-After`", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn delete_me(
    State(state): State<HttpState>,
    AuthSession(caller): AuthSession,
    AppJson(request): AppJson<DeleteAccountRequest>,
) -> Result<(axum::http::StatusCode, Json<DeletionAcceptedBody>), ApiError> {
    let deletion = state
        .app
        .accounts()
        .delete_account(caller, &request.password)
        .await?;
    Ok((
        axum::http::StatusCode::ACCEPTED,
        Json(DeletionAcceptedBody {
            status: "deleting",
            step: deletion.step.as_str(),
            started_at: deletion.started_at.to_rfc3339(),
        }),
    ))
}

/// Change the caller's display name and/or bio; absent fields stay as they are.
#[utoipa::path(patch, path = "/api/v1/me", tag = "users", security(("bearer" = [])),
    request_body = UpdateProfileRequest,
    responses(
        (status = 200, body = UserBody),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn update_me(
    State(state): State<HttpState>,
    AuthUser(caller): AuthUser,
    AppJson(request): AppJson<UpdateProfileRequest>,
) -> Result<Json<UserBody>, ApiError> {
    let user = state
        .app
        .accounts()
        .update_profile(
            caller,
            ProfileChanges {
                display_name: request.display_name,
                bio: request.bio,
            },
        )
        .await?;
    Ok(Json(user.into()))
}

/// A profile, by id or by `@handle`.
#[utoipa::path(get, path = "/api/v1/users/{user}", tag = "users",
    params(("user" = String, Path, description = "A user id, or @handle")),
    responses(
        (status = 200, body = UserBody),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn user(
    State(state): State<HttpState>,
    viewer: Option<AuthUser>,
    UserPath(which): UserPath,
) -> Result<Json<UserBody>, ApiError> {
    let user = state
        .app
        .accounts()
        .profile(viewer.map(|AuthUser(id)| id), &which)
        .await?;
    Ok(Json(user.into()))
}

/// A user's posts, newest first.
#[utoipa::path(get, path = "/api/v1/users/{user}/posts", tag = "users",
    params(("user" = String, Path, description = "A user id, or @handle"), PageParams),
    responses(
        (status = 200, body = PageBody<PostBody>),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn user_posts(
    State(state): State<HttpState>,
    Extension(rendered): Extension<RenderedPosts>,
    viewer: Option<AuthUser>,
    UserPath(which): UserPath,
    AppQuery(params): AppQuery<PageParams>,
) -> Result<Response, ApiError> {
    let viewer = viewer.map(|AuthUser(id)| id);
    let author = resolve_user(&state, viewer, which).await?;
    let list = format!("posts:{author}");
    let request = params.for_list(&list)?;
    let page = state
        .app
        .posts()
        .user_posts(viewer, author, request.after.map(PostId), request.limit)
        .await?;
    Ok(posts_page(&page, &list, &rendered))
}
