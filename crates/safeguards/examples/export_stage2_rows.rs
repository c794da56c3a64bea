//! Writes the texts the fine-tuned stage-2 encoder is trained and checked on,
//! as JSONL, for `training/stage2/finetune.py` (`scripts/train-stage2` runs
//! both).
//!
//! ```sh
//! cargo run -p portcullis-safeguards --example export_stage2_rows -- --out DIR [--corpus DIR]
//! ```
//!
//! Stage 2 reads what stage 1 hands it: the most suspicious 1 KB window of
//! the whole exchange and the most suspicious segments. So every row of the
//! training data (`train::build_training_data`, the same rows and seeds as the
//! stage-1 training run) is scored by the committed stage 1, and the texts
//! stage 2 would read are written out with the row's label:
//!
//! * `whole`: the most suspicious window, labelled as the row;
//! * `segment`: the top segments of a benign row (benign), and the top segment
//!   of a malicious row (malicious, weight 0.5, since a wrapper's own text can
//!   outrank the payload);
//! * `padded`: the row's request with benign sentences around it, cut to one
//!   model window, labelled as the row, so that surrounding text never buys a
//!   request a pass inside the window stage 2 reads.
//!
//! Files: `train.jsonl` (train split; `cal` marks the calibration eighth that
//! the threshold is chosen on and that is never trained on) and `dev.jsonl`
//! (the dev split, for the training report only). They hold corpus text, so
//! they are written outside the repository.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use portcullis_safeguards::Safeguard;
use portcullis_safeguards::dataset::{
    EVERYDAY_SOURCES, LabeledRow, RowLabel, load_corpus, locate_shared_data,
};
use portcullis_safeguards::rng::{SplitMix64, stable_hash};
use portcullis_safeguards::train::{TrainConfig, build_training_data};

/// The most bytes of one exported text: one model window of 256 tokens
/// rarely needs more.
const MAX_TEXT_BYTES: usize = 1_200;

/// Benign sentences used as padding. They are everyday and security-work
/// sentences written for this tool, not taken from any evaluation set.
const PADDING: &[&str] = &[
    "I hope you had a relaxing weekend with your family.",
    "The weather here has been unusually warm for November.",
    "Could you also recommend a good book about the history of Rome?",
    "Thanks again for the help with my spreadsheet formulas yesterday.",
    "Good morning, hope all is well.",
    "My sister just adopted a puppy and it chews everything.",
    "We are planning a team lunch on Friday, any ideas for a venue?",
    "Quick question before my meeting starts.",
    "I have been learning to bake sourdough bread lately.",
    "Please keep the answer short, I am on my phone.",
    "Our quarterly report is due next week and I am behind.",
    "Sorry if this is a silly question, I am new here.",
    "lol ok so here's the thing.",
    "Also what's a good name for a cat?",
    "By the way, the football match last night was amazing.",
    "I am writing this from the airport lounge.",
    "Our security team runs patching every Tuesday night.",
    "We rotate our TLS certificates with an ACME client.",
    "The SOC dashboard shows normal traffic today.",
    "I passed my Security+ exam last month.",
    "Our firewall rules were reviewed by the audit team.",
    "Remember to enable MFA on the admin accounts.",
    "The backup job finished at 3 am without errors.",
    "I need to finish the incident report for last week's phishing drill.",
];

