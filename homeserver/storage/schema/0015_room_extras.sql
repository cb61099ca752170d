-- Room extras for the client API (homeserver/storage/room_extras_store.py): content reports,
-- forgotten rooms, and indexes for transaction IDs and timestamp look-ups.

-- client-server-api "Reporting content": reports of events, rooms and users. id allocated in Python.
CREATE TABLE content_reports (
    report_id BIGINT PRIMARY KEY,
    kind TEXT NOT NULL,          -- "event", "room" or "user"
    reporter TEXT NOT NULL,
    room_id TEXT,
    event_id TEXT,
    target_user_id TEXT,
    reason TEXT,
    score BIGINT,
    received_ts BIGINT NOT NULL
);
CREATE INDEX content_reports_ts ON content_reports (received_ts);

-- POST /rooms/{roomId}/forget: the room stays forgotten while the user's membership is still the
-- event it was forgotten at (room_memberships.event_id); a new membership un-forgets it.
CREATE TABLE forgotten_rooms (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    membership_event_id TEXT NOT NULL,
    PRIMARY KEY (user_id, room_id)
);

-- unsigned.transaction_id when serving events: event -> its client transaction.
CREATE INDEX event_txn_ids_event ON event_txn_ids (event_id);

-- GET /rooms/{roomId}/timestamp_to_event.
CREATE INDEX events_room_origin_ts ON events (room_id, origin_server_ts);
