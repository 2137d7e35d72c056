-- Starling's write model on SQLite. Every table is STRICT; ids are the
-- application's 64-bit time-ordered ids, so `ORDER BY id` is time order.

CREATE TABLE users (
    id              INTEGER PRIMARY KEY,
    handle          TEXT    NOT NULL,
    -- Lower-cased handle: uniqueness ignores case, lookups by @handle use it.
    handle_key      TEXT    NOT NULL UNIQUE,
    -- Trimmed, lower-cased email; unique, and the other login key.
    email           TEXT    NOT NULL UNIQUE,
    display_name    TEXT    NOT NULL,
    bio             TEXT    NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    -- Counters change in the same transaction as the rows they count.
    followers_count INTEGER NOT NULL DEFAULT 0 CHECK (followers_count >= 0),
    following_count INTEGER NOT NULL DEFAULT 0 CHECK (following_count >= 0),
    posts_count     INTEGER NOT NULL DEFAULT 0 CHECK (posts_count >= 0)
) STRICT;

-- Kept apart from profiles so that no profile query can ever select a hash.
CREATE TABLE credentials (
    user_id       INTEGER PRIMARY KEY REFERENCES users (id),
    password_hash TEXT    NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE refresh_tokens (
    token_hash BLOB    PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id),
    family_id  INTEGER NOT NULL,
    issued_at  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    revoked_at INTEGER
) STRICT, WITHOUT ROWID;
-- Reuse detection revokes a whole family at once.
CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family_id);

CREATE TABLE follows (
    follower_id INTEGER NOT NULL REFERENCES users (id),
    followee_id INTEGER NOT NULL REFERENCES users (id),
    -- Time-ordered id of the follow itself: the keyset of follower lists.
    follow_id   INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (follower_id, followee_id),
    CHECK (follower_id <> followee_id)
) STRICT, WITHOUT ROWID;
-- Covering indexes: "followers of X" (lists and fan-out batches) and
-- "X follows" (lists), both walked in follow order with no table lookups.
-- Fan-out on read and the hybrid merge use the primary key's follower prefix.
CREATE INDEX follows_by_followee ON follows (followee_id, follow_id, follower_id);
CREATE INDEX follows_by_follower ON follows (follower_id, follow_id, followee_id);

CREATE TABLE posts (
    id          INTEGER PRIMARY KEY,
    author_id   INTEGER NOT NULL REFERENCES users (id),
    text        TEXT    NOT NULL,
    reply_to    INTEGER REFERENCES posts (id),
    created_at  INTEGER NOT NULL,
    -- Tombstone: the row stays so threads keep their shape; the text is erased.
    deleted_at  INTEGER,
    like_count  INTEGER NOT NULL DEFAULT 0 CHECK (like_count >= 0),
    reply_count INTEGER NOT NULL DEFAULT 0 CHECK (reply_count >= 0)
) STRICT;
-- An author's live posts newest first: user timelines, follow backfill,
-- the hybrid merge and fan-out on read. Partial, so tombstones cost nothing.
CREATE INDEX posts_by_author ON posts (author_id, id) WHERE deleted_at IS NULL;

CREATE TABLE likes (
    user_id    INTEGER NOT NULL REFERENCES users (id),
    post_id    INTEGER NOT NULL REFERENCES posts (id),
    created_at INTEGER NOT NULL,
    -- Serves idempotent like/unlike and "which of these posts did I like".
    PRIMARY KEY (user_id, post_id)
) STRICT, WITHOUT ROWID;

-- The transactional outbox, read as the event log. AUTOINCREMENT: sequences
-- are never reused after pruning, and with SQLite's single writer they
-- follow commit order, so a consumer's checkpoint never skips an event.
CREATE TABLE outbox (
    sequence    INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    payload     TEXT    NOT NULL,
    occurred_at INTEGER NOT NULL
) STRICT;

CREATE TABLE consumer_checkpoints (
    consumer   TEXT    PRIMARY KEY,
    sequence   INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

CREATE TABLE dead_letters (
    consumer  TEXT    NOT NULL,
    sequence  INTEGER NOT NULL,
    event_id  INTEGER NOT NULL,
    kind      TEXT    NOT NULL,
    payload   TEXT    NOT NULL,
    error     TEXT    NOT NULL,
    failed_at INTEGER NOT NULL,
    PRIMARY KEY (consumer, sequence)
) STRICT;
