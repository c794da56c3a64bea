//! Stage 2: a sentence embedding of the most suspicious reading, scored by a
//! trained logistic-regression head. It runs only on requests that stage 1
//! finds uncertain.
//!
//! The embedding engine is behind [`SentenceEmbedder`] so that this crate
//! can be tested with a fake engine and so that the engine can be swapped.

use std::sync::Arc;

use crate::error::SafeguardError;
use crate::rng::SplitMix64;
use crate::stage1::sigmoid;

const HEAD_MAGIC: &[u8; 8] = b"PCSGEH01";

/// Produces L2-normalised sentence embeddings.
pub trait SentenceEmbedder: Send + Sync {
    /// One embedding per model window of `text`, covering all of it, so that
    /// nothing past the model's sequence limit is ignored. Never empty for a
    /// successful call.
    fn embed_windows(&self, text: &str) -> Result<Vec<Vec<f32>>, SafeguardError>;
}

/// The all-MiniLM-L6-v2 engine of `portcullis-embed` as a stage-2 embedder.
pub struct MiniLmEmbedder {
    embedder: portcullis_embed::Embedder,
}

impl MiniLmEmbedder {
    /// Wraps an engine already loaded (for example from bytes compiled into
    /// the binary).
    pub fn new(embedder: portcullis_embed::Embedder) -> Self {
        Self { embedder }
    }

    /// Finds the model files in the contract's lookup order (`explicit`
    /// first, then `PORTCULLIS_EMBEDDING_MODEL_DIR`, then the installed
    /// package) and loads them.
    pub fn locate_and_load(explicit: Option<&std::path::Path>) -> Result<Self, SafeguardError> {
        let directory = portcullis_embed::locate_model_dir(explicit).map_err(|error| {
            SafeguardError::Embedding {
                reason: error.to_string(),
            }
        })?;
        let embedder = portcullis_embed::Embedder::load(&directory).map_err(|error| {
            SafeguardError::Embedding {
                reason: error.to_string(),
            }
        })?;
        Ok(Self { embedder })
    }
}

impl SentenceEmbedder for MiniLmEmbedder {
    fn embed_windows(&self, text: &str) -> Result<Vec<Vec<f32>>, SafeguardError> {
        let chunks =
            self.embedder
                .embed_chunked(text)
                .map_err(|error| SafeguardError::Embedding {
                    reason: error.to_string(),
                })?;
        if chunks.is_empty() {
            // An empty text has no windows; embed it as the model does.
            let single = self
                .embedder
                .embed(text)
                .map_err(|error| SafeguardError::Embedding {
                    reason: error.to_string(),
                })?;
            return Ok(vec![single]);
        }
        Ok(chunks.into_iter().map(|chunk| chunk.embedding).collect())
    }
}

/// A logistic-regression head over a fixed-size embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingHead {
    pub weights: Vec<f32>,
    pub bias: f32,
}

impl EmbeddingHead {
    pub fn dimension(&self) -> usize {
        self.weights.len()
    }

