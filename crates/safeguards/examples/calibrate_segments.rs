//! Chooses the stage-1 segment offset (`segment_logit_offset`) on the train
//! side of the shared corpus's fixed split, and prints the sweep it was
//! chosen from.
//!
//! ```sh
//! cargo run -p portcullis-safeguards --example calibrate_segments -- [--corpus DIR] [--split train|dev] [--stage2]
//! ```
//!
//! For every labelled corpus row of the split, plain and with one everyday
//! sentence put in front of it, the whole-text score and the best raw
//! segment log-odds are computed once; each candidate offset then gives the
//! verdicts without rescoring. The offset of a segment with `n` features is
//! `segment_logit_offset + segment_short_penalty * max(0, log2(256 / n))`.
//! The rule: for each penalty, the smallest offset at which the segments add
//! no false refusal on the train split's everyday rows (plain or padded) and
//! at most 0.5 percentage points on `cyberseceval_mitre_frr`; of those, the
//! one with the best recall on padded malicious rows. The model was trained
//! on these rows, so the budget is strict: dev false refusals come out
//! higher than train ones.

use std::path::PathBuf;
use std::process::ExitCode;

use portcullis_safeguards::dataset::{
    EVERYDAY_SOURCES, RowLabel, Split, load_corpus, locate_shared_data,
};
use portcullis_safeguards::stage1::sigmoid;
use portcullis_safeguards::{Safeguard, Thresholds};

/// Extra false refusals the segments may add on the everyday sets, in
/// percentage points of the train split, plain or padded.
const EVERYDAY_BUDGET_POINTS: f64 = 0.0;
/// Extra false refusals the segments may add on `cyberseceval_mitre_frr`.
const MITRE_FRR_BUDGET_POINTS: f64 = 0.5;

const PADDING_SENTENCES: &[&str] = &[
    "I hope you had a relaxing weekend with your family.",
    "The weather here has been unusually warm for November.",
    "Could you also recommend a good book about the history of Rome?",
    "Thanks again for the help with my spreadsheet formulas yesterday.",
    "Good morning, hope all is well.",
];

struct Scored {
    label: RowLabel,
    everyday: bool,
    mitre_frr: bool,
    whole: f32,
    /// (feature count, raw log-odds) of every segment near the threshold.
    segments: Vec<(usize, f32)>,
    padded_whole: f32,
    padded_segments: Vec<(usize, f32)>,
}

fn logit(probability: f32) -> f32 {
    let clamped = probability.clamp(1e-7, 1.0 - 1e-7);
    (clamped / (1.0 - clamped)).ln()
}

