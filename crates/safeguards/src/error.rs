use std::path::PathBuf;

/// Everything that can go wrong in the safeguards crate.
#[derive(Debug, thiserror::Error)]
pub enum SafeguardError {
    #[error("invalid safeguard model: {reason}")]
    InvalidModel { reason: String },
    #[error("invalid safeguard profile `{profile}`: {reason}")]
    InvalidProfile { profile: String, reason: String },
    #[error(
        "safeguard profile `{profile}` needs stage 2, which could not be loaded ({reason}); fix or unset `safeguards.embedding_model_dir` / `PORTCULLIS_EMBEDDING_MODEL_DIR` (the built-in stage 2 needs neither), or allow stage 1 alone with `safeguards.allow_stage1_only = true`"
    )]
    Stage2Unavailable { profile: String, reason: String },
    #[error("stage-2 embedding failed: {reason}")]
    Embedding { reason: String },
    #[error("cannot read `{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("line {line} of `{path}` is not valid: {reason}")]
    InvalidRecord {
        path: String,
        line: usize,
        reason: String,
    },
    #[error("cannot write output: {source}")]
    Output {
        #[source]
        source: std::io::Error,
    },
    #[error("invalid training data: {reason}")]
    Training { reason: String },
}
