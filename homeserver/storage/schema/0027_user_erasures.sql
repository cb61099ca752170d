-- Accounts deactivated with "erase": true (client-server-api account_deactivation.yaml, "erase").
-- Their events are served redacted to users and servers that could not see them as members
-- (homeserver/accounts/erasure.py).
CREATE TABLE IF NOT EXISTS user_erasures (
    user_id TEXT NOT NULL PRIMARY KEY,
    erased_ts BIGINT NOT NULL
);
