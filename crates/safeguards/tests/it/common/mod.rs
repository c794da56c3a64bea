//! Helpers shared by the integration tests.

// Test helpers outside #[test] functions may fail loudly too.
#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code
)]

use std::path::{Path, PathBuf};

use portcullis_safeguards::dataset::locate_shared_data;

/// The shared data folder, or `None` after printing `skipped: <reason>`.
/// Under `PORTCULLIS_REQUIRE_ALL=1` a missing folder fails the test.
pub fn shared_data_or_skip() -> Option<PathBuf> {
    let found = locate_shared_data(Path::new(env!("CARGO_MANIFEST_DIR")));
    if found.is_none() {
        let reason =
            "shared data not found (set PORTCULLIS_SHARED_DATA or place it at ../shared/data)";
        if std::env::var("PORTCULLIS_REQUIRE_ALL").as_deref() == Ok("1") {
            panic!("{reason}, and PORTCULLIS_REQUIRE_ALL=1");
        }
        println!("skipped: {reason}");
    }
    found
}

pub fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path)
}

/// The committed model with stage 2 attached, as the gateway runs it, or
/// `None` after printing `skipped: <reason>` when the embedding model is
/// not installed. Under `PORTCULLIS_REQUIRE_ALL=1` its absence fails.
pub fn full_cascade_or_skip() -> Option<portcullis_safeguards::Safeguard> {
    let mut safeguard = portcullis_safeguards::Safeguard::builtin().unwrap();
    match safeguard.attach_embedding_model(None) {
        Ok(()) => Some(safeguard),
        Err(error) => {
            let reason = format!("embedding model not found ({error})");
            if std::env::var("PORTCULLIS_REQUIRE_ALL").as_deref() == Ok("1") {
                panic!("{reason}, and PORTCULLIS_REQUIRE_ALL=1");
            }
            println!("skipped: {reason}");
            None
        }
    }
}
