-- Notifications, written by the notifier from events. `post_id` is 0 for
-- follows (no post), so that the unique index below also catches a follow
-- notified twice (as on SQLite, where NULLs are distinct in unique indexes).
CREATE TABLE notifications (
    id           BIGINT PRIMARY KEY,
    recipient_id BIGINT NOT NULL REFERENCES users (id),
    kind         TEXT   NOT NULL CHECK (kind IN ('follow', 'like', 'reply', 'mention')),
    actor_id     BIGINT NOT NULL REFERENCES users (id),
    post_id      BIGINT NOT NULL DEFAULT 0,
    created_at   BIGINT NOT NULL
);
-- One notification per thing that happened: a redelivered event, or a like
-- given, taken back and given again, finds its row here and adds nothing.
CREATE UNIQUE INDEX notifications_once
    ON notifications (recipient_id, kind, actor_id, post_id);
-- The recipient's list, newest first, and its unread count above the read
-- position (an index-only range count); with the kind, the list by type.
CREATE INDEX notifications_by_recipient ON notifications (recipient_id, id);
CREATE INDEX notifications_by_recipient_kind ON notifications (recipient_id, kind, id);
-- Deleting a post removes what notified about it; a withdrawn like is found
-- here. Partial: follows never need it.
CREATE INDEX notifications_by_post ON notifications (post_id, actor_id) WHERE post_id <> 0;

-- How far each account has read: one row per account that ever marked.
CREATE TABLE notification_reads (
    user_id      BIGINT PRIMARY KEY REFERENCES users (id),
    read_through BIGINT NOT NULL
);
