-- API keys for scripts and bots: `sk_<prefix>_<secret>`, kept only as the
-- SHA-256 of the whole key (256 random bits: nothing to brute-force).
CREATE TABLE api_keys (
    id           BIGINT  PRIMARY KEY,
    user_id      BIGINT  NOT NULL REFERENCES users (id),
    name         TEXT    NOT NULL,
    prefix       TEXT    NOT NULL UNIQUE,
    key_hash     BYTEA   NOT NULL UNIQUE,
    -- Space-separated: read write follow notifications media.
    scopes       TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL,
    last_used_at BIGINT,
    expires_at   BIGINT,
    revoked_at   BIGINT
);
CREATE INDEX api_keys_by_user ON api_keys (user_id, id);
