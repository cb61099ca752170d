-- Per-user client features (homeserver/storage/user_data_store.py): filters, account data
-- (including room tags), push rules, pushers, extra profile fields and presence.

-- Uploaded filters (client-server-api "Filtering"); filter_id is per user, 0, 1, 2, ...
CREATE TABLE user_filters (
    user_id TEXT NOT NULL,
    filter_id BIGINT NOT NULL,
    filter_json TEXT NOT NULL,
    PRIMARY KEY (user_id, filter_id)
);

-- Account data (client-server-api "Client Config"): room_id '' for global data. The content of
-- a room's m.tag row is the m.tag event content ({"tags": {...}}). A row of type m.push_rules
-- only marks a change of the user's push rules on the stream; its content is computed from
-- push_rules. stream_id: the account-data stream position of the last change (sync).
CREATE TABLE account_data (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    data_type TEXT NOT NULL,
    content TEXT NOT NULL,
    stream_id BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, data_type)
);
CREATE INDEX account_data_user_stream ON account_data (user_id, stream_id);

-- A user's own push rules (push.md "Push Rules"), ordered within a kind by priority (lower is
-- more important). conditions (override/underride) and actions are JSON; pattern is for content
-- rules; room and sender rules take their condition from rule_id.
CREATE TABLE push_rules (
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    priority BIGINT NOT NULL,
    conditions TEXT,
    pattern TEXT,
    actions TEXT NOT NULL,
    enabled BOOLEAN NOT NULL,
    PRIMARY KEY (user_id, kind, rule_id)
);

-- A user's changes to server-default rules (/enabled, /actions); NULL: unchanged.
CREATE TABLE push_rule_default_changes (
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    enabled BOOLEAN,
    actions TEXT,
    PRIMARY KEY (user_id, kind, rule_id)
);

-- Pushers (push.md "Client behaviour", pusher.yaml). data is JSON; device_id is the device whose
-- access token created it (removed with the device, as Synapse does).
CREATE TABLE pushers (
    user_id TEXT NOT NULL,
    app_id TEXT NOT NULL,
    pushkey TEXT NOT NULL,
    kind TEXT NOT NULL,
    app_display_name TEXT NOT NULL,
    device_display_name TEXT NOT NULL,
    profile_tag TEXT,
    lang TEXT NOT NULL,
    data TEXT NOT NULL,
    device_id TEXT,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, app_id, pushkey)
);
CREATE INDEX pushers_app_pushkey ON pushers (app_id, pushkey);

-- Profile fields other than displayname/avatar_url (those live in the accounts' profiles
-- table): m.tz and custom fields of client-server-api v1.16+. value is JSON.
CREATE TABLE profile_fields (
    user_id TEXT NOT NULL,
    field_name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (user_id, field_name)
);

-- Presence of local users (client-server-api "Presence"). stream_id: the presence stream
-- position of the last change (sync); last_active_ts: last pro-active action (ms).
CREATE TABLE presence (
    user_id TEXT NOT NULL PRIMARY KEY,
    state TEXT NOT NULL,
    status_msg TEXT,
    last_active_ts BIGINT NOT NULL,
    stream_id BIGINT NOT NULL
);
CREATE INDEX presence_stream ON presence (stream_id);
