-- Event relationships and threads (homeserver/storage/relations_store.py), and the index /messages
-- pages through. client-server-api "Forming relationships between events", modules/threading.md.

-- One row per timeline event that names a parent in content."m.relates_to" (rel_type + event_id).
--   relates_to_id    the parent event (may not be stored yet)
--   aggregation_key  "key" of m.annotation relations, else NULL
--   depth/stream_ordering  the child's position (relations are paginated in (depth, stream) order)
CREATE TABLE event_relations (
    event_id TEXT PRIMARY KEY,
    relates_to_id TEXT NOT NULL,
    rel_type TEXT NOT NULL,
    aggregation_key TEXT,
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    sender TEXT NOT NULL,
    depth BIGINT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    origin_server_ts BIGINT NOT NULL
);
CREATE INDEX event_relations_parent ON event_relations (relates_to_id, depth, stream_ordering);
CREATE INDEX event_relations_parent_type ON event_relations (relates_to_id, rel_type, depth, stream_ordering);

-- One row per thread root that has m.thread children, with its latest child (for GET /threads,
-- ordered by latest activity).
CREATE TABLE threads (
    room_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    latest_event_id TEXT NOT NULL,
    latest_stream_ordering BIGINT NOT NULL,
    PRIMARY KEY (room_id, thread_id)
);
CREATE INDEX threads_room_latest ON threads (room_id, latest_stream_ordering);

-- /messages and /context page in (depth, stream_ordering) order (homeserver/sync/tokens.py).
CREATE INDEX events_room_topological ON events (room_id, depth, stream_ordering);
