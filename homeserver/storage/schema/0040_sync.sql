-- Receipts and notification counts for /sync (homeserver/storage/receipts_store.py).

-- The latest receipt of each (room, receipt type, user, thread) (client-server-api "Receipts").
-- thread_id: '' for an unthreaded receipt, else "main" or a thread root's event ID.
-- event_stream_ordering: the receipted event's position (NULL if unknown to us), so receipts only
-- move forwards. data: the receipt's JSON ({"ts": ..., ["thread_id": ...]}).
-- stream_id: the receipts stream position of the last change (sync).
CREATE TABLE receipts (
    room_id TEXT NOT NULL,
    receipt_type TEXT NOT NULL,
    user_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_stream_ordering BIGINT,
    data TEXT NOT NULL,
    stream_id BIGINT NOT NULL,
    PRIMARY KEY (room_id, receipt_type, user_id, thread_id)
);
CREATE INDEX receipts_stream ON receipts (stream_id);
CREATE INDEX receipts_room_stream ON receipts (room_id, stream_id);

-- Events that notify a local user and that the user has not read yet (client-server-api
-- "Receiving notifications"; push.md). Written with the event, deleted when a read receipt
-- passes it. thread_id: "main" or the thread root's event ID. actions: the push rule's actions.
CREATE TABLE event_push_actions (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    event_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    highlight BOOLEAN NOT NULL,
    actions TEXT NOT NULL,
    received_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, stream_ordering)
);
CREATE INDEX event_push_actions_user_stream ON event_push_actions (user_id, stream_ordering);

-- Unread counts per (user, room, thread): the rows of event_push_actions summed, kept up to date
-- incrementally so /sync reads one small row set per user.
CREATE TABLE notification_counts (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    notif_count BIGINT NOT NULL,
    highlight_count BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, thread_id)
);
