-- Fewer b-trees per write (SQLite only; each b-tree a row touches is at least one page in the WAL
-- at every commit):
-- * a table keyed by a BIGINT PRIMARY KEY kept its rowid and a separate unique index for the key:
--   INTEGER PRIMARY KEY makes the key the rowid itself;
-- * a table keyed by a composite or text PRIMARY KEY kept a rowid table and the key's index:
--   WITHOUT ROWID stores the rows in the key's b-tree;
-- * events_room_depth (room_id, depth) is a prefix of events_room_topological.
-- The PostgreSQL variant only drops events_room_depth.

CREATE TABLE events_new (
    event_nid INTEGER PRIMARY KEY,
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
INSERT INTO events_new SELECT event_nid, event_id, stream_ordering, room_id, room_version, type, state_key,
    sender, depth, origin_server_ts, received_ts, outlier, rejected_reason, soft_failed, state_group_before,
    state_group, json FROM events;
DROP TABLE events;
ALTER TABLE events_new RENAME TO events;
CREATE INDEX events_room_stream ON events (room_id, stream_ordering);
CREATE INDEX events_room_origin_ts ON events (room_id, origin_server_ts);
CREATE INDEX events_room_topological ON events (room_id, depth, stream_ordering);

CREATE TABLE event_edges_new (
    event_id TEXT NOT NULL,
    prev_event_id TEXT NOT NULL,
    PRIMARY KEY (event_id, prev_event_id)
) WITHOUT ROWID;
INSERT INTO event_edges_new SELECT event_id, prev_event_id FROM event_edges;
DROP TABLE event_edges;
ALTER TABLE event_edges_new RENAME TO event_edges;
CREATE INDEX event_edges_prev ON event_edges (prev_event_id);

CREATE TABLE event_auth_edges_new (
    event_id TEXT NOT NULL,
    auth_event_id TEXT NOT NULL,
    PRIMARY KEY (event_id, auth_event_id)
) WITHOUT ROWID;
INSERT INTO event_auth_edges_new SELECT event_id, auth_event_id FROM event_auth_edges;
DROP TABLE event_auth_edges;
ALTER TABLE event_auth_edges_new RENAME TO event_auth_edges;

CREATE TABLE event_forward_extremities_new (
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
) WITHOUT ROWID;
INSERT INTO event_forward_extremities_new SELECT room_id, event_id FROM event_forward_extremities;
DROP TABLE event_forward_extremities;
ALTER TABLE event_forward_extremities_new RENAME TO event_forward_extremities;

CREATE TABLE event_txn_ids_new (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    inserted_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
) WITHOUT ROWID;
INSERT INTO event_txn_ids_new SELECT user_id, device_id, txn_id, room_id, event_id, inserted_ts FROM event_txn_ids;
DROP TABLE event_txn_ids;
ALTER TABLE event_txn_ids_new RENAME TO event_txn_ids;
CREATE INDEX event_txn_ids_event ON event_txn_ids (event_id);

CREATE TABLE redactions_new (
    event_id TEXT PRIMARY KEY,
    redacts TEXT NOT NULL
) WITHOUT ROWID;
INSERT INTO redactions_new SELECT event_id, redacts FROM redactions;
DROP TABLE redactions;
ALTER TABLE redactions_new RENAME TO redactions;
CREATE INDEX redactions_redacts ON redactions (redacts);

CREATE TABLE state_keys_new (
    key_nid INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    UNIQUE (type, state_key)
);
INSERT INTO state_keys_new SELECT key_nid, type, state_key FROM state_keys;
DROP TABLE state_keys;
ALTER TABLE state_keys_new RENAME TO state_keys;

CREATE TABLE state_groups_new (
    state_group INTEGER PRIMARY KEY,
    room_id TEXT NOT NULL,
    prev_group BIGINT,
    delta_depth INTEGER NOT NULL
);
INSERT INTO state_groups_new SELECT state_group, room_id, prev_group, delta_depth FROM state_groups;
DROP TABLE state_groups;
ALTER TABLE state_groups_new RENAME TO state_groups;

CREATE TABLE state_group_entries_new (
    state_group BIGINT NOT NULL,
    key_nid BIGINT NOT NULL,
    event_nid BIGINT,
    PRIMARY KEY (state_group, key_nid)
) WITHOUT ROWID;
INSERT INTO state_group_entries_new SELECT state_group, key_nid, event_nid FROM state_group_entries;
DROP TABLE state_group_entries;
ALTER TABLE state_group_entries_new RENAME TO state_group_entries;

CREATE TABLE current_state_new (
    room_id TEXT NOT NULL,
    key_nid BIGINT NOT NULL,
    event_nid BIGINT NOT NULL,
    PRIMARY KEY (room_id, key_nid)
) WITHOUT ROWID;
INSERT INTO current_state_new SELECT room_id, key_nid, event_nid FROM current_state;
DROP TABLE current_state;
ALTER TABLE current_state_new RENAME TO current_state;

CREATE TABLE room_memberships_new (
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    membership TEXT NOT NULL,
    event_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id)
) WITHOUT ROWID;
INSERT INTO room_memberships_new SELECT room_id, user_id, membership, event_id, sender, stream_ordering
    FROM room_memberships;
DROP TABLE room_memberships;
ALTER TABLE room_memberships_new RENAME TO room_memberships;
CREATE INDEX room_memberships_user ON room_memberships (user_id, membership);
CREATE INDEX room_memberships_room ON room_memberships (room_id, membership);
CREATE INDEX room_memberships_stream ON room_memberships (stream_ordering);

CREATE TABLE event_auth_chains_new (
    event_id TEXT PRIMARY KEY,
    chain_id BIGINT NOT NULL,
    sequence_number BIGINT NOT NULL
) WITHOUT ROWID;
INSERT INTO event_auth_chains_new SELECT event_id, chain_id, sequence_number FROM event_auth_chains;
DROP TABLE event_auth_chains;
ALTER TABLE event_auth_chains_new RENAME TO event_auth_chains;
CREATE UNIQUE INDEX event_auth_chains_position ON event_auth_chains (chain_id, sequence_number);

CREATE TABLE event_auth_chain_links_new (
    chain_id BIGINT NOT NULL,
    from_seq BIGINT NOT NULL,
    target_chain_id BIGINT NOT NULL,
    target_seq BIGINT NOT NULL,
    PRIMARY KEY (chain_id, from_seq, target_chain_id)
) WITHOUT ROWID;
INSERT INTO event_auth_chain_links_new SELECT chain_id, from_seq, target_chain_id, target_seq
    FROM event_auth_chain_links;
DROP TABLE event_auth_chain_links;
ALTER TABLE event_auth_chain_links_new RENAME TO event_auth_chain_links;

CREATE TABLE event_auth_chain_keys_new (
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    chain_id BIGINT NOT NULL,
    PRIMARY KEY (room_id, type, state_key)
) WITHOUT ROWID;
INSERT INTO event_auth_chain_keys_new SELECT room_id, type, state_key, chain_id FROM event_auth_chain_keys;
DROP TABLE event_auth_chain_keys;
ALTER TABLE event_auth_chain_keys_new RENAME TO event_auth_chain_keys;
