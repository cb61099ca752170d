-- Core bookkeeping shared by every area.
CREATE TABLE server_meta (
    key TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
);
