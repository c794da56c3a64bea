//! Sentence embeddings for stage 2 of the safeguard cascade: the
//! all-MiniLM-L6-v2 encoder, run on the CPU by a forward pass written for its
//! fixed six-layer BERT architecture, with the model's own WordPiece
//! tokenizer. It turns a text into the same unit-length 384-dimensional
//! vector that sentence-transformers produces (mean pooling over the tokens,
//! then L2 normalisation), finds the model files in the order the
//! "Safeguard model files" contract fixes, and splits long inputs into
//! overlapping model windows so that nothing is silently truncated.
//!
//! This crate knows nothing about safeguard profiles, thresholds or the
//! classifier head; it only produces vectors. It never downloads anything.

mod error;
mod kernels;
mod locate;
mod model;

use std::ops::Range;
use std::path::Path;
use std::sync::Mutex;

pub use error::EmbedError;
pub use locate::{
    INSTALL_VENV_ENV, MODEL_DIR_ENV, ModelLookupEnvironment, PACKAGE_REQUIREMENT, PYTHON_ENV,
    REQUIRED_MODEL_FILES, install_venv_dir, locate_model_dir, locate_model_dir_in,
    model_dir_from_python,
};

use model::{BertConfig, BertEncoder, ForwardScratch};

/// Length of an all-MiniLM-L6-v2 embedding. The engine runs any BERT
/// encoder of the same form; [`Embedder::dimension`] gives the length for the
/// model actually loaded, and a classifier head should check it.
pub const EMBEDDING_DIMENSION: usize = 384;

/// Longest sequence the model is run on, in tokens, counting the `[CLS]` and
/// `[SEP]` tokens that frame every input. It is the `max_seq_length` of the
/// sentence-transformers model (its `sentence_bert_config.json`).
pub const MAX_SEQUENCE_TOKENS: usize = 256;

/// Tokens of text per model window: the window less `[CLS]` and `[SEP]`.
pub const MAX_TEXT_TOKENS_PER_WINDOW: usize = MAX_SEQUENCE_TOKENS - 2;

/// Tokens that consecutive windows of a long input share, so that a phrase
/// shorter than this that straddles a window boundary still appears whole in
/// one window.
pub const WINDOW_OVERLAP_TOKENS: usize = 32;

/// Upper bound on the tokens packed into one forward pass by
/// [`Embedder::embed_batch`]; larger batches run in several passes, which
/// bounds the scratch memory at a few megabytes.
const MAX_TOKENS_PER_FORWARD_PASS: usize = 2048;

/// One window of a long input and its embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddedChunk {
    /// The byte range of the input text that the window covers. Ranges of
    /// consecutive windows overlap by about [`WINDOW_OVERLAP_TOKENS`] tokens,
    /// and together they cover the whole text.
    pub byte_range: Range<usize>,
    /// Tokens in the window, counting `[CLS]` and `[SEP]`.
    pub token_count: usize,
    /// The unit-length embedding of the window.
    pub embedding: Vec<f32>,
}

/// A text tokenised into WordPiece ids without special tokens, with what the
/// chunker needs to cut it at word boundaries.
struct TokenizedText {
    ids: Vec<u32>,
    /// Byte range of each token in the original text.
    offsets: Vec<(usize, usize)>,
    /// The pre-tokenizer word each token came from; a word's tokens are
    /// contiguous.
    word_ids: Vec<Option<u32>>,
}

/// The loaded all-MiniLM-L6-v2 model.
///
/// It is `Send + Sync`: share one instance behind an `Arc`. Each call runs on
/// the calling thread alone (the matrix products are not parallelised),
/// because the gateway already runs one request per core. Scratch buffers are
/// pooled, so concurrent calls do not contend beyond a brief lock.
pub struct Embedder {
    tokenizer: tokenizers::Tokenizer,
    classifier_token_id: u32,
    separator_token_id: u32,
    encoder: BertEncoder,
    scratch_pool: Mutex<Vec<ForwardScratch>>,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Embedder")
            .field("dimension", &self.dimension())
            .finish_non_exhaustive()
    }
}

