-- Room membership (issue 5). A member is a peer record: deleting the record (by its owner or by
-- the purge of expired records) deletes its memberships, and reads only count members whose
-- record is live. Room names follow proto::chat::valid_room (1 to 32 of a-z 0-9 - _).
CREATE TABLE room_members (
    room      TEXT NOT NULL,
    uuid      TEXT NOT NULL REFERENCES peers (uuid) ON DELETE CASCADE,
    joined_at TEXT NOT NULL,  -- RFC 3339, UTC
    PRIMARY KEY (room, uuid)
) STRICT, WITHOUT ROWID;

-- The cascade looks members up by peer.
CREATE INDEX room_members_uuid ON room_members (uuid);
