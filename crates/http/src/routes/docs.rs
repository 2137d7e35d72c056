//! The interactive API reference at `/docs/`: Swagger UI reading
//! `/openapi.json`. Its files are compiled into the binary
//! (`utoipa-swagger-ui`, vendored), so the page renders with nothing but
//! this server: offline, behind a strict firewall, with a
//! Content-Security-Policy that allows no other origin.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use crate::problem::ApiError;

/// Nothing from another origin; scripts and styles only as files of this
/// server (none inline), images also as `data:` URLs (Swagger UI's icons),
/// requests ("Try it out") only to this server; no framing.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The page, ours (title, no inline script); the rest is Swagger UI's.
const INDEX: &str = include_str!("docs.html");

/// The files the page loads; anything else under `/docs/` is 404.
const SWAGGER_FILES: [&str; 6] = [
    "swagger-ui.css",
    "index.css",
    "swagger-ui-bundle.js",
    "swagger-ui-standalone-preset.js",
    "swagger-initializer.js",
    "favicon-32x32.png",
];
const FAVICON_16: &str = "favicon-16x16.png";

struct Asset {
    bytes: bytes::Bytes,
    content_type: HeaderValue,
    /// A strong validator: the file's SHA-256 (the files change only with
    /// the binary, but their URLs do not, so browsers revalidate).
    etag: HeaderValue,
}

static ASSETS: LazyLock<HashMap<&'static str, Asset>> = LazyLock::new(load_assets);

fn load_assets() -> HashMap<&'static str, Asset> {
    let config = Arc::new(
        utoipa_swagger_ui::Config::new(["/openapi.json"])
            // Swagger UI would otherwise send the document's URL to
            // validator.swagger.io and show its badge.
            .validator_url("none")
            // No top bar: it loads other documents by URL, which the
            // policy forbids anyway, and carries the only inline style.
            .use_base_layout()
            .display_request_duration(true)
            .persist_authorization(false)
            .filter(true),
    );
    let mut assets = HashMap::new();
    assets.insert(
        "index.html",
        asset(INDEX.as_bytes().to_vec(), "text/html; charset=utf-8"),
    );
    for name in SWAGGER_FILES.into_iter().chain([FAVICON_16]) {
        match utoipa_swagger_ui::serve(name, config.clone()) {
            Ok(Some(file)) => {
                let content_type = if file.content_type.starts_with("text/")
                    || file.content_type.ends_with("javascript")
                {
                    format!("{}; charset=utf-8", file.content_type)
                } else {
                    file.content_type
                };
                assets.insert(name, asset(file.bytes.into_owned(), &content_type));
            }
            Ok(None) => tracing::error!(file = name, "Swagger UI lacks a file the docs load"),
            Err(error) => tracing::error!(file = name, %error, "Swagger UI's file cannot be read"),
        }
    }
    assets
}

fn asset(bytes: Vec<u8>, content_type: &str) -> Asset {
    let digest = Sha256::digest(&bytes);
    let hex: String = digest[..16]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    Asset {
        bytes: bytes.into(),
        content_type: HeaderValue::from_str(content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
        etag: HeaderValue::from_str(&format!("\"{hex}\""))
            .unwrap_or(HeaderValue::from_static("\"0\"")),
    }
}

/// `/` and `/docs` (to `/docs/`, which the page's relative URLs need),
/// `/docs/` and its files.
pub(crate) fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        // Until Starling serves a web client of its own there, whoever opens
        // the server's address in a browser lands on the API reference.
        .route("/", get(|| async { Redirect::temporary("/docs/") }))
        .route("/docs", get(|| async { Redirect::permanent("/docs/") }))
        .route("/docs/", get(|headers: HeaderMap| async move { serve("index.html", &headers) }))
        .route(
            "/docs/{*file}",
            get(|Path(file): Path<String>, headers: HeaderMap| async move {
                serve(&file, &headers)
            }),
        )
}

fn serve(name: &str, request: &HeaderMap) -> Response {
    let Some(asset) = ASSETS.get(name) else {
        return ApiError::not_found("file").into_response();
    };
    let fresh = request.get(header::IF_NONE_MATCH).is_some_and(|tags| {
        tags.as_bytes()
            .split(|byte| *byte == b',')
            .any(|tag| tag.trim_ascii() == asset.etag.as_bytes() || tag.trim_ascii() == b"*")
    });
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = asset.bytes.clone().into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, asset.content_type.clone());
        response
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, asset.etag.clone());
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        HeaderName::from_static("x-frame-options"),
        HeaderValue::from_static("DENY"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_the_page_loads_is_compiled_in() {
        for name in SWAGGER_FILES.into_iter().chain(["index.html", FAVICON_16]) {
            assert!(ASSETS.contains_key(name), "{name} is missing");
            let asset = &ASSETS[name];
            assert!(!asset.bytes.is_empty(), "{name} is empty");
        }
        // The page loads each of them, by a relative URL, and nothing else.
        for name in SWAGGER_FILES {
            assert!(
                INDEX.contains(&format!("\"./{name}\"")),
                "{name} is not loaded"
            );
        }
        assert!(!INDEX.contains("http:") && !INDEX.contains("https:"));
        // Swagger UI is told where the document is, and not to ask a validator.
        let initializer =
            std::str::from_utf8(&ASSETS["swagger-initializer.js"].bytes).unwrap_or_default();
        assert!(initializer.contains("\"/openapi.json\""), "{initializer}");
        assert!(
            initializer.contains("\"validatorUrl\": \"none\""),
            "{initializer}"
        );
    }
}
