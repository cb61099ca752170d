-- Cached device lists of remote users who share a room with a local user (server-server-api.md
-- "Device Management"; client-server end_to_end_encryption.md "Tracking the device list for a
-- user"). SQL lives in homeserver/storage/remote_devices_store.py; policy (when to apply an
-- m.device_list_update, when to resync, who is tracked) in homeserver/e2ee/remote_device_lists.py.

-- One row per remote user whose list is held. stream_id: the remote server's stream_id of the
-- last applied update (from an m.device_list_update EDU or the GET /user/devices snapshot), as
-- text because servers disagree on its JSON type. stale: an update was missed (unknown prev_id)
-- or a resync failed; the list must be fetched again before it is used.
CREATE TABLE e2e_remote_device_lists (
    user_id TEXT NOT NULL PRIMARY KEY,
    stream_id TEXT,
    stale BOOLEAN NOT NULL,
    updated_ts BIGINT NOT NULL
);
CREATE INDEX e2e_remote_device_lists_stale ON e2e_remote_device_lists (stale);

-- The devices of a held list: identity keys (NULL when the device has none) and display name.
CREATE TABLE e2e_remote_devices (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    key_json TEXT,
    display_name TEXT,
    PRIMARY KEY (user_id, device_id)
);

-- Cross-signing keys of a held list (key_type: master, self_signing), from the snapshot or an
-- m.signing_key_update EDU.
CREATE TABLE e2e_remote_cross_signing_keys (
    user_id TEXT NOT NULL,
    key_type TEXT NOT NULL,
    key_json TEXT NOT NULL,
    PRIMARY KEY (user_id, key_type)
);
