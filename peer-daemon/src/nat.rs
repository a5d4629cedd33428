//! NAT traversal: the addresses a daemon can be reached at (host candidates, and the
//! server-reflexive and relayed ones a STUN/TURN server tells it).

pub mod agent;
pub mod host;
pub mod servers;
pub mod turn;
