//! `/api/v1/notifications`: the caller's notifications and their read position.

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use starling_app::AppError;
use starling_domain::{NotificationId, NotificationKind, ValidationErrors};
use utoipa::IntoParams;

use crate::extract::{AppJson, AppQuery, AuthUser};
use crate::models::{
    MarkReadRequest, NotificationBody, NotificationJson, ReadStateBody, RenderedPosts,
};
use crate::pagination::{PageBody, PageParams};
use crate::problem::{ApiError, Problem};
use crate::routes::json_now;
use crate::state::HttpState;

/// Query parameters of the notifications list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct NotificationParams {
    /// Only these kinds, comma-separated: `follow`, `like`, `reply`, `mention`.
    #[param(example = "reply,mention")]
    #[serde(rename = "type")]
    pub kinds: Option<String>,
    /// Items per page, 1 to 100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl NotificationParams {
    fn kinds(&self) -> Result<Vec<NotificationKind>, ApiError> {
        let Some(text) = self.kinds.as_deref() else {
            return Ok(Vec::new());
        };
        let mut kinds = Vec::new();
        for name in text.split(',').map(str::trim) {
            let kind = NotificationKind::parse(name).ok_or_else(|| {
                ApiError::invalid_parameter(
                    "type",
                    "must be follow, like, reply or mention (comma-separated)",
                )
            })?;
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        Ok(kinds)
    }
}

/// The caller's notifications, newest first.
#[utoipa::path(get, path = "/api/v1/notifications", tag = "notifications", security(("bearer" = [])),
    params(NotificationParams),
    responses(
        (status = 200, body = PageBody<NotificationBody>),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn notifications(
    State(state): State<HttpState>,
    Extension(rendered): Extension<RenderedPosts>,
    AuthUser(caller): AuthUser,
    AppQuery(params): AppQuery<NotificationParams>,
) -> Result<Response, ApiError> {
    let kinds = params.kinds()?;
    let list = "notifications";
    let request = PageParams {
        limit: params.limit.clone(),
        cursor: params.cursor.clone(),
    }
    .for_list(list)?;
    let page = state
        .app
        .notifications()
        .list(
            caller,
            &kinds,
            request.after.map(NotificationId),
            request.limit,
        )
        .await?;
    let body = PageBody::from_page_ref(&page, list, |view| NotificationJson(view, rendered.urls()));
    Ok(json_now(StatusCode::OK, &body))
}

/// Mark notifications read, up to an id or (with `{}`) all of them. The
/// read position never moves back, nor beyond the newest notification.
#[utoipa::path(post, path = "/api/v1/notifications/read", tag = "notifications", security(("bearer" = [])),
    request_body = MarkReadRequest,
    responses(
        (status = 200, body = ReadStateBody),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn mark_read(
    State(state): State<HttpState>,
    AuthUser(caller): AuthUser,
    AppJson(request): AppJson<MarkReadRequest>,
) -> Result<Json<ReadStateBody>, ApiError> {
    let through = match request.up_to.as_deref() {
        None => None,
        Some(text) => Some(text.parse::<NotificationId>().map_err(|_| {
            ApiError::from(AppError::Validation(ValidationErrors::single(
                "up_to",
                "must be a notification id (a string of digits)",
            )))
        })?),
    };
    let read = state.app.notifications().mark_read(caller, through).await?;
    Ok(Json(ReadStateBody {
        read_through: read.read_through.map(|id| id.to_string()),
        unread_count: read.unread,
    }))
}
