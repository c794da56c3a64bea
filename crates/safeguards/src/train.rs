//! Reproducible training of stage 1 (and of the stage-2 head when an
//! embedder is supplied), threshold calibration, the dev evaluation and the
//! generalisation studies (leave-one-source-out, leave-one-wrapper-family-out).
//!
//! Data: the shared corpus plus rows generated from `data/` (see
//! [`crate::generate`]). Rows are split by [`crate::dataset::split_of`]; dev
//! rows are never trained on. Thresholds are calibrated on a fixed eighth of
//! the train split (by hash of the split key) with a model trained on the
//! other seven eighths, so that dev results are not tuned on dev.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::classifier::{ModelManifest, Safeguard, windows};
use crate::dataset::{EVERYDAY_SOURCES, LabeledRow, RowLabel, Split, load_corpus};
use crate::error::SafeguardError;
use crate::eval::{EvalReport, GroupReport, evaluate};
use crate::generate::{
    GenerationConfig, WRAPPER_FAMILIES, WrapperKind, generate_direct_rows, generate_injection_rows,
    wrap_rows,
};
use crate::normalise::{ViewKind, normalise};
use crate::profile::{SafeguardProfile, Thresholds};
use crate::rng::stable_hash;
use crate::stage1::{HashedLinearModel, LinearTrainingConfig, SparseExample, train_linear};
use crate::stage2::{EmbeddingHead, SentenceEmbedder, train_head};

/// Everything that determines a training run.
#[derive(Clone)]
pub struct TrainConfig {
    /// The shared corpus folder (`.../shared/data/safeguards`).
    pub corpus_dir: PathBuf,
    pub linear: LinearTrainingConfig,
    pub generation: GenerationConfig,
    pub wrap_seed: u64,
    /// Run leave-one-source-out and leave-one-wrapper-family-out studies.
    pub generalisation_studies: bool,
    /// When set, the stage-2 head is trained on this engine's embeddings.
    pub embedder: Option<Arc<dyn SentenceEmbedder>>,
    /// The most training rows embedded for the stage-2 head.
    pub stage2_max_rows: usize,
}

impl TrainConfig {
    pub fn new(corpus_dir: PathBuf) -> Self {
        Self {
            corpus_dir,
            linear: LinearTrainingConfig::default(),
            generation: GenerationConfig::default(),
            wrap_seed: 0x5EED_0003,
            generalisation_studies: true,
            embedder: None,
            stage2_max_rows: 12_000,
        }
    }
}

/// The train rows and the dev sets.
#[derive(Debug, Clone, Default)]
pub struct TrainingData {
    pub train: Vec<LabeledRow>,
    /// Corpus rows on the dev side of the split.
    pub dev_corpus: Vec<LabeledRow>,
    /// Generated rows (direct and injection) whose task is on the dev side.
    pub dev_generated: Vec<LabeledRow>,
    /// Every dev malicious row under every wrapper, plus wrapped dev benign rows.
    pub dev_wrapped: Vec<LabeledRow>,
}

