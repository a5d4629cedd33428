-- Owners and liveness (issue 4).
-- A keyed record carries its Ed25519 public key (hex) and its UUID is derived from that key; a
-- keyless record carries the SHA-256 (hex) of the bearer token handed out at registration. A
-- row with neither (registered before this migration) has no owner: it can only expire.
ALTER TABLE peers ADD COLUMN public_key TEXT;   -- 64 hex digits, lowercase
ALTER TABLE peers ADD COLUMN token_hash TEXT;   -- 64 hex digits: SHA-256 of the bearer token

-- Lookups treat a record whose last_seen is older than the TTL as gone; the purge deletes by
-- this index, so it never scans the table.
CREATE INDEX peers_last_seen ON peers (last_seen);

-- Every accepted signature (registration or owner request) until its timestamp can no longer
-- pass the clock-skew check: a captured signed request cannot be replayed, even after the
-- record was deleted or expired.
CREATE TABLE used_signatures (
    signature_hash TEXT PRIMARY KEY NOT NULL,  -- hex SHA-256 of the signature bytes
    expires_at     INTEGER NOT NULL            -- Unix seconds
) STRICT, WITHOUT ROWID;
