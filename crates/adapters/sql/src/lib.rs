//! The SQL store port on SQLite, the source of truth of embedded mode.
//!
//! WAL journal, one writer connection (SQLite allows one writer; a single
//! connection serialises write transactions without `SQLITE_BUSY`), a pool
//! of read-only connections that never wait for the writer, and migrations
//! embedded in the binary and applied at start.

mod postgres;
mod sqlite;

pub use postgres::{PostgresOptions, PostgresStore};
pub use sqlite::{BulkFollow, BulkPost, BulkUser, SqliteOptions, SqliteStore, Synchronous};
