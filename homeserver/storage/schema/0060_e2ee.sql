-- End-to-end encryption: device identity keys, one-time and fallback keys, cross-signing keys and
-- signatures, the device-list stream, the to-device inbox, and server-side key backups
-- (client-server-api/modules/end_to_end_encryption.md, send_to_device.md). SQL lives in
-- homeserver/storage/e2ee_store.py; policy in homeserver/e2ee/.

-- Identity keys of a device as uploaded with /keys/upload (without "unsigned").
CREATE TABLE e2e_device_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    ts_added BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- Unclaimed one-time keys. upload_id orders keys by upload ("given out in the order that they were
-- uploaded", keys.yaml /keys/claim); keys of one upload share it.
CREATE TABLE e2e_one_time_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    upload_id BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, algorithm, key_id)
);
CREATE INDEX e2e_one_time_keys_order ON e2e_one_time_keys (user_id, device_id, algorithm, upload_id);

-- At most one fallback key per (device, algorithm); used once it was handed out by /keys/claim.
CREATE TABLE e2e_fallback_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    used BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, device_id, algorithm)
);

-- A user's current cross-signing keys (key_type: master, self_signing, user_signing), as uploaded
-- with /keys/device_signing/upload. public_key is the unpadded base64 ed25519 key.
CREATE TABLE e2e_cross_signing_keys (
    user_id TEXT NOT NULL,
    key_type TEXT NOT NULL,
    public_key TEXT NOT NULL,
    key_json TEXT NOT NULL,
    ts_added BIGINT NOT NULL,
    PRIMARY KEY (user_id, key_type)
);

-- Signatures uploaded with /keys/signatures/upload: signer_user_id's key signer_key_id signed the
-- key target_key_id ("<device_id>" or a master public key) of target_user_id.
CREATE TABLE e2e_signatures (
    signer_user_id TEXT NOT NULL,
    signer_key_id TEXT NOT NULL,
    target_user_id TEXT NOT NULL,
    target_key_id TEXT NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (target_user_id, target_key_id, signer_user_id, signer_key_id)
);

-- The device-list stream: user_id's devices or cross-signing keys changed at stream_id.
-- device_id NULL: a cross-signing change. only_for: a change visible to that user alone (their
-- user-signing key signed user_id's master key).
CREATE TABLE e2e_device_list_stream (
    stream_id BIGINT NOT NULL,
    user_id TEXT NOT NULL,
    device_id TEXT,
    only_for TEXT
);
CREATE INDEX e2e_device_list_stream_id ON e2e_device_list_stream (stream_id);
CREATE INDEX e2e_device_list_stream_user ON e2e_device_list_stream (user_id, stream_id);

-- To-device messages waiting for a local device (send_to_device.md "Server behaviour"); deleted
-- once the device acknowledged them by syncing past stream_id.
CREATE TABLE e2e_device_inbox (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    stream_id BIGINT NOT NULL,
    message_json TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, stream_id)
);
CREATE INDEX e2e_device_inbox_stream ON e2e_device_inbox (stream_id);

-- To-device messages for remote users, waiting for the federation sender (m.direct_to_device).
CREATE TABLE e2e_device_outbox (
    stream_id BIGINT NOT NULL,
    destination TEXT NOT NULL,
    sender TEXT NOT NULL,
    message_type TEXT NOT NULL,
    message_id TEXT NOT NULL,
    messages_json TEXT NOT NULL,
    ts BIGINT NOT NULL,
    PRIMARY KEY (stream_id, destination)
);

-- The highest to-device stream ID ever used (one row, id = 1): delivered messages are deleted, so
-- the inbox alone cannot tell after a restart.
CREATE TABLE e2e_to_device_high_water (
    id INTEGER NOT NULL PRIMARY KEY,
    stream_id BIGINT NOT NULL
);

-- /sendToDevice transaction IDs already processed, per (sender, device or token, txn_id).
CREATE TABLE e2e_to_device_txns (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);

-- Server-side key backup versions (versions are per user, never reused; deleted ones are kept).
-- etag: bumped whenever the keys of the version change.
CREATE TABLE e2e_room_keys_versions (
    user_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    algorithm TEXT NOT NULL,
    auth_data TEXT NOT NULL,
    etag BIGINT NOT NULL,
    deleted BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, version)
);

-- Backed-up room keys (definitions/key_backup_data.yaml).
CREATE TABLE e2e_room_keys (
    user_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    first_message_index BIGINT NOT NULL,
    forwarded_count BIGINT NOT NULL,
    is_verified BOOLEAN NOT NULL,
    session_data TEXT NOT NULL,
    PRIMARY KEY (user_id, version, room_id, session_id)
);
