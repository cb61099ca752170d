-- Application services (application-service-api.md "Pushing events"). SQL lives in
-- appservices/store.py.
--
-- The distributor reads the events, receipts, presence and to-device streams from the positions
-- below, builds transactions per service and advances the positions in the same database
-- transaction, so across restarts nothing is skipped and nothing is built twice.
CREATE TABLE appservice_stream_positions (
    stream_name TEXT NOT NULL PRIMARY KEY,
    position BIGINT NOT NULL
);

-- Transactions not yet acknowledged by their service, sent one at a time in txn_id order. body is
-- the exact JSON sent, so a retry repeats it under the same txnId ("MUST NOT alter ... on retries").
CREATE TABLE appservice_txns (
    as_id TEXT NOT NULL,
    txn_id BIGINT NOT NULL,
    body TEXT NOT NULL,
    event_count INTEGER NOT NULL,
    ephemeral_count INTEGER NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (as_id, txn_id)
);

-- Per service: the last transaction ID handed out (never reused, even once acknowledged rows are
-- deleted) and the last acknowledged one.
CREATE TABLE appservice_state (
    as_id TEXT NOT NULL PRIMARY KEY,
    last_txn_id BIGINT NOT NULL,
    last_acked_txn_id BIGINT NOT NULL,
    last_acked_ts BIGINT
);