/// Builds the train rows and dev sets from corpus rows and generated rows.
pub fn build_training_data(
    corpus: Vec<LabeledRow>,
    generation: GenerationConfig,
    wrap_seed: u64,
) -> TrainingData {
    let mut generated = generate_direct_rows(generation);
    generated.extend(generate_injection_rows(generation));
    let mut data = TrainingData::default();
    for row in corpus {
        match row.split() {
            Split::Train => data.train.push(row),
            Split::Dev => data.dev_corpus.push(row),
        }
    }
    for row in generated {
        match row.split() {
            Split::Train => data.train.push(row),
            Split::Dev => data.dev_generated.push(row),
        }
    }
    // Training wrappers: every malicious row twice and as many benign rows,
    // so that no wrapper is evidence of malice by itself.
    let kinds = WrapperKind::ALL;
    let malicious: Vec<&LabeledRow> = data
        .train
        .iter()
        .filter(|r| r.label == Some(RowLabel::Malicious))
        .collect();
    let benign: Vec<&LabeledRow> = data
        .train
        .iter()
        .filter(|r| r.label != Some(RowLabel::Malicious) && r.wrapper.is_none())
        .collect();
    let mut wrapped = wrap_rows(&malicious, &kinds, Split::Train, wrap_seed);
    wrapped.extend(wrap_rows(&malicious, &kinds, Split::Train, wrap_seed ^ 1));
    let benign_sample: Vec<&LabeledRow> = benign
        .iter()
        .filter(|row| stable_hash(wrap_seed, row.id.as_bytes()) % 100 < 45)
        .copied()
        .collect();
    wrapped.extend(wrap_rows(
        &benign_sample,
        &kinds,
        Split::Train,
        wrap_seed ^ 2,
    ));
    data.train.extend(wrapped);
    // Dev wrappers: every dev malicious row under every wrapper kind, with
    // templates from the dev side only.
    let dev_malicious: Vec<&LabeledRow> = data
        .dev_corpus
        .iter()
        .chain(&data.dev_generated)
        .filter(|r| r.label == Some(RowLabel::Malicious))
        .collect();
    for (index, kind) in kinds.iter().enumerate() {
        data.dev_wrapped.extend(wrap_rows(
            &dev_malicious,
            &[*kind],
            Split::Dev,
            wrap_seed ^ (100 + index as u64),
        ));
    }
    let dev_benign: Vec<&LabeledRow> = data
        .dev_corpus
        .iter()
        .chain(&data.dev_generated)
        .filter(|r| r.label == Some(RowLabel::Benign) && r.wrapper.is_none())
        .filter(|row| stable_hash(wrap_seed, row.id.as_bytes()) % 100 < 40)
        .collect();
    data.dev_wrapped
        .extend(wrap_rows(&dev_benign, &kinds, Split::Dev, wrap_seed ^ 3));
    data
}

/// The texts stage 1 is trained on for one row. Benign rows contribute
/// every view; malicious rows contribute the views that reveal the payload
/// (the decoded ones when there are any), since an encoded form on its own
/// is not evidence. Long texts contribute each scoring window.
pub fn training_texts(row: &LabeledRow) -> Vec<String> {
    let normalised = normalise(&row.exchange.classification_text());
    let revealing: Vec<&str> =
        if row.label == Some(RowLabel::Malicious) && normalised.views.len() > 1 {
            normalised
                .views
                .iter()
                .filter(|view| view.kind != ViewKind::Canonical)
                .map(|view| view.text.as_str())
                .collect()
        } else {
            normalised
                .views
                .iter()
                .map(|view| view.text.as_str())
                .collect()
        };
    revealing
        .into_iter()
        .flat_map(|text| windows(text).into_iter().map(str::to_owned))
        .collect()
}

fn row_examples(row: &LabeledRow, hash_bits: u8) -> Vec<SparseExample> {
    let malicious = row.label == Some(RowLabel::Malicious);
    training_texts(row)
        .iter()
        .map(|text| SparseExample::from_text(text, malicious, 1.0, hash_bits))
        .collect()
}

/// Trains stage 1 on the given rows' examples with balanced class weights.
fn train_stage1(
    examples_by_row: &[(&LabeledRow, &Vec<SparseExample>)],
    config: LinearTrainingConfig,
) -> HashedLinearModel {
    let mut examples: Vec<SparseExample> = Vec::new();
    for (_, row_examples) in examples_by_row {
        examples.extend(row_examples.iter().cloned());
    }
    let positives = examples.iter().filter(|e| e.label > 0.5).count().max(1);
    let negatives = examples.iter().filter(|e| e.label <= 0.5).count().max(1);
    let positive_weight = negatives as f32 / positives as f32;
    for example in &mut examples {
        example.weight = if example.label > 0.5 {
            positive_weight.sqrt()
        } else {
            1.0 / positive_weight.sqrt()
        };
    }
    train_linear(&examples, config)
}

