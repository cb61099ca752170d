-- Accounts: users, their profiles, devices, access and refresh tokens, login tokens,
-- registration tokens. Tokens are never stored: only the hex SHA-256 of each token is
-- (homeserver/accounts/auth.py explains why).

-- One row per local account (client-server-api "Account registration and management").
CREATE TABLE users (
    user_id TEXT NOT NULL PRIMARY KEY,
    password_hash TEXT,                         -- bcrypt; NULL: password login impossible
    creation_ts BIGINT NOT NULL,                -- ms since the epoch
    is_admin BOOLEAN NOT NULL DEFAULT FALSE,    -- server admin (shared-secret registration, CLI)
    is_guest BOOLEAN NOT NULL DEFAULT FALSE,
    deactivated BOOLEAN NOT NULL DEFAULT FALSE,
    locked BOOLEAN NOT NULL DEFAULT FALSE,      -- client-server-api "Account locking"
    suspended BOOLEAN NOT NULL DEFAULT FALSE,   -- client-server-api "Account suspension"
    user_type TEXT,                             -- Synapse's user_type (e.g. "bot", "support")
    appservice_id TEXT                          -- the application service that registered it
);
-- Login accepts any capitalisation of an existing user ID (Synapse does the same).
CREATE INDEX users_lower_user_id ON users (LOWER(user_id));

-- Global profile of local users (client-server-api "Profiles"); created with the account,
-- displayname = localpart. Read and written by the profile service.
CREATE TABLE profiles (
    user_id TEXT NOT NULL PRIMARY KEY,
    displayname TEXT,
    avatar_url TEXT
);

-- Client devices (client-server-api "Device management").
CREATE TABLE devices (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    display_name TEXT,
    created_ts BIGINT NOT NULL,
    last_seen_ts BIGINT,
    last_seen_ip TEXT,
    last_seen_user_agent TEXT,
    PRIMARY KEY (user_id, device_id)
);

-- Access tokens (client-server-api "Using access tokens", "Refreshing access tokens").
CREATE TABLE access_tokens (
    token_hash TEXT NOT NULL PRIMARY KEY,
    user_id TEXT NOT NULL,
    device_id TEXT,
    created_ts BIGINT NOT NULL,
    valid_until_ms BIGINT,                      -- NULL: never expires
    refresh_token_hash TEXT,                    -- the refresh token issued with it, if any
    used BOOLEAN NOT NULL DEFAULT FALSE         -- set on first use (revokes the previous refresh token)
);
CREATE INDEX access_tokens_user_device ON access_tokens (user_id, device_id);
CREATE INDEX access_tokens_refresh ON access_tokens (refresh_token_hash);

-- Refresh tokens. A refreshed token points at its successor; it stays valid until the
-- successor (or the access token issued with it) is used, then it is deleted.
CREATE TABLE refresh_tokens (
    token_hash TEXT NOT NULL PRIMARY KEY,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    next_token_hash TEXT
);
CREATE INDEX refresh_tokens_user_device ON refresh_tokens (user_id, device_id);
CREATE INDEX refresh_tokens_next ON refresh_tokens (next_token_hash);

-- Single-use m.login.token tokens (client-server-api "Login", m.login.token).
CREATE TABLE login_tokens (
    token_hash TEXT NOT NULL PRIMARY KEY,
    user_id TEXT NOT NULL,
    expiry_ts BIGINT NOT NULL,
    used BOOLEAN NOT NULL DEFAULT FALSE
);

-- Registration tokens (client-server-api "Token-authenticated registration"; Synapse's columns).
CREATE TABLE registration_tokens (
    token TEXT NOT NULL PRIMARY KEY,
    uses_allowed BIGINT,                        -- NULL: unlimited
    pending BIGINT NOT NULL DEFAULT 0,          -- UIA sessions that completed the stage, not yet registered
    completed BIGINT NOT NULL DEFAULT 0,        -- registrations that used it
    expiry_time BIGINT                          -- ms since the epoch; NULL: never
);
