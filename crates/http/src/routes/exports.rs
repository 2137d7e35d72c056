//! `/api/v1/me/export`: a person asks for an archive of their data, sees
//! how it stands, and downloads it once built.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use starling_app::ports::{ExportRecord, ExportState};

use crate::extract::AuthSession;
use crate::models::ExportBody;
use crate::problem::{ApiError, Problem};
use crate::state::HttpState;

const ARCHIVE_PATH: &str = "/api/v1/me/export/archive";

impl From<ExportRecord> for ExportBody {
    fn from(export: ExportRecord) -> Self {
        let ready = export.state == ExportState::Ready;
        Self {
            id: export.id.to_string(),
            state: export.state.as_str(),
            requested_at: export.requested_at.to_rfc3339(),
            finished_at: export.finished_at.map(|at| at.to_rfc3339()),
            size: export.size,
            expires_at: export.expires_at.map(|at| at.to_rfc3339()),
            attempts: export.attempts,
            download_url: ready.then(|| ARCHIVE_PATH.to_owned()),
        }
    }
}

/// Ask for an archive of the caller's data: profile, posts, following,
/// followers, likes, blocks, mutes (JSON) and the images of their posts,
/// built off the request. One at a time: asking while one is being built
/// answers that one.
#[utoipa::path(post, path = "/api/v1/me/export", tag = "sessions", security(("bearer" = [])),
    responses(
        (status = 202, description = "Asked for; poll `GET /me/export`", body = ExportBody,
            headers(("Location" = String, description = "`/api/v1/me/export`"))),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Asked with an API key", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn request(
    State(state): State<HttpState>,
    AuthSession(caller): AuthSession,
) -> Result<Response, ApiError> {
    let export = state.app.exports().request(caller).await?;
    let mut response = (StatusCode::ACCEPTED, Json(ExportBody::from(export))).into_response();
    response.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_static("/api/v1/me/export"),
    );
    Ok(response)
}

/// The caller's latest export: `pending` while it is built, `ready` with a
/// `download_url` until `expires_at`, then `expired`.
#[utoipa::path(get, path = "/api/v1/me/export", tag = "sessions", security(("bearer" = [])),
    responses(
        (status = 200, body = ExportBody),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Asked with an API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No export was ever asked for", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn status(
    State(state): State<HttpState>,
    AuthSession(caller): AuthSession,
) -> Result<Json<ExportBody>, ApiError> {
    let export = state.app.exports().latest(caller).await?;
    Ok(Json(export.into()))
}

/// The archive of the caller's latest export, as a ZIP file.
#[utoipa::path(get, path = "/api/v1/me/export/archive", tag = "sessions", security(("bearer" = [])),
    responses(
        (status = 200, description = "The archive", content_type = "application/zip", body = Vec<u8>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Asked with an API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No archive: never asked for, or expired", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not built yet", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn archive(
    State(state): State<HttpState>,
    AuthSession(caller): AuthSession,
) -> Result<Response, ApiError> {
    let (export, bytes) = state.app.exports().archive(caller).await?;
    let disposition = format!("attachment; filename=\"starling-export-{}.zip\"", export.id);
    let mut response = (StatusCode::OK, bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}
