//! Unit tests of path selection.
