-- Server-side search (modules/search.md), PostgreSQL: a tsvector per searchable timeline event with
-- a GIN index (homeserver/storage/search_store.py). The 'english' configuration stems like the
-- porter tokenizer SQLite uses.
CREATE TABLE event_search (
    event_nid BIGINT PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    room_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    vector TSVECTOR NOT NULL,
    stream_ordering BIGINT NOT NULL,
    origin_server_ts BIGINT NOT NULL
);
CREATE INDEX event_search_room ON event_search (room_id, stream_ordering);
CREATE INDEX event_search_fts ON event_search USING GIN (vector);
