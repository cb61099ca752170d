-- Federation transactions, in and out (federation/transactions_store.py).

-- Inbound: the answer given to each (origin, txn_id) so that a retried PUT /send gets the same
-- response without being processed twice (server-server-api.md "Transactions").
CREATE TABLE federation_received_txns (
    origin TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    response_json TEXT NOT NULL,
    received_ts BIGINT NOT NULL,
    PRIMARY KEY (origin, txn_id)
);
CREATE INDEX federation_received_txns_ts ON federation_received_txns (received_ts);

-- Outbound: the per-destination queues. PDUs are queued by event ID (the JSON is read from
-- events when the transaction is built); EDUs carry their content. queue_id orders both queues.
-- A row is deleted once a transaction holding it was accepted by the destination.
CREATE TABLE federation_outbox_pdus (
    destination TEXT NOT NULL,
    queue_id BIGINT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (destination, queue_id)
);

-- edu_key: EDUs with the same non-NULL key for a destination replace each other (the newest
-- one wins: a receipt of a user in a room, a device-list update of a user and device).
CREATE TABLE federation_outbox_edus (
    destination TEXT NOT NULL,
    queue_id BIGINT NOT NULL,
    edu_type TEXT NOT NULL,
    edu_key TEXT,
    content_json TEXT NOT NULL,
    PRIMARY KEY (destination, queue_id)
);
CREATE INDEX federation_outbox_edus_key ON federation_outbox_edus (destination, edu_key);

-- Back-off state of each destination that failed: the next attempt is not before retry_at_ts.
CREATE TABLE federation_destinations (
    destination TEXT NOT NULL PRIMARY KEY,
    failure_count INTEGER NOT NULL,
    retry_interval_ms BIGINT NOT NULL,
    retry_at_ts BIGINT NOT NULL,
    last_success_ts BIGINT
);
