-- Remote servers' signing keys (server-server-api.md "Retrieving server keys").
-- One row per (server, key id). valid_until_ts is the validity uzel uses: the published
-- valid_until_ts capped at fetch time + 7 days (rooms v5+ "Signing key validity period"), or the
-- expired_ts of a key listed in old_verify_keys (then expired_ts is set too).
CREATE TABLE server_signing_keys (
    server_name TEXT NOT NULL,
    key_id TEXT NOT NULL,
    verify_key TEXT NOT NULL,
    valid_until_ts BIGINT NOT NULL,
    expired_ts BIGINT,
    ts_fetched BIGINT NOT NULL,
    from_server TEXT NOT NULL,
    PRIMARY KEY (server_name, key_id)
);

-- The latest signed key document received for each server, kept as received so that the notary
-- endpoint can serve it (with the server's own signature intact) when the server is unreachable.
CREATE TABLE server_key_documents (
    server_name TEXT NOT NULL PRIMARY KEY,
    from_server TEXT NOT NULL,
    ts_fetched BIGINT NOT NULL,
    valid_until_ts BIGINT NOT NULL,
    key_json TEXT NOT NULL
);
