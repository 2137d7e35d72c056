//! Images: upload, processing, attachment to posts, serving and clean-up.
//!
//! An upload is a small saga. Its row is written first (state
//! `uploading`), then the clean image is stored under its content hash,
//! then the row moves to `processing` together with the `MediaUploaded`
//! event; a failure after the row removes the row and, when no other row
//! names it, the file. The thumbnailer makes the thumbnail from the event,
//! off the request path, and the upload becomes `ready`. A post attaches
//! ready uploads in its own transaction. Uploads never attached (or whose
//! post was deleted) are swept after a day, their files with them.

mod image;

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use starling_domain::{
    Attachment, Event, Media, MediaFile, MediaId, MediaKind, MediaState, Timestamp, UserId,
    ValidationErrors, media::MAX_MEDIA_PER_POST, media::validate_alt,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use self::image::{Encoded, ImageLimits, Rejected};

#[cfg(any(test, feature = "contract-tests"))]
pub mod test_images;
use crate::error::{AppError, AppResult};
use crate::ports::{BlobStore, MediaSelection, MediaStore, NewEvent};

/// Unattached uploads are removed after this long.
pub const UNATTACHED_LIFETIME_MS: i64 = 24 * 3600 * 1000;
/// Uploads removed per sweep transaction.
const SWEEP_BATCH: usize = 200;
/// How long an upload waits for an image-processing slot before the
/// service answers that it is saturated.
const SLOT_WAIT: Duration = Duration::from_secs(10);

/// Limits and sizes of images.
#[derive(Debug, Clone)]
pub struct MediaSettings {
    /// Bytes of one upload.
    pub max_upload_bytes: usize,
    pub limits: ImageLimits,
    /// Thumbnails fit in a square of this side.
    pub thumbnail_size: u32,
}

impl Default for MediaSettings {
    fn default() -> Self {
        Self {
            max_upload_bytes: 10 << 20,
            limits: ImageLimits::default(),
            thumbnail_size: 400,
        }
    }
}

/// Image work runs on the blocking pool, one image per core at a time.
#[derive(Clone)]
pub(crate) struct ImageWork {
    slots: Arc<Semaphore>,
}

impl ImageWork {
    fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            slots: Arc::new(Semaphore::new(cores)),
        }
    }

    async fn slot(&self) -> AppResult<OwnedSemaphorePermit> {
        match tokio::time::timeout(SLOT_WAIT, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(closed)) => Err(AppError::Unexpected(anyhow::anyhow!(
                "image slots closed: {closed}"
            ))),
            Err(_) => Err(AppError::AtCapacity(
                "image processing is saturated; retry shortly",
            )),
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> AppResult<T> {
        let slot = self.slot().await?;
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            work()
        })
        .await
        .map_err(|join| AppError::Unexpected(anyhow::anyhow!("image task failed: {join}")))
    }
}

/// The SHA-256 of `bytes` in lowercase hex: a file's name in storage.
pub fn content_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

/// Whether `text` can be a content hash (64 lowercase hex digits).
pub fn is_content_hash(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn rejected(error: Rejected) -> AppError {
    AppError::Validation(ValidationErrors::single("file", error.to_string()))
}

/// A byte range a client asks for (`Range: bytes=...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `first-last`, inclusive.
    Span(u64, u64),
    /// `first-`
    From(u64),
    /// `-count`: the last `count` bytes.
    Suffix(u64),
}

impl ByteRange {
    /// The bytes meant, within a file of `size`; `None` when none are.
    pub fn within(self, size: u64) -> Option<Range<u64>> {
        let range = match self {
            Self::Span(first, last) if first <= last => first..last.saturating_add(1).min(size),
            Self::Span(..) => return None,
            Self::From(first) => first..size,
            Self::Suffix(count) => size.saturating_sub(count)..size,
        };
        (range.start < range.end).then_some(range)
    }
}

/// A stored file to send.
#[derive(Debug, Clone)]
pub struct MediaContent {
    pub kind: MediaKind,
    pub bytes: Bytes,
    /// The whole file's size.
    pub size: u64,
    /// The part sent, when a range was asked for.
    pub range: Option<Range<u64>>,
}

/// What serving a file found.
#[derive(Debug, Clone)]
pub enum Served {
    Content(MediaContent),
    /// The range asked for is outside the file (of this size).
    Unsatisfiable {
        size: u64,
    },
}

/// The media service: uploads, their processing and serving, and the
/// sweep of unattached ones. It holds only what images need: the media
/// rows, the files and ids.
pub struct MediaLibrary {
    store: Arc<dyn MediaStore>,
    blobs: Arc<dyn BlobStore>,
    ids: Arc<starling_domain::IdGenerator>,
    settings: MediaSettings,
    image_work: ImageWork,
}

