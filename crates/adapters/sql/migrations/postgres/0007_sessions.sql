-- Sessions: one per sign-in, the refresh-token family it started (its id
-- is the family id, the `sid` of its access tokens). What a person sees in
-- their list of sessions, and what a revocation names.
CREATE TABLE sessions (
    id           BIGINT  PRIMARY KEY,
    user_id      BIGINT  NOT NULL REFERENCES users (id),
    created_at   BIGINT  NOT NULL,
    -- The last refresh: access tokens are verified without the store.
    last_used_at BIGINT  NOT NULL,
    -- Its absolute end: no refresh carries a session past it.
    expires_at   BIGINT  NOT NULL,
    user_agent   TEXT,
    address      TEXT,
    revoked_at   BIGINT
);
-- A person's sessions; and every instance polls the recent revocations.
CREATE INDEX sessions_by_user ON sessions (user_id, id);
CREATE INDEX sessions_revoked ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;

-- The families that exist already become sessions: a family is revoked
-- when all its tokens are (a revocation marks every one).
INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, revoked_at)
SELECT family_id, min(user_id), min(issued_at), max(issued_at), max(expires_at),
       CASE WHEN count(revoked_at) = count(*) THEN max(revoked_at) END
FROM refresh_tokens GROUP BY family_id;

-- The token a rotation handed out for this one: a retried refresh within
-- the grace window spends that one instead of revoking the family.
ALTER TABLE refresh_tokens ADD COLUMN replaced_by BYTEA;
