//! What the daemon tells its user: readable lines, or with `--json` one JSON object per line.
//! Every event also goes to subscribers (the local control API's event stream).
//!
//! Three parts: the event schema ([`event`]), the plain-text renderer ([`plain`], which the
//! terminal's coloured renderer in `terminal/render.rs` falls back to), and the fan-out
//! ([`fanout`]) that hands each event to a sink and to subscribers. Their items are re-exported
//! here, so `crate::output::{Output, UiEvent, ...}` is the path everyone uses.

pub mod event;
pub mod fanout;
pub mod plain;
pub mod roomstate;
pub mod stamp;

pub use event::{PeerLine, RoomLine, SessionLine, StateLine, UiEvent, millis};
pub use fanout::{Output, Sink, WriteSink};
pub use plain::{claim_label, clean, indent_continuation, message_context, peer_label};
