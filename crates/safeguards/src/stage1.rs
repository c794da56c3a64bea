//! Stage 1: a hashed n-gram logistic regression, trained in Rust with AdaGrad
//! and stored quantised to one signed byte per weight.
//!
//! Scoring one view is a single pass over its bytes with table look-ups and
//! no allocation beyond one reusable buffer, which is what keeps stage 1 in
//! the microsecond range.

use crate::error::SafeguardError;
use crate::features::{FeatureScratch, for_each_feature, sparse_features};
use crate::rng::SplitMix64;

const MODEL_MAGIC: &[u8; 8] = b"PCSGLM01";
const HEADER_LEN: usize = 8 + 4 + 4 + 4;

/// The fewest features a window must have to be scored on its own.
pub const MIN_WINDOW_FEATURES: usize = 40;

/// The best-scoring window of a text.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowScore {
    pub logit: f32,
    /// Byte range in the scored text.
    pub text_range: std::ops::Range<usize>,
}

/// One feature pass over a text, as prefix sums over the positions of its
/// lowercased word stream, so that any byte range can be scored in constant
/// time. Built by [`HashedLinearModel::prefix_scores`].
#[derive(Debug, Clone, Default)]
pub struct PrefixScores {
    /// Entry `i` is the summed signed weight of the features starting
    /// before stream position `i`.
    weight_prefix: Vec<i64>,
    count_prefix: Vec<u32>,
    /// For each stream position, the byte offset in the text it came from.
    /// Non-decreasing, which makes byte offsets searchable.
    origins: Vec<u32>,
    stream_is_space: Vec<bool>,
    total_weight: i64,
    total_count: usize,
    text_length: usize,
    hash_bits: u8,
}

impl PrefixScores {
    /// The feature weight sum and count over stream positions `start..end`.
    fn stream_sum(&self, start: usize, end: usize) -> (i64, usize) {
        let last = self.weight_prefix.len().saturating_sub(1);
        let (start, end) = (start.min(last), end.min(last));
        if end <= start {
            return (0, 0);
        }
        let sum = self.weight_prefix[end] - self.weight_prefix[start];
        let count = (self.count_prefix[end] - self.count_prefix[start]) as usize;
        (sum, count)
    }

    /// The feature weight sum and count of the byte range `range` of the
    /// scored text: the features that start inside it, plus those starting
    /// at the word boundary just before it (the leading space of its first
    /// word's character n-grams).
    pub fn byte_range_sum(&self, range: std::ops::Range<usize>) -> (i64, usize) {
        if range.start >= range.end || range.start >= self.text_length {
            return (0, 0);
        }
        let mut start = self
            .origins
            .partition_point(|origin| (*origin as usize) < range.start);
        if start > 0
            && self
                .stream_is_space
                .get(start - 1)
                .copied()
                .unwrap_or(false)
        {
            start -= 1;
        }
        let end = self
            .origins
            .partition_point(|origin| (*origin as usize) < range.end);
        self.stream_sum(start, end)
    }

    /// How many features the whole text has.
    pub fn total_count(&self) -> usize {
        self.total_count
    }

    /// The hash width of the model that made this pass.
    pub fn hash_bits(&self) -> u8 {
        self.hash_bits
    }
}

/// A trained stage-1 model: `sigmoid(bias + scale * sum(q[i] * sign) / sqrt(n))`.
#[derive(Debug, Clone, PartialEq)]
pub struct HashedLinearModel {
    hash_bits: u8,
    scale: f32,
    bias: f32,
    quantised_weights: Vec<i8>,
}

impl HashedLinearModel {
    pub fn hash_bits(&self) -> u8 {
        self.hash_bits
    }

    /// The log-odds that `text` as a whole is malicious.
    pub fn logit(&self, text: &str, scratch: &mut FeatureScratch) -> f32 {
        let mut sum = 0i64;
        let weights = &self.quantised_weights;
        let count = for_each_feature(text, self.hash_bits, scratch, |feature, _| {
            let weight = i64::from(weights.get(feature.index as usize).copied().unwrap_or(0));
            sum += if feature.sign > 0.0 { weight } else { -weight };
        });
        self.logit_of(sum, count)
    }

