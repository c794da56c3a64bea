//! The classifier cascade: normalise, score every view with stage 1, send
//! uncertain requests to stage 2, and turn the result into a verdict under a
//! profile.
//!
//! INVARIANT: no part of the input is ignored. Long texts are scored in
//! overlapping windows and the maximum is taken, so an attack hidden at the
//! end of a huge prompt is scored like one at the start.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::category::{CyberCategory, categorise};
use crate::error::SafeguardError;
use crate::exchange::Exchange;
use crate::features::FeatureScratch;
use crate::normalise::{NormalisationFlags, NormaliserLimits, ViewKind, normalise_with_limits};
use crate::profile::{ProfileAction, SafeguardProfile, Thresholds};
use crate::stage1::HashedLinearModel;
use crate::stage2::{EmbeddingHead, Stage2};

/// The window length, in bytes, over which stage 1 scores long texts.
pub const WINDOW_BYTES: usize = 1024;
/// The step between windows; windows overlap by `WINDOW_BYTES - WINDOW_STRIDE_BYTES`.
pub const WINDOW_STRIDE_BYTES: usize = 768;
/// The window sizes stage 1 scores at, in bytes. The whole text is always
/// scored too. Sentence-sized windows (160 bytes) were measured and rejected
/// for now: without fragment-level training examples they raise benign
/// scores so much that the calibrated threshold loses more recall than the
/// short windows win back (see the model card).
pub const STAGE1_WINDOW_SIZES: [usize; 1] = [WINDOW_BYTES];

const BUILTIN_STAGE1: &[u8] = include_bytes!("../model/stage1.bin");
const BUILTIN_STAGE2_HEAD: &[u8] = include_bytes!("../model/stage2_head.bin");
const BUILTIN_MANIFEST: &str = include_str!("../model/manifest.json");

/// Facts about a trained model set, stored next to the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelManifest {
    pub format_version: u32,
    pub recommended_thresholds: Thresholds,
    pub stage1_hash_bits: u8,
    pub training_seed: u64,
    pub training_rows: usize,
    /// Whether `stage2_head.bin` holds a trained head (it is empty otherwise).
    pub stage2_head_trained: bool,
}

/// Which stage made the final call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecidingStage {
    Stage1,
    Stage2,
    Judge,
}

/// What the gateway does with the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SafeguardAction {
    Allow,
    /// Allow, and mark the audit entry.
    Flag,
    Block,
}

/// The outcome of classifying one exchange or text under a profile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SafeguardVerdict {
    pub action: SafeguardAction,
    /// The classifier's own judgement, whatever the profile's action.
    pub malicious: bool,
    /// The final score in `[0, 1]`.
    pub score: f32,
    pub category: Option<CyberCategory>,
    pub deciding_stage: DecidingStage,
    pub stage1_score: f32,
    pub stage2_score: Option<f32>,
    /// True when stage 1 was uncertain and stage 2 was wanted.
    pub escalated: bool,
    /// True when stage 2 was wanted but is not loaded or failed.
    pub stage2_missing: bool,
    pub deciding_view: ViewKind,
    pub flags: NormalisationFlags,
}

/// The stage-1 result for one text: its best score and where it was found.
#[derive(Debug, Clone)]
pub struct Stage1Result {
    pub score: f32,
    pub deciding_view: ViewKind,
    /// The window of the deciding view that scored highest.
    pub deciding_text: String,
    pub flags: NormalisationFlags,
}

/// Splits `text` into overlapping windows on character boundaries.
pub fn windows(text: &str) -> Vec<&str> {
    if text.len() <= WINDOW_BYTES {
        return vec![text];
    }
    let mut result = Vec::new();
    let mut start = 0;
    loop {
        let mut end = (start + WINDOW_BYTES).min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        result.push(&text[start..end]);
        if end == text.len() {
            break;
        }
        let mut next = start + WINDOW_STRIDE_BYTES;
        while !text.is_char_boundary(next) {
            next += 1;
        }
        start = next;
    }
    result
}

/// The loaded cascade. Cheap to share behind an `Arc`; scoring takes `&self`.
#[derive(Debug, Clone)]
pub struct Safeguard {
    stage1: HashedLinearModel,
    stage2_head: Option<EmbeddingHead>,
    stage2: Option<Stage2>,
    manifest: ModelManifest,
    limits: NormaliserLimits,
}

impl Safeguard {
    /// The model compiled into this crate (see `model/` and the model card).
    pub fn builtin() -> Result<Self, SafeguardError> {
        Self::from_parts(BUILTIN_STAGE1, BUILTIN_STAGE2_HEAD, BUILTIN_MANIFEST)
    }

