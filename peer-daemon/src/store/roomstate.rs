//! The rooms' shared state in the store: appended pieces of Automerge data with their
//! signatures, read back in order at start-up (see [`crate::roomstate`]).

use sqlx::Row;
use sqlx::sqlite::SqliteConnection;

use super::writer::WriteError;
use crate::roomstate::Saved;

/// Most pieces read back (a room stored whole takes one).
const MAX_PIECES: i64 = 100_000;

/// Each room's pieces, in the order they were stored.
pub type SavedStates = Vec<(String, crate::roomstate::Pieces)>;

/// Stores one piece; a whole state replaces the room's pieces.
pub(super) async fn apply(
    connection: &mut SqliteConnection,
    saved: &Saved,
) -> Result<(), WriteError> {
    if saved.replace {
        sqlx::query("DELETE FROM room_state WHERE room = ?1")
            .bind(saved.room.as_str())
            .execute(&mut *connection)
            .await?;
    }
    sqlx::query("INSERT INTO room_state (room, data, sigs) VALUES (?1, ?2, ?3)")
        .bind(saved.room.as_str())
        .bind(saved.data.as_slice())
        .bind(saved.sigs.as_slice())
        .execute(&mut *connection)
        .await?;
    Ok(())
}

/// Every room's pieces.
pub(super) async fn load(connection: &mut SqliteConnection) -> anyhow::Result<SavedStates> {
    let rows = sqlx::query("SELECT room, data, sigs FROM room_state ORDER BY room, id LIMIT ?1")
        .bind(MAX_PIECES)
        .fetch_all(&mut *connection)
        .await?;
    let mut rooms: SavedStates = Vec::new();
    for row in rows {
        let room: String = row.try_get("room")?;
        let piece = (row.try_get("data")?, row.try_get("sigs")?);
        match rooms.last_mut() {
            Some((last, pieces)) if *last == room => pieces.push(piece),
            _ => rooms.push((room, vec![piece])),
        }
    }
    Ok(rooms)
}

#[cfg(test)]
mod tests;
