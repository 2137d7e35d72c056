//! Data export: a person asks for an archive of what they have; a worker
//! (in the fan-out role) builds it off the request path as a ZIP of JSON
//! files (profile, posts, following, followers, likes, blocks, mutes) and
//! the images of their posts, keeps it in object storage, and deletes it
//! after `ExportSettings::retention`. Building is idempotent (an archive
//! is written under a key of its own and only then recorded), so a worker
//! that dies leaves the export pending for another, by lease; failures
//! retry with back-off.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use serde_json::{Value, json};
use starling_domain::{IdGenerator, Post, PostId, Timestamp, User, UserId};
use tokio_util::sync::CancellationToken;

use crate::accounts::Caller;
use crate::error::{AppError, AppResult};
use crate::ports::{BlobStore, ExportRecord, ExportState, Relation, Store};

/// Rows read per query while gathering an archive.
const PAGE: usize = 500;
/// Likes are read in one go, the most recent this many.
const MAX_LIKES: usize = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportSettings {
    /// How long a built archive can be downloaded.
    pub retention: Duration,
    /// Images past this many bytes in all are left out of the archive
    /// (listed in `media_not_included.json` with their URLs instead).
    pub max_media_bytes: u64,
    pub poll: Duration,
    pub lease: Duration,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for ExportSettings {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(7 * 24 * 3600),
            max_media_bytes: 512 * 1024 * 1024,
            poll: Duration::from_secs(1),
            lease: Duration::from_secs(300),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
        }
    }
}

/// Exports as a service: asked for and downloaded by their owner, built
/// and expired by `run`.
pub struct DataExports {
    store: Arc<dyn Store>,
    blobs: Arc<dyn BlobStore>,
    ids: Arc<IdGenerator>,
    settings: ExportSettings,
}

impl DataExports {
    pub fn new(
        store: Arc<dyn Store>,
        blobs: Arc<dyn BlobStore>,
        ids: Arc<IdGenerator>,
        settings: ExportSettings,
    ) -> Self {
        Self {
            store,
            blobs,
            ids,
            settings,
        }
    }

    /// Asks for an archive of the caller's data (a person signed in). One
    /// at a time: while one is pending, asking again answers that one.
    pub async fn request(&self, caller: Caller) -> AppResult<ExportRecord> {
        caller.require_signed_in()?;
        let export = self
            .store
            .request_export(self.ids.next_raw(), caller.user, Timestamp::now())
            .await?;
        tracing::info!(user_id = %caller.user, export_id = export.id, "data export asked for");
        Ok(export)
    }

    /// The caller's latest export. `NotFound` when they never asked.
    pub async fn latest(&self, caller: Caller) -> AppResult<ExportRecord> {
        caller.require_signed_in()?;
        self.store
            .latest_export(caller.user)
            .await?
            .ok_or(AppError::NotFound("export"))
    }

    /// The caller's latest archive, when it is built and not expired.
    pub async fn archive(&self, caller: Caller) -> AppResult<(ExportRecord, Bytes)> {
        let export = self.latest(caller).await?;
        let key = match (&export.state, &export.archive_key) {
            (ExportState::Ready, Some(key))
                if export.expires_at.is_none_or(|at| at > Timestamp::now()) =>
            {
                key.clone()
            }
            (ExportState::Pending, _) => {
                return Err(AppError::Conflict {
                    field: "export",
                    message: "the archive is not ready yet: ask GET /me/export",
                });
            }
            _ => return Err(AppError::NotFound("export archive")),
        };
        let bytes = self
            .blobs
            .get(&key)
            .await
            .map_err(|error| AppError::Unavailable(anyhow::Error::new(error)))?
            .ok_or(AppError::NotFound("export archive"))?;
        Ok((export, bytes))
    }