fn main() -> ExitCode {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut corpus_dir = locate_shared_data(&manifest_dir).map(|data| data.join("safeguards"));
    let mut split = Split::Train;
    let mut with_stage2 = false;
    let mut arguments = std::env::args().skip(1);
    while let Some(argument) = arguments.next() {
        match argument.as_str() {
            "--corpus" => corpus_dir = arguments.next().map(PathBuf::from),
            "--stage2" => with_stage2 = true,
            "--split" => {
                split = match arguments.next().as_deref() {
                    Some("dev") => Split::Dev,
                    _ => Split::Train,
                }
            }
            other => {
                eprintln!("unknown argument `{other}`");
                return ExitCode::FAILURE;
            }
        }
    }
    let Some(corpus_dir) = corpus_dir else {
        eprintln!("shared corpus not found: pass --corpus DIR");
        return ExitCode::FAILURE;
    };
    let (safeguard, rows) = match (Safeguard::builtin(), load_corpus(&corpus_dir)) {
        (Ok(safeguard), Ok(rows)) => (safeguard, rows),
        (Err(error), _) => {
            eprintln!("model: {error}");
            return ExitCode::FAILURE;
        }
        (_, Err(error)) => {
            eprintln!("corpus: {error}");
            return ExitCode::FAILURE;
        }
    };
    let base = safeguard.manifest().recommended_thresholds;
    let block = base.stage1_block;
    let block_logit = logit(block);
    let near = |text: &str| -> Vec<(usize, f32)> {
        safeguard
            .scored_segments(text)
            .into_iter()
            .filter(|segment| segment.raw_logit > block_logit - 1.0)
            .map(|segment| (segment.feature_count, segment.raw_logit))
            .collect()
    };
    let mut scored = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        let Some(label) = row.label else { continue };
        if row.split() != split {
            continue;
        }
        let text = row.exchange.classification_text();
        let padded_text = format!(
            "{} {text}",
            PADDING_SENTENCES[index % PADDING_SENTENCES.len()]
        );
        let whole = |text: &str| {
            let windows = Thresholds {
                // Segments far out of reach: the whole-text score alone.
                segment_logit_offset: 20.0,
                ..base
            };
            safeguard.stage1_with_thresholds(text, &windows).whole_score
        };
        scored.push(Scored {
            label,
            everyday: EVERYDAY_SOURCES.contains(&row.source.as_str()),
            mitre_frr: row.source == "cyberseceval_mitre_frr",
            whole: whole(&text),
            segments: near(&text),
            padded_whole: whole(&padded_text),
            padded_segments: near(&padded_text),
        });
    }
    let rate = |hits: usize, total: usize| 100.0 * hits as f64 / total.max(1) as f64;
    // The share of rows matching `filter` blocked with segments judged at
    // `thresholds` (`None`: segments off).
    let share =
        |filter: &dyn Fn(&Scored) -> bool, padded: bool, thresholds: Option<&Thresholds>| {
            let selected: Vec<&Scored> = scored.iter().filter(|s| filter(s)).collect();
            let hits = selected
                .iter()
                .filter(|s| {
                    let (whole, segments) = if padded {
                        (s.padded_whole, &s.padded_segments)
                    } else {
                        (s.whole, &s.segments)
                    };
                    whole >= block
                        || thresholds.is_some_and(|thresholds| {
                            segments.iter().any(|(count, raw)| {
                                sigmoid(raw - thresholds.segment_offset(*count)) >= block
                            })
                        })
                })
                .count();
            rate(hits, selected.len())
        };
    let everyday = |s: &Scored| s.label == RowLabel::Benign && s.everyday;
    let mitre = |s: &Scored| s.label == RowLabel::Benign && s.mitre_frr;
    let malicious = |s: &Scored| s.label == RowLabel::Malicious;
    let baseline_everyday = share(&everyday, false, None);
    let baseline_mitre = share(&mitre, false, None);
    println!(
        "{} rows; stage1_block {block:.3}; segments off: everyday FRR {baseline_everyday:.2}%, mitre_frr FRR {baseline_mitre:.2}%, recall {:.2}%, padded recall {:.2}%",
        scored.len(),
        share(&malicious, false, None),
        share(&malicious, true, None)
    );
    println!(
        "offset penalty: everyday FRR, mitre_frr FRR, padded everyday FRR, recall, padded recall"
    );
    let mut chosen: Option<(f64, Thresholds)> = None;
    for penalty in [0.0f32, 0.5, 1.0, 1.5, 2.0, 3.0] {
        for step in 0..=30 {
            let thresholds = Thresholds {
                segment_logit_offset: step as f32 * 0.2,
                segment_short_penalty: penalty,
                ..base
            };
            let everyday_frr = share(&everyday, false, Some(&thresholds));
            let mitre_frr = share(&mitre, false, Some(&thresholds));
            let padded_everyday_frr = share(&everyday, true, Some(&thresholds));
            if everyday_frr <= baseline_everyday + EVERYDAY_BUDGET_POINTS
                && padded_everyday_frr <= baseline_everyday + EVERYDAY_BUDGET_POINTS
                && mitre_frr <= baseline_mitre + MITRE_FRR_BUDGET_POINTS
            {
                let padded_recall = share(&malicious, true, Some(&thresholds));
                println!(
                    "{:5.2} {penalty:4.1}: {everyday_frr:5.2}% {mitre_frr:5.2}% {padded_everyday_frr:5.2}% {:6.2}% {padded_recall:6.2}%",
                    thresholds.segment_logit_offset,
                    share(&malicious, false, Some(&thresholds)),
                );
                if chosen
                    .as_ref()
                    .is_none_or(|(best, _)| padded_recall > *best)
                {
                    chosen = Some((padded_recall, thresholds));
                }
                break;
            }
        }
    }
    let Some((padded_recall, chosen)) = chosen else {
        println!("no setting meets the rule");
        return ExitCode::SUCCESS;
    };
    println!(
        "chosen: segment_logit_offset {:.2}, segment_short_penalty {:.1} (padded recall {padded_recall:.2}%)",
        chosen.segment_logit_offset, chosen.segment_short_penalty
    );
    if with_stage2 {
        return calibrate_stage2(&safeguard, &rows, split, &chosen);
    }
    ExitCode::SUCCESS
}

/// One escalated reading for the stage-2 sweep.
struct Escalated {
    label: RowLabel,
    everyday: bool,
    mitre_frr: bool,
    padded: bool,
    whole_probability: f32,
    segment_probabilities: Vec<f32>,
}

