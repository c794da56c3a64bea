//! The safeguards crate's integration tests, one binary: each module below
//! was a test target of its own; one link instead of 8 keeps the build small.

// Test code: a failed step should stop the test with a message.
#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

mod common;

mod builtin_model;
mod classify_jsonl;
mod findings_replay;
mod judge_mock;
mod normaliser_fuzz;
mod output_guard_stream;
mod segment_padding;
mod shared_corpus;
mod stage2_model;
