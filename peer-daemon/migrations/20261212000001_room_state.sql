-- Shared room state (docs/daemon-store.md): each room's Automerge data as appended pieces, in
-- order, each with the signatures of the changes it holds (32-byte hash, 64-byte signature,
-- repeated). At start-up a room stored in many pieces is stored again as one.
CREATE TABLE room_state (
    id   INTEGER PRIMARY KEY AUTOINCREMENT,
    room TEXT NOT NULL,
    data BLOB NOT NULL,
    sigs BLOB NOT NULL
);
CREATE INDEX room_state_by_room ON room_state (room, id);
