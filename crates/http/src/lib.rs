//! Starling's HTTP API: the axum router, handlers, extractors, problem
//! documents, pagination and the OpenAPI document. The only crate that knows HTTP.

mod edge;
mod extract;
mod listener;
mod middleware;
mod models;
mod openapi;
mod pagination;
mod problem;
mod routes;
mod scopes;
mod state;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use edge::{AddressRange, LoadShedding, TrustedProxies};
pub use listener::{LISTEN_BACKLOG, listen};
pub use problem::{PROBLEM_JSON, Problem};
pub use state::{HttpState, RefreshGauges, Shared, Streaming};

/// JSON bodies above this size are refused with 413.
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// A request taking longer is answered 503 (its work is cancelled).
    pub request_timeout: Duration,
    /// Off for processes that only run workers: they serve `/healthz`,
    /// `/readyz` and `/metrics`, and nothing else.
    pub serve_api: bool,
    /// Whose `X-Forwarded-For` names the client (rate limits key on it).
    pub trusted_proxies: TrustedProxies,
    /// Sheds API requests past a number in flight; `None`: never.
    pub load_shedding: Option<LoadShedding>,
    /// Where clients fetch media files: `""` (this server's `/media/...`) or
    /// a CDN's base URL.
    pub media_base_url: String,
    /// Bytes of posts' JSON kept written for the next read (`models::RenderedPosts`); 0: none.
    pub rendered_posts_bytes: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            serve_api: true,
            trusted_proxies: TrustedProxies::default(),
            load_shedding: None,
            media_base_url: String::new(),
            rendered_posts_bytes: 64 << 20,
        }
    }
}

/// The whole HTTP surface: `/api/v1/*`, ops endpoints, OpenAPI and docs.
pub fn router(state: HttpState, settings: &HttpSettings) -> Router {
    let x_request_id = axum::http::HeaderName::from_static(middleware::REQUEST_ID_HEADER);
    let ops = Router::new()
        .route("/healthz", get(routes::ops::healthz))
        .route("/readyz", get(routes::ops::readyz))
        .route("/metrics", get(routes::ops::metrics));
    let routes = if settings.serve_api {
        let (api, openapi) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
            .merge(routes::api_router(
                state.app.media().settings().max_upload_bytes,
            ))
            .split_for_parts();
        let openapi_json = serde_json::to_value(&openapi)
            .map(openapi::complete)
            .and_then(|document| serde_json::to_string_pretty(&document))
            .unwrap_or_default();
        // Operations endpoints stay outside both: a health check must answer
        // while the API sheds load, and probes are not rate limited.
        let api = api
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                edge::honour_idempotency_keys,
            ))
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                edge::limit_rate,
            ));
        let api = match &settings.load_shedding {
            Some(shedding) => api.layer(axum::middleware::from_fn_with_state(
                edge::shedding_state(shedding),
                edge::shed_load,
            )),
            None => api,
        };
        ops.merge(api)
            .route(
                "/openapi.json",
                get(move || async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        openapi_json,
                    )
                }),
            )
            .merge(routes::docs::router())
    } else {
        ops
    };
    routes
        .fallback(|| async { problem::generic_problem(StatusCode::NOT_FOUND).into_response() })
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            settings.request_timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(middleware::RequestMetrics::new()),
            middleware::observe,
        ))
        .layer(axum::middleware::from_fn_with_state(
            settings.trusted_proxies.clone(),
            edge::identify_client,
        ))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(
                    x_request_id.clone(),
                    middleware::RandomRequestId,
                ))
                .layer(PropagateRequestIdLayer::new(x_request_id)),
        )
        // Outermost: every answer, the refusals of the layers inside
        // included, is read as the type it declares and never sniffed
        // (a JSON body a browser took for HTML could run as a page).
        .layer(SetResponseHeaderLayer::if_not_present(
            axum::http::header::X_CONTENT_TYPE_OPTIONS,
            axum::http::HeaderValue::from_static("nosniff"),
        ))
        .layer(axum::Extension(models::RenderedPosts::new(
            models::MediaUrls::new(&settings.media_base_url),
            settings.rendered_posts_bytes,
        )))
        .with_state(state)
}
