-- The media repository (client-server-api/modules/content_repo.md).
-- File bytes live on disk under media_store_path, named by their SHA-256 (deduplicated);
-- these tables hold what the files are and who uploaded them.

-- One row per mxc://<this server>/<media_id>. A row made by POST /_matrix/media/v1/create has
-- no content yet: uploaded_ts, sha256, media_length and content_type stay NULL until the PUT.
CREATE TABLE local_media (
    media_id TEXT NOT NULL PRIMARY KEY,
    user_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    -- When an unused created id expires (create only; NULL for direct uploads).
    unused_expires_at BIGINT,
    uploaded_ts BIGINT,
    content_type TEXT,
    upload_name TEXT,
    media_length BIGINT,
    sha256 TEXT,
    -- Uploaded while unauthenticated downloads were frozen (content_repo.md, Client behaviour):
    -- never served on the deprecated /_matrix/media/v3/download|thumbnail endpoints.
    authenticated BOOLEAN NOT NULL,
    -- The admin who quarantined it; quarantined media is answered as not found.
    quarantined_by TEXT
);
CREATE INDEX local_media_user_created ON local_media (user_id, created_ts);
CREATE INDEX local_media_sha256 ON local_media (sha256);

-- Thumbnails are keyed by the SHA-256 of the source bytes, so every upload of the same file
-- shares them. The thumbnail bytes are themselves a content-addressed file (thumb_sha256).
CREATE TABLE media_thumbnails (
    source_sha256 TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    method TEXT NOT NULL,
    animated BOOLEAN NOT NULL,
    content_type TEXT NOT NULL,
    thumb_width INTEGER NOT NULL,
    thumb_height INTEGER NOT NULL,
    thumb_length BIGINT NOT NULL,
    thumb_sha256 TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (source_sha256, width, height, method, animated)
);

-- Media of other servers fetched over federation and kept here (content_repo.md: content is
-- downloaded from the recipient's homeserver, which first transfers it from the origin).
CREATE TABLE remote_media_cache (
    media_origin TEXT NOT NULL,
    media_id TEXT NOT NULL,
    content_type TEXT NOT NULL,
    upload_name TEXT,
    media_length BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    last_access_ts BIGINT NOT NULL,
    -- Fetched while unauthenticated downloads were frozen (the spec's "newly cached").
    authenticated BOOLEAN NOT NULL,
    quarantined_by TEXT,
    PRIMARY KEY (media_origin, media_id)
);
CREATE INDEX remote_media_cache_sha256 ON remote_media_cache (sha256);
