-- Staff roles and moderation: who may run the admin API, which accounts are
-- suspended, and the audit log every admin action writes in the same
-- transaction as the action.
ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'user'
    CHECK (role IN ('user', 'moderator', 'admin'));
ALTER TABLE users ADD COLUMN status TEXT NOT NULL DEFAULT 'active';
ALTER TABLE users ADD COLUMN suspended_at BIGINT;
-- The admin listing's filters; staff are few, suspended accounts too.
CREATE INDEX users_by_role ON users (role) WHERE role <> 'user';
CREATE INDEX users_by_status ON users (status) WHERE status <> 'active';
CREATE INDEX users_by_created ON users (created_at, id);

CREATE TABLE audit_log (
    id             BIGINT  PRIMARY KEY,
    -- Who acted; NULL for the command line (`starling admin grant`).
    actor_id       BIGINT  REFERENCES users (id),
    -- suspend, unsuspend, grant_role, remove_post.
    action         TEXT    NOT NULL,
    target_user_id BIGINT  REFERENCES users (id),
    target_post_id BIGINT,
    reason         TEXT,
    -- What changed, as JSON (e.g. {"from":"user","to":"moderator"}).
    details        TEXT    NOT NULL DEFAULT '{}',
    created_at     BIGINT  NOT NULL
);
CREATE INDEX audit_by_target ON audit_log (target_user_id, id);
CREATE INDEX audit_by_actor ON audit_log (actor_id, id);