impl Embedder {
    /// Loads the model from a directory holding `config.json`,
    /// `model.safetensors` and `tokenizer.json` (see [`locate_model_dir`]).
    ///
    /// Loading reads about 90 MB and takes a fraction of a second; do it once
    /// at start and share the result.
    pub fn load(model_dir: &Path) -> Result<Self, EmbedError> {
        let config_path = model_dir.join("config.json");
        let config = BertConfig::read(&config_path)?;
        let tokenizer_path = model_dir.join("tokenizer.json");
        let tokenizer_json = std::fs::read(&tokenizer_path).map_err(|source| EmbedError::Io {
            path: tokenizer_path.clone(),
            source,
        })?;
        let weights_path = model_dir.join("model.safetensors");
        let weights = std::fs::read(&weights_path).map_err(|source| EmbedError::Io {
            path: weights_path.clone(),
            source,
        })?;
        Self::assemble(
            config,
            &config_path,
            &tokenizer_json,
            &tokenizer_path,
            &weights,
            &weights_path,
        )
    }

    /// Builds the model from the three files held in memory, for a model
    /// compiled into the binary. `label` stands in for the directory in
    /// error messages (for example `built-in stage-2 model`).
    pub fn from_bytes(
        config_json: &[u8],
        tokenizer_json: &[u8],
        weights: &[u8],
        label: &Path,
    ) -> Result<Self, EmbedError> {
        let config_path = label.join("config.json");
        let config = BertConfig::parse(config_json, &config_path)?;
        Self::assemble(
            config,
            &config_path,
            tokenizer_json,
            &label.join("tokenizer.json"),
            weights,
            &label.join("model.safetensors"),
        )
    }

    fn assemble(
        config: BertConfig,
        config_path: &Path,
        tokenizer_json: &[u8],
        tokenizer_path: &Path,
        weights: &[u8],
        weights_path: &Path,
    ) -> Result<Self, EmbedError> {
        if config.max_position_embeddings < MAX_SEQUENCE_TOKENS {
            return Err(EmbedError::UnsupportedModel {
                path: config_path.to_path_buf(),
                reason: format!(
                    "{} position embeddings, fewer than the {MAX_SEQUENCE_TOKENS}-token window",
                    config.max_position_embeddings
                ),
            });
        }

        let tokenizer_error = |message: String| EmbedError::TokenizerLoad {
            path: tokenizer_path.to_path_buf(),
            message,
        };
        let mut tokenizer = tokenizers::Tokenizer::from_bytes(tokenizer_json)
            .map_err(|error| tokenizer_error(error.to_string()))?;
        // The shipped tokenizer.json pads and truncates to 128 tokens.
        // Padding would add `[PAD]` rows to the mean, and truncation would
        // silently drop the end of an input, so both are switched off; the
        // window limit is enforced by this crate instead.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|error| tokenizer_error(error.to_string()))?;
        let special_token_id = |token: &str| {
            tokenizer
                .token_to_id(token)
                .ok_or_else(|| tokenizer_error(format!("no `{token}` token in the vocabulary")))
        };
        let classifier_token_id = special_token_id("[CLS]")?;
        let separator_token_id = special_token_id("[SEP]")?;
        let tokenizer_vocab_size = tokenizer.get_vocab_size(true);
        if tokenizer_vocab_size > config.vocab_size {
            return Err(tokenizer_error(format!(
                "vocabulary of {tokenizer_vocab_size} tokens, larger than the model's {}",
                config.vocab_size
            )));
        }

        let encoder = BertEncoder::from_bytes(config, weights, weights_path)?;
        Ok(Self {
            tokenizer,
            classifier_token_id,
            separator_token_id,
            encoder,
            scratch_pool: Mutex::new(Vec::new()),
        })
    }

