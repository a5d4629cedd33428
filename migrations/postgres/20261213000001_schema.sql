-- The index's schema on PostgreSQL: the tables, indexes and rules of the SQLite schema after all
-- of its migrations (../*.sql), written for PostgreSQL. Text that is compared by order (times in
-- RFC 3339, UUIDs, keys) is COLLATE "C", so its order is byte order, as in SQLite, whatever the
-- database's locale. Integers are BIGINT (SQLite's INTEGER), bytes BYTEA (SQLite's BLOB).

CREATE TABLE peers (
    uuid          TEXT COLLATE "C" PRIMARY KEY NOT NULL,  -- lowercase hyphenated
    addr          TEXT NOT NULL,                          -- ip:port as other peers should use it
    name          TEXT,
    registered_at TEXT COLLATE "C" NOT NULL,              -- RFC 3339, UTC, milliseconds
    last_seen     TEXT COLLATE "C" NOT NULL,              -- RFC 3339, UTC, milliseconds
    public_key    TEXT COLLATE "C",                       -- 64 hex digits, lowercase
    token_hash    TEXT COLLATE "C",                       -- SHA-256 of the bearer token, hex
    name_key      TEXT COLLATE "C",                       -- see index-service/src/naming.rs
    ip            TEXT COLLATE "C",
    subnet        TEXT COLLATE "C",
    candidates    TEXT                                    -- the JSON list its owner signed
);
CREATE INDEX peers_last_seen ON peers (last_seen);
CREATE UNIQUE INDEX peers_name_key ON peers (name_key) WHERE name_key IS NOT NULL;
CREATE INDEX peers_origin ON peers (subnet, ip, last_seen);
CREATE INDEX peers_origin_named ON peers (subnet, ip, last_seen) WHERE name IS NOT NULL;
CREATE INDEX peers_unkeyed_names ON peers (uuid) WHERE name IS NOT NULL AND name_key IS NULL;

CREATE TABLE used_signatures (
    signature_hash TEXT COLLATE "C" PRIMARY KEY NOT NULL,  -- hex SHA-256 of the signature bytes
    expires_at     BIGINT NOT NULL                         -- Unix seconds
);
CREATE INDEX used_signatures_expires ON used_signatures (expires_at);

CREATE TABLE room_members (
    room      TEXT COLLATE "C" NOT NULL,
    uuid      TEXT COLLATE "C" NOT NULL REFERENCES peers (uuid) ON DELETE CASCADE,
    joined_at TEXT COLLATE "C" NOT NULL,  -- RFC 3339, UTC
    PRIMARY KEY (room, uuid)
);
CREATE INDEX room_members_uuid ON room_members (uuid);

-- Rows in `peers`, for the global cap, without counting them.
CREATE TABLE peer_count (
    id BIGINT PRIMARY KEY NOT NULL CHECK (id = 0),
    n  BIGINT NOT NULL
);
INSERT INTO peer_count (id, n) VALUES (0, 0);
CREATE FUNCTION peers_counted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE peer_count SET n = n + 1 WHERE id = 0;
    ELSE
        UPDATE peer_count SET n = n - 1 WHERE id = 0;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER peers_counted AFTER INSERT OR DELETE ON peers
    FOR EACH ROW EXECUTE FUNCTION peers_counted();

-- A name needs its key, whatever writes the database.
CREATE FUNCTION peers_name_needs_key() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.name IS NOT NULL AND NEW.name_key IS NULL THEN
        RAISE EXCEPTION 'peers.name_key: a name needs its key (index-service computes it)'
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER peers_name_needs_key BEFORE INSERT OR UPDATE OF name, name_key ON peers
    FOR EACH ROW EXECUTE FUNCTION peers_name_needs_key();

CREATE TABLE mailbox (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    recipient    TEXT COLLATE "C" NOT NULL,
    sender       TEXT COLLATE "C" NOT NULL,
    size         BIGINT NOT NULL,
    deposited_at TEXT COLLATE "C" NOT NULL,
    expires_at   TEXT COLLATE "C" NOT NULL,
    sealed       BYTEA NOT NULL
);
CREATE INDEX mailbox_recipient ON mailbox (recipient, id);
CREATE INDEX mailbox_sender ON mailbox (sender);
CREATE INDEX mailbox_expires ON mailbox (expires_at);

CREATE TABLE mailbox_total (
    id      BIGINT PRIMARY KEY NOT NULL CHECK (id = 0),
    letters BIGINT NOT NULL,
    bytes   BIGINT NOT NULL
);
INSERT INTO mailbox_total (id, letters, bytes) VALUES (0, 0, 0);
CREATE FUNCTION mailbox_counted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE mailbox_total SET letters = letters + 1, bytes = bytes + NEW.size WHERE id = 0;
    ELSE
        UPDATE mailbox_total SET letters = letters - 1, bytes = bytes - OLD.size WHERE id = 0;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER mailbox_counted AFTER INSERT OR DELETE ON mailbox
    FOR EACH ROW EXECUTE FUNCTION mailbox_counted();

CREATE TABLE mailbox_blocks (
    recipient TEXT COLLATE "C" NOT NULL,
    sender    TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (recipient, sender)
);
