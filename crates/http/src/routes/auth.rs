//! `/api/v1/auth/*`: register, login, refresh, logout.

use axum::Json;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, PRAGMA};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use starling_app::accounts::{LoginInput, RegisterInput};

use crate::extract::{AppJson, AuthSession, ClientDevice};
use crate::models::{LoginRequest, LogoutRequest, RefreshRequest, RegisterRequest, SessionBody};
use crate::problem::{ApiError, Problem};
use crate::state::HttpState;

/// Create an account and sign in.
#[utoipa::path(post, path = "/api/v1/auth/register", tag = "auth",
    request_body = RegisterRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retry safely: the same key and request within 24 h answer with the same account and a new session")),
    responses(
        (status = 201, body = SessionBody, headers(("Cache-Control" = String, description = "`no-store`: tokens are never cached (RFC 6749 §5.1)"), ("Pragma" = String, description = "`no-cache`"))),
        (status = 409, description = "Handle or email taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn register(
    State(state): State<HttpState>,
    ClientDevice(device): ClientDevice,
    AppJson(request): AppJson<RegisterRequest>,
) -> Result<TokenResponse, ApiError> {
    let session = state
        .app
        .accounts()
        .register(RegisterInput {
            handle: request.handle,
            email: request.email,
            password: request.password,
            display_name: request.display_name,
            device,
        })
        .await?;
    Ok(TokenResponse(StatusCode::CREATED, session.into()))
}

/// Sign in with a handle or email and a password.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, body = SessionBody, headers(("Cache-Control" = String, description = "`no-store`: tokens are never cached (RFC 6749 §5.1)"), ("Pragma" = String, description = "`no-cache`"))),
        (status = 401, description = "Wrong login or password", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed logins for this account: wait `Retry-After` seconds (whatever the password)", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds until an attempt may go"))),
    ))]
pub(crate) async fn login(
    State(state): State<HttpState>,
    ClientDevice(device): ClientDevice,
    AppJson(request): AppJson<LoginRequest>,
) -> Result<TokenResponse, ApiError> {
    let session = state
        .app
        .accounts()
        .login(LoginInput {
            login: request.login,
            password: request.password,
            device,
        })
        .await?;
    Ok(TokenResponse(StatusCode::OK, session.into()))
}

/// Exchange a refresh token for a new access and refresh token. Each refresh
/// token works once; presenting a spent one revokes the whole session.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, body = SessionBody, headers(("Cache-Control" = String, description = "`no-store`: tokens are never cached (RFC 6749 §5.1)"), ("Pragma" = String, description = "`no-cache`"))),
        (status = 401, description = "Invalid, expired, spent or revoked token", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn refresh(
    State(state): State<HttpState>,
    AppJson(request): AppJson<RefreshRequest>,
) -> Result<TokenResponse, ApiError> {
    let session = state.app.accounts().refresh(&request.refresh_token).await?;
    Ok(TokenResponse(StatusCode::OK, session.into()))
}

/// An answer carrying tokens: never stored by a cache on the way
/// (RFC 6749 §5.1: `Cache-Control: no-store`, and `Pragma: no-cache` for
/// HTTP/1.0 caches).
pub(crate) struct TokenResponse(pub(crate) StatusCode, pub(crate) SessionBody);

impl IntoResponse for TokenResponse {
    fn into_response(self) -> Response {
        let mut response = (self.0, Json(self.1)).into_response();
        let headers = response.headers_mut();
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
        response
    }
}

/// Sign out: end the session of the refresh token (an access token sent
/// with it is not looked at: it may be stale), or else of the access token
/// sent; with `everywhere`, every session of that account. Their
/// access tokens stop working (on every instance within
/// `auth.revocation_poll_ms`) and their live streams close.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    request_body = LogoutRequest,
    security((), ("bearer" = [])),
    responses(
        (status = 204, description = "Signed out (also for a refresh token that is unknown or already ended: logout reveals no tokens)"),
        (status = 401, description = "An access token was sent and is not valid", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Neither a refresh token nor an access token names a session", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn logout(
    State(state): State<HttpState>,
    headers: axum::http::HeaderMap,
    caller: Result<AuthSession, ApiError>,
    AppJson(request): AppJson<LogoutRequest>,
) -> Result<StatusCode, ApiError> {
    let accounts = state.app.accounts();
    // The refresh token decides when there is one: the access token sent
    // with it may have expired, or belong to a session already ended.
    if let Some(refresh_token) = request.refresh_token {
        accounts.logout(&refresh_token, request.everywhere).await?;
        return Ok(StatusCode::NO_CONTENT);
    }
    if !headers.contains_key(axum::http::header::AUTHORIZATION) {
        return Err(
            starling_app::AppError::Validation(starling_domain::ValidationErrors::single(
                "refresh_token",
                "send the session's refresh token, or its access token as Authorization: Bearer",
            ))
            .into(),
        );
    }
    let AuthSession(caller) = caller?;
    if request.everywhere {
        accounts.logout_everywhere(caller).await?;
    } else if let Some(session) = caller.session {
        // Already ended is signed out all the same.
        match accounts.end_session(caller, session).await {
            Ok(()) | Err(starling_app::AppError::NotFound(_)) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(StatusCode::NO_CONTENT)
}
