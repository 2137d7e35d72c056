//! The error every use case returns: a transport-neutral kind that the HTTP
//! layer maps to a status and a problem document. Internal causes stay in
//! `Unavailable`/`Unexpected` and go to the log, never to the client.

use starling_domain::ValidationErrors;

use crate::ports::{BlobError, EventLogError, LiveError, StoreError, TimelineError};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("invalid input: {0}")]
    Validation(#[from] ValidationErrors),
    /// Credentials or token missing, wrong, expired or revoked.
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    /// What was not found, e.g. "post".
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{message}")]
    Conflict {
        field: &'static str,
        message: &'static str,
    },
    /// The request body is larger than accepted.
    #[error("{0}")]
    TooLarge(&'static str),
    /// The request's content is of a type not accepted.
    #[error("{0}")]
    Unsupported(&'static str),
    /// The caller holds as many of something as it may (e.g. live streams).
    #[error("{0}")]
    TooMany(&'static str),
    /// Refused for now: the caller may try again after `retry_after`.
    #[error("{detail}")]
    Throttled {
        detail: String,
        retry_after: std::time::Duration,
    },
    /// This instance holds as many of something as it can; another may not.
    #[error("{0}")]
    AtCapacity(&'static str),
    #[error("a dependency is unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error("unexpected error")]
    Unexpected(#[from] anyhow::Error),
}

pub type AppResult<T> = Result<T, AppError>;

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::HandleTaken => AppError::Conflict {
                field: "handle",
                message: "handle is already taken",
            },
            StoreError::EmailTaken => AppError::Conflict {
                field: "email",
                message: "email is already registered",
            },
            StoreError::NotFound(missing) => AppError::NotFound(missing.noun()),
            StoreError::UnknownAccount => {
                AppError::Unauthenticated("the account of this token does not exist")
            }
            StoreError::MediaUnavailable => AppError::Validation(ValidationErrors::single(
                "media_ids",
                "each must be your own upload, processed and not yet attached to a post",
            )),
            StoreError::Unavailable(cause) => AppError::Unavailable(cause),
            StoreError::Unexpected(cause) => AppError::Unexpected(cause),
        }
    }
}

impl From<TimelineError> for AppError {
    fn from(error: TimelineError) -> Self {
        AppError::Unavailable(anyhow::Error::new(error))
    }
}

impl From<BlobError> for AppError {
    fn from(error: BlobError) -> Self {
        AppError::Unavailable(anyhow::Error::new(error))
    }
}

impl From<LiveError> for AppError {
    fn from(error: LiveError) -> Self {
        AppError::Unavailable(anyhow::Error::new(error))
    }
}

impl From<EventLogError> for AppError {
    fn from(error: EventLogError) -> Self {
        AppError::Unavailable(anyhow::Error::new(error))
    }
}
