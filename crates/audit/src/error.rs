use crate::entry::AuditEntryError;
use crate::merkle::MerkleError;
use crate::note::NoteError;

/// Everything that can go wrong in the audit crate apart from a log that
/// fails verification (see [`crate::VerifyFailure`]).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Entry(#[from] AuditEntryError),
    #[error("audit database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Note(#[from] NoteError),
    #[error(transparent)]
    Merkle(#[from] MerkleError),
    #[error("audit log `{origin}` is inconsistent in the store: {detail}")]
    InconsistentStore { origin: String, detail: String },
    #[error("invalid audit configuration: {0}")]
    InvalidConfig(String),
    #[error("audit commit failed: {0}")]
    CommitFailed(String),
    #[error("the audit writer has stopped")]
    WriterStopped,
    #[error("no checkpoint of size {tree_size} in audit log `{origin}`")]
    NoSuchCheckpoint { origin: String, tree_size: u64 },
    #[error("witness `{path}`: {detail}")]
    Witness { path: String, detail: String },
    #[error("export i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed proof: {0}")]
    MalformedProof(String),
}
