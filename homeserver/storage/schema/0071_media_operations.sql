-- Media operations: last access of local media (for media_retention.local_media_lifetime and the
-- admin API's delete-by-age, which Synapse defines on the last access) and the URL preview cache.

-- NULL until first downloaded after this migration; readers use COALESCE(last_access_ts,
-- uploaded_ts, created_ts).
ALTER TABLE local_media ADD COLUMN last_access_ts BIGINT;

-- Successful GET /_matrix/client/v1/media/preview_url results, one row per URL (the newest).
-- og is the preview JSON; media_id the local copy of its og:image, if any.
CREATE TABLE url_preview_cache (
    url TEXT NOT NULL PRIMARY KEY,
    og TEXT NOT NULL,
    media_id TEXT,
    download_ts BIGINT NOT NULL,
    expires_ts BIGINT NOT NULL
);
CREATE INDEX url_preview_cache_expires ON url_preview_cache (expires_ts);
