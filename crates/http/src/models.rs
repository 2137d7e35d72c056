//! The wire format of API v1, kept apart from domain types: converting at the
//! edge lets the API evolve without touching the core.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use starling_app::PostView;
use starling_app::accounts::{ApiKeyView, Session, SessionView};
use starling_app::notifications::NotificationView;
use starling_domain::{Mention, Timestamp, User, UserSummary};
use utoipa::ToSchema;

pub(crate) mod admin;
mod rendered;
pub(crate) use rendered::{PostOut, RenderedPosts};

/// A public profile.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UserBody {
    /// 64-bit id, as a string.
    #[schema(example = "7399182540111872")]
    pub id: String,
    #[schema(example = "ada")]
    pub handle: String,
    pub display_name: String,
    pub bio: String,
    /// RFC 3339.
    pub created_at: String,
    pub followers_count: i64,
    pub following_count: i64,
    pub posts_count: i64,
}

impl From<User> for UserBody {
    fn from(user: User) -> Self {
        Self {
            id: user.id.to_string(),
            handle: user.handle.into_string(),
            display_name: user.display_name,
            bio: user.bio,
            created_at: user.created_at.to_rfc3339(),
            followers_count: user.followers_count,
            following_count: user.following_count,
            posts_count: user.posts_count,
        }
    }
}

/// The caller's own profile: the public one, and what only they see.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MeBody {
    #[serde(flatten)]
    pub user: UserBody,
    /// Notifications above the read position, counted up to 1000.
    pub unread_notifications: u64,
    /// `user`, `moderator` or `admin`: staff may use the admin API.
    #[schema(example = "user")]
    pub role: &'static str,
}

/// What a post shows of its author.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuthorBody {
    pub id: String,
    pub handle: String,
    pub display_name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PostBody {
    pub id: String,
    pub author: AuthorBody,
    pub text: String,
    /// RFC 3339.
    pub created_at: String,
    /// The id of the post this one answers, if any.
    pub reply_to: Option<String>,
    pub like_count: i64,
    pub reply_count: i64,
    /// Whether the authenticated caller likes this post (false when anonymous).
    pub liked_by_me: bool,
    /// The accounts the text mentions, in order of appearance.
    pub mentions: Vec<MentionBody>,
    /// Its images, in order (absent when none).
    pub media: Option<Vec<AttachmentBody>>,
}

/// An image of a post.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AttachmentBody {
    pub id: String,
    /// The image (metadata removed), cacheable forever.
    #[schema(example = "/media/9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")]
    pub url: String,
    pub thumbnail_url: String,
    /// `image/png`, `image/jpeg`, `image/gif` or `image/webp`.
    #[serde(rename = "type")]
    pub kind: String,
    pub width: u32,
    pub height: u32,
    pub alt: String,
}

/// An upload, as its owner sees it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MediaBody {
    pub id: String,
    pub url: String,
    /// Null until the thumbnail is made (`state` `ready`).
    pub thumbnail_url: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub width: u32,
    pub height: u32,
    /// Bytes of the stored (cleaned) image.
    pub size: u64,
    pub alt: String,
    /// `processing` (thumbnail being made) or `ready` (may be attached).
    #[schema(example = "processing")]
    pub state: String,
    /// The post it is attached to, once posted.
    pub post_id: Option<String>,
    pub created_at: String,
}

/// Where media files are served from: `""` (this server's `/media/...`) or
/// a CDN's base URL. Built by `router()` from its settings and handed to
/// the handlers that write media URLs (an `Extension`), so two routers in
/// one process can serve different bases.
#[derive(Debug, Clone, Default)]
pub(crate) struct MediaUrls {
    base: Arc<str>,
}

impl MediaUrls {
    pub(crate) fn new(base: &str) -> Self {
        Self {
            base: Arc::from(base.trim_end_matches('/')),
        }
    }

    /// The URL of the stored file `hash`.
    pub(crate) fn of(&self, hash: &str) -> String {
        format!("{}/media/{hash}", self.base)
    }
}

impl MediaBody {
    pub(crate) fn new(media: &starling_domain::Media, urls: &MediaUrls) -> Self {
        Self {
            id: media.id.to_string(),
            url: urls.of(&media.file.hash),
            thumbnail_url: media
                .thumbnail
                .as_ref()
                .map(|thumbnail| urls.of(&thumbnail.hash)),
            kind: media.file.kind.content_type().to_owned(),
            width: media.file.width,
            height: media.file.height,
            size: media.file.bytes,
            alt: media.alt.clone(),
            state: match media.state {
                starling_domain::MediaState::Ready => "ready",
                _ => "processing",
            }
            .to_owned(),
            post_id: media.post.map(|post| post.to_string()),
            created_at: media.created_at.to_rfc3339(),
        }
    }
}

