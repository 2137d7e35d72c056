//! The wire format of API v1, kept apart from domain types: converting at the
//! edge lets the API evolve without touching the core.

use serde::{Deserialize, Serialize};
use starling_app::PostView;
use starling_app::accounts::Session;
use starling_domain::{User, UserSummary};
use utoipa::ToSchema;

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
            handle: user.handle,
            display_name: user.display_name,
            bio: user.bio,
            created_at: user.created_at.to_rfc3339(),
            followers_count: user.followers_count,
            following_count: user.following_count,
            posts_count: user.posts_count,
        }
    }
}

/// What a post shows of its author.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuthorBody {
    pub id: String,
    pub handle: String,
    pub display_name: String,
}

impl From<&UserSummary> for AuthorBody {
    fn from(author: &UserSummary) -> Self {
        Self {
            id: author.id.to_string(),
            handle: author.handle.clone(),
            display_name: author.display_name.clone(),
        }
    }
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
}

impl From<PostView> for PostBody {
    fn from(view: PostView) -> Self {
        let post = &view.post;
        Self {
            id: post.id.to_string(),
            author: AuthorBody::from(&*view.author),
            text: post.text.clone(),
            created_at: post.created_at.to_rfc3339(),
            reply_to: post.reply_to.map(|parent| parent.to_string()),
            like_count: post.like_count,
            reply_count: post.reply_count,
            liked_by_me: view.liked_by_me,
        }
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
    #[schema(example = "ada")]
    pub handle: String,
    #[schema(example = "ada@example.org")]
    pub email: String,
    /// 8–128 characters.
    pub password: String,
    pub display_name: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginRequest {
    /// A handle or an email address.
    pub login: String,
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateProfileRequest {
    /// At most 50 characters; empty shows the handle.
    pub display_name: Option<String>,
    /// At most 160 characters.
    pub bio: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreatePostRequest {
    /// 1–280 characters, not only whitespace.
    pub text: String,
    /// The id of the post this one answers.
    pub reply_to: Option<String>,
}