    /// The probability that the embedded text is malicious. An embedding of
    /// the wrong size scores as if it were all zeros, which is the head's
    /// prior; the caller validates dimensions at load time.
    pub fn probability(&self, embedding: &[f32]) -> f32 {
        let dot: f32 = self.weights.iter().zip(embedding).map(|(w, x)| w * x).sum();
        sigmoid(self.bias + dot)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(16 + 4 * self.weights.len());
        bytes.extend_from_slice(HEAD_MAGIC);
        bytes.extend_from_slice(&(self.weights.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&self.bias.to_le_bytes());
        for weight in &self.weights {
            bytes.extend_from_slice(&weight.to_le_bytes());
        }
        bytes
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SafeguardError> {
        let invalid = |reason: &str| SafeguardError::InvalidModel {
            reason: reason.to_owned(),
        };
        if bytes.len() < 16 || &bytes[..8] != HEAD_MAGIC {
            return Err(invalid("missing stage-2 head header"));
        }
        let read_word = |offset: usize| -> [u8; 4] {
            let mut word = [0u8; 4];
            word.copy_from_slice(&bytes[offset..offset + 4]);
            word
        };
        let dimension = u32::from_le_bytes(read_word(8)) as usize;
        let bias = f32::from_le_bytes(read_word(12));
        if bytes.len() != 16 + 4 * dimension || dimension == 0 {
            return Err(invalid("stage-2 head length does not match its dimension"));
        }
        let weights: Vec<f32> = (0..dimension)
            .map(|i| f32::from_le_bytes(read_word(16 + 4 * i)))
            .collect();
        if !bias.is_finite() || weights.iter().any(|w| !w.is_finite()) {
            return Err(invalid("non-finite stage-2 weight"));
        }
        Ok(Self { weights, bias })
    }
}

/// Trains the head with AdaGrad logistic regression, deterministic for a seed.
pub fn train_head(
    embeddings: &[Vec<f32>],
    labels: &[bool],
    weights: &[f32],
    epochs: usize,
    seed: u64,
) -> EmbeddingHead {
    let dimension = embeddings.first().map_or(0, Vec::len);
    let mut head_weights = vec![0.0f32; dimension];
    let mut squared = vec![1e-6f32; dimension];
    let mut bias = 0.0f32;
    let mut bias_squared = 1e-6f32;
    let learning_rate = 0.1f32;
    let l2 = 1e-4f32;
    let mut order: Vec<usize> = (0..embeddings.len()).collect();
    let mut rng = SplitMix64::new(seed);
    for _ in 0..epochs {
        rng.shuffle(&mut order);
        for &index in &order {
            let (Some(embedding), Some(label), Some(weight)) =
                (embeddings.get(index), labels.get(index), weights.get(index))
            else {
                continue;
            };
            let logit = bias
                + head_weights
                    .iter()
                    .zip(embedding)
                    .map(|(w, x)| w * x)
                    .sum::<f32>();
            let error = (sigmoid(logit) - if *label { 1.0 } else { 0.0 }) * weight;
            for ((w, g), x) in head_weights
                .iter_mut()
                .zip(squared.iter_mut())
                .zip(embedding)
            {
                let gradient = error * x + l2 * *w;
                *g += gradient * gradient;
                *w -= learning_rate * gradient / g.sqrt();
            }
            bias_squared += error * error;
            bias -= learning_rate * error / bias_squared.sqrt();
        }
    }
    EmbeddingHead {
        weights: head_weights,
        bias,
    }
}

/// The stage-2 engine and head, ready to score.
#[derive(Clone)]
pub struct Stage2 {
    embedder: Arc<dyn SentenceEmbedder>,
    head: EmbeddingHead,
}

impl std::fmt::Debug for Stage2 {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Stage2")
            .field("dimension", &self.head.dimension())
            .finish_non_exhaustive()
    }
}

impl Stage2 {
    pub fn new(embedder: Arc<dyn SentenceEmbedder>, head: EmbeddingHead) -> Self {
        Self { embedder, head }
    }

    /// The head this engine scores with.
    pub fn head(&self) -> &EmbeddingHead {
        &self.head
    }

    /// The highest head probability over the model windows of `text`.
    pub fn probability(&self, text: &str) -> Result<f32, SafeguardError> {
        let mut best: Option<f32> = None;
        for embedding in self.embedder.embed_windows(text)? {
            if embedding.len() != self.head.dimension() {
                return Err(SafeguardError::Embedding {
                    reason: format!(
                        "embedding has {} dimensions, the head expects {}",
                        embedding.len(),
                        self.head.dimension()
                    ),
                });
            }
            let probability = self.head.probability(&embedding);
            best = Some(best.map_or(probability, |current| current.max(probability)));
        }
        best.ok_or_else(|| SafeguardError::Embedding {
            reason: "the embedder returned no window".to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_learns_a_direction_and_round_trips() {
        let embeddings = vec![
            vec![1.0, 0.0],
            vec![0.9, 0.1],
            vec![0.0, 1.0],
            vec![0.1, 0.9],
        ];
        let labels = [true, true, false, false];
        let head = train_head(&embeddings, &labels, &[1.0; 4], 200, 7);
        assert!(head.probability(&[1.0, 0.0]) > 0.5);
        assert!(head.probability(&[0.0, 1.0]) < 0.5);
        assert_eq!(EmbeddingHead::from_bytes(&head.to_bytes()).ok(), Some(head));
        assert!(EmbeddingHead::from_bytes(b"PCSGEH01\x05\0\0\0").is_err());
    }
}
