-- A post's images as a JSON array of attachments ({id, file, thumbnail,
-- alt}), written with the post: read only with it, like its mentions.
ALTER TABLE posts ADD COLUMN media TEXT NOT NULL DEFAULT '[]';

-- Uploads. The row is written before the file is stored (state
-- 'uploading'), so every stored file has a row naming it by its content
-- hash; a file is deleted only when no row names it any more (under an
-- advisory lock on the hash that uploads of the same file also take).
CREATE TABLE media (
    id         BIGINT PRIMARY KEY,
    owner_id   BIGINT NOT NULL REFERENCES users (id),
    state      TEXT   NOT NULL CHECK (state IN ('uploading', 'processing', 'ready')),
    hash       TEXT   NOT NULL,
    file       TEXT   NOT NULL,
    thumb_hash TEXT,
    thumbnail  TEXT,
    alt        TEXT   NOT NULL DEFAULT '',
    post_id    BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX media_by_hash ON media (hash);
CREATE INDEX media_by_thumb_hash ON media (thumb_hash) WHERE thumb_hash IS NOT NULL;
CREATE INDEX media_unattached ON media (created_at) WHERE post_id IS NULL;
CREATE INDEX media_by_post ON media (post_id) WHERE post_id IS NOT NULL;
