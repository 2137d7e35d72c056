//! Our own extractors, so that every rejection is a problem document.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequestParts, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use starling_app::accounts::{BearerError, Caller, Device, UserRef};
use starling_app::auth::TokenError;
use starling_domain::{PostId, UserId};

use crate::middleware::CallerSlot;
use crate::problem::{ApiError, FieldProblem};
use crate::scopes::Needs;
use crate::state::HttpState;

/// `axum::Json` with problem-document rejections: a missing or wrong content
/// type is 415, malformed JSON 400, JSON of the wrong shape 422, a body over
/// the limit 413.
pub(crate) struct AppJson<T>(pub T);

impl<T, S> FromRequest<S> for AppJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_problem(rejection)),
        }
    }
}

/// `AppJson` whose body may be left out: a request with no body (no
/// content type, no length or a length of 0, not chunked) is `T::default()`.
pub(crate) struct JsonOrEmpty<T>(pub T);

impl<T, S> FromRequest<S> for JsonOrEmpty<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let headers = request.headers();
        let empty = headers.get(axum::http::header::CONTENT_TYPE).is_none()
            && headers.get(axum::http::header::TRANSFER_ENCODING).is_none()
            && headers
                .get(axum::http::header::CONTENT_LENGTH)
                .is_none_or(|length| length.as_bytes() == b"0");
        if empty {
            return Ok(Self(T::default()));
        }
        let AppJson(value) = AppJson::<T>::from_request(request, state).await?;
        Ok(Self(value))
    }
}

fn json_problem(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "send a JSON body with Content-Type: application/json",
        ),
        JsonRejection::JsonSyntaxError(error) => {
            ApiError::bad_request(format!("the body is not valid JSON: {}", error.body_text()))
        }
        JsonRejection::JsonDataError(error) => {
            let text = error.body_text();
            let detail = text
                .strip_prefix("Failed to deserialize the JSON body into the target type: ")
                .unwrap_or(&text)
                .to_owned();
            // serde_path_to_error prefixes the failing field's path: "handle: invalid type ...".
            let field = detail
                .split_once(": ")
                .map(|(path, _)| path)
                .filter(|path| !path.contains(' ') && *path != ".")
                .unwrap_or("body")
                .to_owned();
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                detail.clone(),
            )
            .with_errors(vec![FieldProblem {
                field,
                message: detail,
            }])
        }
        JsonRejection::BytesRejection(error) => {
            let status = error.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    status,
                    "payload-too-large",
                    "the request body is over 64 KiB",
                )
            } else {
                ApiError::bad_request("the request body could not be read")
            }
        }
        other => ApiError::bad_request(other.body_text()),
    }
}

/// `axum::extract::Query` with problem-document rejections (400).
pub(crate) struct AppQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for AppQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match <axum::extract::Query<T> as FromRequestParts<S>>::from_request_parts(parts, state)
            .await
        {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(query_problem(rejection)),
        }
    }
}

fn query_problem(rejection: QueryRejection) -> ApiError {
    let text = rejection.body_text();
    let detail = text
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(&text);
    ApiError::bad_request(format!("invalid query string: {detail}"))
}

/// The authenticated caller, from `Authorization: Bearer <token>`: a
/// session's access token (verified by its signature alone: no store is
/// read) or an API key (`sk_...`, with the scope the route needs).
#[derive(Debug, Clone, Copy)]
pub(crate) struct AuthUser(pub UserId);

impl FromRequestParts<HttpState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &HttpState,
    ) -> Result<Self, Self::Rejection> {
        match bearer_token(&parts.headers)? {
            Some(token) => {
                let caller = authenticate(parts, state, token).await?;
                permit(parts, caller)?;
                Ok(AuthUser(caller.user))
            }
            None => Err(ApiError::unauthenticated(
                "this endpoint needs an access token: Authorization: Bearer <token>",
                "Bearer",
            )),
        }
    }
}

/// On endpoints that anyone may read, the caller when a token is given. A
/// token that is given but invalid is still refused.
impl OptionalFromRequestParts<HttpState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &HttpState,
    ) -> Result<Option<Self>, Self::Rejection> {
        if bearer_token(&parts.headers)?.is_none() {
            return Ok(None);
        }
        <Self as FromRequestParts<HttpState>>::from_request_parts(parts, state)
            .await
            .map(Some)
    }
}

/// The token of `Authorization: Bearer <token>`, when the header is there.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed = || {
        ApiError::unauthenticated(
            "the Authorization header must be: Bearer <token>",
            "Bearer error=\"invalid_request\"",
        )
    };
    let value = value.to_str().map_err(|_| malformed())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(malformed());
    }
    Ok(Some(token.trim()))
}

/// Who `token` speaks for, with what scopes; told to the request metrics.
async fn authenticate(parts: &Parts, state: &HttpState, token: &str) -> Result<Caller, ApiError> {
    // The rate limiter checked this request's token already.
    let caller = match parts.extensions.get::<crate::edge::Verified>() {
        Some(crate::edge::Verified(caller)) => *caller,
        None => caller_of(state, token).await?,
    };
    if let Some(slot) = parts.extensions.get::<CallerSlot>() {
        slot.set(caller.user);
    }
    Ok(caller)
}

