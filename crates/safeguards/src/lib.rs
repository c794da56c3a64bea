//! Cyber-misuse safeguards for the `cyber` profile: normalisation of
//! untrusted text into views (NFKC, confusables, invisible characters, tag
//! characters, embedded encodings), a classifier cascade (a hashed n-gram
//! logistic regression as stage 1, an embedding head as stage 2, an optional
//! LLM judge as stage 3) over the whole exchange, a runtime-agnostic
//! streaming output guard, training and evaluation, the `classify` JSONL
//! contract, and replay of reported bypasses (findings).
//!
//! This crate knows nothing about HTTP servers, storage or the CLI: the
//! gateway and the CLI call [`Safeguard`], [`OutputGuard`], [`train::train`],
//! [`eval::evaluate`], [`jsonl::classify_jsonl`] and
//! [`findings::replay_findings`].

pub mod category;
pub mod classifier;
pub mod dataset;
pub mod decode;
mod error;
pub mod eval;
pub mod exchange;
pub mod features;
pub mod findings;
pub mod generate;
pub mod jsonl;
pub mod judge;
pub mod normalise;
pub mod output_guard;
pub mod profile;
pub mod rng;
pub mod segment;
pub mod stage1;
pub mod stage2;
pub mod train;

pub use category::CyberCategory;

/// The version of the written rules the `cyber` classifier approximates
/// (`docs/safeguards/CONSTITUTION.md`). Every safeguard decision in the
/// audit log records it.
pub const CYBER_CONSTITUTION_VERSION: &str = "cyber-constitution v1.0";

pub use classifier::{DecidingStage, ModelManifest, Safeguard, SafeguardAction, SafeguardVerdict};
pub use error::SafeguardError;
pub use exchange::{Exchange, ExchangeMessage};
pub use output_guard::{GuardStep, OutputBlock, OutputGuard, SafeguardScreen, TextScreen};
pub use profile::{
    JudgeConfig, JudgeFailureMode, OutputGuardSettings, ProfileAction, SafeguardProfile, Thresholds,
};
pub use stage2::{EmbeddingHead, MiniLmEmbedder, SentenceEmbedder, Stage2};

#[cfg(test)]
mod constitution_tests {
    #[test]
    fn the_recorded_version_is_the_published_one() {
        let document = include_str!("../../../docs/safeguards/CONSTITUTION.md");
        assert!(
            document.contains(&format!(
                "| Version | **{}** |",
                super::CYBER_CONSTITUTION_VERSION
            )),
            "CONSTITUTION.md does not state version {}",
            super::CYBER_CONSTITUTION_VERSION
        );
    }
}
