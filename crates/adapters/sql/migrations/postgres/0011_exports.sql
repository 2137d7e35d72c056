-- Data exports: a person asks for an archive of what they have; a worker
-- builds it off the request, keeps it in object storage, and lets it go
-- after a week.
CREATE TABLE exports (
    id              BIGINT PRIMARY KEY,
    user_id         BIGINT NOT NULL REFERENCES users (id),
    -- pending, ready, failed, expired.
    state           TEXT    NOT NULL,
    requested_at    BIGINT NOT NULL,
    finished_at     BIGINT,
    -- Where the archive is kept (object storage), and its size.
    archive_key     TEXT,
    size            BIGINT,
    expires_at      BIGINT,
    attempts        BIGINT NOT NULL DEFAULT 0,
    last_error      TEXT,
    next_attempt_at BIGINT NOT NULL,
    lease_until     BIGINT
);
CREATE INDEX exports_by_user ON exports (user_id, id);
CREATE INDEX exports_due ON exports (next_attempt_at) WHERE state = 'pending';
CREATE INDEX exports_expiring ON exports (expires_at) WHERE state = 'ready';
