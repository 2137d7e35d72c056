//! Images: `POST /api/v1/media` (upload), `GET /api/v1/media/{id}` (an
//! upload's state, for its owner) and `GET /media/{hash}` (the files, for
//! everyone and every cache: content-addressed, so immutable).

use axum::Extension;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use starling_app::media::{ByteRange, Served};
use starling_domain::MediaId;

use crate::extract::AuthUser;
use crate::models::{MediaBody, RenderedPosts};
use crate::problem::{ApiError, Problem};
use crate::routes::json_now;
use crate::state::HttpState;

/// The multipart form of an upload (for the OpenAPI document).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct UploadForm {
    /// The image: PNG, JPEG, GIF or WebP, told from its bytes.
    #[schema(format = Binary, content_media_type = "application/octet-stream")]
    file: String,
    /// A description for those who cannot see it (at most 1500 characters).
    alt: Option<String>,
}

/// Upload an image (multipart form: `file`, optional `alt`).
#[utoipa::path(post, path = "/api/v1/media", tag = "media", security(("bearer" = [])),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, body = MediaBody, description = "Stored, metadata removed; the thumbnail follows (`state` `processing`, then `ready`)"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json", description = "Not a PNG, JPEG, GIF or WebP image"),
        (status = 422, body = Problem, content_type = "application/problem+json", description = "Too many pixels, unreadable, or bad alt text"),
    ))]
