//! Test-only helpers shared by the secure-layer test crates; the network harness itself is
//! [`proto::sim`].

// Each test crate uses a different part of the helpers.
#![allow(dead_code)]

pub mod secure;