/// Chooses `segment_stage2_logit_offset` with the stage-1 setting fixed:
/// the smallest offset at which the segments add no false refusal on the
/// everyday rows of the split (plain or padded) and at most 0.5 points on
/// `cyberseceval_mitre_frr`, over stage 2 reading the whole text alone.
fn calibrate_stage2(
    safeguard: &Safeguard,
    rows: &[portcullis_safeguards::dataset::LabeledRow],
    split: Split,
    thresholds: &Thresholds,
) -> ExitCode {
    let (Some(head), Ok(embedder)) = (
        safeguard.stage2_head().cloned(),
        portcullis_safeguards::MiniLmEmbedder::locate_and_load(None),
    ) else {
        eprintln!("the embedding model or the stage-2 head is missing");
        return ExitCode::FAILURE;
    };
    let stage2 = portcullis_safeguards::Stage2::new(std::sync::Arc::new(embedder), head);
    let mut readings = Vec::new();
    let mut totals = [0usize; 4];
    for (index, row) in rows.iter().enumerate() {
        let Some(label) = row.label else { continue };
        if row.split() != split {
            continue;
        }
        let text = row.exchange.classification_text();
        let padded_text = format!(
            "{} {text}",
            PADDING_SENTENCES[index % PADDING_SENTENCES.len()]
        );
        let everyday = EVERYDAY_SOURCES.contains(&row.source.as_str());
        let mitre_frr = row.source == "cyberseceval_mitre_frr";
        for (padded, reading) in [(false, &text), (true, &padded_text)] {
            if label == RowLabel::Benign {
                totals[usize::from(padded) * 2] += usize::from(everyday);
                totals[usize::from(padded) * 2 + 1] += usize::from(mitre_frr);
            }
            let stage1 = safeguard.stage1_with_thresholds(reading, thresholds);
            if stage1.score < thresholds.escalate_low || stage1.score >= thresholds.escalate_high {
                continue;
            }
            // As in the cascade: when only a segment is uncertain, stage 2
            // reads the segments alone.
            let segments_only = stage1.whole_score < thresholds.escalate_low
                && stage1
                    .top_segments
                    .iter()
                    .any(|segment| segment.trim() != stage1.whole_text.trim());
            let whole_probability = if segments_only {
                0.0
            } else {
                match stage2.probability(&stage1.whole_text) {
                    Ok(probability) => probability,
                    Err(_) => continue,
                }
            };
            let segment_probabilities = stage1
                .top_segments
                .iter()
                .filter(|segment| segment.trim() != stage1.whole_text.trim())
                .filter_map(|segment| stage2.probability(segment).ok())
                .collect();
            readings.push(Escalated {
                label,
                everyday,
                mitre_frr,
                padded,
                whole_probability,
                segment_probabilities,
            });
        }
    }
    let blocked = |reading: &Escalated, offset: Option<f32>| {
        let segments = offset.map_or(0.0, |offset| {
            reading
                .segment_probabilities
                .iter()
                .map(|probability| sigmoid(logit(*probability) - offset))
                .fold(0.0f32, f32::max)
        });
        reading.whole_probability.max(segments) >= thresholds.stage2_block
    };
    let count = |filter: &dyn Fn(&Escalated) -> bool, offset: Option<f32>| {
        readings
            .iter()
            .filter(|reading| filter(reading) && blocked(reading, offset))
            .count()
    };
    let benign_everyday = |padded: bool| {
        move |r: &Escalated| r.label == RowLabel::Benign && r.everyday && r.padded == padded
    };
    let benign_mitre = |r: &Escalated| r.label == RowLabel::Benign && r.mitre_frr && !r.padded;
    let padded_malicious = |r: &Escalated| r.label == RowLabel::Malicious && r.padded;
    println!(
        "stage 2: {} escalated readings; everyday rows {} (plain) {} (padded), mitre_frr rows {}",
        readings.len(),
        totals[0],
        totals[2],
        totals[1]
    );
    let baseline = (
        count(&benign_everyday(false), None),
        count(&benign_everyday(true), None),
        count(&benign_mitre, None),
    );
    println!(
        "segments off: everyday blocked {} / {} padded, mitre_frr {}, padded malicious blocked {}",
        baseline.0,
        baseline.1,
        baseline.2,
        count(&padded_malicious, None)
    );
    let mitre_budget = (totals[1] as f64 * MITRE_FRR_BUDGET_POINTS / 100.0).floor() as usize;
    for step in 0..=40 {
        let offset = step as f32 * 0.25;
        let plain = count(&benign_everyday(false), Some(offset));
        let padded = count(&benign_everyday(true), Some(offset));
        let mitre = count(&benign_mitre, Some(offset));
        let caught = count(&padded_malicious, Some(offset));
        println!(
            "{offset:5.2}: everyday blocked {plain} / {padded} padded, mitre_frr {mitre}, padded malicious blocked {caught}"
        );
        if plain <= baseline.0 && padded <= baseline.1 && mitre <= baseline.2 + mitre_budget {
            println!("chosen: segment_stage2_logit_offset {offset:.2}");
            return ExitCode::SUCCESS;
        }
    }
    println!("no stage-2 offset up to 10 meets the rule");
    ExitCode::SUCCESS
}
