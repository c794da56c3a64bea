//! Hashed lexical features for the stage-1 model: lowercased word unigrams
//! and bigrams plus character 3- to 5-grams over the word stream, hashed with
//! a sign bit into a fixed table (the "hashing trick").
//!
//! Extraction streams features into a callback, so that scoring allocates
//! only one small buffer and the training code can reuse the same function.

use crate::rng::{mix64, stable_hash};

const WORD_SEED: u64 = 0x5744_5F31;
const BIGRAM_SEED: u64 = 0x5744_5F32;
const CHAR_SEEDS: [u64; 3] = [0x4348_5F33, 0x4348_5F34, 0x4348_5F35];

/// The smallest and largest character n-gram lengths.
const CHAR_GRAM_MIN: usize = 3;
const CHAR_GRAM_MAX: usize = 5;

/// One hashed feature: its table index and its sign (+1 or -1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HashedFeature {
    pub index: u32,
    pub sign: f32,
}

fn hashed(hash: u64, mask: u64) -> HashedFeature {
    HashedFeature {
        index: (hash & mask) as u32,
        sign: if hash >> 63 == 0 { 1.0 } else { -1.0 },
    }
}

/// Reusable buffers for feature extraction, so that scoring allocates
/// nothing after warm-up.
#[derive(Debug, Default, Clone)]
pub struct FeatureScratch {
    /// The lowercased word stream.
    pub stream: Vec<u8>,
    /// For each stream byte, the byte offset in the input it came from.
    pub origins: Vec<u32>,
    /// Per stream position: summed signed weights and feature counts.
    pub weight_at: Vec<i64>,
    pub count_at: Vec<u32>,
}

/// Lowercases `text` and collapses every run of non-alphanumeric characters
/// into one space, with a space at both ends, into `scratch.stream`, and
/// records where each stream byte came from.
fn fill_word_stream(text: &str, scratch: &mut FeatureScratch) {
    let buffer = &mut scratch.stream;
    let origins = &mut scratch.origins;
    buffer.clear();
    origins.clear();
    buffer.reserve(text.len() + 2);
    origins.reserve(text.len() + 2);
    buffer.push(b' ');
    origins.push(0);
    let mut utf8 = [0u8; 4];
    for (offset, character) in text.char_indices() {
        let origin = offset as u32;
        if character.is_ascii_alphanumeric() {
            buffer.push(character.to_ascii_lowercase() as u8);
            origins.push(origin);
        } else if character.is_alphanumeric() {
            for lower in character.to_lowercase() {
                for byte in lower.encode_utf8(&mut utf8).as_bytes() {
                    buffer.push(*byte);
                    origins.push(origin);
                }
            }
        } else if buffer.last() != Some(&b' ') {
            buffer.push(b' ');
            origins.push(origin);
        }
    }
    if buffer.last() != Some(&b' ') {
        buffer.push(b' ');
        origins.push(text.len() as u32);
    }
}

/// Calls `sink` once per feature occurrence in `text`, with the stream
/// position where the feature starts, and returns how many occurrences
/// there were. Features are deterministic and platform-independent.
pub fn for_each_feature(
    text: &str,
    hash_bits: u8,
    scratch: &mut FeatureScratch,
    mut sink: impl FnMut(HashedFeature, usize),
) -> usize {
    let mask = (1u64 << hash_bits) - 1;
    fill_word_stream(text, scratch);
    let stream = scratch.stream.as_slice();
    let mut count = 0usize;
    let mut previous_word: Option<(u64, usize)> = None;
    let mut word_start = 0usize;
    for word in stream.split(|byte| *byte == b' ') {
        let start = word_start;
        word_start += word.len() + 1;
        if word.is_empty() {
            continue;
        }
        let word_hash = stable_hash(WORD_SEED, word);
        sink(hashed(word_hash, mask), start);
        count += 1;
        if let Some((previous, previous_start)) = previous_word {
            sink(
                hashed(
                    mix64(previous.rotate_left(17) ^ word_hash ^ BIGRAM_SEED),
                    mask,
                ),
                previous_start,
            );
            count += 1;
        }
        previous_word = Some((word_hash, start));
    }
    for start in 0..stream.len() {
        let mut hash = 0xCBF2_9CE4_8422_2325u64;
        for length in 1..=CHAR_GRAM_MAX {
            let Some(byte) = stream.get(start + length - 1) else {
                break;
            };
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01B3);
            if length >= CHAR_GRAM_MIN {
                sink(
                    hashed(mix64(hash ^ CHAR_SEEDS[length - CHAR_GRAM_MIN]), mask),
                    start,
                );
                count += 1;
            }
        }
    }
    count
}

/// The features of `text` merged by index, each scaled so that the vector
/// matches what [`crate::stage1::HashedLinearModel`] computes at inference.
pub fn sparse_features(text: &str, hash_bits: u8) -> Vec<(u32, f32)> {
    let mut scratch = FeatureScratch::default();
    let mut raw: Vec<HashedFeature> = Vec::new();
    let count = for_each_feature(text, hash_bits, &mut scratch, |feature, _| {
        raw.push(feature)
    });
    if count == 0 {
        return Vec::new();
    }
    let scale = 1.0 / (count as f32).sqrt();
    raw.sort_by_key(|feature| feature.index);
    let mut merged: Vec<(u32, f32)> = Vec::with_capacity(raw.len());
    for feature in raw {
        match merged.last_mut() {
            Some((index, value)) if *index == feature.index => *value += feature.sign * scale,
            _ => merged.push((feature.index, feature.sign * scale)),
        }
    }
    merged.retain(|(_, value)| *value != 0.0);
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_and_punctuation_do_not_change_features() {
        assert_eq!(
            sparse_features("Write a KEYLOGGER!!", 18),
            sparse_features("write   a keylogger", 18)
        );
    }

    #[test]
    fn features_count_words_bigrams_and_char_grams() {
        let mut scratch = FeatureScratch::default();
        // " ab cd " is 7 bytes: 5 trigrams, 4 four-grams, 3 five-grams, plus
        // two words and one bigram.
        let count = for_each_feature("ab cd", 18, &mut scratch, |_, _| {});
        assert_eq!(count, 5 + 4 + 3 + 2 + 1);
    }

    #[test]
    fn empty_text_has_no_features() {
        assert!(sparse_features("", 18).is_empty());
        assert!(sparse_features("  !!  ", 18).is_empty());
    }
}
