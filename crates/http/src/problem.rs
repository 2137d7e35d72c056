//! RFC 9457 problem documents: every error the API answers, in one shape.
//!
//! 5xx bodies say nothing internal; their causes go to the log.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use starling_app::AppError;
use utoipa::ToSchema;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A stable identifier of the kind of problem, e.g. `/problems/validation`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Present on validation problems: one entry per invalid field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldProblem>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FieldProblem {
    pub field: String,
    pub message: String,
}

/// An error on its way to becoming a problem response.
#[derive(Debug)]
pub(crate) struct ApiError {
    /// Boxed: errors travel in `Result`s through every handler, and the
    /// document is most of their size.
    problem: Box<Problem>,
    /// Set for 401s: tells clients how to authenticate (RFC 6750).
    bearer_challenge: Option<&'static str>,
    /// Seconds to wait before trying again (`Retry-After`), when known.
    retry_after: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, slug: &str, detail: impl Into<String>) -> Self {
        Self {
            problem: Box::new(Problem {
                kind: format!("/problems/{slug}"),
                title: status.canonical_reason().unwrap_or("Error").to_owned(),
                status: status.as_u16(),
                detail: detail.into(),
                errors: Vec::new(),
            }),
            bearer_challenge: None,
            retry_after: None,
        }
    }

    pub(crate) fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", detail)
    }

    pub(crate) fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("{what} not found"),
        )
    }

    /// A 400 pointing at one query or body field.
    pub(crate) fn invalid_parameter(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        let mut error = Self::bad_request(format!("{field}: {message}"));
        error.problem.errors.push(FieldProblem {
            field: field.to_owned(),
            message,
        });
        error
    }

    pub(crate) fn unauthenticated(detail: impl Into<String>, challenge: &'static str) -> Self {
        let mut error = Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", detail);
        error.bearer_challenge = Some(challenge);
        error
    }

    /// 403 for a credential that may not do this: an API key without the
    /// scope the route needs (RFC 6750 `insufficient_scope`), or any key on
    /// a route only a person signed in may use (`scope` `None`).
    pub(crate) fn insufficient_scope(scope: Option<starling_app::auth::Scope>) -> Self {
        use starling_app::auth::Scope;
        let (detail, challenge) = match scope {
            Some(Scope::Read) => (
                "this API key lacks the read scope",
                "Bearer error=\"insufficient_scope\", scope=\"read\"",
            ),
            Some(Scope::Write) => (
                "this API key lacks the write scope",
                "Bearer error=\"insufficient_scope\", scope=\"write\"",
            ),
            Some(Scope::Follow) => (
                "this API key lacks the follow scope",
                "Bearer error=\"insufficient_scope\", scope=\"follow\"",
            ),
            Some(Scope::Notifications) => (
                "this API key lacks the notifications scope",
                "Bearer error=\"insufficient_scope\", scope=\"notifications\"",
            ),
            Some(Scope::Media) => (
                "this API key lacks the media scope",
                "Bearer error=\"insufficient_scope\", scope=\"media\"",
            ),
            None => (
                "API keys cannot do this (keys, sessions, the password, live streams): sign in",
                "Bearer error=\"insufficient_scope\"",
            ),
        };
        let mut error = Self::new(StatusCode::FORBIDDEN, "insufficient-scope", detail);
        error.bearer_challenge = Some(challenge);
        error
    }

    pub(crate) fn with_errors(mut self, errors: Vec<FieldProblem>) -> Self {
        self.problem.errors = errors;
        self
    }

    pub(crate) fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl From<AppError> for ApiError {
    fn from(error: AppError) -> Self {
        match error {
            AppError::Validation(errors) => {
                let fields = errors
                    .0
                    .iter()
                    .map(|error| FieldProblem {
                        field: error.field.to_owned(),
                        message: error.message.clone(),
                    })
                    .collect();
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation",
                    errors.to_string(),
                )
                .with_errors(fields)
            }
            AppError::Unauthenticated(detail) => ApiError::unauthenticated(detail, "Bearer"),
            AppError::Forbidden(detail) => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", detail)
            }
            AppError::NotFound(what) => ApiError::not_found(what),
            AppError::Conflict { field, message } => {
                ApiError::new(StatusCode::CONFLICT, "conflict", message).with_errors(vec![
                    FieldProblem {
                        field: field.to_owned(),
                        message: message.to_owned(),
                    },
                ])
            }
            AppError::TooLarge(detail) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", detail)
            }
            AppError::Unsupported(detail) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                detail,
            ),
            AppError::TooMany(detail) => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too-many", detail)
            }
            AppError::Throttled {
                detail,
                retry_after,
            } => {
                let mut error = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "throttled", detail);
                error.retry_after = Some(retry_after.as_secs().max(1));
                error
            }
            AppError::AtCapacity(detail) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "at-capacity", detail)
            }
            AppError::Unavailable(cause) => {
                tracing::error!(error = ?cause, "dependency unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the service is temporarily unavailable; retry shortly",
                )
            }
            AppError::Unexpected(cause) => {
                tracing::error!(error = ?cause, "unexpected error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "an unexpected error occurred",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::to_vec(&self.problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(challenge) = self.bearer_challenge {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        } else if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// The slug and detail used for statuses produced outside our handlers
/// (routing, body limits, timeouts, panics).
pub(crate) fn generic_problem(status: StatusCode) -> ApiError {
    let (slug, detail) = match status {
        StatusCode::NOT_FOUND => ("not-found", "no such resource"),
        StatusCode::METHOD_NOT_ALLOWED => ("method-not-allowed", "this method is not allowed here"),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload-too-large", "the request body is too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ("unsupported-media-type", "unsupported content type")
        }
        StatusCode::REQUEST_TIMEOUT | StatusCode::SERVICE_UNAVAILABLE => {
            ("unavailable", "the request took too long; retry shortly")
        }
        status if status.is_server_error() => ("internal", "an unexpected error occurred"),
        _ => ("bad-request", "the request could not be understood"),
    };
    ApiError::new(status, slug, detail)
}
