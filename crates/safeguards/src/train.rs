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
    generate_literal_rows, wrap_rows,
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
    generated.extend(generate_literal_rows());
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
        example.weight *= if example.label > 0.5 {
            positive_weight.sqrt()
        } else {
            1.0 / positive_weight.sqrt()
        };
    }
    train_linear(&examples, config)
}

/// Whether a train row belongs to the calibration eighth.
fn is_calibration(row: &LabeledRow) -> bool {
    stable_hash(0xCA11_B8A7, row.split_key.as_bytes()).is_multiple_of(8)
}

/// One calibration row: its stage-1 score, label and kind.
#[derive(Debug, Clone, Copy)]
pub struct CalibrationScore {
    pub score: f32,
    pub malicious: bool,
    /// From one of the everyday benign corpus sources.
    pub everyday: bool,
}

/// Picks thresholds from stage-1 scores of held-out calibration rows.
///
/// `stage1_block` (used when stage 2 is absent) is the lowest threshold at
/// which at most 0.2% of everyday benign rows and at most 2% of all benign
/// rows score at or above it, a margin under the 0.3% and 3% targets. The
/// escalation band starts where 99.5% of malicious rows score above it
/// (raised if more than 4% of everyday rows would escalate) and ends where
/// at most 0.2% of benign rows score above it.
pub fn calibrate_thresholds(scored: &[CalibrationScore]) -> Thresholds {
    let sorted = |filter: &dyn Fn(&CalibrationScore) -> bool| -> Vec<f32> {
        let mut scores: Vec<f32> = scored
            .iter()
            .filter(|s| filter(s))
            .map(|s| s.score)
            .collect();
        scores.sort_by(f32::total_cmp);
        scores
    };
    let malicious = sorted(&|s| s.malicious);
    let benign = sorted(&|s| !s.malicious);
    let everyday = sorted(&|s| !s.malicious && s.everyday);
    let share_at_or_above = |sorted: &[f32], threshold: f32| -> f64 {
        if sorted.is_empty() {
            return 0.0;
        }
        let below = sorted.partition_point(|score| *score < threshold);
        (sorted.len() - below) as f64 / sorted.len() as f64
    };
    let lowest_threshold = |accept: &dyn Fn(f32) -> bool| -> f32 {
        (1..1000)
            .map(|step| step as f32 / 1000.0)
            .find(|t| accept(*t))
            .unwrap_or(0.999)
    };
    let stage1_block = lowest_threshold(&|t| {
        share_at_or_above(&everyday, t) <= 0.002 && share_at_or_above(&benign, t) <= 0.02
    });
    let escalate_high =
        lowest_threshold(&|t| share_at_or_above(&benign, t) <= 0.002).max(stage1_block);
    let malicious_floor = if malicious.is_empty() {
        0.5
    } else {
        let index = ((malicious.len() as f64 - 1.0) * 0.005).floor() as usize;
        malicious.get(index).copied().unwrap_or(0.5)
    };
    let everyday_floor = lowest_threshold(&|t| share_at_or_above(&everyday, t) <= 0.04);
    let escalate_low = malicious_floor.max(everyday_floor).min(stage1_block);
    Thresholds {
        stage1_block,
        escalate_low,
        escalate_high,
        stage2_block: 0.5,
        segment_logit_offset: crate::profile::DEFAULT_SEGMENT_LOGIT_OFFSET,
        segment_short_penalty: crate::profile::DEFAULT_SEGMENT_SHORT_PENALTY,
        segment_stage2_logit_offset: crate::profile::DEFAULT_SEGMENT_STAGE2_LOGIT_OFFSET,
        segment_escalation_relief: 0.0,
    }
}