impl MediaLibrary {
    pub fn new(
        store: Arc<dyn MediaStore>,
        blobs: Arc<dyn BlobStore>,
        ids: Arc<starling_domain::IdGenerator>,
        settings: MediaSettings,
    ) -> Self {
        Self {
            store,
            blobs,
            ids,
            settings,
            image_work: ImageWork::new(),
        }
    }

    pub fn settings(&self) -> &MediaSettings {
        &self.settings
    }

    /// Stores an upload of `owner`: the image's kind from its bytes, its
    /// size and pixels within the limits, its metadata removed.
    #[tracing::instrument(name = "upload_media", skip_all, fields(owner = %owner, bytes = bytes.len()))]
    pub async fn upload(&self, owner: UserId, bytes: Bytes, alt: &str) -> AppResult<Media> {
        let settings = &self.settings;
        if bytes.len() > settings.max_upload_bytes {
            return Err(AppError::TooLarge("the image is larger than allowed"));
        }
        let Some(kind) = MediaKind::sniff(&bytes) else {
            return Err(AppError::Unsupported(
                "the file is not a PNG, JPEG, GIF or WebP image",
            ));
        };
        let alt = validate_alt(alt)?;
        let limits = settings.limits.clone();
        let clean = self
            .image_work
            .run(move || limits.clean(&bytes, kind))
            .await?
            .map_err(rejected)?;
        let file = MediaFile {
            hash: content_hash(&clean.bytes),
            kind: clean.kind,
            width: clean.width,
            height: clean.height,
            bytes: clean.bytes.len() as u64,
        };
        let mut media = Media {
            id: self.ids.next_media_id(),
            owner,
            file,
            thumbnail: None,
            alt,
            state: MediaState::Uploading,
            post: None,
            created_at: Timestamp::now(),
        };
        let store = &self.store;
        store.add_media(&media).await?;
        let stored = async {
            self.blobs
                .put(&media.file.hash, Bytes::from(clean.bytes))
                .await?;
            // The thumbnailer's cue.
            let uploaded = Event::MediaUploaded {
                media_id: media.id,
                owner_id: owner,
            };
            store
                .media_stored(
                    media.id,
                    NewEvent::in_current_trace(self.ids.next_event_id(), uploaded),
                    Timestamp::now(),
                )
                .await?;
            Ok::<_, AppError>(())
        };
        if let Err(error) = stored.await {
            // Compensate: no row without its file, no file without a row.
            if let Err(cleanup) = store
                .remove_media(MediaSelection::One(media.id), self.blobs.as_ref())
                .await
            {
                tracing::warn!(error = %cleanup, media_id = %media.id, "cannot undo a failed upload; the sweep will");
            }
            return Err(error);
        }
        metrics::counter!(crate::metric::MEDIA_UPLOADED_TOTAL, "kind" => kind.as_str())
            .increment(1);
        media.state = MediaState::Processing;
        Ok(media)
    }

    /// One of `owner`'s uploads (others' are not found: unattached uploads
    /// are private until posted).
    pub async fn upload_of(&self, owner: UserId, id: MediaId) -> AppResult<Media> {
        self.store
            .media_by_ids(&[id])
            .await?
            .pop()
            .filter(|media| media.owner == owner)
            .ok_or(AppError::NotFound("media"))
    }

