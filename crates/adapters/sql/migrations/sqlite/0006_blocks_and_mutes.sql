-- Blocks and mutes. `position` is a time-ordered id: the keyset of the
-- owner's lists, newest first.
CREATE TABLE blocks (
    blocker_id INTEGER NOT NULL REFERENCES users (id),
    blocked_id INTEGER NOT NULL REFERENCES users (id),
    position   INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (blocker_id, blocked_id),
    CHECK (blocker_id <> blocked_id)
) STRICT, WITHOUT ROWID;
-- "Who blocks me" (a block hides both ways) and the blocker's list.
CREATE INDEX blocks_by_blocked ON blocks (blocked_id, blocker_id);
CREATE INDEX blocks_by_position ON blocks (blocker_id, position);

CREATE TABLE mutes (
    muter_id   INTEGER NOT NULL REFERENCES users (id),
    muted_id   INTEGER NOT NULL REFERENCES users (id),
    position   INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (muter_id, muted_id),
    CHECK (muter_id <> muted_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX mutes_by_position ON mutes (muter_id, position);
