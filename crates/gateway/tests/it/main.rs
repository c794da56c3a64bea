//! The gateway crate's integration tests, one binary: each module below
//! was a test target of its own; one link instead of 8 keeps the build small.

// Test code: a failed step should stop the test with a message.
#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

mod harness;

mod admin;
mod dataplane;
mod governance;
mod hardening;
mod limits;
mod oidc;
mod orders;
mod policies;
mod safeguards;
mod tools;
