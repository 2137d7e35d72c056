//! `/api/v1/me/sessions` and `/api/v1/me/password`: a person's sign-ins,
//! seen and ended, and the password that guards them.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use crate::extract::{AppJson, AuthSession};
use crate::models::{ChangePasswordRequest, SessionsBody};
use crate::problem::{ApiError, Problem};
use crate::state::HttpState;

/// The caller's open sessions, newest first; `current` marks the one of the
/// access token asking.
#[utoipa::path(get, path = "/api/v1/me/sessions", tag = "sessions", security(("bearer" = [])),
    responses(
        (status = 200, body = SessionsBody),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn sessions(
    State(state): State<HttpState>,
    AuthSession(caller): AuthSession,
) -> Result<Json<SessionsBody>, ApiError> {
    let sessions = state.app.accounts().sessions(caller).await?;
    Ok(Json(SessionsBody {
        data: sessions.into_iter().map(Into::into).collect(),
    }))
}

/// End one of the caller's sessions: its refresh token stops working at
/// once, its access tokens within `auth.revocation_poll_ms` on every
/// instance, and its live streams close.
#[utoipa::path(delete, path = "/api/v1/me/sessions/{id}", tag = "sessions", security(("bearer" = [])),
    params(("id" = String, Path, description = "A session id from `GET /me/sessions`")),
    responses(
        (status = 204, description = "Ended"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The caller has no such open session", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn end_session(
    State(state): State<HttpState>,
    AuthSession(caller): AuthSession,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<StatusCode, ApiError> {
    let session = id
        .parse::<i64>()
        .map_err(|_| ApiError::not_found("session"))?;
    state.app.accounts().end_session(caller, session).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Change the password, given the current one. Every other session ends;
/// the caller's own goes on. Wrong current passwords back off as failed
/// logins do.
#[utoipa::path(post, path = "/api/v1/me/password", tag = "sessions", security(("bearer" = [])),
    request_body = ChangePasswordRequest,
    responses(
        (status = 204, description = "Changed; the other sessions have ended"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The current password is wrong", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The new password is not valid", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many wrong passwords: wait `Retry-After` seconds", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds until an attempt may go"))),
    ))]
pub(crate) async fn change_password(
    State(state): State<HttpState>,
    AuthSession(caller): AuthSession,
    AppJson(request): AppJson<ChangePasswordRequest>,
) -> Result<StatusCode, ApiError> {
    state
        .app
        .accounts()
        .change_password(caller, &request.current_password, &request.new_password)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
