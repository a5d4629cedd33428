//! peerlink's protocol core, free of I/O: the datagram codec ([`wire`]), the reliable
//! per-peer session state machine ([`Endpoint`]) and the index's HTTP API types ([`api`]).

pub mod api;
pub mod chat;
pub mod display;
mod endpoint;
pub mod identity;
pub mod mailbox;
mod path;
mod recv;
mod replay;
mod rtt;
mod secure;
mod send;
#[cfg(feature = "sim")]
pub mod sim;
pub mod wire;

pub use endpoint::{Config, Endpoint, Event, SendError, Stats, Transmit};
pub use path::PathKind;
pub use secure::{SecureConfig, SecureEndpoint, SecureStats};
pub use send::MsgId;