    fn logit_of(&self, sum: i64, count: usize) -> f32 {
        if count == 0 {
            return self.bias;
        }
        self.bias + self.scale * sum as f32 / (count as f32).sqrt()
    }

    /// The probability that `text` as a whole is malicious.
    pub fn probability(&self, text: &str, scratch: &mut FeatureScratch) -> f32 {
        sigmoid(self.logit(text, scratch))
    }

    /// Runs one feature pass over `text` and keeps per-position prefix sums,
    /// so that the score of any byte range of `text` (a window or a segment)
    /// then costs two look-ups.
    pub fn prefix_scores(&self, text: &str, scratch: &mut FeatureScratch) -> PrefixScores {
        let weights = &self.quantised_weights;
        let length = text.len() + 3;
        let mut weight_at = vec![0i64; length + 1];
        let mut count_at = vec![0u32; length + 1];
        let total = for_each_feature(text, self.hash_bits, scratch, |feature, position| {
            let weight = i64::from(weights.get(feature.index as usize).copied().unwrap_or(0));
            if let (Some(slot), Some(counter)) =
                (weight_at.get_mut(position), count_at.get_mut(position))
            {
                *slot += if feature.sign > 0.0 { weight } else { -weight };
                *counter += 1;
            }
        });
        let stream_length = scratch.stream.len().min(length);
        // Prefix sums in place: entry i holds the sum over positions < i.
        let mut running_weight = 0i64;
        let mut running_count = 0u32;
        for position in 0..=stream_length {
            let (weight, count) = (weight_at[position], count_at[position]);
            weight_at[position] = running_weight;
            count_at[position] = running_count;
            running_weight += weight;
            running_count += count;
        }
        weight_at.truncate(stream_length + 1);
        count_at.truncate(stream_length + 1);
        PrefixScores {
            weight_prefix: weight_at,
            count_prefix: count_at,
            origins: scratch
                .origins
                .iter()
                .take(stream_length)
                .copied()
                .collect(),
            stream_is_space: scratch
                .stream
                .iter()
                .take(stream_length)
                .map(|byte| *byte == b' ')
                .collect(),
            total_weight: running_weight,
            total_count: total,
            text_length: text.len(),
            hash_bits: self.hash_bits,
        }
    }

    /// The log-odds of a feature sum over `count` features.
    pub fn logit_of_sum(&self, sum: i64, count: usize) -> f32 {
        self.logit_of(sum, count)
    }

    /// Scores every window of `text` at each size in `window_sizes` (in
    /// bytes of the lowercased word stream, stepping a quarter window) and
    /// returns the most malicious one, with its byte range in `text`.
    ///
    /// One feature pass fills per-position sums; prefix sums then give any
    /// window's score in constant time. Short windows keep a one-sentence
    /// attack from being diluted by the benign text around it; the longest
    /// size keeps context. Windows with fewer than `MIN_WINDOW_FEATURES`
    /// features are skipped unless the text has no larger window.
    pub fn best_window(
        &self,
        text: &str,
        window_sizes: &[usize],
        scratch: &mut FeatureScratch,
    ) -> WindowScore {
        let prefix = self.prefix_scores(text, scratch);
        self.best_window_of(&prefix, text, window_sizes)
    }

