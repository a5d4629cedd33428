//! Test-only helpers shared by the secure-layer test crates (`secure` for all, `flood` for
//! the flood tests); the network harness itself is [`proto::sim`].

// Each test crate uses a different part of the helpers.
#![allow(dead_code)]

pub mod flood;
pub mod secure;
