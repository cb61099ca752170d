-- Server-side search (modules/search.md), SQLite: an FTS5 index over the searchable text of timeline
-- events (homeserver/storage/search_store.py). event_search holds the rows; event_search_fts is an
-- external-content FTS5 table whose rowid is event_search.event_nid.
CREATE TABLE event_search (
    event_nid INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    room_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    origin_server_ts BIGINT NOT NULL
);
CREATE INDEX event_search_room ON event_search (room_id, stream_ordering);
CREATE VIRTUAL TABLE event_search_fts USING fts5(
    value, content='event_search', content_rowid='event_nid',
    tokenize='porter unicode61 remove_diacritics 2'
);