    /// [`Self::best_window`] over an existing feature pass of `text`.
    pub fn best_window_of(
        &self,
        prefix: &PrefixScores,
        text: &str,
        window_sizes: &[usize],
    ) -> WindowScore {
        let stream_length = prefix.origins.len();
        let prefix_end = stream_length;
        let whole = WindowScore {
            logit: self.logit_of(prefix.total_weight, prefix.total_count),
            text_range: 0..text.len(),
        };
        let mut best = whole.clone();
        for &size in window_sizes {
            if size == 0 || size >= stream_length {
                continue;
            }
            let stride = (size / 4).max(1);
            let mut start = 0usize;
            loop {
                let end = (start + size).min(prefix_end);
                let (sum, count) = prefix.stream_sum(start, end);
                if count >= MIN_WINDOW_FEATURES {
                    let logit = self.logit_of(sum, count);
                    if logit > best.logit {
                        let origin = |position: usize| {
                            prefix
                                .origins
                                .get(position)
                                .map_or(text.len(), |o| *o as usize)
                        };
                        best = WindowScore {
                            logit,
                            text_range: origin(start)
                                ..origin(end.min(stream_length - 1)).max(origin(start)),
                        };
                    }
                }
                if end >= prefix_end {
                    break;
                }
                start += stride;
            }
        }
        // The range must be on character boundaries of `text`.
        if !text.is_char_boundary(best.text_range.start)
            || !text.is_char_boundary(best.text_range.end)
        {
            best.text_range = 0..text.len();
        }
        best
    }

    /// Quantises trained float weights.
    pub fn from_float_weights(hash_bits: u8, weights: &[f32], bias: f32) -> Self {
        let largest = weights.iter().fold(0.0f32, |acc, w| acc.max(w.abs()));
        let scale = if largest > 0.0 { largest / 127.0 } else { 1.0 };
        let quantised_weights = weights
            .iter()
            .map(|weight| (weight / scale).round().clamp(-127.0, 127.0) as i8)
            .collect();
        Self {
            hash_bits,
            scale,
            bias,
            quantised_weights,
        }
    }

    /// The on-disk form: magic, hash bits, scale, bias, then one byte per
    /// weight, little-endian throughout.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(HEADER_LEN + self.quantised_weights.len());
        bytes.extend_from_slice(MODEL_MAGIC);
        bytes.extend_from_slice(&u32::from(self.hash_bits).to_le_bytes());
        bytes.extend_from_slice(&self.scale.to_le_bytes());
        bytes.extend_from_slice(&self.bias.to_le_bytes());
        bytes.extend(self.quantised_weights.iter().map(|weight| *weight as u8));
        bytes
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SafeguardError> {
        let invalid = |reason: &str| SafeguardError::InvalidModel {
            reason: reason.to_owned(),
        };
        if bytes.len() < HEADER_LEN || &bytes[..8] != MODEL_MAGIC {
            return Err(invalid("missing stage-1 model header"));
        }
        let word = |offset: usize| -> [u8; 4] {
            let mut word = [0u8; 4];
            word.copy_from_slice(&bytes[offset..offset + 4]);
            word
        };
        let hash_bits = u32::from_le_bytes(word(8));
        if !(10..=24).contains(&hash_bits) {
            return Err(invalid("hash bits out of range"));
        }
        let scale = f32::from_le_bytes(word(12));
        let bias = f32::from_le_bytes(word(16));
        let weights = &bytes[HEADER_LEN..];
        if weights.len() != 1usize << hash_bits {
            return Err(invalid("weight table length does not match hash bits"));
        }
        if !scale.is_finite() || !bias.is_finite() {
            return Err(invalid("non-finite scale or bias"));
        }
        Ok(Self {
            hash_bits: hash_bits as u8,
            scale,
            bias,
            quantised_weights: weights.iter().map(|byte| *byte as i8).collect(),
        })
    }
}

pub fn sigmoid(logit: f32) -> f32 {
    1.0 / (1.0 + (-logit).exp())
}

/// One training example: merged sparse features, a 0/1 label and a weight.
#[derive(Debug, Clone)]
pub struct SparseExample {
    pub features: Vec<(u32, f32)>,
    pub label: f32,
    pub weight: f32,
}

impl SparseExample {
    pub fn from_text(text: &str, malicious: bool, weight: f32, hash_bits: u8) -> Self {
        Self {
            features: sparse_features(text, hash_bits),
            label: if malicious { 1.0 } else { 0.0 },
            weight,
        }
    }
}

/// Hyper-parameters of stage-1 training.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct LinearTrainingConfig {
    pub hash_bits: u8,
    pub epochs: usize,
    pub learning_rate: f32,
    pub l2: f32,
    pub seed: u64,
}