pub(crate) async fn upload(
    State(state): State<HttpState>,
    Extension(rendered): Extension<RenderedPosts>,
    AuthUser(caller): AuthUser,
    form: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let mut form = form.map_err(|rejection| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            format!("send the image as multipart/form-data: {rejection}"),
        )
    })?;
    let max = state.app.media().settings().max_upload_bytes;
    let malformed = |error: axum::extract::multipart::MultipartError| {
        if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return too_large(max);
        }
        ApiError::bad_request(format!("the multipart form is malformed: {error}"))
    };
    let mut file = None;
    let mut alt = String::new();
    while let Some(mut field) = form.next_field().await.map_err(malformed)? {
        match field.name() {
            Some("file") if file.is_none() => {
                let mut bytes = BytesMut::new();
                while let Some(chunk) = field.chunk().await.map_err(malformed)? {
                    if bytes.len() + chunk.len() > max {
                        return Err(too_large(max));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                file = Some(bytes.freeze());
            }
            Some("file") => return Err(ApiError::invalid_parameter("file", "give one file")),
            Some("alt") => alt = field.text().await.map_err(malformed)?,
            Some(other) => {
                return Err(ApiError::invalid_parameter(
                    other,
                    "unknown field; the form takes `file` and `alt`",
                ));
            }
            None => return Err(ApiError::bad_request("a form field has no name")),
        }
    }
    let file = file.ok_or_else(|| ApiError::invalid_parameter("file", "the image is missing"))?;
    let media = state.app.media().upload(caller, file, &alt).await?;
    let mut response = json_now(
        StatusCode::CREATED,
        &MediaBody::new(&media, rendered.urls()),
    );
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/media/{}", media.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

fn too_large(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload-too-large",
        format!("the image is larger than {max} bytes"),
    )
}

/// One of the caller's uploads (others' are not found).
#[utoipa::path(get, path = "/api/v1/media/{id}", tag = "media", security(("bearer" = [])),
    params(("id" = String, Path, description = "The upload's id")),
    responses(
        (status = 200, body = MediaBody),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn media(
    State(state): State<HttpState>,
    Extension(rendered): Extension<RenderedPosts>,
    AuthUser(caller): AuthUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: MediaId = id.parse().map_err(|_| ApiError::not_found("media"))?;
    let media = state.app.media().upload_of(caller, id).await?;
    Ok(json_now(
        StatusCode::OK,
        &MediaBody::new(&media, rendered.urls()),
    ))
}

/// Cached by browsers and CDNs for a year: a file's name is its content.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// A stored image or thumbnail, by the SHA-256 of its bytes.
#[utoipa::path(get, path = "/media/{hash}", tag = "media",
    params(("hash" = String, Path, description = "SHA-256 of the file, hex"),
        ("If-None-Match" = Option<String>, Header, description = "304 when it names this file"),
        ("Range" = Option<String>, Header, description = "One byte range: `bytes=first-last`, `first-` or `-count`")),
    responses(
        (status = 200, description = "The file, with a strong ETag, `Cache-Control: public, max-age=31536000, immutable`"),
        (status = 206, description = "The range asked for, with Content-Range"),
        (status = 304, description = "The client's copy is this file"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 416, body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn file(
    State(state): State<HttpState>,
    Path(hash): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !starling_app::media::is_content_hash(&hash) {
        return Err(ApiError::not_found("file"));
    }
    let etag = format!("\"{hash}\"");
    if let Some(wanted) = headers.get(header::IF_NONE_MATCH)
        && names(wanted, &etag)
    {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        common_headers(response.headers_mut(), &etag);
        return Ok(response);
    }
    // A range counts only for this very file (If-Range), and only a single
    // one in a form we know; anything else gets the whole file (RFC 9110).
    let range = headers
        .get(header::RANGE)
        .filter(|_| {
            headers
                .get(header::IF_RANGE)
                .is_none_or(|tag| tag.as_bytes() == etag.as_bytes())
        })
        .and_then(|value| parse_range(value.to_str().ok()?));
    match state.app.media().file(&hash, range).await? {
        Served::Unsatisfiable { size } => {
            let mut response = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range-not-satisfiable",
                format!("the file has {size} bytes"),
            )
            .into_response();
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            Ok(response)
        }
        Served::Content(content) => {
            let status = if content.range.is_some() {
                StatusCode::PARTIAL_CONTENT
            } else {
                StatusCode::OK
            };
            let mut response = (status, content.bytes).into_response();
            let headers = response.headers_mut();
            common_headers(headers, &etag);
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(content.kind.content_type()),
            );
            if let Some(range) = content.range
                && let Ok(value) = HeaderValue::from_str(&format!(
                    "bytes {}-{}/{}",
                    range.start,
                    range.end - 1,
                    content.size
                ))
            {
                headers.insert(header::CONTENT_RANGE, value);
            }
            metrics::counter!(starling_app::metric::MEDIA_SERVED_TOTAL, "status" => status.as_str().to_owned())
                .increment(1);
            Ok(response)
        }
    }
}

fn common_headers(headers: &mut HeaderMap, etag: &str) {
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    // Served as images only, embeddable anywhere, never run as a document.
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    headers.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("cross-origin"),
    );
}

/// Whether an `If-None-Match` value names `etag` (or is `*`). Weak
/// comparison, as RFC 9110 asks of `If-None-Match`.
fn names(wanted: &HeaderValue, etag: &str) -> bool {
    let Ok(wanted) = wanted.to_str() else {
        return false;
    };
    wanted.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

/// `bytes=first-last`, `bytes=first-` or `bytes=-count`; `None` for
/// anything else (several ranges included).
fn parse_range(value: &str) -> Option<ByteRange> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let number = |text: &str| -> Option<u64> {
        (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse().ok())
            .flatten()
    };
    match (first.trim(), last.trim()) {
        ("", count) => Some(ByteRange::Suffix(number(count)?)),
        (first, "") => Some(ByteRange::From(number(first)?)),
        (first, last) => Some(ByteRange::Span(number(first)?, number(last)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_in_their_three_forms_only() {
        assert_eq!(parse_range("bytes=0-99"), Some(ByteRange::Span(0, 99)));
        assert_eq!(parse_range("bytes=100-"), Some(ByteRange::From(100)));
        assert_eq!(parse_range("bytes=-5"), Some(ByteRange::Suffix(5)));
        for ignored in [
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=a-b",
            "bytes=-",
            "bytes=1",
        ] {
            assert_eq!(parse_range(ignored), None, "{ignored}");
        }
    }

    #[test]
    fn if_none_match_names_a_tag_among_several_or_any() {
        let etag = "\"abc\"";
        for matching in ["\"abc\"", "W/\"abc\"", "\"x\", \"abc\"", "*"] {
            assert!(
                names(&HeaderValue::from_static(matching), etag),
                "{matching}"
            );
        }
        assert!(!names(&HeaderValue::from_static("\"abcd\""), etag));
    }
}
