//! `/api/v1/stream`: the caller's live updates as Server-Sent Events.
//!
//! Events: `post` (a post arrived in the home timeline; data: the post),
//! `delete` (data: `{"id"}`), `notification` (data: the notification),
//! `reset` (updates since `Last-Event-ID` may be missing: reload), and
//! `ready` first, once the stream listens. A stream lasts as long as the
//! access token it was opened with, and its session: it closes with a last
//! `end` event (`{"reason": "token_expired"}`: reconnect with a fresh token
//! and `Last-Event-ID`; `{"reason": "session_ended"}`: signed out). Each update carries an `id`;
//! a client reconnecting with `Last-Event-ID` (browsers' `EventSource`
//! does so by itself) gets what it missed within the retention window.
//! Idle streams get a comment line every `stream.heartbeat_secs`.

use std::convert::Infallible;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use starling_app::auth::TokenIdentity;
use starling_app::live::{LiveStream, StreamEnd, StreamItem};
use utoipa::IntoParams;

use crate::extract::{AppQuery, bearer_token};
use crate::middleware::CallerSlot;
use crate::models::{MediaUrls, NotificationJson, PostJson, RenderedPosts};
use crate::problem::{ApiError, Problem};
use crate::state::HttpState;

/// How long a client waits before reconnecting (the SSE `retry` field).
const RECONNECT_AFTER: Duration = Duration::from_secs(2);

/// Query parameters of the stream.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct StreamParams {
    /// For clients that cannot set headers (the browser's `EventSource`):
    /// the access token. Prefer `Authorization: Bearer`: URLs end up in logs.
    pub access_token: Option<String>,
    /// Resume after this event id, as the `Last-Event-ID` header does (the
    /// header wins when both are given).
    pub last_event_id: Option<String>,
}

/// The caller's live updates (Server-Sent Events).
#[utoipa::path(get, path = "/api/v1/stream", tag = "stream", security(("bearer" = [])),
    params(StreamParams,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id")),
    responses(
        (status = 200, content_type = "text/event-stream",
            description = "Events `ready`, `post`, `delete`, `notification`, `reset`; `end` last when the token expires or its session ends"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json",
            description = "An API key: live streams need a session's access token"),
        (status = 429, body = Problem, content_type = "application/problem+json",
            description = "The account holds as many streams as it may"),
        (status = 503, body = Problem, content_type = "application/problem+json",
            description = "This instance holds as many streams as it can"),
    ))]
pub(crate) async fn stream(
    State(state): State<HttpState>,
    Extension(rendered): Extension<RenderedPosts>,
    caller: Option<axum::Extension<CallerSlot>>,
    headers: HeaderMap,
    AppQuery(params): AppQuery<StreamParams>,
) -> Result<Response, ApiError> {
    let token = match (bearer_token(&headers)?, params.access_token.as_deref()) {
        (Some(token), _) | (None, Some(token)) => token,
        (None, None) => {
            return Err(ApiError::unauthenticated(
                "this endpoint needs an access token: Authorization: Bearer <token>",
                "Bearer",
            ));
        }
    };
    let token = authenticate(&state, token)?;
    if let Some(axum::Extension(slot)) = caller {
        slot.set(token.user);
    }
    let after = last_event_id(&headers, params.last_event_id.as_deref())?;
    let Some(streaming) = &state.streaming else {
        return Err(starling_app::AppError::AtCapacity("live streams are not served here").into());
    };
    let live = LiveStream::open(&state.app, &streaming.hub, token, after).await?;
    let ready = futures::stream::once(async {
        Ok::<_, Infallible>(
            Event::default()
                .event("ready")
                .retry(RECONNECT_AFTER)
                .data("{}"),
        )
    });
    let updates = futures::stream::unfold(Some(live), move |live| {
        let urls = rendered.urls().clone();
        async move {
            let mut live = live?;
            match live.next().await {
                Ok(item) => Some((Ok::<_, Infallible>(event(&item, &urls)), Some(live))),
                Err(end) => {
                    tracing::debug!(?end, "live stream ended");
                    // Told why when the client must do something other than
                    // reconnect; the stream ends after it.
                    let reason = match end {
                        StreamEnd::Expired => "token_expired",
                        StreamEnd::SessionEnded => "session_ended",
                        StreamEnd::Dropped | StreamEnd::Gap => return None,
                    };
                    metrics::counter!(starling_app::metric::STREAM_EVENTS_TOTAL, "type" => "end")
                        .increment(1);
                    let last = Event::default()
                        .event("end")
                        .data(format!(r#"{{"reason":"{reason}"}}"#));
                    Some((Ok(last), None))
                }
            }
        }
    });

    let mut response = Sse::new(ready.chain(updates))
        .keep_alive(
            KeepAlive::new()
                .interval(streaming.heartbeat)
                .text("heartbeat"),
        )
        .into_response();
    // nginx would otherwise buffer the stream.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

fn authenticate(state: &HttpState, token: &str) -> Result<TokenIdentity, ApiError> {
    // A stream lasts as long as a session's token; API keys get none (yet).
    if starling_app::accounts::Accounts::is_api_key(token) {
        return Err(ApiError::insufficient_scope(None));
    }
    state
        .app
        .accounts()
        .identify(token)
        .map_err(crate::extract::token_problem)
}

/// The position to resume after: the `Last-Event-ID` header, else the query.
fn last_event_id(headers: &HeaderMap, query: Option<&str>) -> Result<Option<u64>, ApiError> {
    let header = match headers.get("last-event-id") {
        Some(value) => Some(value.to_str().map_err(|_| invalid_position())?),
        None => None,
    };
    match header.or(query).map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => text.parse().map(Some).map_err(|_| invalid_position()),
    }
}

fn invalid_position() -> ApiError {
    ApiError::invalid_parameter(
        "last_event_id",
        "must be the id of an event this stream sent",
    )
}

fn event(item: &StreamItem, urls: &MediaUrls) -> Event {
    let (kind, sequence, data) = match item {
        StreamItem::Post { sequence, view } => (
            "post",
            Some(*sequence),
            serde_json::to_string(&PostJson(view, urls)),
        ),
        StreamItem::Deleted { sequence, post_id } => (
            "delete",
            Some(*sequence),
            serde_json::to_string(&serde_json::json!({ "id": post_id.get().to_string() })),
        ),
        StreamItem::Notification { sequence, view } => (
            "notification",
            Some(*sequence),
            serde_json::to_string(&NotificationJson(view, urls)),
        ),
        StreamItem::Reset { sequence } => (
            "reset",
            *sequence,
            Ok(r#"{"reason":"updates since the given event may be missing; reload"}"#.to_owned()),
        ),
    };
    metrics::counter!(starling_app::metric::STREAM_EVENTS_TOTAL, "type" => kind).increment(1);
    let event = Event::default()
        .event(kind)
        .data(data.unwrap_or_else(|_| "{}".to_owned()));
    match sequence {
        Some(sequence) => event.id(sequence.to_string()),
        None => event,
    }
}
