//! The audit crate's integration tests, one binary: each module below
//! was a test target of its own; one link instead of 5 keeps the build small.

// Test code: a failed step should stop the test with a message.
#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

mod common;

mod crash;
mod log;
mod merkle_vectors;
mod random_appends;
mod tamper;