    /// The attachments a post by `author` may carry, in the order given:
    /// at most `MAX_MEDIA_PER_POST`, each the author's own, ready and not
    /// attached elsewhere (the store checks the last again as it attaches).
    pub(crate) async fn attachments(
        &self,
        author: UserId,
        ids: &[MediaId],
    ) -> AppResult<Vec<Attachment>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let invalid = |message: &str| {
            AppError::Validation(ValidationErrors::single("media_ids", message.to_owned()))
        };
        if ids.len() > MAX_MEDIA_PER_POST {
            return Err(invalid(&format!(
                "at most {MAX_MEDIA_PER_POST} images per post"
            )));
        }
        let mut unique = ids.to_vec();
        unique.sort_unstable();
        unique.dedup();
        if unique.len() != ids.len() {
            return Err(invalid("lists an image twice"));
        }
        let found = self.store.media_by_ids(ids).await?;
        let mut attachments = Vec::with_capacity(ids.len());
        for id in ids {
            let media = found
                .iter()
                .find(|media| media.id == *id && media.owner == author)
                .ok_or_else(|| invalid("names no upload of yours"))?;
            if media.post.is_some() {
                return Err(invalid("names an image already posted"));
            }
            let attachment = media
                .attachment()
                .filter(|_| media.state == MediaState::Ready)
                .ok_or_else(|| invalid("names an image still processing; retry shortly"))?;
            attachments.push(attachment);
        }
        Ok(attachments)
    }

    /// Makes the thumbnail of a stored upload and marks it ready. Nothing
    /// to do (returns false) when the upload is gone or already ready.
    pub async fn make_thumbnail(&self, id: MediaId) -> AppResult<bool> {
        let Some(media) = self.store.media_by_ids(&[id]).await?.pop() else {
            return Ok(false);
        };
        if media.state != MediaState::Processing {
            return Ok(false);
        }
        let Some(original) = self.blobs.get(&media.file.hash).await? else {
            tracing::warn!(media_id = %id, "an upload's file is missing; no thumbnail");
            return Ok(false);
        };
        let limits = self.settings.limits.clone();
        let (kind, size) = (media.file.kind, self.settings.thumbnail_size);
        let thumbnail = self
            .image_work
            .run(move || limits.thumbnail(&original, kind, size))
            .await?
            .map_err(|error| AppError::Unexpected(anyhow::anyhow!("thumbnail of {id}: {error}")))?;
        let file = MediaFile {
            hash: content_hash(&thumbnail.bytes),
            kind: thumbnail.kind,
            width: thumbnail.width,
            height: thumbnail.height,
            bytes: thumbnail.bytes.len() as u64,
        };
        let bytes = Bytes::from(thumbnail.bytes);
        let blobs = &self.blobs;
        blobs.put(&file.hash, bytes.clone()).await?;
        let made = self.store.set_thumbnail(id, &file).await?;
        // Again, now that a row names it: a removal of another upload with
        // the same thumbnail may have deleted the file in between.
        blobs.put(&file.hash, bytes).await?;
        if made {
            metrics::counter!(crate::metric::MEDIA_THUMBNAILS_TOTAL).increment(1);
        }
        Ok(made)
    }

    /// Removes uploads unattached for longer than a day (and those of
    /// deleted posts), with their files; returns how many.
    pub async fn sweep(&self) -> AppResult<u64> {
        let before = Timestamp(Timestamp::now_ms() - UNATTACHED_LIFETIME_MS);
        let mut total = 0;
        loop {
            let removed = self
                .store
                .remove_media(
                    MediaSelection::UnattachedBefore {
                        before,
                        limit: SWEEP_BATCH,
                    },
                    self.blobs.as_ref(),
                )
                .await?;
            total += removed;
            if removed < SWEEP_BATCH as u64 {
                break;
            }
        }
        if total > 0 {
            metrics::counter!(crate::metric::MEDIA_SWEPT_TOTAL).increment(total);
        }
        Ok(total)
    }

    /// A stored file by its content hash, whole or the `range` asked for.
    pub async fn file(&self, hash: &str, range: Option<ByteRange>) -> AppResult<Served> {
        if !is_content_hash(hash) {
            return Err(AppError::NotFound("file"));
        }
        let blobs = &self.blobs;
        let not_found = || AppError::NotFound("file");
        let Some(range) = range else {
            let bytes = blobs.get(hash).await?.ok_or_else(not_found)?;
            let kind = MediaKind::sniff(&bytes).ok_or_else(not_found)?;
            return Ok(Served::Content(MediaContent {
                kind,
                size: bytes.len() as u64,
                bytes,
                range: None,
            }));
        };
        let size = blobs.size(hash).await?.ok_or_else(not_found)?;
        let Some(wanted) = range.within(size) else {
            return Ok(Served::Unsatisfiable { size });
        };
        let head = blobs
            .get_range(hash, 0..size.min(16))
            .await?
            .ok_or_else(not_found)?;
        let kind = MediaKind::sniff(&head).ok_or_else(not_found)?;
        let bytes = blobs
            .get_range(hash, wanted.clone())
            .await?
            .ok_or_else(not_found)?;
        Ok(Served::Content(MediaContent {
            kind,
            bytes,
            size,
            range: Some(wanted),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_resolve_within_the_file() {
        assert_eq!(ByteRange::Span(0, 9).within(100), Some(0..10));
        assert_eq!(ByteRange::Span(90, 200).within(100), Some(90..100));
        assert_eq!(ByteRange::Span(100, 200).within(100), None);
        assert_eq!(ByteRange::Span(5, 4).within(100), None);
        assert_eq!(ByteRange::From(95).within(100), Some(95..100));
        assert_eq!(ByteRange::From(100).within(100), None);
        assert_eq!(ByteRange::Suffix(10).within(100), Some(90..100));
        assert_eq!(ByteRange::Suffix(500).within(100), Some(0..100));
        assert_eq!(ByteRange::Suffix(0).within(100), None);
    }

    #[test]
    fn content_hashes_are_sha256_hex() {
        let hash = content_hash(b"abc");
        assert_eq!(
            hash,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(is_content_hash(&hash));
        assert!(!is_content_hash("../etc/passwd"));
        assert!(!is_content_hash(&hash.to_uppercase()));
    }
}
