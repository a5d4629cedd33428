-- Offline delivery (docs/mailbox.md): what the daemon remembers about mailbox letters.

-- Our letters waiting in recipients' mailboxes, until their receipt comes.
CREATE TABLE mail_waiting (
    id           INTEGER PRIMARY KEY,          -- the message's line id
    peer         TEXT NOT NULL,                -- the recipient's UUID (hyphenated)
    at_ms        INTEGER NOT NULL              -- the letter's stamp: when it was sealed
) STRICT;

-- Letters taken from our mailbox, so that none is shown twice (kept for 8 days: the index
-- keeps letters at most 7 by default).
CREATE TABLE mail_seen (
    sender       TEXT NOT NULL,                -- the sender's UUID (hyphenated)
    id           INTEGER NOT NULL,             -- the sender's id of the letter
    at_ms        INTEGER NOT NULL,             -- the letter's stamp
    taken_ms     INTEGER NOT NULL,             -- when we took it
    PRIMARY KEY (sender, id, at_ms)
) STRICT, WITHOUT ROWID;

-- Peers whose messages we drop and whose mail the index refuses for us (/block).
CREATE TABLE blocked (
    peer         TEXT PRIMARY KEY              -- UUID (hyphenated)
) STRICT, WITHOUT ROWID;
