//! `/api/v1/feed`: the caller's home timeline.

use axum::Extension;
use axum::extract::State;
use starling_domain::PostId;

use crate::extract::{AppQuery, AuthUser};
use crate::models::{PostBody, RenderedPosts};
use crate::pagination::{PageBody, PageParams};
use crate::problem::{ApiError, Problem};
use crate::routes::posts_page;
use crate::state::HttpState;
use axum::response::Response;

/// The caller's home timeline: their own posts and those of everyone they
/// follow, newest first. Page with `next_cursor` down to the oldest post.
#[utoipa::path(get, path = "/api/v1/feed", tag = "feed", security(("bearer" = [])),
    params(PageParams),
    responses(
        (status = 200, body = PageBody<PostBody>),
        (status = 400, description = "Bad limit or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn home_feed(
    State(state): State<HttpState>,
    Extension(rendered): Extension<RenderedPosts>,
    AuthUser(caller): AuthUser,
    AppQuery(params): AppQuery<PageParams>,
) -> Result<Response, ApiError> {
    // The cursor is bound to the reader: another user's cursor is refused.
    let list = format!("feed:{caller}");
    let request = params.for_list(&list)?;
    let page = state
        .app
        .feed()
        .home_feed(caller, request.after.map(PostId), request.limit)
        .await?;
    Ok(posts_page(&page, &list, &rendered))
}
