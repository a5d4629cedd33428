-- The daemon's message store (docs/daemon-store.md): every message sent and received with its
-- delivery state, and the sessions as the daemon last saved them.

CREATE TABLE lines (
    id           INTEGER PRIMARY KEY,          -- Line.id, unique across runs
    at_ms        INTEGER NOT NULL,             -- Unix milliseconds
    session_kind TEXT NOT NULL,                -- 'room' | 'private'
    session      TEXT NOT NULL,                -- room name, or the peer's UUID (hyphenated)
    sender       TEXT,                         -- the sender's UUID; NULL = our own message
    name         TEXT,                         -- the sender's name, when known
    text         TEXT NOT NULL,
    action       INTEGER NOT NULL,             -- 1 = a /me action
    state        TEXT NOT NULL,                -- 'received' | 'queued' | 'delivered' | 'failed'
    rtt_ms       REAL,                         -- delivered: round-trip time
    delivered    INTEGER,                      -- delivered room messages: members that acknowledged
    total        INTEGER,                      -- delivered room messages: members it was sent to
    reason       TEXT                          -- failed: why
) STRICT;

CREATE INDEX lines_by_session ON lines (session_kind, session, id);
-- Start-up marks the lines a previous run left queued as failed: without this it scans them all.
CREATE INDEX lines_queued ON lines (id) WHERE state = 'queued';

CREATE TABLE sessions (
    n            INTEGER PRIMARY KEY,          -- the session's stable number
    kind         TEXT NOT NULL,                -- 'room' | 'private'
    session      TEXT NOT NULL,                -- room name, or the peer's UUID (hyphenated)
    unread       INTEGER NOT NULL
) STRICT;

-- One row once the sessions were saved; none before the first save.
CREATE TABLE meta (
    active       INTEGER NOT NULL,             -- the active session's number
    next_n       INTEGER NOT NULL              -- the number the next new session gets
) STRICT;