/// Checks `token`: an API key against the store (or this instance's memory
/// of it), an access token by its signature.
pub(crate) async fn caller_of(state: &HttpState, token: &str) -> Result<Caller, ApiError> {
    let accounts = state.app.accounts();
    if starling_app::accounts::Accounts::is_api_key(token) {
        return accounts
            .authenticate_api_key(token)
            .await
            .map_err(|error| match error {
                BearerError::Refused(TokenError::Expired) => ApiError::unauthenticated(
                    "the API key has expired",
                    "Bearer error=\"invalid_token\"",
                ),
                BearerError::Refused(_) => ApiError::unauthenticated(
                    "the API key is invalid or revoked",
                    "Bearer error=\"invalid_token\"",
                ),
                BearerError::Unavailable(error) => error.into(),
            });
    }
    accounts
        .identify(token)
        .map(|identity| Caller::signed_in(identity.user, identity.session))
        .map_err(token_problem)
}

/// Whether the caller's credential may use the route this request matched.
fn permit(parts: &Parts, caller: Caller) -> Result<(), ApiError> {
    if caller.scopes.is_all() && caller.api_key.is_none() {
        return Ok(());
    }
    let route = parts
        .extensions
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| parts.uri.path(), |path| path.as_str());
    match crate::scopes::needs(&parts.method, route) {
        Needs::SignedIn if caller.api_key.is_some() => Err(ApiError::insufficient_scope(None)),
        Needs::SignedIn => Ok(()),
        Needs::Scope(scope) if caller.scopes.contains(scope) => Ok(()),
        Needs::Scope(scope) => Err(ApiError::insufficient_scope(Some(scope))),
    }
}

/// The caller and the session of their access token, for the routes that
/// act on credentials (sessions, the password, API keys): a person signed
/// in, never an API key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AuthSession(pub Caller);

impl FromRequestParts<HttpState> for AuthSession {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &HttpState,
    ) -> Result<Self, Self::Rejection> {
        let Some(token) = bearer_token(&parts.headers)? else {
            return Err(ApiError::unauthenticated(
                "this endpoint needs an access token: Authorization: Bearer <token>",
                "Bearer",
            ));
        };
        let caller = authenticate(parts, state, token).await?;
        if caller.api_key.is_some() {
            return Err(ApiError::insufficient_scope(None));
        }
        Ok(Self(caller))
    }
}

/// Where a token is optional (logout): the caller when one is given; a
/// token that is given but invalid is still refused.
impl OptionalFromRequestParts<HttpState> for AuthSession {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &HttpState,
    ) -> Result<Option<Self>, Self::Rejection> {
        if bearer_token(&parts.headers)?.is_none() {
            return Ok(None);
        }
        <Self as FromRequestParts<HttpState>>::from_request_parts(parts, state)
            .await
            .map(Some)
    }
}

pub(crate) fn token_problem(error: TokenError) -> ApiError {
    let detail = match error {
        TokenError::Expired => "the access token has expired; refresh it",
        TokenError::Invalid => "the access token is invalid",
        TokenError::Revoked => "the session of this access token has ended; sign in again",
    };
    ApiError::unauthenticated(detail, "Bearer error=\"invalid_token\"")
}

/// Where a sign-in comes from: its `User-Agent`, and the client address the
/// edge decided (behind trusted proxies, the forwarded one).
pub(crate) struct ClientDevice(pub Device);

impl<S: Send + Sync> FromRequestParts<S> for ClientDevice {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(device_of(&parts.headers, &parts.extensions)))
    }
}

pub(crate) fn device_of(headers: &HeaderMap, extensions: &axum::http::Extensions) -> Device {
    Device {
        user_agent: headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned),
        address: extensions
            .get::<crate::edge::ClientIp>()
            .and_then(|client| client.0)
            .map(|address| address.to_string()),
    }
}

/// `/users/{user}`: a numeric id or `@handle`. Anything else names no one (404).
pub(crate) struct UserPath(pub UserRef);

impl<S: Send + Sync> FromRequestParts<S> for UserPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let segment = single_segment(parts, state).await?;
        if let Some(handle) = segment.strip_prefix('@') {
            return Ok(Self(UserRef::Handle(handle.to_owned())));
        }
        segment
            .parse::<UserId>()
            .map(|id| Self(UserRef::Id(id)))
            .map_err(|_| ApiError::not_found("user"))
    }
}

/// `/posts/{post}`: a numeric id. Anything else names no post (404).
pub(crate) struct PostPath(pub PostId);

impl<S: Send + Sync> FromRequestParts<S> for PostPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let segment = single_segment(parts, state).await?;
        segment
            .parse::<PostId>()
            .map(Self)
            .map_err(|_| ApiError::not_found("post"))
    }
}

async fn single_segment<S: Send + Sync>(parts: &mut Parts, state: &S) -> Result<String, ApiError> {
    <axum::extract::Path<String> as FromRequestParts<S>>::from_request_parts(parts, state)
        .await
        .map(|axum::extract::Path(segment)| segment)
        .map_err(|_| ApiError::bad_request("the path could not be decoded"))
}
