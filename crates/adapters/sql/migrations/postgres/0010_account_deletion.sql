-- Account deletion as a durable saga: one row per account being deleted,
-- at the step to run next; each step is idempotent, so a runner that dies
-- anywhere leaves a row the next one resumes.
CREATE TABLE account_deletions (
    user_id         BIGINT PRIMARY KEY REFERENCES users (id),
    -- revoke_credentials, remove_follows, purge_timelines, delete_posts,
    -- delete_media, release_handle, tombstone, done.
    step            TEXT    NOT NULL,
    -- Failed attempts of this step (reset when it completes).
    attempts        BIGINT  NOT NULL DEFAULT 0,
    last_error      TEXT,
    started_at      BIGINT NOT NULL,
    -- Not before then: after a failure (back-off) or for the quarantine.
    next_attempt_at BIGINT NOT NULL,
    -- A runner holds it until then.
    lease_until     BIGINT,
    finished_at     BIGINT
);
CREATE INDEX account_deletions_due ON account_deletions (next_attempt_at)
    WHERE finished_at IS NULL;
-- The saga's batch steps find what an account has by these.
CREATE INDEX mutes_by_muted ON mutes (muted_id, muter_id);
CREATE INDEX notifications_by_actor ON notifications (actor_id);
CREATE INDEX media_by_owner ON media (owner_id);
