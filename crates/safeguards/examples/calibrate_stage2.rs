//! Chooses the thresholds of a fine-tuned stage-2 classifier through the
//! real cascade, and writes them into its `stage2.json`.
//!
//! ```sh
//! cargo run -p portcullis-safeguards --example calibrate_stage2 -- [--corpus DIR] [--model DIR] [--write]
//! ```
//!
//! `--model DIR` names a fine-tuned classifier directory (the output of
//! `training/stage2/finetune.py`); without it the built-in one is
//! calibrated. The rows are the calibration eighth of the training data
//! (corpus, generated and wrapped rows, as `train::build_training_data`
//! builds them), which the fine-tuning never trains on; each is read plain,
//! with one everyday sentence in front of it, and between three everyday
//! sentences before and two after. Stage 1 and its
//! thresholds are the committed ones.
//!
//! The rule: over a grid of `escalate_low` (where the escalation band
//! starts), `segment_escalation_relief` (0 to 3, step 0.5),
//! `segment_stage2_logit_offset` (0 to 4, step 0.5) and `stage2_block`
//! (0.30 to 0.99, step 0.01), keep the settings at which at most 4% of the
//! everyday benign readings escalate (the cost target is 5%)
//! and stage 2 adds at most 0.15% of the everyday benign readings and 1.5%
//! of all benign readings to what stage 1 alone refuses (the budgets
//! `train::calibrate_stage2_block` applies to the head over base
//! embeddings); of those, the one with the best recall on malicious
//! readings (ties: the higher block, the larger offset, the higher band
//! start, the smaller relief). A band that starts lower hands stage 2 the requests stage 1 has
//! never seen the like of, which is where a fine-tuned encoder earns its
//! cost. `--write` stores the result in the directory's `stage2.json` (for
//! the built-in one, `model/stage2/stage2.json`).

use std::path::PathBuf;
use std::process::ExitCode;

use portcullis_safeguards::dataset::{
    EVERYDAY_SOURCES, LabeledRow, RowLabel, load_corpus, locate_shared_data,
};
use portcullis_safeguards::rng::stable_hash;
use portcullis_safeguards::stage1::sigmoid;
use portcullis_safeguards::train::{TrainConfig, build_training_data};
use portcullis_safeguards::{Safeguard, Thresholds};

const PADDING_SENTENCES: &[&str] = &[
    "I hope you had a relaxing weekend with your family.",
    "The weather here has been unusually warm for November.",
    "Could you also recommend a good book about the history of Rome?",
    "Thanks again for the help with my spreadsheet formulas yesterday.",
    "Good morning, hope all is well.",
];

const EVERYDAY_BUDGET: f64 = 0.0015;
const BENIGN_BUDGET: f64 = 0.015;

struct Reading {
    malicious: bool,
    everyday: bool,
    /// The stage-1 score (the larger of whole text and best segment).
    score: f32,
    whole_score: f32,
    /// The best segment's stage-1 score after the segment offset.
    segment_score: f32,
    /// Whether stage 1 handed stage 2 a segment other than the whole text.
    has_other_segments: bool,
    /// Stage-2 probabilities, when `score` is in the widest band tried.
    whole_probability: f32,
    segment_probabilities: Vec<f32>,
}

/// Band starts tried below the model set's own.
const ESCALATE_LOW_GRID: &[f32] = &[0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5];
const EVERYDAY_ESCALATION_BUDGET: f64 = 0.04;
/// `segment_escalation_relief` values tried.
const RELIEF_GRID: &[f32] = &[0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0];

fn logit(probability: f32) -> f32 {
    let clamped = probability.clamp(1e-7, 1.0 - 1e-7);
    (clamped / (1.0 - clamped)).ln()
}

