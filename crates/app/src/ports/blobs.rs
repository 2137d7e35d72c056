//! The blob port: files by key in object storage (a folder in embedded
//! mode, an S3-compatible bucket scaled out). Keys are content hashes (the
//! media), so a key's bytes never change: a `put` of a key that exists
//! stores the same; data-export archives are kept under `exports/<id>-<random>.zip`,
//! written once too.

use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("object storage unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

#[async_trait]
pub trait BlobStore: Send + Sync {
    async fn put(&self, key: &str, bytes: Bytes) -> Result<(), BlobError>;

    /// The whole file; `None` when there is none under `key`.
    async fn get(&self, key: &str) -> Result<Option<Bytes>, BlobError>;

    /// Bytes `range` of the file (the caller keeps it within the size).
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Option<Bytes>, BlobError>;

    /// The file's size; `None` when there is none.
    async fn size(&self, key: &str) -> Result<Option<u64>, BlobError>;

    /// Removes the file; removing an absent one is not an error.
    async fn delete(&self, key: &str) -> Result<(), BlobError>;
}
