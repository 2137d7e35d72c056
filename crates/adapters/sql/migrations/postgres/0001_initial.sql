-- Starling's write model on PostgreSQL. Ids are the application's 64-bit
-- time-ordered ids (BIGINT), so `ORDER BY id` is time order.

CREATE TABLE users (
    id              BIGINT  PRIMARY KEY,
    handle          TEXT    NOT NULL,
    -- Lower-cased handle: uniqueness ignores case; lookups by @handle use it.
    handle_key      TEXT    NOT NULL CONSTRAINT users_handle_key_unique UNIQUE,
    -- Trimmed, lower-cased email; unique, and the other login key.
    email           TEXT    NOT NULL CONSTRAINT users_email_unique UNIQUE,
    display_name    TEXT    NOT NULL,
    bio             TEXT    NOT NULL DEFAULT '',
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    -- Counters change in the same transaction as the rows they count.
    followers_count BIGINT  NOT NULL DEFAULT 0 CHECK (followers_count >= 0),
    following_count BIGINT  NOT NULL DEFAULT 0 CHECK (following_count >= 0),
    posts_count     BIGINT  NOT NULL DEFAULT 0 CHECK (posts_count >= 0)
);

-- Kept apart from profiles so that no profile query can ever select a hash.
CREATE TABLE credentials (
    user_id       BIGINT PRIMARY KEY REFERENCES users (id),
    password_hash TEXT   NOT NULL,
    updated_at    BIGINT NOT NULL
);

CREATE TABLE refresh_tokens (
    token_hash BYTEA  PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users (id),
    family_id  BIGINT NOT NULL,
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    revoked_at BIGINT
);
-- Reuse detection revokes a whole family at once; pruning walks expiry.
CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_by_expiry ON refresh_tokens (expires_at);

CREATE TABLE follows (
    follower_id BIGINT NOT NULL REFERENCES users (id),
    followee_id BIGINT NOT NULL REFERENCES users (id),
    -- Time-ordered id of the follow itself: the keyset of follower lists.
    follow_id   BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (follower_id, followee_id),
    CHECK (follower_id <> followee_id)
);
-- "Followers of X" (lists, fan-out batches) and "X follows" (lists), walked
-- in follow order. INCLUDE makes both index-only scans; fan-out on read and
-- the hybrid merge use the primary key's follower prefix.
CREATE INDEX follows_by_followee ON follows (followee_id, follow_id) INCLUDE (follower_id);
CREATE INDEX follows_by_follower ON follows (follower_id, follow_id) INCLUDE (followee_id);

CREATE TABLE posts (
    id          BIGINT PRIMARY KEY,
    author_id   BIGINT NOT NULL REFERENCES users (id),
    text        TEXT   NOT NULL,
    reply_to    BIGINT REFERENCES posts (id),
    created_at  BIGINT NOT NULL,
    -- Tombstone: the row stays so threads keep their shape; the text is erased.
    deleted_at  BIGINT,
    like_count  BIGINT NOT NULL DEFAULT 0 CHECK (like_count >= 0),
    reply_count BIGINT NOT NULL DEFAULT 0 CHECK (reply_count >= 0)
);
-- An author's live posts newest first: user timelines, follow backfill, the
-- hybrid merge and fan-out on read (a LATERAL top-N per followed author).
-- Partial, so tombstones cost nothing; covering the author, so backfills and
-- merges are index-only.
CREATE INDEX posts_by_author ON posts (author_id, id DESC) WHERE deleted_at IS NULL;

CREATE TABLE likes (
    user_id    BIGINT NOT NULL REFERENCES users (id),
    post_id    BIGINT NOT NULL REFERENCES posts (id),
    created_at BIGINT NOT NULL,
    -- Serves idempotent like/unlike, "which of these did I like" and
    -- "my recent likes" (walked backwards).
    PRIMARY KEY (user_id, post_id)
);

-- The transactional outbox. Sequence numbers from a PostgreSQL sequence are
-- handed out at insert, not at commit, so concurrent transactions commit out
-- of order: tailing by `sequence` could skip an event that commits late.
-- Each row therefore records its transaction id, and a single sequencer (any
-- reader holding the advisory lock) assigns `position` to rows whose
-- transactions have all finished (xid below the snapshot's xmin), in (xid,
-- sequence) order. Consumers tail by `position`: gap-free, stable.
CREATE SEQUENCE outbox_positions;
CREATE TABLE outbox (
    sequence     BIGSERIAL PRIMARY KEY,
    xid          XID8   NOT NULL DEFAULT pg_current_xact_id(),
    position     BIGINT UNIQUE,
    event_id     BIGINT NOT NULL,
    kind         TEXT   NOT NULL,
    payload      TEXT   NOT NULL,
    occurred_at  BIGINT NOT NULL,
    trace_parent TEXT
);
-- The sequencer's work list: unpositioned rows in transaction order.
CREATE INDEX outbox_unpositioned ON outbox (xid, sequence) WHERE position IS NULL;

CREATE TABLE consumer_checkpoints (
    consumer   TEXT   PRIMARY KEY,
    position   BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE dead_letters (
    consumer  TEXT   NOT NULL,
    position  BIGINT NOT NULL,
    event_id  BIGINT NOT NULL,
    kind      TEXT   NOT NULL,
    payload   TEXT   NOT NULL,
    error     TEXT   NOT NULL,
    failed_at BIGINT NOT NULL,
    PRIMARY KEY (consumer, position)
);
