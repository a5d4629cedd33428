-- The offline mailbox (issue 14): sealed letters waiting for peers that are offline.
--
-- The index cannot read a letter: `sealed` is a proto::mailbox seal (a Noise X message for the
-- recipient's key), stored as the bytes the sender deposited. Besides it the index keeps only
-- who it is for, who deposited it (the sender's signature proved that), its size and times.
-- UUIDs are lowercase hyphenated text; times are stored like peers' (RFC 3339 UTC with
-- milliseconds, `2026-12-02T12:00:00.000Z`), so text order is time order and the index
-- compares them with bound parameters from its own clock, never SQLite's 'now'.
CREATE TABLE mailbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    recipient    TEXT NOT NULL,
    sender       TEXT NOT NULL,
    size         INTEGER NOT NULL,
    deposited_at TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    -- Last, so reading the columns before it (the caps' counts) never walks its overflow pages.
    sealed       BLOB NOT NULL
);
-- A recipient's letters in deposit order (GET, DELETE ?through=, the per-mailbox caps).
CREATE INDEX mailbox_recipient ON mailbox (recipient, id);
-- A sender's letters in every mailbox (the per-sender cap).
CREATE INDEX mailbox_sender ON mailbox (sender);
-- What the purge deletes.
CREATE INDEX mailbox_expires ON mailbox (expires_at);

-- How many letters and bytes all mailboxes hold, kept by triggers so the global byte cap and
-- the gauges cost one row read, not a sum over every letter.
CREATE TABLE mailbox_total (
    id      INTEGER PRIMARY KEY NOT NULL CHECK (id = 0),
    letters INTEGER NOT NULL,
    bytes   INTEGER NOT NULL
) STRICT;
INSERT INTO mailbox_total (id, letters, bytes) VALUES (0, 0, 0);
CREATE TRIGGER mailbox_counted_insert AFTER INSERT ON mailbox
BEGIN
    UPDATE mailbox_total SET letters = letters + 1, bytes = bytes + NEW.size WHERE id = 0;
END;
CREATE TRIGGER mailbox_counted_delete AFTER DELETE ON mailbox
BEGIN
    UPDATE mailbox_total SET letters = letters - 1, bytes = bytes - OLD.size WHERE id = 0;
END;

-- Senders a recipient refuses mail from.
CREATE TABLE mailbox_blocks (
    recipient TEXT NOT NULL,
    sender    TEXT NOT NULL,
    PRIMARY KEY (recipient, sender)
) WITHOUT ROWID;
