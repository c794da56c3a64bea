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

/// Lowercases `text` and collapses every run of non-alphanumeric characters
/// into one space, with a space at both ends, into `buffer`.
fn fill_word_stream(text: &str, buffer: &mut Vec<u8>) {
    buffer.clear();
    buffer.reserve(text.len() + 2);
    buffer.push(b' ');
    let mut utf8 = [0u8; 4];
    for character in text.chars() {
        if character.is_ascii_alphanumeric() {
            buffer.push(character.to_ascii_lowercase() as u8);
        } else if character.is_alphanumeric() {
            for lower in character.to_lowercase() {
                buffer.extend_from_slice(lower.encode_utf8(&mut utf8).as_bytes());
            }
        } else if buffer.last() != Some(&b' ') {
            buffer.push(b' ');
        }
    }
    if buffer.last() != Some(&b' ') {
        buffer.push(b' ');
    }
}

/// Calls `sink` once per feature occurrence in `text` and returns how many
/// occurrences there were. Features are deterministic and platform-independent.
pub fn for_each_feature(
    text: &str,
    hash_bits: u8,
    buffer: &mut Vec<u8>,
    mut sink: impl FnMut(HashedFeature),
) -> usize {
    let mask = (1u64 << hash_bits) - 1;
    fill_word_stream(text, buffer);
    let stream = buffer.as_slice();
    let mut count = 0usize;
    let mut previous_word: Option<u64> = None;
    for word in stream
        .split(|byte| *byte == b' ')
        .filter(|word| !word.is_empty())
    {
        let word_hash = stable_hash(WORD_SEED, word);
        sink(hashed(word_hash, mask));
        count += 1;
        if let Some(previous) = previous_word {
            sink(hashed(
                mix64(previous.rotate_left(17) ^ word_hash ^ BIGRAM_SEED),
                mask,
            ));
            count += 1;
        }
        previous_word = Some(word_hash);
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
                sink(hashed(
                    mix64(hash ^ CHAR_SEEDS[length - CHAR_GRAM_MIN]),
                    mask,
                ));
                count += 1;
            }
        }
    }
    count
}

/// The features of `text` merged by index, each scaled so that the vector
/// matches what [`crate::stage1::HashedLinearModel`] computes at inference.
pub fn sparse_features(text: &str, hash_bits: u8) -> Vec<(u32, f32)> {
    let mut buffer = Vec::new();
    let mut raw: Vec<HashedFeature> = Vec::new();
    let count = for_each_feature(text, hash_bits, &mut buffer, |feature| raw.push(feature));
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
        let mut buffer = Vec::new();
        // " ab cd " is 7 bytes: 5 trigrams, 4 four-grams, 3 five-grams, plus
        // two words and one bigram.
        let count = for_each_feature("ab cd", 18, &mut buffer, |_| {});
        assert_eq!(count, 5 + 4 + 3 + 2 + 1);
    }

    #[test]
    fn empty_text_has_no_features() {
        assert!(sparse_features("", 18).is_empty());
        assert!(sparse_features("  !!  ", 18).is_empty());
    }
}
