//! The BERT encoder of all-MiniLM-L6-v2: weights read from safetensors and a
//! forward pass written for this one architecture.
//!
//! Sequences are packed, not padded: the token rows of every sequence in a
//! batch are stacked into one matrix, so the dense layers run as single
//! matrix products over real tokens only, and attention runs per sequence on
//! its own rows, which needs no attention mask.

use std::path::Path;

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use pulp::Arch;
use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;

use crate::EmbedError;
use crate::kernels;

/// The fields of the Hugging Face `config.json` the engine reads.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct BertConfig {
    pub(crate) vocab_size: usize,
    pub(crate) hidden_size: usize,
    pub(crate) num_hidden_layers: usize,
    pub(crate) num_attention_heads: usize,
    pub(crate) intermediate_size: usize,
    pub(crate) max_position_embeddings: usize,
    pub(crate) type_vocab_size: usize,
    pub(crate) layer_norm_eps: f64,
    #[serde(default = "default_hidden_act")]
    pub(crate) hidden_act: String,
    #[serde(default = "default_position_embedding_type")]
    pub(crate) position_embedding_type: String,
}

fn default_hidden_act() -> String {
    "gelu".to_owned()
}

fn default_position_embedding_type() -> String {
    "absolute".to_owned()
}

impl BertConfig {
    pub(crate) fn read(path: &Path) -> Result<Self, EmbedError> {
        let text = std::fs::read(path).map_err(|source| EmbedError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses `config.json` held in memory; `path` names it in errors.
    pub(crate) fn parse(text: &[u8], path: &Path) -> Result<Self, EmbedError> {
        let config: Self = serde_json::from_slice(text).map_err(|source| EmbedError::Config {
            path: path.to_path_buf(),
            source,
        })?;
        config.check_supported(path)?;
        Ok(config)
    }

    fn check_supported(&self, path: &Path) -> Result<(), EmbedError> {
        let unsupported = |reason: String| EmbedError::UnsupportedModel {
            path: path.to_path_buf(),
            reason,
        };
        if self.hidden_act != "gelu" {
            return Err(unsupported(format!(
                "activation `{}` (only the erf-based `gelu` is implemented)",
                self.hidden_act
            )));
        }
        if self.position_embedding_type != "absolute" {
            return Err(unsupported(format!(
                "position embedding type `{}` (only `absolute` is implemented)",
                self.position_embedding_type
            )));
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(unsupported(format!(
                "hidden size {} is not a multiple of the head count {}",
                self.hidden_size, self.num_attention_heads
            )));
        }
        if self.type_vocab_size == 0 || self.num_hidden_layers == 0 {
            return Err(unsupported("no token types or no layers".to_owned()));
        }
        Ok(())
    }

    fn head_dimension(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

/// The weights of one encoder layer, laid out for the forward pass.
struct EncoderLayer {
    /// Query, key and value projections stacked into one `[3·hidden, hidden]`
    /// row-major matrix, so that one matrix product produces all three. The
    /// query rows and bias are pre-scaled by 1/√head_dimension, which removes
    /// the scaling of the attention scores from the forward pass.
    query_key_value_weight: Vec<f32>,
    query_key_value_bias: Vec<f32>,
    attention_output_weight: Vec<f32>,
    attention_output_bias: Vec<f32>,
    attention_layer_norm_gamma: Vec<f32>,
    attention_layer_norm_beta: Vec<f32>,
    intermediate_weight: Vec<f32>,
    intermediate_bias: Vec<f32>,
    output_weight: Vec<f32>,
    output_bias: Vec<f32>,
    output_layer_norm_gamma: Vec<f32>,
    output_layer_norm_beta: Vec<f32>,
}

/// The whole encoder: embeddings plus layers.
pub(crate) struct BertEncoder {
    config: BertConfig,
    word_embeddings: Vec<f32>,
    /// Position embeddings with the embedding of token type 0 already added:
    /// the engine embeds single sentences, whose token types are all 0.
    position_and_token_type_embeddings: Vec<f32>,
    embedding_layer_norm_gamma: Vec<f32>,
    embedding_layer_norm_beta: Vec<f32>,
    layers: Vec<EncoderLayer>,
    arch: Arch,
}

/// Reusable buffers for one forward pass, kept between calls so that the
/// steady state allocates nothing but the returned embeddings.
#[derive(Default)]
pub(crate) struct ForwardScratch {
    hidden: Vec<f32>,
    query_key_value: Vec<f32>,
    context: Vec<f32>,
    sublayer_output: Vec<f32>,
    intermediate: Vec<f32>,
    attention_scores: Vec<f32>,
}

struct WeightReader<'a> {
    tensors: SafeTensors<'a>,
    path: &'a Path,
}

impl WeightReader<'_> {
    /// Reads the tensor `name` as f32, checking its shape. Weights stored as
    /// little-endian f32 or f16 are accepted (the built-in fine-tuned model
    /// is stored as f16 to halve its size); f16 is widened on load, so the
    /// forward pass always runs in f32.
    fn read(&self, name: &str, expected_shape: &[usize]) -> Result<Vec<f32>, EmbedError> {
        let bad = |reason: String| EmbedError::Weight {
            path: self.path.to_path_buf(),
            name: name.to_owned(),
            reason,
        };
        let view = self
            .tensors
            .tensor(name)
            .map_err(|_| bad("missing".to_owned()))?;
        if view.shape() != expected_shape {
            return Err(bad(format!(
                "shape {:?}, expected {:?}",
                view.shape(),
                expected_shape
            )));
        }
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => view
                .data()
                .chunks_exact(4)
                .map(|bytes| f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
                .collect(),
            Dtype::F16 => view
                .data()
                .chunks_exact(2)
                .map(|bytes| half::f16::from_le_bytes([bytes[0], bytes[1]]).to_f32())
                .collect(),
            other => return Err(bad(format!("dtype {other:?}, expected F32 or F16"))),
        };
        if values.iter().any(|value| !value.is_finite()) {
            return Err(bad("non-finite weight".to_owned()));
        }
        Ok(values)
    }
}

impl BertEncoder {
    /// Builds the encoder from `model.safetensors` held in memory;
    /// `weights_path` names it in errors.
    pub(crate) fn from_bytes(
        config: BertConfig,
        bytes: &[u8],
        weights_path: &Path,
    ) -> Result<Self, EmbedError> {
        let tensors =
            SafeTensors::deserialize(bytes).map_err(|source| EmbedError::Safetensors {
                path: weights_path.to_path_buf(),
                source,
            })?;
        let reader = WeightReader {
            tensors,
            path: weights_path,
        };
        let hidden = config.hidden_size;
        let intermediate = config.intermediate_size;

        let word_embeddings = reader.read(
            "embeddings.word_embeddings.weight",
            &[config.vocab_size, hidden],
        )?;
        let mut position_and_token_type_embeddings = reader.read(
            "embeddings.position_embeddings.weight",
            &[config.max_position_embeddings, hidden],
        )?;
        let token_type_embeddings = reader.read(
            "embeddings.token_type_embeddings.weight",
            &[config.type_vocab_size, hidden],
        )?;
        for row in position_and_token_type_embeddings.chunks_exact_mut(hidden) {
            for (value, token_type_value) in row.iter_mut().zip(&token_type_embeddings[..hidden]) {
                *value += token_type_value;
            }
        }
        let embedding_layer_norm_gamma = reader.read("embeddings.LayerNorm.weight", &[hidden])?;
        let embedding_layer_norm_beta = reader.read("embeddings.LayerNorm.bias", &[hidden])?;

        let query_scale = 1.0 / (config.head_dimension() as f32).sqrt();
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for layer_index in 0..config.num_hidden_layers {
            let prefix = format!("encoder.layer.{layer_index}.");
            let read = |name: &str, shape: &[usize]| reader.read(&format!("{prefix}{name}"), shape);

            let mut query_key_value_weight =
                read("attention.self.query.weight", &[hidden, hidden])?;
            query_key_value_weight
                .iter_mut()
                .for_each(|value| *value *= query_scale);
            query_key_value_weight.extend(read("attention.self.key.weight", &[hidden, hidden])?);
            query_key_value_weight.extend(read("attention.self.value.weight", &[hidden, hidden])?);
            let mut query_key_value_bias = read("attention.self.query.bias", &[hidden])?;
            query_key_value_bias
                .iter_mut()
                .for_each(|value| *value *= query_scale);
            query_key_value_bias.extend(read("attention.self.key.bias", &[hidden])?);
            query_key_value_bias.extend(read("attention.self.value.bias", &[hidden])?);

            layers.push(EncoderLayer {
                query_key_value_weight,
                query_key_value_bias,
                attention_output_weight: read("attention.output.dense.weight", &[hidden, hidden])?,
                attention_output_bias: read("attention.output.dense.bias", &[hidden])?,
                attention_layer_norm_gamma: read("attention.output.LayerNorm.weight", &[hidden])?,
                attention_layer_norm_beta: read("attention.output.LayerNorm.bias", &[hidden])?,
                intermediate_weight: read("intermediate.dense.weight", &[intermediate, hidden])?,
                intermediate_bias: read("intermediate.dense.bias", &[intermediate])?,
                output_weight: read("output.dense.weight", &[hidden, intermediate])?,
                output_bias: read("output.dense.bias", &[hidden])?,
                output_layer_norm_gamma: read("output.LayerNorm.weight", &[hidden])?,
                output_layer_norm_beta: read("output.LayerNorm.bias", &[hidden])?,
            });
        }

        Ok(Self {
            config,
            word_embeddings,
            position_and_token_type_embeddings,
            embedding_layer_norm_gamma,
            embedding_layer_norm_beta,
            layers,
            arch: Arch::new(),
        })
    }

    pub(crate) fn hidden_size(&self) -> usize {
        self.config.hidden_size
    }

    pub(crate) fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }

    pub(crate) fn max_position_embeddings(&self) -> usize {
        self.config.max_position_embeddings
    }

    /// Embeds each sequence of token ids (special tokens included) and
    /// writes one unit-length, mean-pooled vector of `hidden_size` values per
    /// sequence into `pooled_output`, in order.
    ///
    /// INVARIANT: the caller has checked that every id is below the
    /// vocabulary size, that no sequence is empty and that none is longer
    /// than the position table; `pooled_output` holds
    /// `sequences.len() * hidden_size` values.
    pub(crate) fn embed_sequences(
        &self,
        sequences: &[&[u32]],
        scratch: &mut ForwardScratch,
        pooled_output: &mut [f32],
    ) {
        let hidden = self.config.hidden_size;
        let total_tokens: usize = sequences.iter().map(|sequence| sequence.len()).sum();
        let epsilon = self.config.layer_norm_eps as f32;
        let arch = self.arch;

        scratch.hidden.resize(total_tokens * hidden, 0.0);
        let mut row = 0;
        for sequence in sequences {
            for (position, &token_id) in sequence.iter().enumerate() {
                let token = token_id as usize;
                let word = &self.word_embeddings[token * hidden..(token + 1) * hidden];
                let position_row = &self.position_and_token_type_embeddings
                    [position * hidden..(position + 1) * hidden];
                let target = &mut scratch.hidden[row * hidden..(row + 1) * hidden];
                for ((value, word_value), position_value) in
                    target.iter_mut().zip(word).zip(position_row)
                {
                    *value = word_value + position_value;
                }
                row += 1;
            }
        }
        kernels::layer_norm_rows(
            arch,
            &mut scratch.hidden,
            &self.embedding_layer_norm_gamma,
            &self.embedding_layer_norm_beta,
            epsilon,
        );

        for layer in &self.layers {
            self.encoder_layer(layer, sequences, total_tokens, scratch);
        }

        let mut first_row = 0;
        for (sequence, pooled) in sequences.iter().zip(pooled_output.chunks_exact_mut(hidden)) {
            let rows = &scratch.hidden[first_row * hidden..(first_row + sequence.len()) * hidden];
            kernels::mean_pool_normalize(arch, rows, pooled);
            first_row += sequence.len();
        }
    }

    fn encoder_layer(
        &self,
        layer: &EncoderLayer,
        sequences: &[&[u32]],
        total_tokens: usize,
        scratch: &mut ForwardScratch,
    ) {
        let hidden = self.config.hidden_size;
        let intermediate = self.config.intermediate_size;
        let heads = self.config.num_attention_heads;
        let head_dimension = self.config.head_dimension();
        let epsilon = self.config.layer_norm_eps as f32;
        let arch = self.arch;

        scratch
            .query_key_value
            .resize(total_tokens * 3 * hidden, 0.0);
        linear(
            &scratch.hidden,
            total_tokens,
            hidden,
            &layer.query_key_value_weight,
            3 * hidden,
            &mut scratch.query_key_value,
        );
        kernels::add_bias_rows(
            arch,
            &mut scratch.query_key_value,
            &layer.query_key_value_bias,
        );

        scratch.context.resize(total_tokens * hidden, 0.0);
        let query_key_value_stride = 3 * hidden;
        let mut first_row = 0;
        for sequence in sequences {
            let length = sequence.len();
            scratch.attention_scores.resize(length * length, 0.0);
            let rows = &scratch.query_key_value[first_row * query_key_value_stride..];
            for head in 0..heads {
                let query_column = head * head_dimension;
                let key_column = hidden + head * head_dimension;
                let value_column = 2 * hidden + head * head_dimension;
                // Query rows (already scaled) times the transposed key rows.
                let queries = MatRef::from_row_major_slice_with_stride(
                    &rows[query_column..],
                    length,
                    head_dimension,
                    query_key_value_stride,
                );
                let keys_transposed = MatRef::from_column_major_slice_with_stride(
                    &rows[key_column..],
                    head_dimension,
                    length,
                    query_key_value_stride,
                );
                matmul(
                    MatMut::from_row_major_slice_mut(&mut scratch.attention_scores, length, length),
                    Accum::Replace,
                    queries,
                    keys_transposed,
                    1.0f32,
                    Par::Seq,
                );
                kernels::softmax_rows(arch, &mut scratch.attention_scores, length);
                let values = MatRef::from_row_major_slice_with_stride(
                    &rows[value_column..],
                    length,
                    head_dimension,
                    query_key_value_stride,
                );
                // The row-major view is built as the transpose of a
                // column-major one: faer 0.24's
                // `MatMut::from_row_major_slice_with_stride_mut` swaps the
                // strides and would write the transposed product.
                let context_view = MatMut::from_column_major_slice_with_stride_mut(
                    &mut scratch.context[first_row * hidden + head * head_dimension..],
                    head_dimension,
                    length,
                    hidden,
                )
                .transpose_mut();
                matmul(
                    context_view,
                    Accum::Replace,
                    MatRef::from_row_major_slice(&scratch.attention_scores, length, length),
                    values,
                    1.0f32,
                    Par::Seq,
                );
            }
            first_row += length;
        }

        scratch.sublayer_output.resize(total_tokens * hidden, 0.0);
        linear(
            &scratch.context,
            total_tokens,
            hidden,
            &layer.attention_output_weight,
            hidden,
            &mut scratch.sublayer_output,
        );
        kernels::residual_layer_norm(
            arch,
            &mut scratch.hidden,
            &scratch.sublayer_output,
            &layer.attention_output_bias,
            &layer.attention_layer_norm_gamma,
            &layer.attention_layer_norm_beta,
            epsilon,
        );

        scratch
            .intermediate
            .resize(total_tokens * intermediate, 0.0);
        linear(
            &scratch.hidden,
            total_tokens,
            hidden,
            &layer.intermediate_weight,
            intermediate,
            &mut scratch.intermediate,
        );
        kernels::bias_gelu_rows(arch, &mut scratch.intermediate, &layer.intermediate_bias);

        linear(
            &scratch.intermediate,
            total_tokens,
            intermediate,
            &layer.output_weight,
            hidden,
            &mut scratch.sublayer_output,
        );
        kernels::residual_layer_norm(
            arch,
            &mut scratch.hidden,
            &scratch.sublayer_output,
            &layer.output_bias,
            &layer.output_layer_norm_gamma,
            &layer.output_layer_norm_beta,
            epsilon,
        );
    }
}

/// `output[rows, outputs] = input[rows, inputs] · weightᵀ`, where `weight`
/// is the PyTorch `[outputs, inputs]` row-major matrix. Read column-major,
/// that matrix already is the `[inputs, outputs]` transpose, so no copy is
/// made.
fn linear(
    input: &[f32],
    rows: usize,
    inputs: usize,
    weight: &[f32],
    outputs: usize,
    output: &mut [f32],
) {
    matmul(
        MatMut::from_row_major_slice_mut(output, rows, outputs),
        Accum::Replace,
        MatRef::from_row_major_slice(input, rows, inputs),
        MatRef::from_column_major_slice(weight, inputs, outputs),
        1.0f32,
        Par::Seq,
    );
}
