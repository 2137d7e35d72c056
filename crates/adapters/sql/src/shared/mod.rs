//! What both SQL engines run the same way: the statements (in `$N`
//! placeholders, which SQLite accepts too) and the code around them, written
//! once and instantiated inside each engine's module by a macro
//! (`crate::shared::posts::post_store!(SqliteStore)` at the end of
//! `sqlite/mod.rs`), so that the same text compiles against each engine's
//! own types.
//!
//! Where the engines' SQL differs inside a shared statement, the statement
//! splices in a fragment from the engine's `dialect!` macro (`dialect!(any
//! 1)`: `= ANY($1)` on PostgreSQL, `IN (SELECT value FROM json_each($1))` on
//! SQLite), binds lists through the engine's `id_list`/`text_list`, and
//! calls the engine's `read_tolerant`/`read_found` (replicas),
//! `lock_file` and `wrote`: each engine's `dialect.rs` is the whole seam.
//! What truly differs (group commit, the outbox horizon, replicas, the
//! fan-out-on-read query, how a notification batch is inserted, how the
//! outbox is read as a log) stays in
//! `sqlite/` and `postgres/`.

pub(crate) mod accounts;
pub(crate) mod admin;
pub(crate) mod api_keys;
pub(crate) mod deletion;
pub(crate) mod exports;
pub(crate) mod graph;
pub(crate) mod idempotency;
pub(crate) mod media;
pub(crate) mod notifications;
pub(crate) mod outbox;
pub(crate) mod posts;
pub(crate) mod relations;
pub(crate) mod tokens;
