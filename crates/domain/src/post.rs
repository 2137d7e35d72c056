//! Posts: validated text and the post entity.

use crate::id::{PostId, UserId};
use crate::mention::Mention;
use crate::time::Timestamp;
use crate::validation::{FieldError, field_error};

pub const POST_MAX_CHARS: usize = 280;

/// Post text: 1–280 Unicode scalar values, not only whitespace. Kept as written.
/// Serialised as its text (a shared cache holds only what was stored).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct PostText(String);

impl PostText {
    /// Line breaks are normalised to `\n` (browsers send `\r\n`) before counting.
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        let text = crate::text::normalise_line_breaks(text);
        let text = text.as_str();
        if text.trim().is_empty() {
            return Err(field_error("text", "must not be empty or only whitespace"));
        }
        if text.chars().count() > POST_MAX_CHARS {
            return Err(field_error(
                "text",
                format!("must be at most {POST_MAX_CHARS} characters long"),
            ));
        }
        if text
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            return Err(field_error("text", "must not contain control characters"));
        }
        Ok(Self(text.to_owned()))
    }

    /// The text of a post that carries media: empty (or only whitespace,
    /// stored empty) is allowed, since the pictures say something;
    /// otherwise as [`PostText::parse`].
    pub fn parse_caption(text: &str) -> Result<Self, FieldError> {
        if text.trim().is_empty() {
            return Ok(Self(String::new()));
        }
        Self::parse(text)
    }

    /// Text read back from the store, which took it only through
    /// [`PostText::parse`] or [`PostText::parse_caption`]: not checked
    /// again on every read.
    pub fn stored(text: String) -> Self {
        Self(text)
    }

    /// What a deleted post keeps of its text: nothing.
    pub fn erased() -> Self {
        Self(String::new())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A stored post. `deleted` posts are tombstones: kept so replies stay threaded,
/// never shown. Serialisable for shared caches.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Post {
    pub id: PostId,
    pub author_id: UserId,
    pub text: PostText,
    pub reply_to: Option<PostId>,
    pub created_at: Timestamp,
    pub like_count: i64,
    pub reply_count: i64,
    pub deleted: bool,
    /// The accounts its text mentions, with where.
    #[serde(default)]
    pub mentions: Vec<Mention>,
    /// Its images, in order (at most `MAX_MEDIA_PER_POST`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media: Vec<crate::media::Attachment>,
}

impl Post {
    /// What caches hold for a deleted post: enough to know it is gone.
    pub fn tombstone(id: PostId, author_id: UserId) -> Self {
        Self {
            id,
            author_id,
            text: PostText::erased(),
            reply_to: None,
            created_at: Timestamp(0),
            like_count: 0,
            reply_count: 0,
            deleted: true,
            mentions: Vec::new(),
            media: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    mod properties {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2_000))]

            /// Accepted exactly when the rule says so, and kept as written
            /// (line breaks normalised).
            #[test]
            fn post_text_is_accepted_exactly_by_its_rule(
                text in prop::collection::vec(
                    prop_oneof![
                        6 => prop::sample::select(vec!['a', ' ', '\n', '\r', '\t', 'é', '😀']),
                        1 => any::<char>(),
                    ],
                    0..300,
                ).prop_map(|chars| chars.into_iter().collect::<String>())
            ) {
                let normalised = crate::text::normalise_line_breaks(&text);
                let acceptable = !normalised.trim().is_empty()
                    && normalised.chars().count() <= POST_MAX_CHARS
                    && !normalised
                        .chars()
                        .any(|c| c.is_control() && c != '\n' && c != '\t');
                match PostText::parse(&text) {
                    Ok(parsed) => {
                        prop_assert!(acceptable);
                        prop_assert_eq!(parsed.as_str(), normalised.as_str());
                    }
                    Err(error) => {
                        prop_assert!(!acceptable);
                        prop_assert_eq!(error.field, "text");
                    }
                }
            }
        }
    }

    #[test]
    fn text_counts_unicode_scalar_values() {
        assert!(PostText::parse(&"é".repeat(280)).is_ok());
        assert!(PostText::parse(&"é".repeat(281)).is_err());
        assert!(PostText::parse(&"🐦".repeat(280)).is_ok());
    }

    #[test]
    fn text_must_say_something() {
        for bad in ["", " ", "\n\t  "] {
            assert!(PostText::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(PostText::parse("  hi  ").unwrap().as_str(), "  hi  ");
        assert!(PostText::parse("bell\u{7}").is_err());
        // Beside pictures, nothing needs saying; the limits still hold.
        assert_eq!(PostText::parse_caption(" \n").unwrap().as_str(), "");
        assert!(PostText::parse_caption(&"a".repeat(281)).is_err());
        assert!(PostText::parse_caption("bell\u{7}").is_err());
        assert_eq!(
            PostText::parse("one\r\ntwo\rthree").unwrap().as_str(),
            "one\ntwo\nthree"
        );
    }
}