/// Whether a train row belongs to the calibration eighth.
fn is_calibration(row: &LabeledRow) -> bool {
    stable_hash(0xCA11_B8A7, row.split_key.as_bytes()) % 8 == 0
}

/// Picks thresholds from stage-1 scores of held-out calibration rows.
///
/// `stage1_block` is the lowest threshold at which the everyday benign false
/// refusal rate is at most 0.1% and the overall benign rate at most 1%, which
/// leaves a margin under the 0.3% and 3% targets. The escalation band spans
/// from the score that keeps 99.5% of malicious rows above it (capped so that
/// at most 4% of everyday benign rows escalate) to the score above which
/// fewer than 0.05% of benign rows fall.
pub fn calibrate_thresholds(scored: &[(f32, RowLabel, bool)]) -> Thresholds {
    let mut malicious: Vec<f32> = scored
        .iter()
        .filter(|s| s.1 == RowLabel::Malicious)
        .map(|s| s.0)
        .collect();
    let mut benign: Vec<f32> = scored
        .iter()
        .filter(|s| s.1 != RowLabel::Malicious)
        .map(|s| s.0)
        .collect();
    let mut everyday: Vec<f32> = scored
        .iter()
        .filter(|s| s.1 != RowLabel::Malicious && s.2)
        .map(|s| s.0)
        .collect();
    malicious.sort_by(f32::total_cmp);
    benign.sort_by(f32::total_cmp);
    everyday.sort_by(f32::total_cmp);
    let share_at_or_above = |sorted: &[f32], threshold: f32| -> f64 {
        if sorted.is_empty() {
            return 0.0;
        }
        let below = sorted.partition_point(|score| *score < threshold);
        (sorted.len() - below) as f64 / sorted.len() as f64
    };
    let mut stage1_block = 0.5f32;
    for step in 1..1000 {
        let threshold = step as f32 / 1000.0;
        if share_at_or_above(&everyday, threshold) <= 0.001
            && share_at_or_above(&benign, threshold) <= 0.01
        {
            stage1_block = threshold;
            break;
        }
    }
    let quantile = |sorted: &[f32], q: f64| -> f32 {
        if sorted.is_empty() {
            return 0.5;
        }
        let index = ((sorted.len() as f64 - 1.0) * q).floor() as usize;
        sorted.get(index).copied().unwrap_or(0.5)
    };
    let mut escalate_low = quantile(&malicious, 0.005).min(stage1_block);
    while share_at_or_above(&everyday, escalate_low) > 0.04 && escalate_low < stage1_block {
        escalate_low += 0.005;
    }
    let mut escalate_high = stage1_block;
    while share_at_or_above(&benign, escalate_high) > 0.0005 && escalate_high < 0.995 {
        escalate_high += 0.005;
    }
    Thresholds {
        stage1_block,
        escalate_low: escalate_low.min(escalate_high),
        escalate_high,
        stage2_block: 0.5,
    }
}

/// The result of one hold-out study.
#[derive(Debug, Clone, Serialize)]
pub struct HoldOutResult {
    /// The source or wrapper family left out of training.
    pub held_out: String,
    /// How the left-out rows fare with a model that never saw them.
    pub report: GroupReport,
}

/// Everything a training run reports.
#[derive(Debug, Clone, Serialize)]
pub struct TrainingReport {
    pub train_rows: usize,
    pub train_examples: usize,
    pub train_rows_by_source: BTreeMap<String, usize>,
    pub thresholds: Thresholds,
    /// Dev corpus rows (the primary targets).
    pub dev_corpus: EvalReport,
    pub dev_generated: EvalReport,
    /// Attack success = 1 - recall on each wrapper's dev malicious rows.
    pub dev_wrapped: EvalReport,
    pub leave_one_source_out: Vec<HoldOutResult>,
    pub leave_one_wrapper_family_out: Vec<HoldOutResult>,
    pub stage2_trained: bool,
}

/// A trained safeguard and its report.
pub struct TrainOutcome {
    pub safeguard: Safeguard,
    pub report: TrainingReport,
}