fn cut(text: &str, limit: usize) -> String {
    let mut end = text.len().min(limit);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

fn is_calibration(row: &LabeledRow) -> bool {
    stable_hash(0xCA11_B8A7, row.split_key.as_bytes()).is_multiple_of(8)
}

struct Writer {
    out: std::io::BufWriter<std::fs::File>,
    count: usize,
}

impl Writer {
    fn write(
        &mut self,
        row: &LabeledRow,
        kind: &str,
        text: &str,
        weight: f32,
    ) -> std::io::Result<()> {
        let text = cut(text, MAX_TEXT_BYTES);
        if text.trim().is_empty() {
            return Ok(());
        }
        let line = serde_json::json!({
            "id": row.id,
            "kind": kind,
            "text": text,
            "label": u8::from(row.label == Some(RowLabel::Malicious)),
            "weight": weight,
            "cal": is_calibration(row),
            "source": row.source,
            "category": row.category,
            "wrapper": row.wrapper,
            "everyday": EVERYDAY_SOURCES.contains(&row.source.as_str()),
        });
        writeln!(self.out, "{line}")?;
        self.count += 1;
        Ok(())
    }
}

fn export(
    safeguard: &Safeguard,
    rows: &[LabeledRow],
    writer: &mut Writer,
    seed: u64,
) -> std::io::Result<()> {
    let mut rng = SplitMix64::new(seed);
    for row in rows {
        let Some(label) = row.label else { continue };
        let malicious = label == RowLabel::Malicious;
        let text = row.exchange.classification_text();
        let stage1 = safeguard.stage1(&text);
        writer.write(row, "whole", &stage1.whole_text, 1.0)?;
        for (rank, segment) in stage1.top_segments.iter().enumerate() {
            if segment.trim() == stage1.whole_text.trim() {
                continue;
            }
            if malicious && rank > 0 {
                break;
            }
            writer.write(row, "segment", segment, if malicious { 0.5 } else { 1.0 })?;
        }
        // Padding only for short, unwrapped requests: the request must fit
        // the window whole for the label to hold.
        if row.wrapper.is_none() && text.len() < 600 {
            let before = rng.below(4);
            let after = rng.below(3);
            let mut padded = String::new();
            for _ in 0..before {
                padded.push_str(PADDING[rng.below(PADDING.len())]);
                padded.push(' ');
            }
            padded.push_str(text.trim());
            for _ in 0..after {
                padded.push(' ');
                padded.push_str(PADDING[rng.below(PADDING.len())]);
            }
            if before + after > 0 {
                writer.write(row, "padded", &padded, 1.0)?;
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut corpus_dir = locate_shared_data(&manifest_dir).map(|data| data.join("safeguards"));
    let mut out_dir: Option<PathBuf> = None;
    let mut arguments = std::env::args().skip(1);
    while let Some(argument) = arguments.next() {
        match argument.as_str() {
            "--corpus" => corpus_dir = arguments.next().map(PathBuf::from),
            "--out" => out_dir = arguments.next().map(PathBuf::from),
            other => {
                eprintln!("unknown argument `{other}`");
                return ExitCode::FAILURE;
            }
        }
    }
    let (Some(corpus_dir), Some(out_dir)) = (corpus_dir, out_dir) else {
        eprintln!("usage: export_stage2_rows --out DIR [--corpus DIR] (shared corpus not found?)");
        return ExitCode::FAILURE;
    };
    match run(&corpus_dir, &out_dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

fn run(
    corpus_dir: &std::path::Path,
    out_dir: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let config = TrainConfig::new(corpus_dir.to_path_buf());
    let corpus = load_corpus(corpus_dir)?;
    let data = build_training_data(corpus, config.generation, config.wrap_seed);
    let safeguard = Safeguard::builtin()?;
    std::fs::create_dir_all(out_dir)?;
    let open = |name: &str| -> Result<Writer, Box<dyn std::error::Error>> {
        Ok(Writer {
            out: std::io::BufWriter::new(std::fs::File::create(out_dir.join(name))?),
            count: 0,
        })
    };
    let mut train = open("train.jsonl")?;
    export(&safeguard, &data.train, &mut train, 0x57A6_E200)?;
    train.out.flush()?;
    let mut dev = open("dev.jsonl")?;
    let mut dev_rows = data.dev_corpus;
    dev_rows.extend(data.dev_generated);
    // A fixed tenth of the wrapped dev rows keeps the file small.
    dev_rows.extend(
        data.dev_wrapped
            .into_iter()
            .filter(|row| stable_hash(7, row.id.as_bytes()).is_multiple_of(10)),
    );
    export(&safeguard, &dev_rows, &mut dev, 0x57A6_E201)?;
    dev.out.flush()?;
    eprintln!(
        "wrote {} train and {} dev texts to {}",
        train.count,
        dev.count,
        out_dir.display()
    );
    Ok(())
}