    /// Length of the vectors this model produces: the encoder's hidden size,
    /// [`EMBEDDING_DIMENSION`] for all-MiniLM-L6-v2.
    pub fn dimension(&self) -> usize {
        self.encoder.hidden_size()
    }

    /// Number of tokens the model sees for `text`, counting `[CLS]` and
    /// `[SEP]`. [`Embedder::embed`] accepts the text when this is at most
    /// [`MAX_SEQUENCE_TOKENS`].
    pub fn token_count(&self, text: &str) -> Result<usize, EmbedError> {
        Ok(self.tokenize(text)?.ids.len() + 2)
    }

    /// The token ids the model runs on for `text`: `[CLS]`, the WordPiece
    /// ids of the text, `[SEP]`. Fails like [`Embedder::embed`] when they do
    /// not fit one window.
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>, EmbedError> {
        self.model_sequence(&self.tokenize(text)?.ids)
    }

    /// Embeds `text` into a unit-length vector of [`Embedder::dimension`]
    /// values, equal (to float rounding) to sentence-transformers'
    /// all-MiniLM-L6-v2 output.
    ///
    /// Fails with [`EmbedError::InputTooLong`] when the text needs more than
    /// [`MAX_SEQUENCE_TOKENS`] tokens; use [`Embedder::embed_chunked`] for
    /// texts of any length.
    pub fn embed(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let sequence = self.model_sequence(&self.tokenize(text)?.ids)?;
        let mut embedding = vec![0.0; self.dimension()];
        self.run_encoder(&[&sequence], &mut embedding);
        Ok(embedding)
    }