/// `AttachmentBody` on the wire.
struct AttachmentsJson<'a>(&'a [starling_domain::Attachment], &'a MediaUrls);

impl Serialize for AttachmentsJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut out = serializer.serialize_seq(Some(self.0.len()))?;
        for attachment in self.0 {
            out.serialize_element(&AttachmentBody {
                id: attachment.id.to_string(),
                url: self.1.of(&attachment.file.hash),
                thumbnail_url: self.1.of(&attachment.thumbnail.hash),
                kind: attachment.file.kind.content_type().to_owned(),
                width: attachment.file.width,
                height: attachment.file.height,
                alt: attachment.alt.clone(),
            })?;
        }
        out.end()
    }
}

/// An `@handle` in a post's text that names an account.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MentionBody {
    /// The account's id.
    pub id: String,
    /// As the account spells it.
    pub handle: String,
    /// Where the `@handle` starts in `text`, counted in Unicode code points.
    pub start: u32,
    /// Where it ends (exclusive), in code points.
    pub end: u32,
}

/// `PostBody` on the wire, written straight from the view: no string is
/// copied and no number or date allocates (a page writes twenty of these).
/// `PostBody` describes the same JSON for the OpenAPI document.
pub(crate) struct PostJson<'a>(pub(crate) &'a PostView, pub(crate) &'a MediaUrls);

impl Serialize for PostJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let PostView {
            post,
            author,
            liked_by_me,
        } = self.0;
        let mut out = serializer.serialize_struct("PostBody", 10)?;
        out.serialize_field("id", &IdJson(post.id.get()))?;
        out.serialize_field("author", &AuthorJson(author))?;
        out.serialize_field("text", &post.text)?;
        out.serialize_field("created_at", &TimeJson(post.created_at))?;
        out.serialize_field(
            "reply_to",
            &post.reply_to.map(|parent| IdJson(parent.get())),
        )?;
        out.serialize_field("like_count", &post.like_count)?;
        out.serialize_field("reply_count", &post.reply_count)?;
        out.serialize_field("liked_by_me", liked_by_me)?;
        out.serialize_field("mentions", &MentionsJson(&post.mentions))?;
        if post.media.is_empty() {
            out.skip_field("media")?;
        } else {
            out.serialize_field("media", &AttachmentsJson(&post.media, self.1))?;
        }
        out.end()
    }
}

/// A notification. `post` is the liked post, the reply or the post with the
/// mention; null for follows.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct NotificationBody {
    pub id: String,
    /// `follow`, `like`, `reply` or `mention`.
    #[serde(rename = "type")]
    #[schema(example = "like")]
    pub kind: String,
    /// RFC 3339: when the action happened.
    pub created_at: String,
    /// At or below the read position (`POST /notifications/read`).
    pub read: bool,
    /// Who followed, liked, replied or mentioned.
    pub actor: AuthorBody,
    pub post: Option<PostBody>,
}

/// `NotificationBody` on the wire, written from the view.
pub(crate) struct NotificationJson<'a>(pub(crate) &'a NotificationView, pub(crate) &'a MediaUrls);

impl Serialize for NotificationJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let NotificationView {
            notification,
            actor,
            post,
            read,
        } = self.0;
        let mut out = serializer.serialize_struct("NotificationBody", 6)?;
        out.serialize_field("id", &IdJson(notification.id.get()))?;
        out.serialize_field("type", notification.kind.as_str())?;
        out.serialize_field("created_at", &TimeJson(notification.created_at))?;
        out.serialize_field("read", read)?;
        out.serialize_field("actor", &AuthorJson(actor))?;
        out.serialize_field("post", &post.as_ref().map(|post| PostJson(post, self.1)))?;
        out.end()
    }
}

/// Marks notifications read.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MarkReadRequest {
    /// Mark read up to and including this notification id; every
    /// notification so far when absent.
    pub up_to: Option<String>,
}

/// Where the caller stands with their notifications.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReadStateBody {
    /// The newest notification id marked read; null before the first mark.
    pub read_through: Option<String>,
    /// Notifications above `read_through`, counted up to 1000.
    pub unread_count: u64,
}

struct MentionsJson<'a>(&'a [Mention]);

impl Serialize for MentionsJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeSeq, SerializeStruct};
        struct One<'a>(&'a Mention);
        impl Serialize for One<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut out = serializer.serialize_struct("MentionBody", 4)?;
                out.serialize_field("id", &IdJson(self.0.user_id.get()))?;
                out.serialize_field("handle", &self.0.handle)?;
                out.serialize_field("start", &self.0.start)?;
                out.serialize_field("end", &self.0.end)?;
                out.end()
            }
        }
        let mut out = serializer.serialize_seq(Some(self.0.len()))?;
        for mention in self.0 {
            out.serialize_element(&One(mention))?;
        }
        out.end()
    }
}

