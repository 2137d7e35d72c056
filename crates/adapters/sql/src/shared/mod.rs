//! What both SQL engines run the same way: the statements (in `$N`
//! placeholders, which SQLite accepts too) and the code around them, written
//! once and instantiated inside each engine's module by a macro. What truly
//! differs between the engines (group commit, the outbox horizon, replicas,
//! locking) stays in `sqlite/` and `postgres/`.

pub(crate) mod idempotency;
pub(crate) mod relations;
pub(crate) mod tokens;
