//! Copies of signed checkpoints kept outside the store.
//!
//! Whoever can rewrite the database can rewrite both the entries and the
//! checkpoints in it. A checkpoint that was also appended to a file elsewhere
//! (another disk, a log shipper, a transparency witness) pins the tree at that
//! size: the verifier recomputes the store's root at every witnessed size and
//! reports truncation or rewriting even when the store is self-consistent.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::AuditError;

/// Where checkpoints are copied as they are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WitnessTarget {
    /// Append every checkpoint of every origin to this one file.
    File(PathBuf),
    /// Append each origin's checkpoints to its own file in this directory,
    /// named by [`witness_file_name`].
    Directory(PathBuf),
}

impl WitnessTarget {
    /// The file that receives `origin`'s checkpoints.
    pub fn file_for(&self, origin: &str) -> PathBuf {
        match self {
            WitnessTarget::File(path) => path.clone(),
            WitnessTarget::Directory(dir) => dir.join(witness_file_name(origin)),
        }
    }
}

/// The file name for `origin` inside a witness directory: the origin with
/// every byte outside `[A-Za-z0-9._-]` percent-encoded, so that distinct
/// origins never share a file, plus `.checkpoints.jsonl`.
pub fn witness_file_name(origin: &str) -> String {
    let mut name = String::with_capacity(origin.len() + 20);
    for byte in origin.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-') {
            name.push(char::from(byte));
        } else {
            name.push_str(&format!("%{byte:02X}"));
        }
    }
    name.push_str(".checkpoints.jsonl");
    name
}

/// One line of a witness file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WitnessRecord {
    pub origin: String,
    pub tree_size: u64,
    /// The signed checkpoint note, verbatim.
    pub note: String,
}

/// Appends one signed checkpoint to the witness. The line is written with a
/// single `write` on a file opened for appending, so concurrent writers
/// (replicas sharing a witness file) never interleave within a line.
pub(crate) fn append_to_witness(
    target: &WitnessTarget,
    record: &WitnessRecord,
) -> Result<(), AuditError> {
    let path = target.file_for(&record.origin);
    let witness_error = |detail: String| AuditError::Witness {
        path: path.display().to_string(),
        detail,
    };
    let mut line =
        serde_json::to_string(record).map_err(|error| witness_error(error.to_string()))?;
    line.push('\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|error| witness_error(error.to_string()))?;
    file.write_all(line.as_bytes())
        .map_err(|error| witness_error(error.to_string()))
}

/// Reads the witnessed checkpoints of `origin` from a witness file or
/// directory, in the order they were appended. A missing file in a directory
/// means nothing was witnessed for that origin.
pub fn read_witness(path: &Path, origin: &str) -> Result<Vec<WitnessRecord>, AuditError> {
    let file_path = if path.is_dir() {
        path.join(witness_file_name(origin))
    } else {
        path.to_path_buf()
    };
    let witness_error = |detail: String| AuditError::Witness {
        path: file_path.display().to_string(),
        detail,
    };
    let file = match std::fs::File::open(&file_path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && path.is_dir() => {
            return Ok(Vec::new());
        }
        Err(error) => return Err(witness_error(error.to_string())),
    };
    let mut records = Vec::new();
    for (line_number, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|error| witness_error(error.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        let record: WitnessRecord = serde_json::from_str(&line)
            .map_err(|error| witness_error(format!("line {}: {error}", line_number + 1)))?;
        if record.origin == origin {
            records.push(record);
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_keep_origins_apart() {
        assert_eq!(
            witness_file_name("portcullis/r-1"),
            "portcullis%2Fr-1.checkpoints.jsonl"
        );
        assert_ne!(witness_file_name("a/b"), witness_file_name("a%2Fb"));
        assert_ne!(witness_file_name("a/b"), witness_file_name("a_b"));
    }
}
