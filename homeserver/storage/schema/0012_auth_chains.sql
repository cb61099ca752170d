-- The chain-cover index of the auth DAG (homeserver/storage/auth_chain_store.py; the design is
-- homeserver/protocol/auth_chain.py AuthChainIndex, with chain ids global to the server).
-- Indexed: accepted state events (outliers included) whose auth events are all indexed.

-- The position of an event: the event at (chain_id, sequence_number) reaches every event of its
-- chain with a lower sequence number.
CREATE TABLE event_auth_chains (
    event_id TEXT PRIMARY KEY,
    chain_id BIGINT NOT NULL,
    sequence_number BIGINT NOT NULL
);
CREATE UNIQUE INDEX event_auth_chains_position ON event_auth_chains (chain_id, sequence_number);

-- Reachability across chains, as deltas: the event at (chain_id, from_seq) and every later event
-- of its chain reach target_chain_id up to target_seq.
CREATE TABLE event_auth_chain_links (
    chain_id BIGINT NOT NULL,
    from_seq BIGINT NOT NULL,
    target_chain_id BIGINT NOT NULL,
    target_seq BIGINT NOT NULL,
    PRIMARY KEY (chain_id, from_seq, target_chain_id)
);

-- The chain the next state event of (room_id, type, state_key) prefers to extend.
CREATE TABLE event_auth_chain_keys (
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    chain_id BIGINT NOT NULL,
    PRIMARY KEY (room_id, type, state_key)
);

-- Rooms whose events were stored before this index existed: indexed once at start-up
-- (AuthChainStore.backfill), each row deleted when its room is done.
CREATE TABLE event_auth_chain_backfill (
    room_id TEXT PRIMARY KEY
);
INSERT INTO event_auth_chain_backfill (room_id)
    SELECT DISTINCT room_id FROM events WHERE state_key IS NOT NULL;