    /// Builds due exports and deletes expired ones until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        loop {
            // A stop does not wait for an archive being built: the export
            // stays pending, and is built again once its lease lapses.
            let work = async {
                if let Err(error) = self.run_due().await {
                    tracing::warn!(error = %error, "cannot build data exports");
                }
                if let Err(error) = self.expire().await {
                    tracing::warn!(error = %error, "cannot expire data exports");
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = work => {}
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(self.settings.poll) => {}
            }
        }
    }

    /// Builds every export due now that no other worker holds.
    pub async fn run_due(&self) -> AppResult<usize> {
        let due = self.store.due_exports(Timestamp::now(), 8).await?;
        let mut built = 0;
        for export in due {
            let now = Timestamp::now();
            if !self
                .store
                .claim_export(export.id, now, now.plus(self.settings.lease))
                .await?
            {
                continue;
            }
            match self.build(&export).await {
                Ok((key, size)) => {
                    let now = Timestamp::now();
                    self.store
                        .export_ready(
                            export.id,
                            &key,
                            size,
                            now.plus(self.settings.retention),
                            now,
                        )
                        .await?;
                    metrics::counter!(crate::metric::EXPORTS_TOTAL, "outcome" => "ready")
                        .increment(1);
                    tracing::info!(export_id = export.id, size, "data export built");
                    built += 1;
                }
                Err(error) => {
                    metrics::counter!(crate::metric::EXPORTS_TOTAL, "outcome" => "failed")
                        .increment(1);
                    let wait = crate::resilience::job_retry_wait(
                        self.settings.initial_backoff,
                        self.settings.max_backoff,
                        export.attempts,
                    );
                    tracing::warn!(export_id = export.id, error = %error, "data export failed; retrying");
                    self.store
                        .export_failed(export.id, &error.to_string(), Timestamp::now().plus(wait))
                        .await?;
                }
            }
        }
        Ok(built)
    }

    /// Deletes the archives past their expiry.
    pub async fn expire(&self) -> AppResult<usize> {
        let expired = self.store.expired_exports(Timestamp::now(), 100).await?;
        let count = expired.len();
        for (id, key) in expired {
            self.blobs
                .delete(&key)
                .await
                .map_err(|error| AppError::Unavailable(anyhow::Error::new(error)))?;
            self.store.export_expired(id).await?;
        }
        Ok(count)
    }

    /// Gathers the account's data, writes the archive and stores it under
    /// a key of its own; answers the key and the archive's size.
    async fn build(&self, export: &ExportRecord) -> AppResult<(String, u64)> {
        let user = export.user_id;
        let account = self
            .store
            .account_record(user)
            .await?
            .ok_or(AppError::NotFound("user"))?;
        let posts = self.posts_of(user).await?;
        let mut files: Vec<(String, Bytes, bool)> = Vec::new();
        let mut left_out = Vec::new();
        let mut media_bytes = 0u64;
        for attachment in posts.iter().flat_map(|post| &post.media) {
            let name = media_name(&attachment.file);
            if files.iter().any(|(known, _, _)| *known == name) {
                continue;
            }
            if media_bytes + attachment.file.bytes > self.settings.max_media_bytes {
                left_out
                    .push(json!({"file": name, "url": format!("/media/{}", attachment.file.hash)}));
                continue;
            }
            let bytes = self
                .blobs
                .get(&attachment.file.hash)
                .await
                .map_err(|error| AppError::Unavailable(anyhow::Error::new(error)))?;
            if let Some(bytes) = bytes {
                media_bytes += bytes.len() as u64;
                files.push((name, bytes, false));
            }
        }
        let mut documents = vec![
            ("profile.json", profile(&account.user, &account.email)),
            ("posts.json", Value::Array(posts.iter().map(post).collect())),
            (
                "following.json",
                accounts(&self.graph_list(user, true).await?),
            ),
            (
                "followers.json",
                accounts(&self.graph_list(user, false).await?),
            ),
            (
                "likes.json",
                Value::Array(
                    self.store
                        .recent_likes(user, MAX_LIKES)
                        .await?
                        .into_iter()
                        .map(|post| json!({"post_id": post.to_string()}))
                        .collect(),
                ),
            ),
            (
                "blocks.json",
                accounts(&self.relation_list(Relation::Block, user).await?),
            ),
            (
                "mutes.json",
                accounts(&self.relation_list(Relation::Mute, user).await?),
            ),
        ];
        if !left_out.is_empty() {
            documents.push(("media_not_included.json", Value::Array(left_out)));
        }
        for (name, document) in documents {
            let text = serde_json::to_vec_pretty(&document).map_err(anyhow::Error::new)?;
            files.push((name.to_owned(), Bytes::from(text), true));
        }
        files.push(("README.txt".to_owned(), Bytes::from_static(README), true));
        let archive = tokio::task::spawn_blocking(move || zip(&files))
            .await
            .map_err(anyhow::Error::new)??;
        let size = archive.len() as u64;
        let key = format!(
            "exports/{}-{:032x}.zip",
            export.id,
            rand::thread_rng().r#gen::<u128>()
        );
        self.blobs
            .put(&key, Bytes::from(archive))
            .await
            .map_err(|error| AppError::Unavailable(anyhow::Error::new(error)))?;
        Ok((key, size))
    }

    /// Every live post of `user`, newest first.
    async fn posts_of(&self, user: UserId) -> AppResult<Vec<Post>> {
        let mut posts = Vec::new();
        let mut before: Option<PostId> = None;
        loop {
            let page = self
                .store
                .posts_by_author(Some(user), user, before, PAGE)
                .await?;
            let Some(last) = page.last() else {
                return Ok(posts);
            };
            before = Some(last.id);
            let full = page.len() == PAGE;
            posts.extend(page);
            if !full {
                return Ok(posts);
            }
        }
    }

    /// Whom `user` follows (`following`), or who follows them.
    async fn graph_list(&self, user: UserId, following: bool) -> AppResult<Vec<User>> {
        let mut users = Vec::new();
        let mut before = None;
        loop {
            let page = if following {
                self.store.following(Some(user), user, before, PAGE).await?
            } else {
                self.store.followers(Some(user), user, before, PAGE).await?
            };
            let full = page.len() == PAGE;
            before = page.last().map(|(position, _)| *position);
            users.extend(page.into_iter().map(|(_, user)| user));
            if !full {
                return Ok(users);
            }
        }
    }

    async fn relation_list(&self, relation: Relation, user: UserId) -> AppResult<Vec<User>> {
        let mut users = Vec::new();
        let mut before = None;
        loop {
            let page = self.store.relations(relation, user, before, PAGE).await?;
            let full = page.len() == PAGE;
            before = page.last().map(|(position, _)| *position);
            users.extend(page.into_iter().map(|(_, user)| user));
            if !full {
                return Ok(users);
            }
        }
    }
}

