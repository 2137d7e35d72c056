//! `/api/v1/posts`: create, read, delete, like.

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use starling_domain::{MediaId, PostId, ValidationErrors};

use crate::extract::{AppJson, AppQuery, AuthUser, PostPath};
use crate::models::{CreatePostRequest, PostBody, PostJson, RenderedPosts};
use crate::pagination::{PageBody, PageParams};
use crate::problem::{ApiError, Problem};
use crate::routes::{json_now, posts_page};
use crate::state::HttpState;
use axum::response::Response;

/// Publish a post (optionally as a reply).
#[utoipa::path(post, path = "/api/v1/posts", tag = "posts", security(("bearer" = [])),
    request_body = CreatePostRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retry safely: the same key and request within 24 h answer what the first did")),
    responses(
        (status = 201, body = PostBody, headers(("Location" = String, description = "The post's URL"))),
        (status = 404, description = "`reply_to` names no post the caller can see", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn create_post(
    State(state): State<HttpState>,
    Extension(rendered): Extension<RenderedPosts>,
    AuthUser(caller): AuthUser,
    AppJson(request): AppJson<CreatePostRequest>,
) -> Result<Response, ApiError> {
    let reply_to = match request.reply_to.as_deref() {
        None => None,
        Some(text) => Some(text.parse::<PostId>().map_err(|_| {
            starling_app::AppError::from(ValidationErrors::single("reply_to", "must be a post id"))
        })?),
    };
    let media_ids = request
        .media_ids
        .unwrap_or_default()
        .iter()
        .map(|id| id.parse::<MediaId>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| {
            starling_app::AppError::from(ValidationErrors::single(
                "media_ids",
                "each must be a media id",
            ))
        })?;
    let view = state
        .app
        .posts()
        .create(caller, &request.text, reply_to, &media_ids)
        .await?;
    let mut response = json_now(StatusCode::CREATED, &PostJson(&view, rendered.urls()));
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/posts/{}", view.post.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// A post.
#[utoipa::path(get, path = "/api/v1/posts/{post}", tag = "posts",
    params(("post" = String, Path, description = "The post id")),
    responses(
        (status = 200, body = PostBody),
        (status = 404, description = "No such post, or deleted", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn post(
    State(state): State<HttpState>,
    Extension(rendered): Extension<RenderedPosts>,
    viewer: Option<AuthUser>,
    PostPath(id): PostPath,
) -> Result<Response, ApiError> {
    let view = state
        .app
        .posts()
        .post(viewer.map(|AuthUser(user)| user), id)
        .await?;
    Ok(json_now(StatusCode::OK, &rendered.post(&view)))
}

/// A post's replies, oldest first (conversation order). A deleted post
/// still lists its replies.
#[utoipa::path(get, path = "/api/v1/posts/{post}/replies", tag = "posts",
    params(("post" = String, Path, description = "The post id"), PageParams),
    responses(
        (status = 200, body = PageBody<PostBody>),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn replies(
    State(state): State<HttpState>,
    Extension(rendered): Extension<RenderedPosts>,
    viewer: Option<AuthUser>,
    PostPath(id): PostPath,
    AppQuery(params): AppQuery<PageParams>,
) -> Result<Response, ApiError> {
    let list = format!("replies:{id}");
    let request = params.for_list(&list)?;
    let page = state
        .app
        .posts()
        .replies(
            viewer.map(|AuthUser(user)| user),
            id,
            request.after.map(PostId),
            request.limit,
        )
        .await?;
    Ok(posts_page(&page, &list, &rendered))
}

/// Delete one of your posts.
#[utoipa::path(delete, path = "/api/v1/posts/{post}", tag = "posts", security(("bearer" = [])),
    params(("post" = String, Path, description = "The post id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Not your post", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn delete_post(
    State(state): State<HttpState>,
    AuthUser(caller): AuthUser,
    PostPath(id): PostPath,
) -> Result<StatusCode, ApiError> {
    state.app.posts().delete(caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Like a post. Idempotent.
#[utoipa::path(post, path = "/api/v1/posts/{post}/like", tag = "posts", security(("bearer" = [])),
    params(("post" = String, Path, description = "The post id"), ("Idempotency-Key" = Option<String>, Header, description = "Retry safely: the same key and request within 24 h answer what the first did")),
    responses(
        (status = 204, description = "Liked"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn like(
    State(state): State<HttpState>,
    AuthUser(caller): AuthUser,
    PostPath(id): PostPath,
) -> Result<StatusCode, ApiError> {
    state.app.posts().like(caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Take a like back. Idempotent.
#[utoipa::path(delete, path = "/api/v1/posts/{post}/like", tag = "posts", security(("bearer" = [])),
    params(("post" = String, Path, description = "The post id")),
    responses(
        (status = 204, description = "Not liked"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn unlike(
    State(state): State<HttpState>,
    AuthUser(caller): AuthUser,
    PostPath(id): PostPath,
) -> Result<StatusCode, ApiError> {
    state.app.posts().unlike(caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
