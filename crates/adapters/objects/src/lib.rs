//! Media files in object storage through the `object_store` crate: a local
//! folder in embedded mode, an S3-compatible bucket (AWS, MinIO, Ceph, R2,
//! ...) when configured. Every call passes a guard ("object_store"): a
//! timeout, a bulkhead and a circuit breaker, so a storage that hangs fails
//! uploads quickly instead of holding their requests.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};
use starling_app::ports::{BlobError, BlobStore};
use starling_app::resilience::{Guard, GuardError, GuardSettings};

/// Where an S3-compatible bucket is.
#[derive(Debug, Clone, Default)]
pub struct S3Settings {
    pub bucket: String,
    /// E.g. `http://127.0.0.1:9000` for MinIO; unset: AWS.
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Allow a plain-HTTP endpoint.
    pub allow_http: bool,
}

#[derive(Clone)]
pub struct ObjectBlobs {
    store: Arc<dyn ObjectStore>,
    guard: Guard,
}

fn unavailable(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> BlobError {
    BlobError::Unavailable(error.into())
}

fn guarded(error: GuardError<BlobError>) -> BlobError {
    match error {
        GuardError::Failed(error) => error,
        refused => unavailable(refused.to_string()),
    }
}

impl ObjectBlobs {
    /// Files under `dir` (created if missing).
    pub fn local(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the media folder {}", dir.display()))?;
        let store = LocalFileSystem::new_with_prefix(dir)
            .with_context(|| format!("opening the media folder {}", dir.display()))?;
        Ok(Self::new(Arc::new(store)))
    }

    pub fn s3(settings: &S3Settings) -> anyhow::Result<Self> {
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&settings.bucket)
            .with_region(&settings.region)
            .with_access_key_id(&settings.access_key_id)
            .with_secret_access_key(&settings.secret_access_key)
            // Client options first: they replace allow_http, set after.
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(2))
                    .with_timeout(Duration::from_secs(15)),
            )
            .with_allow_http(settings.allow_http)
            // object_store retries by itself (10 times, for up to 3 min, by
            // default): a storage that is down would hold each upload for
            // minutes and the breaker would see one failure per upload.
            // Two quick retries ride over a dropped connection; the guard
            // does the rest.
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(50),
                    max_backoff: Duration::from_millis(400),
                    base: 2.0,
                },
                max_retries: 2,
                retry_timeout: Duration::from_secs(5),
            });
        if let Some(endpoint) = &settings.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        }
        let store = builder
            .build()
            .with_context(|| format!("configuring the S3 bucket {}", settings.bucket))?;
        Ok(Self::new(Arc::new(store)))
    }

    fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            guard: Guard::new(
                "object_store",
                &GuardSettings {
                    // Uploads of several megabytes included.
                    timeout: Duration::from_secs(20),
                    max_concurrent: 64,
                    ..GuardSettings::default()
                },
            ),
        }
    }

    async fn call<T, F>(&self, call: F) -> Result<T, BlobError>
    where
        F: Future<Output = Result<T, BlobError>> + Send,
    {
        self.guard.call(call).await.map_err(guarded)
    }
}

fn path(key: &str) -> ObjectPath {
    ObjectPath::from(key)
}

/// `NotFound` as `None`, other errors as unavailability.
fn found<T>(result: object_store::Result<T>) -> Result<Option<T>, BlobError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(error) => Err(unavailable(error)),
    }
}

#[async_trait]
impl BlobStore for ObjectBlobs {
    async fn put(&self, key: &str, bytes: Bytes) -> Result<(), BlobError> {
        self.call(async {
            self.store
                .put(&path(key), PutPayload::from(bytes))
                .await
                .map(|_| ())
                .map_err(unavailable)
        })
        .await
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, BlobError> {
        self.call(async {
            match found(self.store.get(&path(key)).await)? {
                Some(result) => Ok(Some(result.bytes().await.map_err(unavailable)?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Option<Bytes>, BlobError> {
        self.call(async { found(self.store.get_range(&path(key), range).await) })
            .await
    }

    async fn size(&self, key: &str) -> Result<Option<u64>, BlobError> {
        self.call(async { Ok(found(self.store.head(&path(key)).await)?.map(|meta| meta.size)) })
            .await
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        self.call(async {
            match self.store.delete(&path(key)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(error) => Err(unavailable(error)),
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn local() -> Option<(Arc<dyn BlobStore>, Box<dyn std::any::Any + Send>)> {
        let dir = tempfile::tempdir().unwrap();
        let blobs = ObjectBlobs::local(dir.path()).unwrap();
        Some((Arc::new(blobs), Box::new(dir)))
    }

    mod local_folder {
        use super::*;
        starling_app::blob_store_contract!(local);
    }

    /// A bucket on an S3-compatible server the test starts itself
    /// (`STARLING_TEST_S3_SERVER`: moto's `moto_server`).
    async fn s3() -> Option<(Arc<dyn BlobStore>, Box<dyn std::any::Any + Send>)> {
        let server = starling_testing::S3Server::start().await?;
        let blobs = ObjectBlobs::s3(&S3Settings {
            bucket: server.bucket.clone(),
            endpoint: Some(server.endpoint.clone()),
            region: "us-east-1".to_owned(),
            access_key_id: "test".to_owned(),
            secret_access_key: "test".to_owned(),
            allow_http: true,
        })
        .unwrap();
        Some((Arc::new(blobs), Box::new(server)))
    }

    mod s3_bucket {
        use super::*;
        starling_app::blob_store_contract!(s3);
    }
}