const README: &[u8] = b"Your Starling data\n\n\
profile.json    your account: handle, display name, bio, email, counts\n\
posts.json      your posts, newest first, with their mentions and images\n\
following.json  the accounts you follow\n\
followers.json  the accounts that follow you\n\
likes.json      the posts you liked, newest first\n\
blocks.json     the accounts you block\n\
mutes.json      the accounts you mute\n\
media/          the images of your posts, named by their SHA-256\n\
\nIds are 64-bit integers written as strings; times are RFC 3339.\n";

fn media_name(file: &starling_domain::MediaFile) -> String {
    format!("media/{}.{}", file.hash, file.kind.as_str())
}

fn profile(user: &User, email: &str) -> Value {
    json!({
        "id": user.id.to_string(),
        "handle": user.handle.as_str(),
        "display_name": user.display_name,
        "bio": user.bio,
        "email": email,
        "created_at": user.created_at.to_rfc3339(),
        "followers_count": user.followers_count,
        "following_count": user.following_count,
        "posts_count": user.posts_count,
        "exported_at": Timestamp::now().to_rfc3339(),
    })
}

fn post(post: &Post) -> Value {
    json!({
        "id": post.id.to_string(),
        "text": post.text.as_str(),
        "created_at": post.created_at.to_rfc3339(),
        "reply_to": post.reply_to.map(|parent| parent.to_string()),
        "like_count": post.like_count,
        "reply_count": post.reply_count,
        "mentions": post.mentions.iter().map(|mention| json!({
            "id": mention.user_id.to_string(),
            "handle": mention.handle.as_str(),
        })).collect::<Vec<_>>(),
        "media": post.media.iter().map(|attachment| json!({
            "id": attachment.id.to_string(),
            "file": media_name(&attachment.file),
            "type": attachment.file.kind.content_type(),
            "width": attachment.file.width,
            "height": attachment.file.height,
            "alt": attachment.alt,
        })).collect::<Vec<_>>(),
    })
}

fn accounts(users: &[User]) -> Value {
    Value::Array(
        users
            .iter()
            .map(|user| {
                json!({
                    "id": user.id.to_string(),
                    "handle": user.handle.as_str(),
                    "display_name": user.display_name,
                })
            })
            .collect(),
    )
}

/// The archive: JSON deflated, images stored as they are (compressed
/// already).
fn zip(files: &[(String, Bytes, bool)]) -> AppResult<Vec<u8>> {
    use zip::write::SimpleFileOptions;
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes, compress) in files {
        let method = if *compress {
            zip::CompressionMethod::Deflated
        } else {
            zip::CompressionMethod::Stored
        };
        writer
            .start_file(
                name.as_str(),
                SimpleFileOptions::default().compression_method(method),
            )
            .map_err(anyhow::Error::new)?;
        writer.write_all(bytes).map_err(anyhow::Error::new)?;
    }
    let cursor = writer.finish().map_err(anyhow::Error::new)?;
    Ok(cursor.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_archive_holds_each_file_as_given() {
        let files = vec![
            (
                "profile.json".to_owned(),
                Bytes::from_static(b"{\"handle\":\"ada\"}"),
                true,
            ),
            (
                "media/ab.png".to_owned(),
                Bytes::from_static(b"\x89PNG...."),
                false,
            ),
        ];
        let archive = zip(&files).unwrap();
        let mut read = zip::ZipArchive::new(std::io::Cursor::new(archive)).unwrap();
        assert_eq!(read.len(), 2);
        let mut text = String::new();
        std::io::Read::read_to_string(&mut read.by_name("profile.json").unwrap(), &mut text)
            .unwrap();
        assert_eq!(text, "{\"handle\":\"ada\"}");
        let image = read.by_name("media/ab.png").unwrap();
        assert_eq!(image.compression(), zip::CompressionMethod::Stored);
    }
}
