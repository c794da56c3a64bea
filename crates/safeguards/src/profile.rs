//! Safeguard profiles: per-model configuration of thresholds, the action on a
//! match, the streaming output guard and the optional stage-3 judge.

use serde::{Deserialize, Serialize};

use crate::error::SafeguardError;

/// What happens when the classifier finds a request malicious.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProfileAction {
    /// Refuse the request (400 `content_policy_violation`).
    Block,
    /// Serve the request and mark the audit entry.
    Flag,
    /// Serve the request and only log the verdict, for trying a profile out.
    Shadow,
}

/// Score thresholds. Scores are probabilities in `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Stage-1 score at or above which a request is malicious when stage 2
    /// is not available.
    pub stage1_block: f32,
    /// Stage-1 scores in `[escalate_low, escalate_high)` are uncertain and go
    /// to stage 2; below is allowed, at or above is blocked by stage 1.
    pub escalate_low: f32,
    pub escalate_high: f32,
    /// Stage-2 score at or above which an escalated request is malicious.
    pub stage2_block: f32,
    /// Subtracted from the stage-1 log-odds of a segment (a sentence, a few
    /// adjacent sentences, a quoted span) before it is compared with the
    /// thresholds above. Short benign texts score higher than long ones, so
    /// segments need a stricter bar than whole texts; this offset is that
    /// bar, calibrated on the training split (see the model card).
    #[serde(default = "default_segment_logit_offset")]
    pub segment_logit_offset: f32,
    /// Added to `segment_logit_offset` for each halving of a segment's
    /// feature count below [`SEGMENT_REFERENCE_FEATURES`]: the shorter the
    /// segment, the less it says, and the more often a benign one scores
    /// high (a heading such as "Fileless malware", a line of code with a
    /// password variable).
    #[serde(default = "default_segment_short_penalty")]
    pub segment_short_penalty: f32,
    /// The same as `segment_logit_offset` for stage-2 scores of segments.
    #[serde(default = "default_segment_stage2_logit_offset")]
    pub segment_stage2_logit_offset: f32,
    /// Log-odds given back to the best segment when deciding whether to
    /// escalate (never when deciding a block): a request that stage 1 is
    /// only moderately sure of alone falls under the band once padding
    /// pushes its score through the segment offset, and this hands it to
    /// stage 2 instead of allowing it. Zero (the default) escalates on the
    /// offset score alone; calibrated with the stage-2 classifier.
    #[serde(default)]
    pub segment_escalation_relief: f32,
}

fn logit_of(probability: f32) -> f32 {
    let clamped = probability.clamp(1e-7, 1.0 - 1e-7);
    (clamped / (1.0 - clamped)).ln()
}

/// The calibrated stage-1 segment offset of the committed model, used when a
/// configuration or an older manifest does not give one.
pub const DEFAULT_SEGMENT_LOGIT_OFFSET: f32 = 3.4;
/// The calibrated per-halving penalty for short segments.
pub const DEFAULT_SEGMENT_SHORT_PENALTY: f32 = 0.5;
/// The feature count at and above which a segment gets no short penalty
/// (about 80 bytes of English).
pub const SEGMENT_REFERENCE_FEATURES: usize = 256;
/// The calibrated stage-2 segment offset of the committed model.
pub const DEFAULT_SEGMENT_STAGE2_LOGIT_OFFSET: f32 = 2.5;

fn default_segment_logit_offset() -> f32 {
    DEFAULT_SEGMENT_LOGIT_OFFSET
}

fn default_segment_short_penalty() -> f32 {
    DEFAULT_SEGMENT_SHORT_PENALTY
}

fn default_segment_stage2_logit_offset() -> f32 {
    DEFAULT_SEGMENT_STAGE2_LOGIT_OFFSET
}

/// Settings of the streaming output guard.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputGuardSettings {
    pub enabled: bool,
    /// Held text is checked and released once it ends a sentence.
    pub release_at_sentence_end: bool,
    /// Held text is checked and released once it reaches this many characters.
    pub hold_back_max_chars: usize,
    /// Held text is checked and released once its oldest event is this old.
    pub hold_back_max_ms: u64,
}

impl Default for OutputGuardSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            release_at_sentence_end: true,
            hold_back_max_chars: 400,
            hold_back_max_ms: 150,
        }
    }
}

/// What the pipeline does when the stage-3 judge fails or times out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JudgeFailureMode {
    /// Keep the stage-1/2 verdict.
    FailOpen,
    /// Treat the request as malicious.
    FailClosed,
}

