//! Helpers shared by the integration tests: finding the real model and the
//! committed fixtures, and the skip rule for absent model files.

// Each test binary uses a different subset of these helpers; a failed step
// should stop the test with a message.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use portcullis_embed::{Embedder, locate_model_dir};
use serde::Deserialize;

/// The directory of the committed fixtures.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
}

/// The real all-MiniLM-L6-v2 model, loaded once per test binary, or `None`
/// after printing `skipped: …` when it is not installed. Under
/// `PORTCULLIS_REQUIRE_ALL=1` a missing model fails the test instead.
pub fn real_model() -> Option<Arc<Embedder>> {
    static MODEL: OnceLock<Result<Arc<Embedder>, String>> = OnceLock::new();
    let loaded = MODEL.get_or_init(|| match locate_model_dir(None) {
        Ok(directory) => Embedder::load(&directory)
            .map(Arc::new)
            .map_err(|error| format!("model at `{}` failed to load: {error}", directory.display())),
        Err(error) => Err(format!("embedding model not found ({error})")),
    });
    match loaded {
        Ok(embedder) => Some(Arc::clone(embedder)),
        Err(reason) if reason.starts_with("embedding model not found") => {
            if std::env::var("PORTCULLIS_REQUIRE_ALL").as_deref() == Ok("1") {
                panic!("PORTCULLIS_REQUIRE_ALL=1 but {reason}");
            }
            println!("skipped: {reason}");
            None
        }
        // A model that is present but does not load is a real failure.
        Err(reason) => panic!("{reason}"),
    }
}

#[derive(Debug, Deserialize)]
pub struct ReferenceFile {
    pub cases: Vec<ReferenceCase>,
}

#[derive(Debug, Deserialize)]
pub struct ReferenceCase {
    pub text: String,
    pub token_ids: Vec<u32>,
    pub embedding: Vec<f32>,
}

pub fn read_reference(file_name: &str) -> ReferenceFile {
    let path = fixtures_dir().join(file_name);
    let text = std::fs::read_to_string(&path).expect("reference fixture is readable");
    serde_json::from_str(&text).expect("reference fixture is valid JSON")
}

pub fn cosine(left: &[f32], right: &[f32]) -> f32 {
    assert_eq!(left.len(), right.len());
    let dot: f64 = left
        .iter()
        .zip(right)
        .map(|(a, b)| f64::from(*a) * f64::from(*b))
        .sum();
    let left_norm: f64 = left
        .iter()
        .map(|a| f64::from(*a).powi(2))
        .sum::<f64>()
        .sqrt();
    let right_norm: f64 = right
        .iter()
        .map(|b| f64::from(*b).powi(2))
        .sum::<f64>()
        .sqrt();
    (dot / (left_norm * right_norm)) as f32
}

pub fn max_abs_difference(left: &[f32], right: &[f32]) -> f32 {
    left.iter()
        .zip(right)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}
