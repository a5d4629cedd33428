-- Confusable-safe names and per-address quotas (issue 9).
--
-- name_key is what names are unique on: skeleton(casefold(NFKC(name))) (index-service's
-- naming module). SQL cannot compute it, so the index fills it in at start-up for every named
-- row that lacks one (db::backfill), before it serves; a name that is no longer acceptable,
-- or whose key an already-keyed row holds, is dropped there.
ALTER TABLE peers ADD COLUMN name_key TEXT;
-- The client IP a record was registered from, and its /24 (IPv4) or /48 (IPv6) subnet, so
-- quotas count live records per address without parsing addr. Filled in at start-up for rows
-- stored before this migration.
ALTER TABLE peers ADD COLUMN ip TEXT;
ALTER TABLE peers ADD COLUMN subnet TEXT;

-- A name needs a keyed registration: keyless records lose theirs.
UPDATE peers SET name = NULL WHERE public_key IS NULL;

-- The NOCASE index gives way to the key (equal ignoring ASCII case implies equal keys).
-- Partial: unnamed records (most of them) never touch it, which keeps registrations cheap.
DROP INDEX peers_name;
CREATE UNIQUE INDEX peers_name_key ON peers (name_key) WHERE name_key IS NOT NULL;

-- One index serves the per-subnet and the per-IP counts (an IP lies in one subnet), so a
-- registration updates one index for the quotas; named rows have a small copy of their own.
CREATE INDEX peers_origin ON peers (subnet, ip, last_seen);
CREATE INDEX peers_origin_named ON peers (subnet, ip, last_seen) WHERE name IS NOT NULL;

-- How many rows peers holds, kept by triggers so the global cap costs one row read, not a
-- count over a million rows, on every registration.
CREATE TABLE peer_count (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 0),
    n  INTEGER NOT NULL
) STRICT;
INSERT INTO peer_count (id, n) SELECT 0, count(*) FROM peers;
CREATE TRIGGER peers_counted_insert AFTER INSERT ON peers
BEGIN
    UPDATE peer_count SET n = n + 1 WHERE id = 0;
END;
CREATE TRIGGER peers_counted_delete AFTER DELETE ON peers
BEGIN
    UPDATE peer_count SET n = n - 1 WHERE id = 0;
END;

-- Whatever writes the database, a name comes with its key, so the unique index on keys
-- always has the say.
CREATE TRIGGER peers_name_needs_key_insert BEFORE INSERT ON peers
WHEN NEW.name IS NOT NULL AND NEW.name_key IS NULL
BEGIN
    SELECT RAISE(ABORT, 'peers.name_key: a name needs its key (index-service computes it)');
END;
CREATE TRIGGER peers_name_needs_key_update BEFORE UPDATE OF name, name_key ON peers
WHEN NEW.name IS NOT NULL AND NEW.name_key IS NULL
BEGIN
    SELECT RAISE(ABORT, 'peers.name_key: a name needs its key (index-service computes it)');
END;
