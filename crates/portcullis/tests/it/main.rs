//! The portcullis crate's integration tests, one binary: each module below
//! was a test target of its own; one link instead of 10 keeps the build small.

// Test code: a failed step should stop the test with a message.
#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

mod common;

mod audit_cli;
mod audit_crash;
mod classify;
mod fuzz_corpora;
mod logs;
mod metrics;
mod order_report;
mod policy_cli;
mod replicas;
mod screening_cli;
mod stage2_setup;
mod storage_faults;