    /// Embeds several texts in one pass and returns their vectors in order.
    ///
    /// Each vector equals what [`Embedder::embed`] returns for its text (to
    /// float rounding); batching only shares the matrix products between
    /// texts. Fails if any text exceeds the window.
    pub fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut sequences = Vec::with_capacity(texts.len());
        for text in texts {
            sequences.push(self.model_sequence(&self.tokenize(text)?.ids)?);
        }
        Ok(self.embed_sequences(&sequences))
    }

    /// Splits `text` into byte ranges that each fit one model window, cut at
    /// word boundaries, with consecutive ranges sharing about
    /// [`WINDOW_OVERLAP_TOKENS`] tokens. A text that fits one window gives
    /// the single range `0..text.len()`. Embedding each `&text[range]` with
    /// [`Embedder::embed`] succeeds and gives the vectors
    /// [`Embedder::embed_chunked`] returns.
    pub fn chunk_ranges(&self, text: &str) -> Result<Vec<Range<usize>>, EmbedError> {
        let tokenized = self.tokenize(text)?;
        Ok(token_windows(&tokenized.word_ids)
            .into_iter()
            .map(|window| window_byte_range(&tokenized, &window, text.len()))
            .collect())
    }

    /// Embeds a text of any length: one embedding per window of
    /// [`Embedder::chunk_ranges`], in text order. A safeguard should score
    /// every window and act on the worst, because an attack can hide at the
    /// end of a long prompt.
    pub fn embed_chunked(&self, text: &str) -> Result<Vec<EmbeddedChunk>, EmbedError> {
        let tokenized = self.tokenize(text)?;
        let windows = token_windows(&tokenized.word_ids);
        let mut sequences = Vec::with_capacity(windows.len());
        for window in &windows {
            sequences.push(self.model_sequence(&tokenized.ids[window.clone()])?);
        }
        let embeddings = self.embed_sequences(&sequences);
        Ok(windows
            .iter()
            .zip(sequences)
            .zip(embeddings)
            .map(|((window, sequence), embedding)| EmbeddedChunk {
                byte_range: window_byte_range(&tokenized, window, text.len()),
                token_count: sequence.len(),
                embedding,
            })
            .collect())
    }

    fn tokenize(&self, text: &str) -> Result<TokenizedText, EmbedError> {
        let encoding =
            self.tokenizer
                .encode(text, false)
                .map_err(|error| EmbedError::Tokenize {
                    message: error.to_string(),
                })?;
        Ok(TokenizedText {
            ids: encoding.get_ids().to_vec(),
            offsets: encoding.get_offsets().to_vec(),
            word_ids: encoding.get_word_ids().to_vec(),
        })
    }

    /// Frames text token ids as `[CLS] ids [SEP]`, the tokenizer's template
    /// for a single sentence, after checking that they fit the window and the
    /// model's vocabulary.
    fn model_sequence(&self, text_ids: &[u32]) -> Result<Vec<u32>, EmbedError> {
        let token_count = text_ids.len() + 2;
        if token_count > MAX_SEQUENCE_TOKENS {
            return Err(EmbedError::InputTooLong {
                token_count,
                max_tokens: MAX_SEQUENCE_TOKENS,
            });
        }
        if let Some(id) = text_ids
            .iter()
            .find(|&&id| id as usize >= self.encoder.vocab_size())
        {
            return Err(EmbedError::Tokenize {
                message: format!("token id `{id}` is outside the model's vocabulary"),
            });
        }
        let mut sequence = Vec::with_capacity(token_count);
        sequence.push(self.classifier_token_id);
        sequence.extend_from_slice(text_ids);
        sequence.push(self.separator_token_id);
        Ok(sequence)
    }

    fn embed_sequences(&self, sequences: &[Vec<u32>]) -> Vec<Vec<f32>> {
        let dimension = self.dimension();
        let mut embeddings = Vec::with_capacity(sequences.len());
        let mut start = 0;
        while start < sequences.len() {
            // Pack sequences up to the token budget; one over-budget sequence
            // still runs alone.
            let mut end = start + 1;
            let mut tokens = sequences[start].len();
            while end < sequences.len()
                && tokens + sequences[end].len() <= MAX_TOKENS_PER_FORWARD_PASS
            {
                tokens += sequences[end].len();
                end += 1;
            }
            let group: Vec<&[u32]> = sequences[start..end].iter().map(Vec::as_slice).collect();
            let mut pooled = vec![0.0; group.len() * dimension];
            self.run_encoder(&group, &mut pooled);
            embeddings.extend(pooled.chunks_exact(dimension).map(<[f32]>::to_vec));
            start = end;
        }
        embeddings
    }

    /// INVARIANT: every sequence came from `model_sequence`, so it is
    /// non-empty, fits the position table and holds only in-vocabulary ids.
    fn run_encoder(&self, sequences: &[&[u32]], pooled_output: &mut [f32]) {
        debug_assert!(sequences.iter().all(|sequence| {
            !sequence.is_empty() && sequence.len() <= self.encoder.max_position_embeddings()
        }));
        let mut scratch = self.take_scratch();
        self.encoder
            .embed_sequences(sequences, &mut scratch, pooled_output);
        self.return_scratch(scratch);
    }

    fn take_scratch(&self) -> ForwardScratch {
        // A poisoned pool only means another call panicked while holding
        // the lock; the buffers carry no state between calls, so they stay
        // usable.
        let mut pool = self
            .scratch_pool
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        pool.pop().unwrap_or_default()
    }

    fn return_scratch(&self, scratch: ForwardScratch) {
        let mut pool = self
            .scratch_pool
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        pool.push(scratch);
    }
}

