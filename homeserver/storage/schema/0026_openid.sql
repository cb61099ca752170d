-- OpenID tokens (client-server-api "OpenID", POST /user/{userId}/openid/request_token), exchanged
-- by third parties (widgets, Element Call) at GET /_matrix/federation/v1/openid/userinfo. Like
-- access tokens, only the hex SHA-256 of each token is kept. Expired rows are deleted when new
-- tokens are issued.
CREATE TABLE openid_tokens (
    token_hash TEXT NOT NULL PRIMARY KEY,
    user_id TEXT NOT NULL,
    valid_until_ms BIGINT NOT NULL
);
CREATE INDEX openid_tokens_valid_until ON openid_tokens (valid_until_ms);
CREATE INDEX openid_tokens_user ON openid_tokens (user_id);
