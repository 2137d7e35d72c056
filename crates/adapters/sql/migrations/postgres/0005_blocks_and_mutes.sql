-- Blocks and mutes. `position` is a time-ordered id: the keyset of the
-- owner's lists, newest first.
CREATE TABLE blocks (
    blocker_id BIGINT NOT NULL REFERENCES users (id),
    blocked_id BIGINT NOT NULL REFERENCES users (id),
    position   BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (blocker_id, blocked_id),
    CHECK (blocker_id <> blocked_id)
);
-- "Who blocks me" (a block hides both ways) and the blocker's list.
CREATE INDEX blocks_by_blocked ON blocks (blocked_id, blocker_id);
CREATE INDEX blocks_by_position ON blocks (blocker_id, position);

CREATE TABLE mutes (
    muter_id   BIGINT NOT NULL REFERENCES users (id),
    muted_id   BIGINT NOT NULL REFERENCES users (id),
    position   BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (muter_id, muted_id),
    CHECK (muter_id <> muted_id)
);
CREATE INDEX mutes_by_position ON mutes (muter_id, position);