/// An optional LLM judge behind an OpenAI-compatible API (for example Llama
/// Guard served by vLLM), consulted for requests scoring in its band.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeConfig {
    /// The API root, such as `http://127.0.0.1:8000/v1`.
    pub base_url: String,
    pub model: String,
    #[serde(default = "default_judge_timeout_ms")]
    pub timeout_ms: u64,
    pub failure_mode: JudgeFailureMode,
    /// Requests whose cascade score is in `[consult_low, consult_high)` are
    /// sent to the judge; the judge's answer then decides.
    #[serde(default = "default_consult_low")]
    pub consult_low: f32,
    #[serde(default = "default_consult_high")]
    pub consult_high: f32,
    /// The environment variable holding the judge's API key, if it needs one.
    #[serde(default)]
    pub api_key_env: Option<String>,
}

fn default_judge_timeout_ms() -> u64 {
    2_000
}
fn default_consult_low() -> f32 {
    0.2
}
fn default_consult_high() -> f32 {
    0.8
}

/// One safeguard profile, such as `cyber`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SafeguardProfile {
    pub name: String,
    pub action: ProfileAction,
    pub thresholds: Thresholds,
    #[serde(default)]
    pub output_guard: OutputGuardSettings,
    /// Whether the gateway may run this profile with stage 1 alone when the
    /// embedding model is missing. Off by default: fail closed.
    #[serde(default)]
    pub allow_stage1_only: bool,
    #[serde(default)]
    pub judge: Option<JudgeConfig>,
}

impl Thresholds {
    /// Whether a stage-1 result goes to stage 2: its score is in the band,
    /// or it is under the band and its best segment, given back
    /// `segment_escalation_relief` log-odds, reaches the band.
    pub fn escalates(&self, stage1: &crate::classifier::Stage1Result) -> bool {
        if stage1.score >= self.escalate_high {
            return false;
        }
        if stage1.score >= self.escalate_low {
            return true;
        }
        self.segment_escalation_relief > 0.0
            && stage1.segment_score > 0.0
            && crate::stage1::sigmoid(
                logit_of(stage1.segment_score) + self.segment_escalation_relief,
            ) >= self.escalate_low
    }

    /// What a segment with `feature_count` features has subtracted from its
    /// stage-1 log-odds before it is compared with the thresholds.
    pub fn segment_offset(&self, feature_count: usize) -> f32 {
        let halvings = (SEGMENT_REFERENCE_FEATURES as f32 / feature_count.max(1) as f32)
            .log2()
            .max(0.0);
        self.segment_logit_offset + self.segment_short_penalty * halvings
    }
}

impl SafeguardProfile {
    /// The `cyber` profile with the thresholds recommended by training.
    pub fn cyber(thresholds: Thresholds) -> Self {
        Self {
            name: "cyber".to_owned(),
            action: ProfileAction::Block,
            thresholds,
            output_guard: OutputGuardSettings::default(),
            allow_stage1_only: false,
            judge: None,
        }
    }

