//! `/api/v1/me/api-keys`: keys for scripts and bots, made, listed and
//! revoked by a person signed in.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use starling_app::accounts::NewApiKey;
use starling_domain::{Timestamp, ValidationErrors};

use crate::extract::{AppJson, AuthSession};
use crate::models::{ApiKeysBody, CreateApiKeyRequest, CreatedApiKeyBody};
use crate::problem::{ApiError, Problem};
use crate::state::HttpState;

/// Make an API key. The answer holds the key, this once: only its SHA-256
/// is kept. It authenticates as `Authorization: Bearer sk_...` with the
/// scopes given, and counts against its own rate-limit quota.
#[utoipa::path(post, path = "/api/v1/me/api-keys", tag = "sessions", security(("bearer" = [])),
    request_body = CreateApiKeyRequest,
    responses(
        (status = 201, body = CreatedApiKeyBody, headers(("Cache-Control" = String, description = "`no-store`: the key is never cached"))),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Asked with an API key: only a person signed in makes keys", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The account holds 50 live keys already", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn create(
    State(state): State<HttpState>,
    AuthSession(caller): AuthSession,
    AppJson(request): AppJson<CreateApiKeyRequest>,
) -> Result<
    (
        StatusCode,
        [(axum::http::HeaderName, &'static str); 1],
        Json<CreatedApiKeyBody>,
    ),
    ApiError,
> {
    let expires_at = match request.expires_at.as_deref() {
        None => None,
        Some(text) => Some(Timestamp::parse_rfc3339(text).ok_or_else(|| {
            ApiError::from(starling_app::AppError::Validation(
                ValidationErrors::single(
                    "expires_at",
                    "an RFC 3339 date-time, such as 2027-01-31T00:00:00Z",
                ),
            ))
        })?),
    };
    let created = state
        .app
        .accounts()
        .create_api_key(
            caller,
            NewApiKey {
                name: request.name,
                scopes: request.scopes,
                expires_at,
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Json(CreatedApiKeyBody {
            key: created.key,
            api_key: created.view.into(),
        }),
    ))
}

/// The caller's live API keys, newest first (never the keys themselves).
#[utoipa::path(get, path = "/api/v1/me/api-keys", tag = "sessions", security(("bearer" = [])),
    responses(
        (status = 200, body = ApiKeysBody),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Asked with an API key", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn list(
    State(state): State<HttpState>,
    AuthSession(caller): AuthSession,
) -> Result<Json<ApiKeysBody>, ApiError> {
    let keys = state.app.accounts().api_keys(caller).await?;
    Ok(Json(ApiKeysBody {
        data: keys.into_iter().map(Into::into).collect(),
    }))
}

/// Revoke one of the caller's API keys: refused at once by this instance,
/// by every other within `auth.api_key_recheck_secs`.
#[utoipa::path(delete, path = "/api/v1/me/api-keys/{id}", tag = "sessions", security(("bearer" = [])),
    params(("id" = String, Path, description = "A key id from `GET /me/api-keys`")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Asked with an API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The caller has no such live key", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn revoke(
    State(state): State<HttpState>,
    AuthSession(caller): AuthSession,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = id
        .parse::<i64>()
        .map_err(|_| ApiError::not_found("api key"))?;
    state.app.accounts().revoke_api_key(caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