fn is_calibration(row: &LabeledRow) -> bool {
    stable_hash(0xCA11_B8A7, row.split_key.as_bytes()).is_multiple_of(8)
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

struct Choice {
    recall: usize,
    block: f32,
    offset: f32,
    start: f32,
    relief: f32,
    benign_blocked: usize,
    everyday_blocked: usize,
    everyday_escalated: usize,
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut corpus_dir = locate_shared_data(&manifest_dir).map(|data| data.join("safeguards"));
    let mut model_dir: Option<PathBuf> = None;
    let mut write = false;
    let mut arguments = std::env::args().skip(1);
    while let Some(argument) = arguments.next() {
        match argument.as_str() {
            "--corpus" => corpus_dir = arguments.next().map(PathBuf::from),
            "--model" => model_dir = arguments.next().map(PathBuf::from),
            "--write" => write = true,
            other => return Err(format!("unknown argument `{other}`").into()),
        }
    }
    let corpus_dir = corpus_dir.ok_or("shared corpus not found: pass --corpus DIR")?;
    let base = Safeguard::builtin()?;
    // The model set's thresholds: stage 1's band as trained, not as a
    // previous calibration of this classifier moved it.
    let thresholds: Thresholds = base.manifest().recommended_thresholds;
    let mut safeguard = base;
    match &model_dir {
        Some(directory) => safeguard.attach_embedding_model(Some(directory))?,
        None => safeguard.attach_builtin_stage2()?,
    }
    let stage2 = safeguard.stage2().ok_or("stage 2 did not attach")?.clone();

    let config = TrainConfig::new(corpus_dir.clone());
    let data = build_training_data(
        load_corpus(&corpus_dir)?,
        config.generation,
        config.wrap_seed,
    );
    let rows: Vec<&LabeledRow> = data
        .train
        .iter()
        .filter(|row| row.label.is_some() && is_calibration(row))
        .collect();
    eprintln!("{} calibration rows", rows.len());
    let mut band_starts: Vec<f32> = ESCALATE_LOW_GRID
        .iter()
        .copied()
        .filter(|start| *start < thresholds.escalate_low)
        .collect();
    band_starts.push(thresholds.escalate_low);
    let mut widest = thresholds;
    widest.escalate_low = band_starts.iter().copied().fold(f32::INFINITY, f32::min);
    widest.segment_escalation_relief = RELIEF_GRID.iter().copied().fold(0.0, f32::max);
    let mut readings = Vec::new();
    let (mut everyday_total, mut benign_total, mut malicious_total) = (0usize, 0usize, 0usize);
    for (index, row) in rows.iter().enumerate() {
        let malicious = row.label == Some(RowLabel::Malicious);
        let everyday = EVERYDAY_SOURCES.contains(&row.source.as_str());
        let text = row.exchange.classification_text();
        let sentence =
            |offset: usize| PADDING_SENTENCES[(index + offset) % PADDING_SENTENCES.len()];
        let padded = format!("{} {text}", sentence(0));
        // Heavier padding, around the request: the dilution the escalation
        // relief exists for.
        let surrounded = format!(
            "{} {} {} {text} {} {}",
            sentence(1),
            sentence(2),
            sentence(3),
            sentence(4),
            sentence(0)
        );
        for reading_text in [&text, &padded, &surrounded] {
            if malicious {
                malicious_total += 1;
            } else {
                benign_total += 1;
                everyday_total += usize::from(everyday);
            }
            let stage1 = safeguard.stage1_with_thresholds(reading_text, &thresholds);
            let has_other_segments = stage1
                .top_segments
                .iter()
                .any(|segment| segment.trim() != stage1.whole_text.trim());
            let mut reading = Reading {
                malicious,
                everyday,
                score: stage1.score,
                whole_score: stage1.whole_score,
                segment_score: stage1.segment_score,
                has_other_segments,
                whole_probability: 0.0,
                segment_probabilities: Vec::new(),
            };
            if widest.escalates(&stage1) {
                reading.whole_probability = stage2.probability(&stage1.whole_text)?;
                for segment in &stage1.top_segments {
                    if segment.trim() != stage1.whole_text.trim() {
                        reading
                            .segment_probabilities
                            .push(stage2.probability(segment)?);
                    }
                }
            }
            readings.push(reading);
        }
        if index % 2000 == 0 {
            eprintln!("  {index}/{}", rows.len());
        }
    }
    eprintln!(
        "{} readings ({malicious_total} malicious, {benign_total} benign, {everyday_total} everyday)",
        readings.len()
    );
    // The same rule as `Thresholds::escalates`, on the recorded scores.
    let escalated = |reading: &Reading, start: f32, relief: f32| {
        if reading.score >= thresholds.escalate_high {
            return false;
        }
        reading.score >= start
            || (relief > 0.0
                && reading.segment_score > 0.0
                && sigmoid(logit(reading.segment_score) + relief) >= start)
    };
    // As in the cascade (`stage2_over_segments`): when the whole text is
    // below the band and only a segment is in it, stage 2 reads the
    // segments alone.
    let blocked = |reading: &Reading, start: f32, relief: f32, offset: f32, block: f32| {
        if reading.score >= thresholds.escalate_high {
            return true;
        }
        if !escalated(reading, start, relief) {
            return false;
        }
        let segments_only = reading.whole_score < start && reading.has_other_segments;
        let segments = reading
            .segment_probabilities
            .iter()
            .map(|probability| sigmoid(logit(*probability) - offset))
            .fold(0.0f32, f32::max);
        let whole = if segments_only {
            0.0
        } else {
            reading.whole_probability
        };
        whole.max(segments) >= block
    };
    // Budgets count stage 2's own false refusals, over what stage 1 alone
    // already refuses.
    let stage1_blocked = |filter: &dyn Fn(&Reading) -> bool| {
        readings
            .iter()
            .filter(|r| filter(r) && r.score >= thresholds.escalate_high)
            .count()
    };
    let stage1_everyday = stage1_blocked(&|r| !r.malicious && r.everyday);
    let stage1_benign = stage1_blocked(&|r| !r.malicious);
    let stage1_recall = stage1_blocked(&|r| r.malicious);
    let mut best: Option<Choice> = None;
    for &start in &band_starts {
        for &relief in RELIEF_GRID {
            let everyday_escalated = readings
                .iter()
                .filter(|r| !r.malicious && r.everyday && escalated(r, start, relief))
                .count();
            let escalation_ok =
                everyday_escalated as f64 <= EVERYDAY_ESCALATION_BUDGET * everyday_total as f64;
            println!(
                "band start {start:.2}, relief {relief:.1}: everyday escalation {:.2}% ({everyday_escalated}/{everyday_total}){}",
                100.0 * everyday_escalated as f64 / everyday_total.max(1) as f64,
                if escalation_ok { "" } else { ", over budget" }
            );
            if !escalation_ok && (start < thresholds.escalate_low || relief > 0.0) {
                continue;
            }
            for offset_step in 0..=8 {
                let offset = offset_step as f32 * 0.5;
                for block_step in 30..=99 {
                    let block = block_step as f32 / 100.0;
                    let count = |filter: &dyn Fn(&Reading) -> bool| {
                        readings
                            .iter()
                            .filter(|r| filter(r) && blocked(r, start, relief, offset, block))
                            .count()
                    };
                    let everyday_blocked = count(&|r| !r.malicious && r.everyday);
                    let benign_blocked = count(&|r| !r.malicious);
                    if (everyday_blocked - stage1_everyday) as f64
                        > EVERYDAY_BUDGET * everyday_total as f64
                        || (benign_blocked - stage1_benign) as f64
                            > BENIGN_BUDGET * benign_total as f64
                    {
                        continue;
                    }
                    let recall = count(&|r| r.malicious);
                    // Ties: the higher block, the larger offset, the higher
                    // band start, the smaller relief (less stage-2 work).
                    let better = best.as_ref().is_none_or(|current| {
                        (recall, block, offset, start, -relief)
                            > (
                                current.recall,
                                current.block,
                                current.offset,
                                current.start,
                                -current.relief,
                            )
                    });
                    if better {
                        best = Some(Choice {
                            recall,
                            block,
                            offset,
                            start,
                            relief,
                            benign_blocked,
                            everyday_blocked,
                            everyday_escalated,
                        });
                    }
                }
            }
        }
    }
    let Choice {
        recall,
        block,
        offset,
        start,
        relief,
        benign_blocked,
        everyday_blocked,
        everyday_escalated,
    } = best.ok_or("no threshold meets the false-refusal budget")?;
    println!(
        "escalate_low {start:.2}, segment_escalation_relief {relief:.1}, stage2_block {block:.2}, segment_stage2_logit_offset {offset:.2}: malicious blocked {:.2}% ({recall}/{malicious_total}; stage 1 alone {:.2}%), benign blocked {:.2}% ({benign_blocked}/{benign_total}), everyday blocked {:.2}% ({everyday_blocked}/{everyday_total}), everyday escalated {:.2}%",
        100.0 * recall as f64 / malicious_total.max(1) as f64,
        100.0 * stage1_recall as f64 / malicious_total.max(1) as f64,
        100.0 * benign_blocked as f64 / benign_total.max(1) as f64,
        100.0 * everyday_blocked as f64 / everyday_total.max(1) as f64,
        100.0 * everyday_escalated as f64 / everyday_total.max(1) as f64,
    );
    if write {
        let path = model_dir
            .unwrap_or_else(|| manifest_dir.join("model/stage2"))
            .join("stage2.json");
        let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
        manifest["stage2_block"] = serde_json::json!((f64::from(block) * 100.0).round() / 100.0);
        manifest["segment_stage2_logit_offset"] = serde_json::json!(f64::from(offset));
        manifest["escalate_low"] = serde_json::json!((f64::from(start) * 100.0).round() / 100.0);
        manifest["segment_escalation_relief"] = serde_json::json!(f64::from(relief));
        std::fs::write(
            &path,
            format!("{}\n", serde_json::to_string_pretty(&manifest)?),
        )?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
