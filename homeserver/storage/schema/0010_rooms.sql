-- Rooms, the event DAG and compact state storage (homeserver/storage/events_store.py,
-- homeserver/storage/state_store.py). Every id column is allocated in Python (one writer process).

-- One row per room this server takes part in (has a non-outlier event of).
-- current_state_group: the state group holding the room's current state.
CREATE TABLE rooms (
    room_id TEXT PRIMARY KEY,
    room_version TEXT NOT NULL,
    creator TEXT,
    is_public BOOLEAN NOT NULL DEFAULT FALSE,
    created_ts BIGINT NOT NULL,
    current_state_group BIGINT
);

-- Every event we hold, stored once as its PDU JSON.
--   event_nid        small integer id used by state storage (every event has one)
--   stream_ordering  position in the events stream (timeline/sync); NULL for events that are not
--                    in the timeline: outliers, rejected and soft-failed events
--   state_group_before / state_group  state before / after the event (NULL for outliers); equal
--                    for non-state and rejected events
CREATE TABLE events (
    event_nid BIGINT PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    stream_ordering BIGINT UNIQUE,
    room_id TEXT NOT NULL,
    room_version TEXT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT,
    sender TEXT NOT NULL,
    depth BIGINT NOT NULL,
    origin_server_ts BIGINT NOT NULL,
    received_ts BIGINT NOT NULL,
    outlier BOOLEAN NOT NULL,
    rejected_reason TEXT,
    soft_failed BOOLEAN NOT NULL,
    state_group_before BIGINT,
    state_group BIGINT,
    json TEXT NOT NULL
);
CREATE INDEX events_room_stream ON events (room_id, stream_ordering);
CREATE INDEX events_room_depth ON events (room_id, depth);

-- prev_events edges (the prev event may be unknown to us: stored by ID).
CREATE TABLE event_edges (
    event_id TEXT NOT NULL,
    prev_event_id TEXT NOT NULL,
    PRIMARY KEY (event_id, prev_event_id)
);
CREATE INDEX event_edges_prev ON event_edges (prev_event_id);

-- auth_events edges.
CREATE TABLE event_auth_edges (
    event_id TEXT NOT NULL,
    auth_event_id TEXT NOT NULL,
    PRIMARY KEY (event_id, auth_event_id)
);

-- The events of a room no other event of ours refers to as a prev_event.
CREATE TABLE event_forward_extremities (
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
);

-- Client transaction IDs: (sender, device or token, txn_id) -> the event it created.
CREATE TABLE event_txn_ids (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    inserted_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);

-- Redaction events and the event each one redacts (applied when events are served).
CREATE TABLE redactions (
    event_id TEXT PRIMARY KEY,
    redacts TEXT NOT NULL
);
CREATE INDEX redactions_redacts ON redactions (redacts);

-- Interned (type, state_key) pairs.
CREATE TABLE state_keys (
    key_nid BIGINT PRIMARY KEY,
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    UNIQUE (type, state_key)
);

-- State groups: a delta over prev_group, or a full snapshot when prev_group is NULL.
-- delta_depth counts the deltas since the last snapshot (snapshot = 0).
CREATE TABLE state_groups (
    state_group BIGINT PRIMARY KEY,
    room_id TEXT NOT NULL,
    prev_group BIGINT,
    delta_depth INTEGER NOT NULL
);

-- A group's entries: key -> event, or event_nid NULL for a key removed relative to prev_group.
CREATE TABLE state_group_entries (
    state_group BIGINT NOT NULL,
    key_nid BIGINT NOT NULL,
    event_nid BIGINT,
    PRIMARY KEY (state_group, key_nid)
);

-- The current state of each room (state after resolving the forward extremities).
CREATE TABLE current_state (
    room_id TEXT NOT NULL,
    key_nid BIGINT NOT NULL,
    event_nid BIGINT NOT NULL,
    PRIMARY KEY (room_id, key_nid)
);

-- Current membership per (room, user), with the stream position at which it last changed.
-- Also holds out-of-band memberships (an invite received for a room we are not in).
CREATE TABLE room_memberships (
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    membership TEXT NOT NULL,
    event_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX room_memberships_user ON room_memberships (user_id, membership);
CREATE INDEX room_memberships_room ON room_memberships (room_id, membership);
CREATE INDEX room_memberships_stream ON room_memberships (stream_ordering);
