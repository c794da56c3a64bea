//! Findings: reported safeguard bypasses, replayed against the current
//! safeguards to show, on the facts, whether each one is still a bypass.
//! Storage lives elsewhere; this module only defines the record and replays.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::category::CyberCategory;
use crate::classifier::{Safeguard, SafeguardAction};
use crate::error::SafeguardError;
use crate::exchange::{Exchange, ExchangeMessage};
use crate::profile::SafeguardProfile;

/// How serious a reported bypass is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

/// One prompt of a finding: a plain text, or a whole exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FindingPrompt {
    Text(String),
    Exchange { messages: Vec<ExchangeMessage> },
}

impl FindingPrompt {
    pub fn to_exchange(&self) -> Exchange {
        match self {
            FindingPrompt::Text(text) => Exchange::from_user_text(text),
            FindingPrompt::Exchange { messages } => Exchange {
                messages: messages.clone(),
            },
        }
    }
}

/// A reported bypass. Each prompt is one attempt; the finding is fixed only
/// when every attempt is caught.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Finding {
    pub id: String,
    pub prompts: Vec<FindingPrompt>,
    pub reporter: String,
    pub severity: Severity,
    #[serde(default)]
    pub notes: String,
}

/// The replay of one prompt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromptReplay {
    pub prompt_index: usize,
    /// `block` when the classifier catches the prompt.
    pub verdict: String,
    pub action: SafeguardAction,
    pub score: f32,
    pub category: Option<CyberCategory>,
}

/// The replay of one finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FindingReplay {
    pub finding_id: String,
    pub severity: Severity,
    pub prompts: Vec<PromptReplay>,
    /// True when every prompt of the finding is caught.
    pub stopped: bool,
}

/// The replay of many findings under one profile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayReport {
    pub profile: String,
    pub findings: Vec<FindingReplay>,
    /// Ids of findings that still get through, most severe first.
    pub still_bypassing: Vec<String>,
}

/// Replays every finding against `safeguard` under `profile`.
pub fn replay_findings(
    findings: &[Finding],
    safeguard: &Safeguard,
    profile: &SafeguardProfile,
) -> ReplayReport {
    let mut replays = Vec::with_capacity(findings.len());
    for finding in findings {
        let prompts: Vec<PromptReplay> = finding
            .prompts
            .iter()
            .enumerate()
            .map(|(prompt_index, prompt)| {
                let verdict = safeguard.classify_exchange(&prompt.to_exchange(), profile);
                PromptReplay {
                    prompt_index,
                    verdict: if verdict.malicious { "block" } else { "allow" }.to_owned(),
                    action: verdict.action,
                    score: verdict.score,
                    category: verdict.category,
                }
            })
            .collect();
        let stopped = !prompts.is_empty() && prompts.iter().all(|prompt| prompt.verdict == "block");
        replays.push(FindingReplay {
            finding_id: finding.id.clone(),
            severity: finding.severity,
            prompts,
            stopped,
        });
    }
    let mut bypassing: Vec<&FindingReplay> =
        replays.iter().filter(|replay| !replay.stopped).collect();
    bypassing.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.finding_id.cmp(&b.finding_id))
    });
    let still_bypassing = bypassing
        .into_iter()
        .map(|replay| replay.finding_id.clone())
        .collect();
    ReplayReport {
        profile: profile.name.clone(),
        findings: replays,
        still_bypassing,
    }
}

/// Reads every `*.json` finding in `directory`, sorted by file name.
pub fn load_findings_dir(directory: &Path) -> Result<Vec<Finding>, SafeguardError> {
    let io_error = |source| SafeguardError::Io {
        path: directory.to_path_buf(),
        source,
    };
    let mut paths: Vec<_> = std::fs::read_dir(directory)
        .map_err(io_error)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    let mut findings = Vec::with_capacity(paths.len());
    for path in paths {
        let text = std::fs::read_to_string(&path).map_err(|source| SafeguardError::Io {
            path: path.clone(),
            source,
        })?;
        let finding: Finding =
            serde_json::from_str(&text).map_err(|error| SafeguardError::InvalidRecord {
                path: path.display().to_string(),
                line: error.line(),
                reason: error.to_string(),
            })?;
        findings.push(finding);
    }
    Ok(findings)
}
