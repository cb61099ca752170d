-- Third-party identifiers (email addresses, phone numbers) the homeserver has associated with
-- local accounts (client-server-api "Adding Account Administrative Contact Information";
-- GET /account/3pid). uzel cannot send email or SMS, so clients can never validate a new one:
-- rows come from server administrators. One account per identifier ("Homeservers should prevent
-- the caller from adding a 3PID to their account if it has already been added to another user's
-- account"). Email addresses are stored canonicalised (lower case).
CREATE TABLE user_threepids (
    medium TEXT NOT NULL,                       -- "email" or "msisdn"
    address TEXT NOT NULL,
    user_id TEXT NOT NULL,
    validated_at BIGINT NOT NULL,               -- ms since the epoch
    added_at BIGINT NOT NULL,                   -- ms since the epoch
    PRIMARY KEY (medium, address)
);
CREATE INDEX user_threepids_user ON user_threepids (user_id);