fn stage1_only_profile(thresholds: Thresholds) -> SafeguardProfile {
    let mut profile = SafeguardProfile::cyber(thresholds);
    profile.allow_stage1_only = true;
    profile
}

/// Trains stage 1 (and the stage-2 head when `config.embedder` is set),
/// calibrates thresholds, evaluates on dev and runs the generalisation
/// studies. `log` receives progress lines.
pub fn train(
    config: &TrainConfig,
    log: &mut dyn FnMut(&str),
) -> Result<TrainOutcome, SafeguardError> {
    let corpus = load_corpus(&config.corpus_dir)?;
    if corpus.is_empty() {
        return Err(SafeguardError::Training {
            reason: format!("no rows in `{}`", config.corpus_dir.display()),
        });
    }
    let data = build_training_data(corpus, config.generation, config.wrap_seed);
    log(&format!(
        "rows: train {}, dev corpus {}, dev generated {}, dev wrapped {}",
        data.train.len(),
        data.dev_corpus.len(),
        data.dev_generated.len(),
        data.dev_wrapped.len()
    ));
    let hash_bits = config.linear.hash_bits;
    let examples: Vec<Vec<SparseExample>> = data
        .train
        .iter()
        .map(|row| row_examples(row, hash_bits))
        .collect();
    let pairs: Vec<(&LabeledRow, &Vec<SparseExample>)> = data.train.iter().zip(&examples).collect();
    let train_examples = examples.iter().map(Vec::len).sum();
    log(&format!("stage 1: {train_examples} examples"));

    // Calibration: train on seven eighths, score the held-out eighth.
    let fit_pairs: Vec<_> = pairs
        .iter()
        .filter(|(row, _)| !is_calibration(row))
        .copied()
        .collect();
    let calibration_model = train_stage1(&fit_pairs, config.linear);
    let calibration_safeguard =
        Safeguard::from_models(calibration_model, None, placeholder_manifest(config, 0));
    let scored: Vec<(f32, RowLabel, bool)> = data
        .train
        .iter()
        .filter(|row| is_calibration(row))
        .filter_map(|row| {
            let label = row.label?;
            let score = calibration_safeguard
                .stage1(&row.exchange.classification_text())
                .score;
            Some((
                score,
                label,
                EVERYDAY_SOURCES.contains(&row.source.as_str()),
            ))
        })
        .collect();
    let thresholds = calibrate_thresholds(&scored);
    log(&format!(
        "calibrated thresholds on {} rows: {thresholds:?}",
        scored.len()
    ));

    let stage1 = train_stage1(&pairs, config.linear);
    let mut stage2_head: Option<EmbeddingHead> = None;
    if let Some(embedder) = &config.embedder {
        stage2_head = Some(train_stage2_head(
            &data.train,
            embedder.as_ref(),
            config,
            log,
        )?);
    }
    let manifest = ModelManifest {
        recommended_thresholds: thresholds,
        stage2_head_trained: stage2_head.is_some(),
        ..placeholder_manifest(config, data.train.len())
    };
    let mut safeguard = Safeguard::from_models(stage1, stage2_head.clone(), manifest);
    if let (Some(embedder), Some(head)) = (&config.embedder, stage2_head) {
        safeguard = safeguard.with_stage2(crate::stage2::Stage2::new(embedder.clone(), head));
    }
    let profile = if safeguard.has_stage2() {
        SafeguardProfile::cyber(thresholds)
    } else {
        stage1_only_profile(thresholds)
    };
    let dev_corpus = evaluate(&data.dev_corpus, &safeguard, &profile, &mut |_, _| {});
    log("dev corpus evaluated");
    let dev_generated = evaluate(&data.dev_generated, &safeguard, &profile, &mut |_, _| {});
    let dev_wrapped = evaluate(&data.dev_wrapped, &safeguard, &profile, &mut |_, _| {});
    log("dev wrapped evaluated");

    let mut leave_one_source_out = Vec::new();
    let mut leave_one_wrapper_family_out = Vec::new();
    if config.generalisation_studies {
        let stage1_profile = stage1_only_profile(thresholds);
        let mut sources: Vec<String> = data
            .train
            .iter()
            .chain(&data.dev_corpus)
            .map(|row| source_group(&row.source))
            .collect();
        sources.sort();
        sources.dedup();
        for source in sources {
            let kept: Vec<_> = pairs
                .iter()
                .filter(|(row, _)| source_group(&row.source) != source)
                .copied()
                .collect();
            let model = train_stage1(&kept, config.linear);
            let held_out_safeguard =
                Safeguard::from_models(model, None, placeholder_manifest(config, kept.len()));
            // Every row of the source, train and dev alike, is unseen by this
            // model; wrapped training copies are excluded so the measure is
            // of the plain rows.
            let held_out_rows: Vec<LabeledRow> = data
                .train
                .iter()
                .chain(&data.dev_corpus)
                .chain(&data.dev_generated)
                .filter(|row| {
                    source_group(&row.source) == source
                        && row
                            .wrapper
                            .as_deref()
                            .is_none_or(|w| w.starts_with("rephrase"))
                })
                .cloned()
                .collect();
            let report = evaluate(
                &held_out_rows,
                &held_out_safeguard,
                &stage1_profile,
                &mut |_, _| {},
            );
            log(&format!("leave-one-source-out `{source}` done"));
            leave_one_source_out.push(HoldOutResult {
                held_out: source,
                report: report.overall,
            });
        }
        for family in WRAPPER_FAMILIES {
            let kept: Vec<_> = pairs
                .iter()
                .filter(|(row, _)| row.wrapper_family() != Some(*family))
                .copied()
                .collect();
            let model = train_stage1(&kept, config.linear);
            let held_out_safeguard =
                Safeguard::from_models(model, None, placeholder_manifest(config, kept.len()));
            let held_out_rows: Vec<LabeledRow> = data
                .dev_wrapped
                .iter()
                .chain(&data.dev_generated)
                .filter(|row| row.wrapper_family() == Some(*family))
                .cloned()
                .collect();
            let report = evaluate(
                &held_out_rows,
                &held_out_safeguard,
                &stage1_profile,
                &mut |_, _| {},
            );
            log(&format!("leave-one-wrapper-family-out `{family}` done"));
            leave_one_wrapper_family_out.push(HoldOutResult {
                held_out: (*family).to_owned(),
                report: report.overall,
            });
        }
    }
    let mut train_rows_by_source = BTreeMap::new();
    for row in &data.train {
        *train_rows_by_source
            .entry(row.source.clone())
            .or_insert(0usize) += 1;
    }
    let report = TrainingReport {
        train_rows: data.train.len(),
        train_examples,
        train_rows_by_source,
        thresholds,
        dev_corpus,
        dev_generated,
        dev_wrapped,
        leave_one_source_out,
        leave_one_wrapper_family_out,
        stage2_trained: safeguard.stage2_head().is_some(),
    };
    Ok(TrainOutcome { safeguard, report })
}

