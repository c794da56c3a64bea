//! Inclusion and consistency proofs as JSON documents an outside party can
//! check with the log's public key and nothing else.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{AnyPool, Row};

use crate::canonical::canonical_json_of_value;
use crate::error::AuditError;
use crate::merkle::{self, Hash, MerkleError};
use crate::note::{Checkpoint, NoteError, NoteVerifier};
use crate::store::{self, hash_from_hex, hash_to_hex, to_i64};

/// Proof that one entry is in the tree a signed checkpoint commits to
/// (RFC 9162 §2.1.3 audit path).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    pub origin: String,
    pub index: u64,
    pub tree_size: u64,
    /// The entry as stored; its canonical JSON is the leaf input.
    pub entry: Value,
    /// Hex SHA-256(0x00 ‖ canonical entry).
    pub leaf_hash: String,
    /// Hex sibling hashes from the leaf up to the root.
    pub audit_path: Vec<String>,
    /// Hex root of the tree of `tree_size` entries.
    pub root_hash: String,
    /// The signed checkpoint note for `tree_size`.
    pub checkpoint: String,
}

/// Proof that one signed tree is a prefix of a later one (RFC 9162 §2.1.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyProof {
    pub origin: String,
    pub old_size: u64,
    pub new_size: u64,
    pub old_checkpoint: String,
    pub new_checkpoint: String,
    /// Hex hashes of the consistency path.
    pub consistency_path: Vec<String>,
}

/// Why a proof does not check out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error(transparent)]
    Note(#[from] NoteError),
    #[error(transparent)]
    Merkle(#[from] MerkleError),
    #[error("proof field `{field}` disagrees with the signed checkpoint or the entry")]
    Mismatch { field: &'static str },
    #[error("proof field `{field}` is malformed")]
    Malformed { field: &'static str },
}

async fn checkpoint_note(
    pool: &AnyPool,
    origin: &str,
    tree_size: u64,
) -> Result<String, AuditError> {
    let note: Option<String> = sqlx::query_scalar(
        "SELECT note FROM audit_checkpoints WHERE origin = $1 AND tree_size = $2 ORDER BY seq LIMIT 1",
    )
    .bind(origin.to_owned())
    .bind(to_i64(tree_size))
    .fetch_optional(pool)
    .await?;
    note.ok_or_else(|| AuditError::NoSuchCheckpoint {
        origin: origin.to_owned(),
        tree_size,
    })
}

/// Builds the inclusion proof of entry `index` against the stored checkpoint
/// of size `tree_size`. Reads the `tree_size` leaf hashes, so it costs O(n).
pub async fn prove_inclusion(
    pool: &AnyPool,
    origin: &str,
    index: u64,
    tree_size: u64,
) -> Result<InclusionProof, AuditError> {
    let checkpoint = checkpoint_note(pool, origin, tree_size).await?;
    let row = sqlx::query("SELECT entry FROM audit_entries WHERE origin = $1 AND idx = $2")
        .bind(origin.to_owned())
        .bind(to_i64(index))
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| AuditError::InconsistentStore {
            origin: origin.to_owned(),
            detail: format!("entry {index} is missing"),
        })?;
    let entry_json: String = row.try_get(0)?;
    let entry: Value =
        serde_json::from_str(&entry_json).map_err(|error| AuditError::InconsistentStore {
            origin: origin.to_owned(),
            detail: format!("entry {index} is not json: {error}"),
        })?;
    let leaves = store::load_leaf_hashes(pool, origin, tree_size).await?;
    let audit_path = merkle::inclusion_proof(index, &leaves)?;
    Ok(InclusionProof {
        origin: origin.to_owned(),
        index,
        tree_size,
        entry,
        leaf_hash: hash_to_hex(&merkle::leaf_hash(entry_json.as_bytes())),
        audit_path: audit_path.iter().map(hash_to_hex).collect(),
        root_hash: hash_to_hex(&merkle::tree_root(&leaves)),
        checkpoint,
    })
}

/// Builds the consistency proof between the stored checkpoints of sizes
/// `old_size` and `new_size`.
pub async fn prove_consistency(
    pool: &AnyPool,
    origin: &str,
    old_size: u64,
    new_size: u64,
) -> Result<ConsistencyProof, AuditError> {
    let old_checkpoint = checkpoint_note(pool, origin, old_size).await?;
    let new_checkpoint = checkpoint_note(pool, origin, new_size).await?;
    let leaves = store::load_leaf_hashes(pool, origin, new_size).await?;
    let path = merkle::consistency_proof(old_size, &leaves)?;
    Ok(ConsistencyProof {
        origin: origin.to_owned(),
        old_size,
        new_size,
        old_checkpoint,
        new_checkpoint,
        consistency_path: path.iter().map(hash_to_hex).collect(),
    })
}

fn parse_path(path: &[String], field: &'static str) -> Result<Vec<Hash>, ProofError> {
    path.iter()
        .map(|hash| hash_from_hex(hash).ok_or(ProofError::Malformed { field }))
        .collect()
}

fn open_checkpoint(
    note: &str,
    verifier: &NoteVerifier,
    origin: &str,
    tree_size: u64,
) -> Result<Checkpoint, ProofError> {
    let checkpoint = Checkpoint::open(note, verifier)?;
    if checkpoint.origin != origin {
        return Err(ProofError::Mismatch { field: "origin" });
    }
    if checkpoint.tree_size != tree_size {
        return Err(ProofError::Mismatch { field: "tree_size" });
    }
    Ok(checkpoint)
}

/// Checks an inclusion proof: the checkpoint's signature, that the entry
/// hashes to the leaf, and that the audit path leads from the leaf to the
/// signed root.
pub fn verify_inclusion_proof(
    proof: &InclusionProof,
    verifier: &NoteVerifier,
) -> Result<(), ProofError> {
    let checkpoint = open_checkpoint(&proof.checkpoint, verifier, &proof.origin, proof.tree_size)?;
    let canonical = canonical_json_of_value(&proof.entry)
        .map_err(|_| ProofError::Malformed { field: "entry" })?;
    let leaf = merkle::leaf_hash(canonical.as_bytes());
    if hash_from_hex(&proof.leaf_hash) != Some(leaf) {
        return Err(ProofError::Mismatch { field: "leaf_hash" });
    }
    if proof.entry.get("index").and_then(Value::as_u64) != Some(proof.index) {
        return Err(ProofError::Mismatch { field: "index" });
    }
    if hash_from_hex(&proof.root_hash) != Some(checkpoint.root_hash) {
        return Err(ProofError::Mismatch { field: "root_hash" });
    }
    let path = parse_path(&proof.audit_path, "audit_path")?;
    merkle::verify_inclusion(
        proof.index,
        proof.tree_size,
        &leaf,
        &path,
        &checkpoint.root_hash,
    )?;
    Ok(())
}

/// Checks a consistency proof: both checkpoints' signatures and that the
/// old tree is a prefix of the new one.
pub fn verify_consistency_proof(
    proof: &ConsistencyProof,
    verifier: &NoteVerifier,
) -> Result<(), ProofError> {
    let old = open_checkpoint(
        &proof.old_checkpoint,
        verifier,
        &proof.origin,
        proof.old_size,
    )?;
    let new = open_checkpoint(
        &proof.new_checkpoint,
        verifier,
        &proof.origin,
        proof.new_size,
    )?;
    let path = parse_path(&proof.consistency_path, "consistency_path")?;
    merkle::verify_consistency(
        old.tree_size,
        new.tree_size,
        &old.root_hash,
        &new.root_hash,
        &path,
    )?;
    Ok(())
}