    /// A model set written by [`crate::train::train`] into `directory`.
    pub fn from_dir(directory: &Path) -> Result<Self, SafeguardError> {
        let read = |name: &str| {
            let path = directory.join(name);
            std::fs::read(&path).map_err(|source| SafeguardError::Io { path, source })
        };
        let manifest_bytes = read("manifest.json")?;
        let manifest =
            String::from_utf8(manifest_bytes).map_err(|_| SafeguardError::InvalidModel {
                reason: "manifest is not UTF-8".to_owned(),
            })?;
        Self::from_parts(&read("stage1.bin")?, &read("stage2_head.bin")?, &manifest)
    }

    pub fn from_parts(
        stage1: &[u8],
        stage2_head: &[u8],
        manifest: &str,
    ) -> Result<Self, SafeguardError> {
        let manifest: ModelManifest =
            serde_json::from_str(manifest).map_err(|error| SafeguardError::InvalidModel {
                reason: format!("manifest: {error}"),
            })?;
        let stage2_head = if manifest.stage2_head_trained {
            Some(EmbeddingHead::from_bytes(stage2_head)?)
        } else {
            None
        };
        Ok(Self {
            stage1: HashedLinearModel::from_bytes(stage1)?,
            stage2_head,
            stage2: None,
            manifest,
            limits: NormaliserLimits::default(),
        })
    }

    pub fn from_models(
        stage1: HashedLinearModel,
        stage2_head: Option<EmbeddingHead>,
        manifest: ModelManifest,
    ) -> Self {
        Self {
            stage1,
            stage2_head,
            stage2: None,
            manifest,
            limits: NormaliserLimits::default(),
        }
    }

    pub fn manifest(&self) -> &ModelManifest {
        &self.manifest
    }

    pub fn stage1_model(&self) -> &HashedLinearModel {
        &self.stage1
    }

    /// The trained stage-2 head, if the model set has one.
    pub fn stage2_head(&self) -> Option<&EmbeddingHead> {
        self.stage2_head.as_ref()
    }

    /// Attaches a stage-2 engine (embedder plus head).
    pub fn with_stage2(mut self, stage2: Stage2) -> Self {
        self.stage2 = Some(stage2);
        self
    }

    /// Finds and loads the embedding model (see
    /// [`crate::stage2::MiniLmEmbedder::locate_and_load`]) and attaches it
    /// with this model set's head. On error the safeguard is unchanged; the
    /// caller then applies [`Self::check_ready`] to decide whether stage 1
    /// alone may run.
    pub fn attach_embedding_model(
        &mut self,
        explicit_dir: Option<&Path>,
    ) -> Result<(), SafeguardError> {
        let Some(head) = self.stage2_head.clone() else {
            return Err(SafeguardError::Stage2Unavailable {
                profile: "cyber".to_owned(),
                reason: "this model set has no trained stage-2 head".to_owned(),
            });
        };
        let embedder = crate::stage2::MiniLmEmbedder::locate_and_load(explicit_dir)?;
        self.stage2 = Some(Stage2::new(std::sync::Arc::new(embedder), head));
        Ok(())
    }

    pub fn has_stage2(&self) -> bool {
        self.stage2.is_some()
    }

    /// The `cyber` profile with this model's recommended thresholds.
    pub fn default_cyber_profile(&self) -> SafeguardProfile {
        SafeguardProfile::cyber(self.manifest.recommended_thresholds)
    }

    /// Checks at start-up whether `profile` can run with what is loaded.
    /// Without stage 2 only a profile that allows stage 1 alone, or the demo,
    /// may run; the caller must warn loudly in that case.
    pub fn check_ready(
        &self,
        profile: &SafeguardProfile,
        demo: bool,
        missing_reason: &str,
    ) -> Result<(), SafeguardError> {
        profile.validate()?;
        if self.stage2.is_none() && !profile.allow_stage1_only && !demo {
            return Err(SafeguardError::Stage2Unavailable {
                profile: profile.name.clone(),
                reason: missing_reason.to_owned(),
            });
        }
        Ok(())
    }