/// Generated sources are studied as one group: leaving out only one of them
/// would leave its near relatives in training.
fn source_group(source: &str) -> String {
    if source.starts_with("generated_") {
        "generated (all)".to_owned()
    } else {
        source.to_owned()
    }
}

fn placeholder_manifest(config: &TrainConfig, training_rows: usize) -> ModelManifest {
    ModelManifest {
        format_version: 1,
        recommended_thresholds: Thresholds {
            stage1_block: 0.5,
            escalate_low: 0.5,
            escalate_high: 0.5,
            stage2_block: 0.5,
        },
        stage1_hash_bits: config.linear.hash_bits,
        training_seed: config.linear.seed,
        training_rows,
        stage2_head_trained: false,
    }
}

/// Trains the stage-2 head on embeddings of a deterministic sample of the
/// train rows' revealing texts (every malicious row, benign rows sampled to
/// fill `stage2_max_rows`).
fn train_stage2_head(
    train: &[LabeledRow],
    embedder: &dyn SentenceEmbedder,
    config: &TrainConfig,
    log: &mut dyn FnMut(&str),
) -> Result<EmbeddingHead, SafeguardError> {
    let malicious: Vec<&LabeledRow> = train
        .iter()
        .filter(|r| r.label == Some(RowLabel::Malicious))
        .collect();
    let benign: Vec<&LabeledRow> = train
        .iter()
        .filter(|r| r.label.is_some() && r.label != Some(RowLabel::Malicious))
        .collect();
    let malicious_budget = (config.stage2_max_rows / 2).min(malicious.len());
    let benign_budget = config
        .stage2_max_rows
        .saturating_sub(malicious_budget)
        .min(benign.len());
    let pick = |rows: &[&LabeledRow], budget: usize| -> Vec<LabeledRow> {
        let mut keyed: Vec<(u64, &LabeledRow)> = rows
            .iter()
            .map(|r| (stable_hash(config.linear.seed, r.id.as_bytes()), *r))
            .collect();
        keyed.sort_by_key(|(key, _)| *key);
        keyed
            .into_iter()
            .take(budget)
            .map(|(_, r)| r.clone())
            .collect()
    };
    let mut chosen = pick(&malicious, malicious_budget);
    chosen.extend(pick(&benign, benign_budget));
    let mut texts = Vec::new();
    let mut labels = Vec::new();
    for row in &chosen {
        // The head scores the deciding window at inference; train on the
        // first revealing window of each row to match.
        if let Some(text) = training_texts(row).into_iter().next() {
            texts.push(text);
            labels.push(row.label == Some(RowLabel::Malicious));
        }
    }
    log(&format!("stage 2: embedding {} texts", texts.len()));
    let mut embeddings = Vec::with_capacity(texts.len());
    for (batch_index, batch) in texts.chunks(64).enumerate() {
        let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
        embeddings.extend(embedder.embed_batch(&refs)?);
        if batch_index % 20 == 0 {
            log(&format!("stage 2: embedded {}", embeddings.len()));
        }
    }
    let positives = labels.iter().filter(|l| **l).count().max(1) as f32;
    let negatives = labels.iter().filter(|l| !**l).count().max(1) as f32;
    let weights: Vec<f32> = labels
        .iter()
        .map(|l| {
            if *l {
                (negatives / positives).sqrt()
            } else {
                (positives / negatives).sqrt()
            }
        })
        .collect();
    Ok(train_head(
        &embeddings,
        &labels,
        &weights,
        30,
        config.linear.seed,
    ))
}

