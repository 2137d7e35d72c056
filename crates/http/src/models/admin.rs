//! The admin API's wire format: accounts as staff see them, the audit log,
//! and the requests that change them.

use serde::{Deserialize, Serialize};
use starling_app::ports::{AccountRecord, AuditEntry, DeletionRecord};
use utoipa::ToSchema;

use crate::pagination::OffsetPagination;

/// An account as staff see it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AdminAccountBody {
    /// 64-bit id, as a string.
    #[schema(example = "7399182540111872")]
    pub id: String,
    #[schema(example = "ada")]
    pub handle: String,
    pub display_name: String,
    pub bio: String,
    pub email: String,
    /// `user`, `moderator` or `admin`.
    #[schema(example = "user")]
    pub role: String,
    /// `active`, `suspended`, `deleting` or `deleted`.
    #[schema(example = "active")]
    pub status: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339; null unless suspended.
    pub suspended_at: Option<String>,
    pub followers_count: i64,
    pub following_count: i64,
    pub posts_count: i64,
    /// Where the account's deletion stands; null unless it was deleted.
    pub deletion: Option<DeletionBody>,
}

/// Where an account's deletion stands.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeletionBody {
    /// The step to run next: `revoke_credentials`, `remove_follows`,
    /// `purge_timelines`, `delete_posts`, `delete_media`, `release_handle`
    /// (waits out the handle's quarantine), `tombstone`, or `done`.
    #[schema(example = "delete_media")]
    pub step: String,
    /// Failed attempts of this step so far (retried with back-off).
    pub attempts: u32,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// RFC 3339.
    pub started_at: String,
    /// When the step runs (again).
    pub next_attempt_at: String,
    pub finished_at: Option<String>,
}

impl From<DeletionRecord> for DeletionBody {
    fn from(record: DeletionRecord) -> Self {
        Self {
            step: record.step.as_str().to_owned(),
            attempts: record.attempts,
            last_error: record.last_error,
            started_at: record.started_at.to_rfc3339(),
            next_attempt_at: record.next_attempt_at.to_rfc3339(),
            finished_at: record.finished_at.map(|at| at.to_rfc3339()),
        }
    }
}

/// The fields `?fields=` may select, in the order they are written.
pub(crate) const ACCOUNT_FIELDS: [&str; 13] = [
    "id",
    "handle",
    "display_name",
    "bio",
    "email",
    "role",
    "status",
    "created_at",
    "suspended_at",
    "followers_count",
    "following_count",
    "posts_count",
    "deletion",
];

impl From<AccountRecord> for AdminAccountBody {
    fn from(record: AccountRecord) -> Self {
        let user = record.user;
        Self {
            id: user.id.to_string(),
            handle: user.handle.into_string(),
            display_name: user.display_name,
            bio: user.bio,
            email: record.email,
            role: user.role.as_str().to_owned(),
            status: user.status.as_str().to_owned(),
            created_at: user.created_at.to_rfc3339(),
            suspended_at: record.suspended_at.map(|at| at.to_rfc3339()),
            followers_count: user.followers_count,
            following_count: user.following_count,
            posts_count: user.posts_count,
            deletion: record.deletion.map(Into::into),
        }
    }
}

/// A page of accounts. With `?fields=`, each holds only the fields asked
/// for (and `id`).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AdminAccountsBody {
    #[schema(value_type = Vec<AdminAccountBody>)]
    pub data: Vec<serde_json::Value>,
    pub pagination: OffsetPagination,
}

/// Why staff suspend or reinstate an account (kept in the audit log).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModerationRequest {
    /// 1 to 1000 characters; optional.
    pub reason: Option<String>,
}

/// Why a moderator removes a post (kept in the audit log).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RemovePostRequest {
    /// 1 to 1000 characters.
    #[schema(example = "spam")]
    pub reason: String,
}

/// The role to give an account.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetRoleRequest {
    /// `user`, `moderator` or `admin`.
    #[schema(example = "moderator")]
    pub role: String,
}

/// One admin action, as the audit log keeps it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuditEntryBody {
    pub id: String,
    /// Who acted; null for an operator at the command line.
    pub actor_id: Option<String>,
    /// `suspend`, `unsuspend`, `grant_role` or `remove_post`.
    #[schema(example = "suspend")]
    pub action: String,
    pub target_user_id: Option<String>,
    pub target_post_id: Option<String>,
    pub reason: Option<String>,
    /// What changed: for `grant_role` `{from, to}`; for `remove_post` the
    /// post's `author_id` and the `text` removed.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// RFC 3339.
    pub created_at: String,
}

impl From<AuditEntry> for AuditEntryBody {
    fn from(entry: AuditEntry) -> Self {
        Self {
            id: entry.id.to_string(),
            actor_id: entry.actor.map(|id| id.to_string()),
            action: entry.action.as_str().to_owned(),
            target_user_id: entry.target_user.map(|id| id.to_string()),
            target_post_id: entry.target_post.map(|id| id.to_string()),
            reason: entry.reason,
            // Written by Starling as a JSON object; anything else shows as
            // the text it is.
            details: serde_json::from_str(&entry.details)
                .unwrap_or(serde_json::Value::String(entry.details)),
            created_at: entry.created_at.to_rfc3339(),
        }
    }
}

/// A page of the audit log, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuditBody {
    pub data: Vec<AuditEntryBody>,
    pub pagination: OffsetPagination,
}