    /// Scores every view of `text` with stage 1, over sentence-sized and
    /// [`WINDOW_BYTES`]-sized windows, and keeps the most malicious reading.
    pub fn stage1(&self, text: &str) -> Stage1Result {
        let normalised = normalise_with_limits(text, self.limits);
        let mut scratch = FeatureScratch::default();
        let mut best_logit = f32::NEG_INFINITY;
        let mut best_view = 0usize;
        let mut best_range = 0..0;
        for (view_index, view) in normalised.views.iter().enumerate() {
            let window = self
                .stage1
                .best_window(&view.text, &STAGE1_WINDOW_SIZES, &mut scratch);
            if window.logit > best_logit {
                best_logit = window.logit;
                best_view = view_index;
                best_range = window.text_range;
            }
        }
        let (deciding_view, deciding_text) = normalised.views.get(best_view).map_or_else(
            || (ViewKind::Canonical, String::new()),
            |view| {
                (
                    view.kind.clone(),
                    view.text
                        .get(best_range.clone())
                        .unwrap_or(&view.text)
                        .to_owned(),
                )
            },
        );
        Stage1Result {
            score: if best_logit.is_finite() {
                crate::stage1::sigmoid(best_logit)
            } else {
                0.0
            },
            deciding_view,
            deciding_text,
            flags: normalised.flags,
        }
    }

    /// Classifies a whole exchange under `profile`.
    pub fn classify_exchange(
        &self,
        exchange: &Exchange,
        profile: &SafeguardProfile,
    ) -> SafeguardVerdict {
        self.classify_text(&exchange.classification_text(), profile)
    }

    /// Classifies one text (a prompt, or a whole model response) under
    /// `profile`: stage 1 on every view, then stage 2 if stage 1 is unsure.
    pub fn classify_text(&self, text: &str, profile: &SafeguardProfile) -> SafeguardVerdict {
        let stage1 = self.stage1(text);
        let thresholds = profile.thresholds;
        let uncertain =
            stage1.score >= thresholds.escalate_low && stage1.score < thresholds.escalate_high;
        let mut stage2_score = None;
        let mut stage2_missing = false;
        if uncertain {
            match &self.stage2 {
                Some(stage2) => match stage2.probability(&stage1.deciding_text) {
                    Ok(score) => stage2_score = Some(score),
                    Err(error) => {
                        tracing::warn!(%error, "stage 2 failed; falling back to stage 1");
                        stage2_missing = true;
                    }
                },
                None => stage2_missing = true,
            }
        }
        let (malicious, score, deciding_stage) = match stage2_score {
            Some(score) => (
                score >= thresholds.stage2_block,
                score,
                DecidingStage::Stage2,
            ),
            None => (
                stage1.score >= thresholds.stage1_block,
                stage1.score,
                DecidingStage::Stage1,
            ),
        };
        self.verdict(
            profile,
            malicious,
            score,
            deciding_stage,
            stage1,
            stage2_score,
            uncertain,
            stage2_missing,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn verdict(
        &self,
        profile: &SafeguardProfile,
        malicious: bool,
        score: f32,
        deciding_stage: DecidingStage,
        stage1: Stage1Result,
        stage2_score: Option<f32>,
        escalated: bool,
        stage2_missing: bool,
    ) -> SafeguardVerdict {
        let action = if !malicious {
            SafeguardAction::Allow
        } else {
            match profile.action {
                ProfileAction::Block => SafeguardAction::Block,
                ProfileAction::Flag => SafeguardAction::Flag,
                ProfileAction::Shadow => SafeguardAction::Allow,
            }
        };
        let category = malicious
            .then(|| categorise(&stage1.deciding_text).unwrap_or(CyberCategory::Intrusion));
        SafeguardVerdict {
            action,
            malicious,
            score: score.clamp(0.0, 1.0),
            category,
            deciding_stage,
            stage1_score: stage1.score,
            stage2_score,
            escalated,
            stage2_missing,
            deciding_view: stage1.deciding_view,
            flags: stage1.flags,
        }
    }

    /// Re-decides a verdict with the stage-3 judge's answer.
    pub fn apply_judge(
        &self,
        mut verdict: SafeguardVerdict,
        profile: &SafeguardProfile,
        judge_malicious: bool,
    ) -> SafeguardVerdict {
        verdict.malicious = judge_malicious;
        verdict.deciding_stage = DecidingStage::Judge;
        verdict.action = if !judge_malicious {
            SafeguardAction::Allow
        } else {
            match profile.action {
                ProfileAction::Block => SafeguardAction::Block,
                ProfileAction::Flag => SafeguardAction::Flag,
                ProfileAction::Shadow => SafeguardAction::Allow,
            }
        };
        if !judge_malicious {
            verdict.category = None;
        } else if verdict.category.is_none() {
            verdict.category = Some(CyberCategory::Intrusion);
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_the_whole_text_with_overlap() {
        let text = "é".repeat(3000); // 6000 bytes, two bytes per character.
        let parts = windows(&text);
        assert!(parts.len() >= 3);
        assert!(parts.iter().all(|part| part.len() <= WINDOW_BYTES));
        assert!(text.ends_with(parts[parts.len() - 1]));
        assert!(text.starts_with(parts[0]));
        assert_eq!(windows("short"), vec!["short"]);
    }
}