    /// Checks every value; an invalid profile must never replace a valid one.
    pub fn validate(&self) -> Result<(), SafeguardError> {
        let invalid = |reason: String| SafeguardError::InvalidProfile {
            profile: self.name.clone(),
            reason,
        };
        if self.name.trim().is_empty() {
            return Err(invalid("the name is empty".to_owned()));
        }
        let thresholds = self.thresholds;
        for (name, value) in [
            ("stage1_block", thresholds.stage1_block),
            ("escalate_low", thresholds.escalate_low),
            ("escalate_high", thresholds.escalate_high),
            ("stage2_block", thresholds.stage2_block),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(invalid(format!("`{name}` is `{value}`, outside 0..=1")));
            }
        }
        for (name, value) in [
            ("segment_logit_offset", thresholds.segment_logit_offset),
            ("segment_short_penalty", thresholds.segment_short_penalty),
            (
                "segment_stage2_logit_offset",
                thresholds.segment_stage2_logit_offset,
            ),
            (
                "segment_escalation_relief",
                thresholds.segment_escalation_relief,
            ),
        ] {
            if !value.is_finite() || !(0.0..=20.0).contains(&value) {
                return Err(invalid(format!("`{name}` is `{value}`, outside 0..=20")));
            }
        }
        if thresholds.escalate_low > thresholds.escalate_high {
            return Err(invalid(
                "`escalate_low` is above `escalate_high`".to_owned(),
            ));
        }
        if self.output_guard.enabled && self.output_guard.hold_back_max_chars == 0 {
            return Err(invalid("`hold_back_max_chars` must be positive".to_owned()));
        }
        if let Some(judge) = &self.judge {
            if !(judge.base_url.starts_with("http://") || judge.base_url.starts_with("https://")) {
                return Err(invalid(format!(
                    "judge `base_url` `{}` is not an http(s) URL",
                    judge.base_url
                )));
            }
            if judge.timeout_ms == 0 {
                return Err(invalid("judge `timeout_ms` must be positive".to_owned()));
            }
            if judge.consult_low > judge.consult_high {
                return Err(invalid(
                    "judge `consult_low` is above `consult_high`".to_owned(),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage1_result(
        score: f32,
        whole_score: f32,
        segment_score: f32,
    ) -> crate::classifier::Stage1Result {
        crate::classifier::Stage1Result {
            score,
            deciding_view: crate::normalise::ViewKind::Canonical,
            deciding_text: String::new(),
            flags: crate::normalise::NormalisationFlags::default(),
            whole_score,
            whole_text: String::new(),
            segment_score,
            top_segments: Vec::new(),
            segments_scored: 0,
        }
    }

    #[test]
    fn escalation_relief_reaches_only_diluted_segments_and_never_blocks() {
        let mut thresholds = thresholds();
        thresholds.escalate_low = 0.6;
        thresholds.escalate_high = 0.95;
        // (score, whole, best segment, relief, escalates)
        let cases = [
            (0.7, 0.7, 0.1, 0.0, true),    // in the band
            (0.97, 0.97, 0.1, 3.0, false), // above the band: stage 1 decides
            (0.3, 0.1, 0.3, 0.0, false),   // under the band, no relief
            (0.3, 0.1, 0.3, 1.0, false),   // relief too small: sigmoid(-0.85 + 1) < 0.6
            (0.3, 0.1, 0.3, 1.5, true),    // sigmoid(-0.85 + 1.5) = 0.66
            (0.1, 0.1, 0.0, 5.0, false),   // no segment scored: nothing to give back
        ];
        for (score, whole, segment, relief, expected) in cases {
            thresholds.segment_escalation_relief = relief;
            assert_eq!(
                thresholds.escalates(&stage1_result(score, whole, segment)),
                expected,
                "score {score}, segment {segment}, relief {relief}"
            );
        }
    }

    fn thresholds() -> Thresholds {
        Thresholds {
            stage1_block: 0.5,
            escalate_low: 0.2,
            escalate_high: 0.8,
            stage2_block: 0.5,
            segment_logit_offset: 1.0,
            segment_short_penalty: 0.5,
            segment_stage2_logit_offset: 1.0,
            segment_escalation_relief: 0.0,
        }
    }

    #[test]
    fn profiles_parse_from_json_with_defaults() {
        let profile: SafeguardProfile = serde_json::from_str(
            r#"{"name":"cyber","action":"flag",
                "thresholds":{"stage1_block":0.5,"escalate_low":0.2,"escalate_high":0.8,"stage2_block":0.5},
                "judge":{"base_url":"http://127.0.0.1:9/v1","model":"llama-guard","failure_mode":"fail_closed"}}"#,
        )
        .unwrap();
        assert_eq!(profile.action, ProfileAction::Flag);
        assert_eq!(profile.output_guard.hold_back_max_ms, 150);
        assert!(!profile.allow_stage1_only);
        assert_eq!(profile.judge.as_ref().map(|j| j.timeout_ms), Some(2_000));
        profile.validate().unwrap();
    }

    #[test]
    fn invalid_profiles_are_rejected() {
        let mut cases = Vec::new();
        let mut bad = SafeguardProfile::cyber(thresholds());
        bad.thresholds.escalate_low = 0.9;
        cases.push(bad);
        let mut bad = SafeguardProfile::cyber(thresholds());
        bad.thresholds.stage1_block = 1.5;
        cases.push(bad);
        let mut bad = SafeguardProfile::cyber(thresholds());
        bad.thresholds.segment_logit_offset = f32::NAN;
        cases.push(bad);
        let mut bad = SafeguardProfile::cyber(thresholds());
        bad.output_guard.hold_back_max_chars = 0;
        cases.push(bad);
        let mut bad = SafeguardProfile::cyber(thresholds());
        bad.judge = Some(JudgeConfig {
            base_url: "ftp://x".to_owned(),
            model: "m".to_owned(),
            timeout_ms: 10,
            failure_mode: JudgeFailureMode::FailOpen,
            consult_low: 0.1,
            consult_high: 0.9,
            api_key_env: None,
        });
        cases.push(bad);
        for profile in cases {
            assert!(profile.validate().is_err(), "{profile:?}");
        }
        assert!(SafeguardProfile::cyber(thresholds()).validate().is_ok());
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let parsed: Result<SafeguardProfile, _> =
            serde_json::from_str(r#"{"name":"cyber","action":"block","tresholds":{}}"#);
        assert!(parsed.is_err());
    }
}
