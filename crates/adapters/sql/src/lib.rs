//! The SQL store port on SQLite, the source of truth of embedded mode.
//!
//! WAL journal, one writer connection (SQLite allows one writer; a single
//! connection serialises write transactions without `SQLITE_BUSY`), a pool
//! of read-only connections that never wait for the writer, and migrations
//! embedded in the binary and applied at start.

mod postgres;
mod sqlite;

use starling_app::ports::StoreError;
use starling_domain::Mention;

/// A post's mentions as stored (a JSON array; see the migrations).
fn encode_mentions(mentions: &[Mention]) -> Result<String, StoreError> {
    serde_json::to_string(mentions).map_err(|error| {
        StoreError::Unexpected(anyhow::Error::new(error).context("encoding mentions"))
    })
}

/// The stored mentions of post `id`. A column this version cannot read
/// (damaged by hand) shows as no mentions, not as a post that cannot load.
fn decode_mentions(id: i64, stored: &str) -> Vec<Mention> {
    serde_json::from_str(stored).unwrap_or_else(|error| {
        tracing::error!(post_id = id, error = %error, "cannot decode a post's mentions");
        Vec::new()
    })
}

pub use postgres::{PostgresOptions, PostgresStore};
pub use sqlite::{BulkFollow, BulkPost, BulkUser, SqliteOptions, SqliteStore, Synchronous};
