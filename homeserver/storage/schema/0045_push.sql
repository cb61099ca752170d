-- Push gateway delivery and notification history (homeserver/push/, homeserver/storage/push_store.py).

-- Delivery progress of each HTTP pusher (push-gateway-api.md "Homeserver behaviour": retry with
-- exponential backoff). Keyed like the pushers table; a pusher without a row has delivered nothing
-- yet and starts with the notifications received after it was created.
-- last_stream_ordering: the last event delivered (or given up on); delivery resumes after it.
-- failure_count / failing_since (ms): consecutive failed attempts of the current event and when
-- they began (NULL when healthy). retry_at (ms): no attempt before this time (the backoff).
CREATE TABLE pusher_delivery (
    user_id TEXT NOT NULL,
    app_id TEXT NOT NULL,
    pushkey TEXT NOT NULL,
    last_stream_ordering BIGINT NOT NULL,
    last_success_ts BIGINT,
    failure_count BIGINT NOT NULL,
    failing_since BIGINT,
    retry_at BIGINT,
    PRIMARY KEY (user_id, app_id, pushkey)
);

-- Every notification a local user was sent, read or not, for GET /notifications
-- (notifications.yaml: ``read`` tells whether a read receipt has passed it since). Copied from
-- event_push_actions in the event's persist transaction; unread-ness is the presence of the
-- matching event_push_actions row. Rows older than 30 days are pruned.
CREATE TABLE notification_history (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    event_id TEXT NOT NULL,
    highlight BOOLEAN NOT NULL,
    actions TEXT NOT NULL,
    received_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, stream_ordering)
);
CREATE INDEX notification_history_received ON notification_history (received_ts);
