-- A post's images as a JSON array of attachments ({id, file, thumbnail,
-- alt}), written with the post: read only with it, like its mentions.
ALTER TABLE posts ADD COLUMN media TEXT NOT NULL DEFAULT '[]';

-- Uploads. The row is written before the file is stored (state
-- 'uploading'), so every stored file has a row naming it by its content
-- hash; a file is deleted only when no row names it any more.
CREATE TABLE media (
    id         INTEGER PRIMARY KEY,
    owner_id   INTEGER NOT NULL REFERENCES users (id),
    state      TEXT    NOT NULL CHECK (state IN ('uploading', 'processing', 'ready')),
    hash       TEXT    NOT NULL,
    file       TEXT    NOT NULL,  -- JSON: {hash, kind, width, height, bytes}
    thumb_hash TEXT,
    thumbnail  TEXT,              -- JSON, once made
    alt        TEXT    NOT NULL DEFAULT '',
    post_id    INTEGER,
    created_at INTEGER NOT NULL
);
-- Is a file still named by some upload (before deleting it)?
CREATE INDEX media_by_hash ON media (hash);
CREATE INDEX media_by_thumb_hash ON media (thumb_hash) WHERE thumb_hash IS NOT NULL;
-- The sweep: unattached uploads, oldest first. Partial: attached ones (all
-- but a few) cost nothing.
CREATE INDEX media_unattached ON media (created_at) WHERE post_id IS NULL;
-- A deleted post's uploads are detached from it.
CREATE INDEX media_by_post ON media (post_id) WHERE post_id IS NOT NULL;
