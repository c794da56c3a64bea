//! Trains the safeguard model from the shared corpus and writes the model
//! files and the training report.
//!
//! ```sh
//! cargo run --release -p portcullis-safeguards --example train -- \
//!     [--corpus DIR] [--out DIR] [--no-studies] [--embedding-model DIR] [--no-stage2] [--stage2-rows N] [--l2 X] [--epochs N]
//! ```
//!
//! The corpus defaults to the shared data's `safeguards/` folder, found as
//! the tests find it; the output defaults to `crates/safeguards/model`. The
//! stage-2 head is trained when the embedding model is found (the same
//! lookup order as the gateway's), unless `--no-stage2` is given.

use std::path::PathBuf;
use std::process::ExitCode;

use std::sync::Arc;

use portcullis_safeguards::MiniLmEmbedder;
use portcullis_safeguards::dataset::locate_shared_data;
use portcullis_safeguards::train::{TrainConfig, train, write_model_dir};

fn main() -> ExitCode {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut corpus_dir = locate_shared_data(&manifest_dir).map(|data| data.join("safeguards"));
    let mut out_dir = manifest_dir.join("model");
    let mut studies = true;
    let mut stage2 = true;
    let mut stage2_rows: Option<usize> = None;
    let mut l2: Option<f32> = None;
    let mut epochs: Option<usize> = None;
    let mut embedding_model: Option<PathBuf> = None;
    let mut arguments = std::env::args().skip(1);
    while let Some(argument) = arguments.next() {
        match argument.as_str() {
            "--corpus" => corpus_dir = arguments.next().map(PathBuf::from),
            "--out" => {
                if let Some(path) = arguments.next() {
                    out_dir = PathBuf::from(path);
                }
            }
            "--no-studies" => studies = false,
            "--no-stage2" => stage2 = false,
            "--l2" => l2 = arguments.next().and_then(|n| n.parse().ok()),
            "--epochs" => epochs = arguments.next().and_then(|n| n.parse().ok()),
            "--stage2-rows" => stage2_rows = arguments.next().and_then(|n| n.parse().ok()),
            "--embedding-model" => embedding_model = arguments.next().map(PathBuf::from),
            other => {
                eprintln!("unknown argument `{other}`");
                return ExitCode::FAILURE;
            }
        }
    }
    let Some(corpus_dir) = corpus_dir else {
        eprintln!("shared corpus not found: set PORTCULLIS_SHARED_DATA or pass --corpus DIR");
        return ExitCode::FAILURE;
    };
    let mut config = TrainConfig::new(corpus_dir);
    config.generalisation_studies = studies;
    if let Some(l2) = l2 {
        config.linear.l2 = l2;
    }
    if let Some(epochs) = epochs {
        config.linear.epochs = epochs;
    }
    if let Some(rows) = stage2_rows {
        config.stage2_max_rows = rows;
    }
    if stage2 {
        match MiniLmEmbedder::locate_and_load(embedding_model.as_deref()) {
            Ok(embedder) => config.embedder = Some(Arc::new(embedder)),
            Err(error) => {
                eprintln!("stage 2 not trained: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    let outcome = match train(&config, &mut |line| eprintln!("{line}")) {
        Ok(outcome) => outcome,
        Err(error) => {
            eprintln!("training failed: {error}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(error) = write_model_dir(&outcome, &out_dir) {
        eprintln!("cannot write the model: {error}");
        return ExitCode::FAILURE;
    }
    let report = &outcome.report;
    println!("== dev corpus\n{}", report.dev_corpus.to_table());
    println!("== dev generated\n{}", report.dev_generated.to_table());
    println!(
        "== dev wrapped (attack success = 100% - recall)\n{}",
        report.dev_wrapped.to_table()
    );
    for study in &report.leave_one_source_out {
        println!(
            "leave-one-source-out {:<40} recall {:?} false refusals {:?}",
            study.held_out,
            study.report.recall.map(|p| p.rate),
            study.report.false_refusal.map(|p| p.rate)
        );
    }
    for study in &report.leave_one_wrapper_family_out {
        println!(
            "leave-one-wrapper-family-out {:<20} recall {:?} false refusals {:?}",
            study.held_out,
            study.report.recall.map(|p| p.rate),
            study.report.false_refusal.map(|p| p.rate)
        );
    }
    ExitCode::SUCCESS
}
