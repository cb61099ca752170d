-- The push tables without their extra rowid b-trees (SQLite only; see 0018_compact_tables.sqlite.sql).

CREATE TABLE event_push_staging_new (
    stream_ordering INTEGER PRIMARY KEY,
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    received_ts BIGINT NOT NULL,
    recipients TEXT NOT NULL
);
INSERT INTO event_push_staging_new SELECT stream_ordering, room_id, event_id, thread_id, received_ts, recipients
    FROM event_push_staging;
DROP TABLE event_push_staging;
ALTER TABLE event_push_staging_new RENAME TO event_push_staging;

CREATE TABLE event_push_actions_new (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    event_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    highlight BOOLEAN NOT NULL,
    actions TEXT NOT NULL,
    received_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, stream_ordering)
) WITHOUT ROWID;
INSERT INTO event_push_actions_new SELECT user_id, room_id, stream_ordering, event_id, thread_id, highlight,
    actions, received_ts FROM event_push_actions;
DROP TABLE event_push_actions;
ALTER TABLE event_push_actions_new RENAME TO event_push_actions;
CREATE INDEX event_push_actions_user_stream ON event_push_actions (user_id, stream_ordering);

CREATE TABLE notification_counts_new (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    notif_count BIGINT NOT NULL,
    highlight_count BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, thread_id)
) WITHOUT ROWID;
INSERT INTO notification_counts_new SELECT user_id, room_id, thread_id, notif_count, highlight_count
    FROM notification_counts;
DROP TABLE notification_counts;
ALTER TABLE notification_counts_new RENAME TO notification_counts;

CREATE TABLE notification_history_new (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    event_id TEXT NOT NULL,
    highlight BOOLEAN NOT NULL,
    actions TEXT NOT NULL,
    received_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, stream_ordering)
) WITHOUT ROWID;
INSERT INTO notification_history_new SELECT user_id, room_id, stream_ordering, event_id, highlight, actions,
    received_ts FROM notification_history;
DROP TABLE notification_history;
ALTER TABLE notification_history_new RENAME TO notification_history;
CREATE INDEX notification_history_received ON notification_history (received_ts);
