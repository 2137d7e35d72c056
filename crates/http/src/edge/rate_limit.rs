//! Rate limiting at the edge: one quota per route class, counted per
//! account when the request carries a valid token and per client address
//! otherwise (and always per address for the auth routes, where credential
//! stuffing comes from). Every answer carries the quota in the IETF
//! `RateLimit-*` headers and the older `X-RateLimit-*` ones; a refusal is a
//! 429 problem document with `Retry-After`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use starling_app::ports::{RateDecision, RouteClass};

use crate::edge::client::rate_key;
use crate::edge::{ClientIp, verified_caller};
use crate::problem::ApiError;
use crate::state::HttpState;

fn route_class(request: &Request) -> RouteClass {
    if request.uri().path().starts_with("/api/v1/auth/") {
        RouteClass::Auth
    } else if matches!(*request.method(), Method::GET | Method::HEAD) {
        RouteClass::Read
    } else {
        RouteClass::Write
    }
}

/// The class and client a request counts as: an API key's own class and
/// quota (`k:<key id>`) whatever it does; `u:<id>` for a caller with a valid
/// token (not on auth routes); else `ip:<address>` (`ip:<network>/64` for
/// IPv6). A credential checked here is remembered in the request, so the
/// handler's extractor does not check it again.
async fn class_and_client(state: &HttpState, request: &mut Request) -> (RouteClass, String) {
    let class = route_class(request);
    if class != RouteClass::Auth
        && let Some(caller) = verified_caller(state, request).await
    {
        return match caller.api_key {
            Some(key) => (RouteClass::ApiKey, format!("k:{key}")),
            None => (class, format!("u:{}", caller.user)),
        };
    }
    let client = match request.extensions().get::<ClientIp>() {
        Some(ClientIp(Some(address))) => rate_key(*address),
        _ => "ip:unknown".to_owned(),
    };
    (class, client)
}

pub(crate) async fn limit_rate(
    State(state): State<HttpState>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(limiter) = state.rate_limiter.clone() else {
        return next.run(request).await;
    };
    let (class, key) = class_and_client(&state, &mut request).await;
    let decision = match limiter.check(class, &key).await {
        Ok(decision) => decision,
        Err(error) => {
            // The limiter's own failure lets the request through: an outage
            // of the limit must not become an outage of the API.
            tracing::warn!(error = %error, "rate limiter failed; not limiting");
            return next.run(request).await;
        }
    };
    let window = state
        .rate_limits
        .map_or(Duration::ZERO, |limits| limits.quota(class).window);
    if !decision.allowed {
        metrics::counter!(starling_app::metric::RATE_LIMITED_TOTAL, "class" => class.as_str())
            .increment(1);
        let retry_after = seconds_up(decision.retry_after).max(1);
        let mut response = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            format!(
                "too many {} requests: {} per {} s allowed; retry in {retry_after} s",
                class.as_str(),
                decision.limit,
                window.as_secs().max(1),
            ),
        )
        .into_response();
        set_headers(response.headers_mut(), &decision, window);
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from(retry_after));
        return response;
    }
    let mut response = next.run(request).await;
    set_headers(response.headers_mut(), &decision, window);
    response
}

fn seconds_up(duration: Duration) -> u64 {
    duration
        .as_millis()
        .div_ceil(1000)
        .try_into()
        .unwrap_or(u64::MAX)
}

fn set_headers(headers: &mut HeaderMap, decision: &RateDecision, window: Duration) {
    let reset = seconds_up(decision.reset);
    let reset_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |now| now.as_secs())
        + reset;
    headers.insert("ratelimit-limit", HeaderValue::from(decision.limit));
    headers.insert("ratelimit-remaining", HeaderValue::from(decision.remaining));
    headers.insert("ratelimit-reset", HeaderValue::from(reset));
    if let Ok(policy) =
        HeaderValue::from_str(&format!("{};w={}", decision.limit, window.as_secs().max(1)))
    {
        headers.insert("ratelimit-policy", policy);
    }
    headers.insert("x-ratelimit-limit", HeaderValue::from(decision.limit));
    headers.insert(
        "x-ratelimit-remaining",
        HeaderValue::from(decision.remaining),
    );
    // The older convention: when the quota resets, in Unix seconds.
    headers.insert("x-ratelimit-reset", HeaderValue::from(reset_at));
}