/// Writes the model files (`stage1.bin`, `stage2_head.bin`, `manifest.json`)
/// and `training_report.json` into `directory`.
pub fn write_model_dir(outcome: &TrainOutcome, directory: &Path) -> Result<(), SafeguardError> {
    let write = |name: &str, bytes: &[u8]| {
        let path = directory.join(name);
        std::fs::write(&path, bytes).map_err(|source| SafeguardError::Io { path, source })
    };
    std::fs::create_dir_all(directory).map_err(|source| SafeguardError::Io {
        path: directory.to_path_buf(),
        source,
    })?;
    let safeguard = &outcome.safeguard;
    write("stage1.bin", &safeguard.stage1_model().to_bytes())?;
    write(
        "stage2_head.bin",
        &safeguard
            .stage2_head()
            .map(EmbeddingHead::to_bytes)
            .unwrap_or_default(),
    )?;
    let to_json = |value: &dyn erased::Json| value.json();
    write("manifest.json", to_json(safeguard.manifest()).as_bytes())?;
    write("training_report.json", to_json(&outcome.report).as_bytes())?;
    Ok(())
}

mod erased {
    /// Pretty JSON for any serialisable value, behind a trait object so one
    /// closure can serialise different types.
    pub trait Json {
        fn json(&self) -> String;
    }

    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> String {
            let mut text = serde_json::to_string_pretty(self)
                .unwrap_or_else(|error| format!("{{\"error\": \"{error}\"}}"));
            text.push('\n');
            text
        }
    }
}