/// The lowest stage-2 threshold at which escalated benign rows add at most
/// 0.15% false refusals over all everyday rows and 1.5% over all benign rows.
pub fn calibrate_stage2_block(
    escalated: &[CalibrationScore],
    everyday_total: usize,
    benign_total: usize,
) -> f32 {
    (1..1000)
        .map(|step| step as f32 / 1000.0)
        .find(|threshold| {
            let everyday_blocked = escalated
                .iter()
                .filter(|s| !s.malicious && s.everyday && s.score >= *threshold)
                .count();
            let benign_blocked = escalated
                .iter()
                .filter(|s| !s.malicious && s.score >= *threshold)
                .count();
            everyday_blocked as f64 <= 0.0015 * everyday_total as f64
                && benign_blocked as f64 <= 0.015 * benign_total as f64
        })
        .unwrap_or(0.999)
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
    let scored: Vec<CalibrationScore> = data
        .train
        .iter()
        .filter(|row| is_calibration(row))
        .filter_map(|row| {
            let label = row.label?;
            Some(CalibrationScore {
                score: calibration_safeguard
                    .stage1(&row.exchange.classification_text())
                    .score,
                malicious: label == RowLabel::Malicious,
                everyday: EVERYDAY_SOURCES.contains(&row.source.as_str()),
            })
        })
        .collect();
    let mut thresholds = calibrate_thresholds(&scored);
    log(&format!(
        "calibrated stage-1 thresholds on {} rows: {thresholds:?}",
        scored.len()
    ));

    let stage1 = train_stage1(&pairs, config.linear);
    let mut stage2_head: Option<EmbeddingHead> = None;
    if let Some(embedder) = &config.embedder {
        let fit_rows: Vec<LabeledRow> = data
            .train
            .iter()
            .filter(|row| !is_calibration(row))
            .cloned()
            .collect();
        let head = train_stage2_head(&fit_rows, embedder.as_ref(), config, log)?;
        // Calibrate the stage-2 threshold on the calibration rows that the
        // band sends to stage 2, with the head that never saw them.
        let calibration_stage2 = crate::stage2::Stage2::new(embedder.clone(), head.clone());
        let mut escalated = Vec::new();
        for row in data.train.iter().filter(|row| is_calibration(row)) {
            let Some(label) = row.label else { continue };
            let stage1_result = calibration_safeguard.stage1(&row.exchange.classification_text());
            if stage1_result.score >= thresholds.escalate_low
                && stage1_result.score < thresholds.escalate_high
            {
                escalated.push(CalibrationScore {
                    score: calibration_stage2.probability(&stage1_result.deciding_text)?,
                    malicious: label == RowLabel::Malicious,
                    everyday: EVERYDAY_SOURCES.contains(&row.source.as_str()),
                });
            }
        }
        let everyday_total = scored
            .iter()
            .filter(|s| s.everyday && !s.malicious)
            .count()
            .max(1);
        let benign_total = scored.iter().filter(|s| !s.malicious).count().max(1);
        thresholds.stage2_block = calibrate_stage2_block(&escalated, everyday_total, benign_total);
        log(&format!(
            "calibrated stage-2 threshold on {} escalated rows: {}",
            escalated.len(),
            thresholds.stage2_block
        ));
        stage2_head = Some(head);
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
            segment_logit_offset: crate::profile::DEFAULT_SEGMENT_LOGIT_OFFSET,
            segment_short_penalty: crate::profile::DEFAULT_SEGMENT_SHORT_PENALTY,
            segment_stage2_logit_offset: crate::profile::DEFAULT_SEGMENT_STAGE2_LOGIT_OFFSET,
            segment_escalation_relief: 0.0,
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
        if let Some(mut text) = training_texts(row).into_iter().next() {
            // Only the first model window is used, and 256 tokens rarely
            // exceed 1,200 bytes, so longer text would only cost time.
            let mut cut = text.len().min(1_200);
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            texts.push(text);
            labels.push(row.label == Some(RowLabel::Malicious));
        }
    }
    log(&format!("stage 2: embedding {} texts", texts.len()));
    let mut embeddings = Vec::with_capacity(texts.len());
    for (index, text) in texts.iter().enumerate() {
        // The first model window: training texts are single scoring windows
        // of stage 1, and their start carries the request.
        let first = embedder
            .embed_windows(text)?
            .into_iter()
            .next()
            .unwrap_or_default();
        embeddings.push(first);
        if index % 1000 == 0 {
            log(&format!("stage 2: embedded {index}"));
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
