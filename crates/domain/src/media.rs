//! Images: the kinds accepted (told from the bytes, never from the client's
//! claim), what is kept of each upload, and what a post shows of it.
//!
//! Files are stored under the SHA-256 of their bytes (hex), so a file's
//! name is its content: served with a strong `ETag` and cached forever.

use serde::{Deserialize, Serialize};

use crate::id::{MediaId, PostId, UserId};
use crate::time::Timestamp;
use crate::validation::{FieldError, ValidationErrors};

/// Images one post may carry.
pub const MAX_MEDIA_PER_POST: usize = 4;
/// Alt text, in characters (code points).
pub const MAX_ALT_CHARS: usize = 1_500;

/// The image formats accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    Png,
    Jpeg,
    Gif,
    Webp,
}

impl MediaKind {
    pub const ALL: [Self; 4] = [Self::Png, Self::Jpeg, Self::Gif, Self::Webp];

    /// The kind the bytes are, by their signature; `None` for anything else.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Self::Png)
        } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Self::Jpeg)
        } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
            Some(Self::Gif)
        } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            Some(Self::Webp)
        } else {
            None
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Gif => "image/gif",
            Self::Webp => "image/webp",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpeg",
            Self::Gif => "gif",
            Self::Webp => "webp",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// One stored file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaFile {
    /// SHA-256 of the bytes, lowercase hex: the file's name in storage.
    pub hash: String,
    pub kind: MediaKind,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
}

/// Where an upload is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaState {
    /// The row exists; its file is being stored.
    Uploading,
    /// Stored; its thumbnail is being made.
    Processing,
    /// Ready to attach to a post.
    Ready,
}

impl MediaState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Uploading => "uploading",
            Self::Processing => "processing",
            Self::Ready => "ready",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [Self::Uploading, Self::Processing, Self::Ready]
            .into_iter()
            .find(|state| state.as_str() == name)
    }
}

/// An upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    pub id: MediaId,
    pub owner: UserId,
    /// The image, metadata removed.
    pub file: MediaFile,
    pub thumbnail: Option<MediaFile>,
    pub alt: String,
    pub state: MediaState,
    /// The post it is attached to, once posted.
    pub post: Option<PostId>,
    pub created_at: Timestamp,
}

impl Media {
    /// What a post shows of it; `None` until its thumbnail exists.
    pub fn attachment(&self) -> Option<Attachment> {
        Some(Attachment {
            id: self.id,
            file: self.file.clone(),
            thumbnail: self.thumbnail.clone()?,
            alt: self.alt.clone(),
        })
    }
}

/// An image as a post carries it (stored with the post).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub id: MediaId,
    pub file: MediaFile,
    pub thumbnail: MediaFile,
    pub alt: String,
}

/// Alt text: trimmed, at most `MAX_ALT_CHARS`, no control characters.
pub fn validate_alt(text: &str) -> Result<String, ValidationErrors> {
    let text = text.trim();
    let invalid = |message: &str| {
        ValidationErrors(vec![FieldError {
            field: "alt",
            message: message.to_owned(),
        }])
    };
    if text.chars().count() > MAX_ALT_CHARS {
        return Err(invalid(&format!(
            "must be at most {MAX_ALT_CHARS} characters"
        )));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(invalid("must not contain control characters"));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_told_by_their_signatures() {
        assert_eq!(
            MediaKind::sniff(b"\x89PNG\r\n\x1a\n...."),
            Some(MediaKind::Png)
        );
        assert_eq!(
            MediaKind::sniff(&[0xFF, 0xD8, 0xFF, 0xE0]),
            Some(MediaKind::Jpeg)
        );
        assert_eq!(MediaKind::sniff(b"GIF89a...."), Some(MediaKind::Gif));
        assert_eq!(
            MediaKind::sniff(b"RIFF\0\0\0\0WEBPVP8 "),
            Some(MediaKind::Webp)
        );
        assert_eq!(MediaKind::sniff(b"RIFF\0\0\0\0WAVEfmt "), None);
        assert_eq!(MediaKind::sniff(b"<svg xmlns="), None);
        assert_eq!(MediaKind::sniff(b""), None);
        for kind in MediaKind::ALL {
            assert_eq!(MediaKind::parse(kind.as_str()), Some(kind));
        }
    }

    #[test]
    fn alt_text_is_trimmed_and_bounded() {
        assert_eq!(validate_alt("  a cat  ").unwrap(), "a cat");
        assert!(validate_alt(&"x".repeat(MAX_ALT_CHARS)).is_ok());
        assert!(validate_alt(&"x".repeat(MAX_ALT_CHARS + 1)).is_err());
        assert!(validate_alt("bell\u{7}").is_err());
        assert!(validate_alt("two\nlines").is_ok());
    }
}
