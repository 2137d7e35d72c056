//! Idempotency keys on creates: `Idempotency-Key` on `POST` to posts, likes,
//! follows and registration. The first request with a key runs and its
//! answer is kept for 24 hours; a retry with the same key and the same
//! request gets that answer again (with `Idempotent-Replayed: true`), even
//! while the first is still running (it waits for it); the same key with a
//! different request is a 422. A client that lost an answer can thus retry
//! a create without making two.

use std::time::{Duration, Instant};

use axum::body::{Body, to_bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::{CONTENT_TYPE, LOCATION};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use starling_app::AppError;
use starling_app::ports::{IdempotencyClaim, StoredResponse};
use starling_domain::Timestamp;
use tracing::Instrument;

use crate::BODY_LIMIT_BYTES;
use crate::problem::ApiError;
use crate::state::HttpState;

const HEADER: &str = "idempotency-key";
const KEY_MAX_LEN: usize = 255;
/// The creates that take a key (route templates).
const ROUTES: [&str; 4] = [
    "/api/v1/posts",
    "/api/v1/posts/{post}/like",
    "/api/v1/users/{user}/follow",
    REGISTER,
];
/// A registration's answer holds a session's tokens: it is kept without
/// them, marked with this header (never sent), and a replay opens a new
/// session for the account instead.
const REGISTER: &str = "/api/v1/auth/register";
const REISSUE_SESSION: &str = "x-starling-reissue-session";
const LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// A first attempt still unfinished after this long died (the request
/// timeout is shorter): a retry takes its key over.
const STALE_AFTER: Duration = Duration::from_secs(60);
/// How long a retry waits for the first attempt to finish.
const WAIT_FOR_FIRST: Duration = Duration::from_secs(10);
/// Responses kept for replay are at most this big (creates answer far less).
const RESPONSE_LIMIT_BYTES: usize = 1 << 20;

pub(crate) async fn honour_idempotency_keys(
    State(state): State<HttpState>,
    mut request: Request,
    next: Next,
) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let Some(key) = request.headers().get(HEADER).cloned() else {
        return next.run(request).await;
    };
    let Some(route) = request
        .extensions()
        .get::<MatchedPath>()
        .and_then(|path| ROUTES.iter().find(|route| **route == path.as_str()))
    else {
        return next.run(request).await;
    };
    let holds_tokens = *route == REGISTER;
    let key = match key.to_str() {
        Ok(key)
            if (1..=KEY_MAX_LEN).contains(&key.len())
                && key.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            key.to_owned()
        }
        _ => {
            return ApiError::invalid_parameter(
                "Idempotency-Key",
                format!("must be 1 to {KEY_MAX_LEN} visible ASCII characters"),
            )
            .into_response();
        }
    };
    let scope = scope_of(&state, &mut request).await;
    let (parts, body) = request.into_parts();
    let Ok(body) = to_bytes(body, BODY_LIMIT_BYTES).await else {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            format!("the body is over {BODY_LIMIT_BYTES} bytes"),
        )
        .into_response();
    };
    let mut digest = Sha256::new();
    digest.update(parts.method.as_str());
    digest.update(b" ");
    digest.update(parts.uri.path());
    digest.update(b"\n");
    digest.update(&body);
    let fingerprint = digest.finalize();

    let store = state.app.ports().store.clone();
    let started = Instant::now();
    loop {
        let now = Timestamp::now();
        let claim = store
            .claim_idempotency_key(
                &scope,
                &key,
                &fingerprint,
                now,
                before(now, STALE_AFTER),
                before(now, LIFETIME),
            )
            .await;
        match claim {
            Ok(IdempotencyClaim::Claimed) => break,
            Ok(IdempotencyClaim::Completed(stored)) => {
                metrics::counter!(starling_app::metric::IDEMPOTENT_REPLAYS_TOTAL).increment(1);
                let device = crate::extract::device_of(&parts.headers, &parts.extensions);
                return replay(&state, stored, device).await;
            }
            Ok(IdempotencyClaim::Mismatch) => {
                return ApiError::from(AppError::Validation(
                    starling_domain::ValidationErrors::single(
                        "Idempotency-Key",
                        "was already used for a different request",
                    ),
                ))
                .into_response();
            }
            Ok(IdempotencyClaim::InProgress) if started.elapsed() < WAIT_FOR_FIRST => {
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Ok(IdempotencyClaim::InProgress) => {
                let mut response = ApiError::new(
                    StatusCode::CONFLICT,
                    "idempotency-key-in-use",
                    "a request with this Idempotency-Key is still running; retry later",
                )
                .into_response();
                response
                    .headers_mut()
                    .insert("retry-after", HeaderValue::from_static("1"));
                return response;
            }
            Err(error) => {
                // Without the key's record the create could run twice: refuse.
                return ApiError::from(AppError::from(error)).into_response();
            }
        }
    }

    // The create and the keeping of its answer run to their end even when
    // this request is cut short (the request timeout, a client gone):
    // dropped half-way, a create that had committed would leave its key
    // claimed with no answer, and the retry, once the claim went stale,
    // would create a second time. Finished, the retry gets the answer.
    let request = Request::from_parts(parts, Body::from(body));
    let work = run_and_keep(store, scope, key, next, request, holds_tokens)
        .instrument(tracing::Span::current());
    let finishing = tokio::spawn(work);
    match finishing.await {
        Ok(response) => response,
        Err(error) => {
            tracing::error!(error = %error, "a create with an idempotency key failed");
            ApiError::from(AppError::Unexpected(anyhow::anyhow!("the create failed")))
                .into_response()
        }
    }
}