/// Splits `token_count = word_ids.len()` text tokens into windows of at most
/// [`MAX_TEXT_TOKENS_PER_WINDOW`] tokens. Windows end at word boundaries
/// (unless one word alone is longer than a window) and each starts about
/// [`WINDOW_OVERLAP_TOKENS`] before the previous one ended, also at a word
/// boundary. Always returns at least one window; an empty text gives `0..0`.
fn token_windows(word_ids: &[Option<u32>]) -> Vec<Range<usize>> {
    let token_count = word_ids.len();
    let word_start = |token: usize| {
        let mut start = token;
        while start > 0 && word_ids[start].is_some() && word_ids[start - 1] == word_ids[start] {
            start -= 1;
        }
        start
    };
    let mut windows = Vec::new();
    let mut start = 0;
    loop {
        if token_count - start <= MAX_TEXT_TOKENS_PER_WINDOW {
            windows.push(start..token_count);
            return windows;
        }
        let mut end = start + MAX_TEXT_TOKENS_PER_WINDOW;
        let boundary = word_start(end);
        if boundary > start {
            end = boundary;
        }
        windows.push(start..end);
        let overlap_start = word_start(end.saturating_sub(WINDOW_OVERLAP_TOKENS));
        // INVARIANT: every window starts after the previous one, so the loop
        // ends.
        start = if overlap_start > start {
            overlap_start
        } else {
            end
        };
    }
}

/// The byte range of `text` a window of tokens covers. The first window
/// starts at byte 0 and the last ends at the end of the text, so that
/// together the windows cover every byte, including leading and trailing
/// whitespace.
fn window_byte_range(
    tokenized: &TokenizedText,
    window: &Range<usize>,
    text_len: usize,
) -> Range<usize> {
    let start = if window.start == 0 {
        0
    } else {
        tokenized.offsets[window.start].0
    };
    let end = if window.end == tokenized.ids.len() {
        text_len
    } else {
        tokenized.offsets[window.end - 1].1
    };
    start..end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words_of(lengths: &[usize]) -> Vec<Option<u32>> {
        lengths
            .iter()
            .enumerate()
            .flat_map(|(word, &length)| std::iter::repeat_n(Some(word as u32), length))
            .collect()
    }

    #[test]
    fn short_inputs_give_one_window() {
        for token_count in [0, 1, MAX_TEXT_TOKENS_PER_WINDOW] {
            let word_ids = words_of(&vec![1; token_count]);
            assert_eq!(token_windows(&word_ids), vec![0..token_count]);
        }
    }

    #[test]
    fn long_inputs_give_overlapping_windows_that_cover_every_token() {
        let cases: Vec<Vec<usize>> = vec![
            vec![1; MAX_TEXT_TOKENS_PER_WINDOW + 1],
            vec![1; 1000],
            vec![3; 400],
            [7, 1, 2, 5, 3, 1, 1, 9, 4].repeat(60),
            // A single word longer than a window must be cut inside it.
            vec![600],
            vec![2, 600, 2],
        ];
        for lengths in cases {
            let word_ids = words_of(&lengths);
            let windows = token_windows(&word_ids);
            assert!(windows.len() > 1, "{lengths:?}");
            assert_eq!(windows[0].start, 0);
            assert_eq!(windows.last().map(|w| w.end), Some(word_ids.len()));
            for window in &windows {
                assert!(!window.is_empty() && window.len() <= MAX_TEXT_TOKENS_PER_WINDOW);
            }
            for pair in windows.windows(2) {
                // Consecutive windows advance and leave no gap.
                assert!(pair[1].start > pair[0].start);
                assert!(pair[1].start <= pair[0].end);
            }
            let all_short_words = lengths.iter().all(|&length| length < WINDOW_OVERLAP_TOKENS);
            if all_short_words {
                for pair in windows.windows(2) {
                    // Windows end at word boundaries and overlap by about the
                    // configured number of tokens.
                    let end = pair[0].end;
                    assert_ne!(word_ids[end - 1], word_ids[end]);
                    let overlap = pair[0].end - pair[1].start;
                    assert!(
                        (WINDOW_OVERLAP_TOKENS..2 * WINDOW_OVERLAP_TOKENS).contains(&overlap),
                        "overlap {overlap} for {lengths:?}"
                    );
                }
            }
        }
    }
}
