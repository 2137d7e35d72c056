//! Handlers, one file per endpoint group. Each file's handlers carry their
//! OpenAPI description; `api_router` collects them.

pub(crate) mod admin;
pub(crate) mod api_keys;
pub(crate) mod auth;
pub(crate) mod docs;
pub(crate) mod exports;
pub(crate) mod feed;
pub(crate) mod graph;
pub(crate) mod media;
pub(crate) mod notifications;
pub(crate) mod ops;
pub(crate) mod posts;
pub(crate) mod sessions;
pub(crate) mod stream;
pub(crate) mod users;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use starling_app::accounts::UserRef;
use starling_domain::UserId;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::models::{PostOut, RenderedPosts};
use crate::pagination::PageBody;
use crate::problem::ApiError;
use crate::state::HttpState;

/// The API's routes; uploads take bodies up to `max_upload_bytes` (and a
/// little for the form around the file), everything else the JSON limit.
pub(crate) fn api_router(max_upload_bytes: usize) -> OpenApiRouter<HttpState> {
    let uploads = OpenApiRouter::new().routes(routes!(media::upload)).layer(
        axum::extract::DefaultBodyLimit::max(max_upload_bytes.saturating_add(64 * 1024)),
    );
    OpenApiRouter::new()
        .merge(uploads)
        .routes(routes!(media::media))
        .routes(routes!(media::file))
        .routes(routes!(auth::register))
        .routes(routes!(auth::login))
        .routes(routes!(auth::refresh))
        .routes(routes!(auth::logout))
        .routes(routes!(users::me, users::update_me, users::delete_me))
        .routes(routes!(sessions::sessions))
        .routes(routes!(sessions::end_session))
        .routes(routes!(sessions::change_password))
        .routes(routes!(api_keys::create, api_keys::list))
        .routes(routes!(api_keys::revoke))
        .routes(routes!(exports::request, exports::status))
        .routes(routes!(exports::archive))
        .routes(routes!(users::user))
        .routes(routes!(users::user_posts))
        .routes(routes!(graph::follow, graph::unfollow))
        .routes(routes!(graph::followers))
        .routes(routes!(graph::following))
        .routes(routes!(graph::block, graph::unblock))
        .routes(routes!(graph::mute, graph::unmute))
        .routes(routes!(graph::my_blocks))
        .routes(routes!(graph::my_mutes))
        .routes(routes!(posts::create_post))
        .routes(routes!(posts::post, posts::delete_post))
        .routes(routes!(posts::like, posts::unlike))
        .routes(routes!(posts::replies))
        .routes(routes!(feed::home_feed))
        .routes(routes!(notifications::notifications))
        .routes(routes!(notifications::mark_read))
        .routes(routes!(stream::stream))
        .routes(routes!(admin::accounts))
        .routes(routes!(admin::account))
        .routes(routes!(admin::suspend))
        .routes(routes!(admin::unsuspend))
        .routes(routes!(admin::set_role))
        .routes(routes!(admin::remove_post))
        .routes(routes!(admin::audit))
}

/// A JSON response serialised on the spot, so that its body may borrow from
/// data the handler holds.
pub(crate) fn json_now<T: serde::Serialize>(status: StatusCode, value: &T) -> Response {
    json_now_sized(status, value, 128)
}

/// `json_now` into a buffer of `capacity` bytes to start with: a page of
/// posts written into a buffer grown by doubling was copied about twice
/// over on the way.
pub(crate) fn json_now_sized<T: serde::Serialize>(
    status: StatusCode,
    value: &T,
    capacity: usize,
) -> Response {
    let mut body = Vec::with_capacity(capacity);
    match serde_json::to_writer(&mut body, value) {
        Ok(()) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(error) => {
            tracing::error!(error = %error, "cannot serialise a response");
            crate::problem::generic_problem(StatusCode::INTERNAL_SERVER_ERROR).into_response()
        }
    }
}

/// A page of posts, each written through the rendered-post memo.
pub(crate) fn posts_page(
    page: &starling_app::Page<starling_app::PostView>,
    list: &str,
    rendered: &RenderedPosts,
) -> Response {
    let body = PageBody::from_page_ref(page, list, |view| rendered.post(view));
    let size = body.data.iter().map(PostOut::size_hint).sum::<usize>() + 256;
    json_now_sized(StatusCode::OK, &body, size)
}

/// The id of the account a path names; `@handle`s are looked up for `reader`.
pub(crate) async fn resolve_user(
    state: &HttpState,
    reader: Option<UserId>,
    which: UserRef,
) -> Result<UserId, ApiError> {
    match which {
        UserRef::Id(id) => Ok(id),
        handle @ UserRef::Handle(_) => Ok(state.app.accounts().user(reader, &handle).await?.id),
    }
}
