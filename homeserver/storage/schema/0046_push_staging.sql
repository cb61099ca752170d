-- Push actions of new events, one row per event, written in the event's persist transaction
-- (homeserver/push/notification_counts.py) and folded in batches into event_push_actions,
-- notification_counts and notification_history (ReceiptsStore.fold_staged_txn): a message into a
-- room of N local members writes one row here instead of 3N rows across three tables.
-- recipients: JSON {"a": [actions, ...], "u": [[user_id, index into "a", highlight 0/1], ...]}.
-- Unread counts read by /sync add the staged rows naming the user (all are unread: a read
-- receipt folds the staged rows first, in its own transaction).
CREATE TABLE event_push_staging (
    stream_ordering BIGINT NOT NULL PRIMARY KEY,
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    received_ts BIGINT NOT NULL,
    recipients TEXT NOT NULL
);
