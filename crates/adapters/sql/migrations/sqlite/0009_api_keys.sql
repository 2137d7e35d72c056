-- API keys for scripts and bots: `sk_<prefix>_<secret>`, kept only as the
-- SHA-256 of the whole key (256 random bits: nothing to brute-force).
CREATE TABLE api_keys (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users (id),
    name         TEXT    NOT NULL,
    prefix       TEXT    NOT NULL UNIQUE,
    key_hash     BLOB    NOT NULL UNIQUE,
    -- Space-separated: read write follow notifications media.
    scopes       TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    expires_at   INTEGER,
    revoked_at   INTEGER
) STRICT;
CREATE INDEX api_keys_by_user ON api_keys (user_id, id);
