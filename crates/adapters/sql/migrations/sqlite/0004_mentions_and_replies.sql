-- The accounts a post mentions, resolved when it was written, as a JSON
-- array of {user_id, handle, start, end}. Read only with the post itself
-- (hydration), so a column beats a table: no join, no second query, and
-- the post cache holds it with the post.
ALTER TABLE posts ADD COLUMN mentions TEXT NOT NULL DEFAULT '[]';

-- A post's live replies in conversation order. Partial: top-level posts
-- (most of them) and tombstones cost nothing.
CREATE INDEX posts_by_parent ON posts (reply_to, id)
    WHERE reply_to IS NOT NULL AND deleted_at IS NULL;