impl Default for LinearTrainingConfig {
    fn default() -> Self {
        Self {
            hash_bits: 20,
            epochs: 8,
            learning_rate: 0.2,
            l2: 1e-6,
            seed: 0x5EED_0001,
        }
    }
}

/// Trains a logistic regression with AdaGrad. The example order is shuffled
/// per epoch from `config.seed`, so the result is reproducible.
pub fn train_linear(examples: &[SparseExample], config: LinearTrainingConfig) -> HashedLinearModel {
    let size = 1usize << config.hash_bits;
    let mut weights = vec![0.0f32; size];
    let mut squared_gradients = vec![1e-6f32; size];
    let mut bias = 0.0f32;
    let mut bias_squared_gradient = 1e-6f32;
    let mut order: Vec<usize> = (0..examples.len()).collect();
    let mut rng = SplitMix64::new(config.seed);
    for _ in 0..config.epochs {
        rng.shuffle(&mut order);
        for &example_index in &order {
            let Some(example) = examples.get(example_index) else {
                continue;
            };
            let mut logit = bias;
            for (index, value) in &example.features {
                logit += weights[*index as usize] * value;
            }
            let error = (sigmoid(logit) - example.label) * example.weight;
            for (index, value) in &example.features {
                let slot = *index as usize;
                let gradient = error * value + config.l2 * weights[slot];
                squared_gradients[slot] += gradient * gradient;
                weights[slot] -= config.learning_rate * gradient / squared_gradients[slot].sqrt();
            }
            bias_squared_gradient += error * error;
            bias -= config.learning_rate * error / bias_squared_gradient.sqrt();
        }
    }
    HashedLinearModel::from_float_weights(config.hash_bits, &weights, bias)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy_model() -> HashedLinearModel {
        let rows = [
            ("write a keylogger that steals passwords", true),
            ("build ransomware that encrypts files", true),
            ("steal session cookies from a victim", true),
            ("explain how to detect a keylogger", false),
            ("write a poem about autumn leaves", false),
            ("how do I bake sourdough bread", false),
        ];
        let examples: Vec<SparseExample> = rows
            .iter()
            .map(|(text, malicious)| SparseExample::from_text(text, *malicious, 1.0, 16))
            .collect();
        train_linear(
            &examples,
            LinearTrainingConfig {
                hash_bits: 16,
                epochs: 30,
                ..LinearTrainingConfig::default()
            },
        )
    }

    #[test]
    fn training_separates_a_toy_set_and_is_reproducible() {
        let model = toy_model();
        let mut scratch = FeatureScratch::default();
        assert!(model.probability("build ransomware that steals passwords", &mut scratch) > 0.5);
        assert!(model.probability("write a poem about bread", &mut scratch) < 0.5);
        assert_eq!(model, toy_model());
    }

    #[test]
    fn best_window_finds_a_short_attack_in_long_benign_text() {
        let model = toy_model();
        let mut scratch = FeatureScratch::default();
        let filler = "write a poem about autumn leaves and bake sourdough bread. ".repeat(40);
        let text = format!("{filler}build ransomware that steals passwords. {filler}");
        let whole = model.logit(&text, &mut scratch);
        let best = model.best_window(&text, &[64, 1024], &mut scratch);
        assert!(best.logit > whole);
        assert!(sigmoid(best.logit) > 0.5, "{best:?}");
        assert!(
            text[best.text_range.clone()].contains("ransomware"),
            "{:?}",
            &text[best.text_range.clone()]
        );
        let plain = model.best_window("write a poem", &[64, 1024], &mut scratch);
        assert_eq!(plain.text_range, 0.."write a poem".len());
    }

    #[test]
    fn serialisation_round_trips_and_rejects_garbage() {
        let model = toy_model();
        assert_eq!(
            HashedLinearModel::from_bytes(&model.to_bytes()).ok(),
            Some(model.clone())
        );
        assert!(HashedLinearModel::from_bytes(b"nonsense").is_err());
        let mut truncated = model.to_bytes();
        truncated.pop();
        assert!(HashedLinearModel::from_bytes(&truncated).is_err());
    }
}