/// Runs the create and keeps its answer for the key (or lets the key go
/// when the answer is worth a retry).
async fn run_and_keep(
    store: std::sync::Arc<dyn starling_app::ports::Store>,
    scope: String,
    key: String,
    next: Next,
    request: Request,
    holds_tokens: bool,
) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    // Answers that would be the same again are kept; failures worth a
    // retry (5xx, 401, 429, ...) let the key go so that the retry runs.
    let keep = status.is_success()
        || matches!(
            status,
            StatusCode::BAD_REQUEST
                | StatusCode::NOT_FOUND
                | StatusCode::CONFLICT
                | StatusCode::UNPROCESSABLE_ENTITY
        );
    if !keep {
        if let Err(error) = store.release_idempotency_key(&scope, &key).await {
            tracing::warn!(error = %error, "cannot release an idempotency key");
        }
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(body) = to_bytes(body, RESPONSE_LIMIT_BYTES).await else {
        tracing::error!("a create's response is too large to keep for its idempotency key");
        return ApiError::from(AppError::Unexpected(anyhow::anyhow!("response too large")))
            .into_response();
    };
    let mut stored = StoredResponse {
        status: status.as_u16(),
        headers: [CONTENT_TYPE, LOCATION]
            .iter()
            .filter_map(|name| {
                let value = parts.headers.get(name)?.to_str().ok()?;
                Some((name.as_str().to_owned(), value.to_owned()))
            })
            .collect(),
        body: body.to_vec(),
    };
    if holds_tokens && status.is_success() {
        // Only the account is kept: tokens at rest in plain text would
        // be a session for anyone who reads the table.
        let account = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .map(|answer| serde_json::json!({"user": answer["user"]}));
        stored.body = account
            .and_then(|account| serde_json::to_vec(&account).ok())
            .unwrap_or_default();
        stored
            .headers
            .push((REISSUE_SESSION.to_owned(), "true".to_owned()));
    }
    if let Err(error) = store.complete_idempotency_key(&scope, &key, &stored).await {
        // The create happened; a retry within a minute is told to wait,
        // one after that may create again. Worth an alert, not a failure.
        tracing::error!(error = %error, "cannot keep the answer of an idempotency key");
    }
    Response::from_parts(parts, Body::from(body))
}

/// Keys are per caller: the account of a valid token, else anonymous (the
/// request fingerprint still has to match).
async fn scope_of(state: &HttpState, request: &mut Request) -> String {
    crate::edge::verified_caller(state, request)
        .await
        .map_or_else(|| "anon".to_owned(), |caller| format!("u:{}", caller.user))
}

fn before(now: Timestamp, span: Duration) -> Timestamp {
    Timestamp(now.millis() - i64::try_from(span.as_millis()).unwrap_or(i64::MAX))
}

async fn replay(
    state: &HttpState,
    stored: StoredResponse,
    device: starling_app::accounts::Device,
) -> Response {
    let reissue = stored
        .headers
        .iter()
        .any(|(name, _)| name == REISSUE_SESSION);
    let mut response = if reissue {
        match reissued_session(state, &stored, device).await {
            Ok(response) => response,
            Err(error) => return error.into_response(),
        }
    } else {
        stored_answer(stored)
    };
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

/// A registration's answer again, with a new session for its account.
async fn reissued_session(
    state: &HttpState,
    stored: &StoredResponse,
    device: starling_app::accounts::Device,
) -> Result<Response, ApiError> {
    let kept: serde_json::Value = serde_json::from_slice(&stored.body)
        .map_err(|error| AppError::Unexpected(anyhow::anyhow!("a kept answer: {error}")))?;
    let user = kept["user"]["id"]
        .as_str()
        .and_then(|id| id.parse::<i64>().ok())
        .ok_or_else(|| AppError::Unexpected(anyhow::anyhow!("a kept answer names no account")))?;
    let session = state
        .app
        .accounts()
        .session_for_replayed_registration(starling_domain::UserId(user), device)
        .await?;
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::CREATED);
    Ok(crate::routes::auth::TokenResponse(status, session.into()).into_response())
}

fn stored_answer(stored: StoredResponse) -> Response {
    let mut response = Response::new(Body::from(stored.body));
    *response.status_mut() = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    for (name, value) in stored.headers {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}
