-- Idempotency keys: a retried create answers what its first attempt did.
-- `status` is NULL while the first attempt runs. Keys live 24 hours.
CREATE TABLE idempotency_keys (
    scope       TEXT   NOT NULL,
    key         TEXT   NOT NULL,
    -- SHA-256 of method, path and body: the same key with another request is refused.
    fingerprint BYTEA  NOT NULL,
    status      INTEGER,
    headers     TEXT,
    body        BYTEA,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);
-- Pruning expired keys walks them oldest first.
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
