-- One row per registered peer. Text columns so `sqlite3 index.db 'select uuid, addr from peers'`
-- is readable as it is.
CREATE TABLE peers (
    uuid          TEXT PRIMARY KEY NOT NULL,  -- lowercase hyphenated
    addr          TEXT NOT NULL,              -- ip:port as other peers should use it
    name          TEXT,
    registered_at TEXT NOT NULL,              -- RFC 3339, UTC
    last_seen     TEXT NOT NULL               -- RFC 3339, UTC
) STRICT;
