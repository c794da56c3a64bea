//! The tamper-evident audit log: every request decision and every admin
//! action, appended as canonical JSON to an RFC 6962 Merkle tree per replica,
//! committed in the shared store, covered by Ed25519-signed C2SP checkpoints,
//! and checkable offline by a verifier that needs only the public key.
//!
//! # Format
//!
//! An entry ([`AuditEntry`]) is stored as canonical JSON ([`canonical`]):
//! sorted keys, no whitespace, integers only (floats are rejected, scores are
//! integers per million), with its position in the log bound in as `index`.
//! Its leaf hash is SHA-256(0x00 ‖ entry) and interior nodes are
//! SHA-256(0x01 ‖ left ‖ right). Each replica writes its own log, named by
//! its origin (for example `portcullis/<replica-id>`); there is no global
//! sequencer. A checkpoint is the C2SP tlog-checkpoint body
//! `origin\nsize\nbase64(root)\n` in a signed note, with the Ed25519 key id
//! and key strings of Go's `golang.org/x/mod/sumdb/note` ([`note`]).
//!
//! # Writing
//!
//! [`AuditLog::open`] creates the `audit_entries` and `audit_checkpoints`
//! tables if needed, reloads the frontier (compact range) from the latest
//! checkpoint plus the entries after it, and starts one writer task that owns
//! the tree; appends are O(log n). Exactly one writer may own an origin.
//!
//! - [`AuditLog::append_now`] returns only after the entry is committed. Use
//!   it for admin actions and orders, which must be durable before the API
//!   acknowledges them.
//! - [`AuditHandle::record`] queues a request decision for group commit. The
//!   queue is bounded (`queue_capacity`); when it is full, callers wait, so
//!   entries are never dropped. The writer commits a batch at the latest
//!   `commit_interval` (10 ms by default) after the batch's first entry, in one
//!   transaction with a multi-row insert.
//! - A checkpoint is signed every `checkpoint_every_entries` entries (1,000)
//!   or once uncovered entries are `checkpoint_interval` old (1 s), whichever
//!   comes first, in the same transaction as the entries it covers, and is
//!   then appended to the witness file if one is configured.
//! - [`AuditLog::flush`] commits everything queued and signs a checkpoint;
//!   [`AuditLog::close`] does the same and stops the writer.
//!
//! If a commit fails, `append_now` and `flush` callers get the error at once;
//! recorded entries stay in the writer and are retried with backoff (up to
//! 1 s between attempts) until the store accepts them, while new callers of
//! `record` wait on the full queue. The audit log therefore fails closed: a
//! store that stays down stalls the request path rather than losing entries.
//!
//! # Crash-loss window
//!
//! Entries whose `append_now` returned are committed. An entry whose `record`
//! returned is *accepted but not yet committed* until its group commit
//! finishes; a crash in that time loses it. At any moment the accepted but
//! uncommitted entries are at most the queue (`queue_capacity`, 8,192 by
//! default) plus the one batch being committed (`max_batch_entries`, 4,096):
//! in time, the entries accepted during the last commit interval (10 ms) and
//! the commit in flight, plus whatever backlog the queue holds when the
//! writer is behind. Entries that are lost are always a suffix of the log:
//! the tree never has a gap. Committed entries newer than the latest
//! checkpoint (at most `checkpoint_interval` of them) survive a crash and
//! are covered by a checkpoint within `checkpoint_interval` after the log is
//! reopened.
//!
//! On SQLite in WAL mode with `synchronous=NORMAL` (the store's setting), a
//! commit survives a crash of the process but not necessarily a power loss
//! or kernel crash: the last transactions before such an event can roll back,
//! which again loses a suffix. Use `synchronous=FULL` where power-loss
//! durability of every acknowledged admin action is required. A witness file
//! is written after the commit without `fsync`, so after a power loss it may
//! be behind the store, never ahead of it (unless the store itself rolled
//! back, in which case the verifier reports the rollback as truncation).
//!
//! # Tables
//!
//! `audit_entries` (`origin`, `idx`, `leaf_hash`, `entry`, and the searchable
//! columns `time_micros`, `kind`, `request_id`, `principal_id`, `model`,
//! `decision`, `order_ids`, `actor`) and `audit_checkpoints` (`origin`, `seq`,
//! `tree_size`, `root_hash`, `frontier`, `note`) are append-only: triggers
//! reject UPDATE and DELETE on SQLite, and UPDATE, DELETE and TRUNCATE on
//! PostgreSQL. On PostgreSQL operators should also `REVOKE UPDATE, DELETE,
//! TRUNCATE ON audit_entries, audit_checkpoints FROM` the gateway's role, so
//! that dropping a trigger needs a different role too. The verifier checks
//! every stored column against the hashed entry or the signed note, so
//! triggers are a speed bump, not the defence: the defence is the signatures
//! and the witness.
//!
//! # Reading
//!
//! - [`verify_store`] and [`verify_export`] recompute every leaf and every
//!   checkpointed root and name the first bad entry index and what is wrong
//!   ([`VerifyFailure`]).
//! - [`export`] writes JSON lines that verify offline ([`export`] module docs
//!   describe the format).
//! - [`prove_inclusion`] and [`prove_consistency`] produce JSON proofs that
//!   [`verify_inclusion_proof`] and [`verify_consistency_proof`] check.
//! - [`search`] and [`count`] find entries by principal, model, order,
//!   decision and time.

pub mod canonical;
mod entry;
mod error;
pub mod export;
pub mod merkle;
pub mod note;
mod proof;
pub mod report_note;
mod search;
mod store;
mod verify;
mod witness;
mod writer;

pub use entry::{
    AdminActionEntry, AdminTargetKind, AttributeEvidence, AuditEntry, AuditEntryError,
    ContentRecording, Decision, EntryKind, IdentityEvidence, IdentitySource, LocationEvidence,
    LocationSource, MAX_ENTRY_BYTES, RequestDecisionEntry, RequestOutcome, RequestOutcomeEntry,
    SafeguardVerdict, StoredEntry,
};
pub use error::AuditError;
pub use export::{ExportSummary, export};
pub use merkle::Hash;
pub use note::{Checkpoint, NoteError, NoteSigner, NoteVerifier};
pub use proof::{
    ConsistencyProof, InclusionProof, ProofError, prove_consistency, prove_inclusion,
    verify_consistency_proof, verify_inclusion_proof,
};
pub use search::{AuditQuery, count, search};
pub use store::{ensure_schema, install_sql_drivers, list_origins};
pub use verify::{
    CheckpointSource, FailureReason, VerifyError, VerifyFailure, VerifyReport, verify_export,
    verify_store,
};
pub use witness::{WitnessRecord, WitnessTarget, read_witness, witness_file_name};
pub use writer::{
    AppendReceipt, AuditConfig, AuditHandle, AuditLog, PendingCommit, SignedCheckpoint,
    WriterStatus,
};
