//! The `portcullis classify` JSONL contract: one `{"id", "text"}` or
//! `{"id", "messages"}` object per input line, one
//! `{"id", "verdict", "score", "category"}` object per output line.

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

use crate::classifier::Safeguard;
use crate::error::SafeguardError;
use crate::exchange::{Exchange, ExchangeMessage};
use crate::profile::SafeguardProfile;

#[derive(Deserialize)]
struct ClassifyInput {
    id: serde_json::Value,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    messages: Option<Vec<ExchangeMessage>>,
}

/// One output line. `verdict` is `block` when the classifier finds the
/// exchange malicious under the profile's thresholds, whatever the profile's
/// action; `category` is set only for `block`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifyOutput {
    pub id: serde_json::Value,
    pub verdict: String,
    pub score: f32,
    pub category: Option<String>,
}

/// Counts from one `classify_jsonl` run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassifySummary {
    pub lines: usize,
    pub blocked: usize,
}

/// Classifies one parsed input.
pub fn classify_one(
    id: serde_json::Value,
    exchange: &Exchange,
    safeguard: &Safeguard,
    profile: &SafeguardProfile,
) -> ClassifyOutput {
    let verdict = safeguard.classify_exchange(exchange, profile);
    ClassifyOutput {
        id,
        verdict: if verdict.malicious { "block" } else { "allow" }.to_owned(),
        // Rounded so that output is stable and compact.
        score: (verdict.score * 10_000.0).round() / 10_000.0,
        category: verdict
            .category
            .map(|category| category.as_str().to_owned()),
    }
}

/// Reads JSON lines from `input` and writes one verdict line per input line
/// to `output`. Blank lines are skipped. A line that is not a valid input
/// object stops the run with an error naming the line.
pub fn classify_jsonl(
    input: impl BufRead,
    mut output: impl Write,
    safeguard: &Safeguard,
    profile: &SafeguardProfile,
) -> Result<ClassifySummary, SafeguardError> {
    let mut summary = ClassifySummary::default();
    for (index, line) in input.lines().enumerate() {
        let line = line.map_err(|source| SafeguardError::Output { source })?;
        if line.trim().is_empty() {
            continue;
        }
        let invalid = |reason: String| SafeguardError::InvalidRecord {
            path: "<stdin>".to_owned(),
            line: index + 1,
            reason,
        };
        let parsed: ClassifyInput =
            serde_json::from_str(&line).map_err(|error| invalid(error.to_string()))?;
        let exchange = match (parsed.messages, parsed.text) {
            (Some(messages), _) => Exchange { messages },
            (None, Some(text)) => Exchange::from_user_text(&text),
            (None, None) => {
                return Err(invalid(
                    "the line has neither `text` nor `messages`".to_owned(),
                ));
            }
        };
        let result = classify_one(parsed.id, &exchange, safeguard, profile);
        summary.lines += 1;
        if result.verdict == "block" {
            summary.blocked += 1;
        }
        let encoded = serde_json::to_string(&result).map_err(|error| invalid(error.to_string()))?;
        writeln!(output, "{encoded}").map_err(|source| SafeguardError::Output { source })?;
    }
    output
        .flush()
        .map_err(|source| SafeguardError::Output { source })?;
    Ok(summary)
}
