//! `/api/v1/feed`: the caller's home timeline.

use axum::Json;
use axum::extract::State;
use starling_domain::PostId;

use crate::extract::{AppQuery, AuthUser};
use crate::models::PostBody;
use crate::pagination::{PageBody, PageParams};
use crate::problem::{ApiError, Problem};
use crate::state::HttpState;

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
    AuthUser(caller): AuthUser,
    AppQuery(params): AppQuery<PageParams>,
) -> Result<Json<PageBody<PostBody>>, ApiError> {
    // The cursor is bound to the reader: another user's cursor is refused.
    let list = format!("feed:{caller}");
    let request = params.for_list(&list)?;
    let page = state
        .app
        .home_feed(caller, request.after.map(PostId), request.limit)
        .await?;
    Ok(Json(PageBody::from_page(page, &list, PostBody::from)))
}