struct AuthorJson<'a>(&'a UserSummary);

impl Serialize for AuthorJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = serializer.serialize_struct("AuthorBody", 3)?;
        out.serialize_field("id", &IdJson(self.0.id.get()))?;
        out.serialize_field("handle", &self.0.handle)?;
        out.serialize_field("display_name", &self.0.display_name)?;
        out.end()
    }
}

/// A 64-bit id as a JSON string, formatted on the stack.
struct IdJson(i64);

impl Serialize for IdJson {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(itoa::Buffer::new().format(self.0))
    }
}

/// An instant as RFC 3339, formatted on the stack.
struct TimeJson(Timestamp);

impl Serialize for TimeJson {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut buffer = [0u8; starling_domain::time::RFC3339_MILLIS_LEN];
        serializer.serialize_str(self.0.write_rfc3339(&mut buffer))
    }
}

/// A signed-in session.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SessionBody {
    pub user: UserBody,
    /// Short-lived JWT: send as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    /// Opaque, single use: exchange at `/auth/refresh` for a new pair.
    pub refresh_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
}

impl From<Session> for SessionBody {
    fn from(session: Session) -> Self {
        Self {
            user: session.user.into(),
            access_token: session.access_token,
            refresh_token: session.refresh_token,
            token_type: "Bearer",
            expires_in: session.expires_in,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegisterRequest {
    /// 1–30 of letters, digits and underscores; unique ignoring case.
    #[schema(example = "ada", pattern = "^[A-Za-z0-9_]{1,30}$")]
    pub handle: String,
    #[schema(example = "ada@example.org", max_length = 254)]
    pub email: String,
    /// 8–128 characters.
    #[schema(min_length = 8, max_length = 128)]
    pub password: String,
    #[schema(max_length = 50)]
    pub display_name: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginRequest {
    /// A handle or an email address.
    #[schema(max_length = 254)]
    pub login: String,
    #[schema(max_length = 1024)]
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RefreshRequest {
    pub refresh_token: String,
}

/// Sign out: the session of `refresh_token`, or of the access token sent
/// with the request; with `everywhere`, every session of the account.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogoutRequest {
    pub refresh_token: Option<String>,
    /// End every session of the account (the access token's, or the
    /// refresh token's account).
    #[serde(default)]
    pub everywhere: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangePasswordRequest {
    #[schema(max_length = 1024)]
    pub current_password: String,
    /// 8–128 characters.
    #[schema(min_length = 8, max_length = 128)]
    pub new_password: String,
}

/// The account's password, confirming its deletion.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeleteAccountRequest {
    #[schema(max_length = 1024)]
    pub password: String,
}

/// An account deletion under way.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeletionAcceptedBody {
    /// `deleting`.
    #[schema(example = "deleting")]
    pub status: &'static str,
    /// The step the deletion runs next.
    #[schema(example = "revoke_credentials")]
    pub step: &'static str,
    /// RFC 3339.
    pub started_at: String,
}

/// A data export of the caller's.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ExportBody {
    pub id: String,
    /// `pending` (being built), `ready` or `expired`.
    #[schema(example = "ready")]
    pub state: &'static str,
    /// RFC 3339.
    pub requested_at: String,
    pub finished_at: Option<String>,
    /// The archive's size in bytes, once built.
    pub size: Option<u64>,
    /// When the archive is deleted.
    pub expires_at: Option<String>,
    /// Failed attempts to build it (it is retried).
    pub attempts: u32,
    /// Where to download the archive (with the access token), once ready.
    #[schema(example = "/api/v1/me/export/archive")]
    pub download_url: Option<String>,
}

/// One signed-in session of the caller's.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SessionOut {
    /// 64-bit id, as a string: `DELETE /me/sessions/{id}` ends it.
    pub id: String,
    /// The `User-Agent` it signed in with.
    pub user_agent: Option<String>,
    /// The address it signed in from.
    pub address: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// Its last refresh (within an access token's lifetime of its last use).
    pub last_used_at: String,
    /// When it ends however often it is refreshed.
    pub expires_at: String,
    /// The session of the access token asking.
    pub current: bool,
}

impl From<SessionView> for SessionOut {
    fn from(view: SessionView) -> Self {
        let session = view.session;
        Self {
            id: session.id.to_string(),
            user_agent: session.user_agent,
            address: session.address,
            created_at: session.created_at.to_rfc3339(),
            last_used_at: session.last_used_at.to_rfc3339(),
            expires_at: session.expires_at.to_rfc3339(),
            current: view.current,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateApiKeyRequest {
    /// 1–64 characters, to tell keys apart.
    #[schema(example = "nightly backup", max_length = 64)]
    pub name: String,
    /// At least one of `read`, `write`, `follow`, `notifications`, `media`.
    #[schema(example = json!(["read", "write"]))]
    pub scopes: Vec<String>,
    /// RFC 3339; absent, the key lasts until it is revoked.
    pub expires_at: Option<String>,
}

/// An API key as its owner sees it in a list: never the key itself.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ApiKeyOut {
    /// 64-bit id, as a string: `DELETE /me/api-keys/{id}` revokes it.
    pub id: String,
    pub name: String,
    /// The key's identifying part: it starts `sk_<prefix>_`.
    #[schema(example = "k3v9q0x2m1ab")]
    pub prefix: String,
    pub scopes: Vec<&'static str>,
    /// RFC 3339.
    pub created_at: String,
    /// When an instance last checked it (to within `auth.api_key_recheck_secs`).
    pub last_used_at: Option<String>,
    pub expires_at: Option<String>,
}

impl From<ApiKeyView> for ApiKeyOut {
    fn from(key: ApiKeyView) -> Self {
        Self {
            id: key.id.to_string(),
            name: key.name,
            prefix: key.prefix,
            scopes: key.scopes.iter().map(|scope| scope.as_str()).collect(),
            created_at: key.created_at.to_rfc3339(),
            last_used_at: key.last_used_at.map(|at| at.to_rfc3339()),
            expires_at: key.expires_at.map(|at| at.to_rfc3339()),
        }
    }
}

/// A key just made. `key` is shown this once: only its hash is kept.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedApiKeyBody {
    /// Send as `Authorization: Bearer <key>`.
    #[schema(example = "sk_k3v9q0x2m1ab_…")]
    pub key: String,
    pub api_key: ApiKeyOut,
}

/// The caller's live API keys, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ApiKeysBody {
    pub data: Vec<ApiKeyOut>,
}

/// The caller's open sessions, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SessionsBody {
    pub data: Vec<SessionOut>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateProfileRequest {
    /// At most 50 characters; empty shows the handle.
    #[schema(max_length = 50)]
    pub display_name: Option<String>,
    /// At most 160 characters.
    #[schema(max_length = 160)]
    pub bio: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreatePostRequest {
    /// Up to 280 characters, not only whitespace; may be empty or left out
    /// when the post has `media_ids`.
    #[serde(default)]
    #[schema(max_length = 280)]
    pub text: String,
    /// The id of the post this one answers.
    #[schema(pattern = "^[0-9]{1,19}$")]
    pub reply_to: Option<String>,
    /// Up to 4 of the caller's uploads (`POST /api/v1/media`), once `ready`.
    #[schema(max_items = 4)]
    pub media_ids: Option<Vec<String>>,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use starling_domain::{Post, PostId, UserId};

    use super::*;

    #[test]
    fn posts_serialise_in_the_documented_shape() {
        let view = PostView {
            post: Arc::new(Post {
                id: PostId(384_033_153_024_524_288),
                author_id: UserId(7),
                text: starling_domain::PostText::parse("quote \" and\nnewline").unwrap(),
                reply_to: Some(PostId(5)),
                created_at: Timestamp(1_764_090_319_123),
                like_count: 3,
                reply_count: 0,
                deleted: false,
                mentions: vec![starling_domain::Mention {
                    user_id: UserId(9),
                    handle: starling_domain::Handle::parse("Bob").unwrap(),
                    start: 0,
                    end: 4,
                }],
                media: Vec::new(),
            }),
            author: Arc::new(UserSummary {
                id: UserId(7),
                handle: starling_domain::Handle::parse("ada").unwrap(),
                display_name: "Ada L.".to_owned(),
                hidden: false,
            }),
            liked_by_me: true,
        };
        let json: serde_json::Value =
            serde_json::to_value(PostJson(&view, &MediaUrls::default())).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "id": "384033153024524288",
                "author": {"id": "7", "handle": "ada", "display_name": "Ada L."},
                "text": "quote \" and\nnewline",
                "created_at": "2025-11-25T17:05:19.123Z",
                "reply_to": "5",
                "like_count": 3,
                "reply_count": 0,
                "liked_by_me": true,
                "mentions": [{"id": "9", "handle": "Bob", "start": 0, "end": 4}]
            })
        );
        // The OpenAPI schema names the same fields.
        let schema = serde_json::to_value(<PostBody as utoipa::PartialSchema>::schema()).unwrap();
        let mut documented: Vec<&String> =
            schema["properties"].as_object().unwrap().keys().collect();
        let mut written: Vec<&String> = json.as_object().unwrap().keys().collect();
        // Written only when the post has images.
        let media = "media".to_owned();
        written.push(&media);
        documented.sort();
        written.sort();
        assert_eq!(documented, written);
    }
}
