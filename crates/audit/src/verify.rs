//! The verifier: recomputes every leaf and every checkpointed root of a log,
//! from the store or from an export, and names the first entry that cannot be
//! trusted.

use std::fmt;
use std::io::BufRead;
use std::path::Path;

use serde_json::Value;
use sqlx::AnyPool;

use crate::canonical::canonical_json_of_value;
use crate::entry::{AuditEntry, ColumnView, INDEX_KEY};
use crate::error::AuditError;
use crate::export::{EXPORT_FORMAT, ExportLine};
use crate::merkle::{Frontier, Hash, leaf_hash};
use crate::note::{Checkpoint, NoteError, NoteVerifier};
use crate::store::{self, EntryRow};
use crate::witness::read_witness;

/// Where a checkpoint came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointSource {
    /// The store's `audit_checkpoints` row with this sequence number.
    Store { seq: i64 },
    /// The witness file, at this line (1-based).
    Witness { line: usize },
    /// The export file, at this line (1-based).
    Export { line: u64 },
}

impl fmt::Display for CheckpointSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointSource::Store { seq } => write!(f, "stored checkpoint #{seq}"),
            CheckpointSource::Witness { line } => write!(f, "witness checkpoint at line {line}"),
            CheckpointSource::Export { line } => write!(f, "exported checkpoint at line {line}"),
        }
    }
}

/// What is wrong with a log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FailureReason {
    #[error("entry is missing (deleted, or later entries were renumbered)")]
    EntryMissing,
    #[error("entry claims position {claimed_index}: entries were reordered or moved")]
    EntryOutOfPlace { claimed_index: u64 },
    #[error("entry is not a valid audit entry: {detail}")]
    EntryUnreadable { detail: String },
    #[error("stored leaf hash does not match the entry: the entry was edited")]
    LeafHashMismatch,
    #[error("column `{column}` does not match the hashed entry")]
    ColumnMismatch { column: &'static str },
    #[error(
        "root over the first {tree_size} entries does not match {checkpoint}: an entry from this index on was edited, removed or reordered"
    )]
    RootMismatch {
        tree_size: u64,
        checkpoint: CheckpointSource,
    },
    #[error(
        "log was truncated: {checkpoint} covers {tree_size} entries but only {entries_present} are present"
    )]
    Truncated {
        tree_size: u64,
        entries_present: u64,
        checkpoint: CheckpointSource,
    },
    #[error("{checkpoint} has an invalid signature: {detail}")]
    CheckpointSignature {
        checkpoint: CheckpointSource,
        detail: String,
    },
    #[error("{checkpoint} is malformed: {detail}")]
    CheckpointMalformed {
        checkpoint: CheckpointSource,
        detail: String,
    },
    #[error("{checkpoint} is for origin `{found}`")]
    CheckpointOriginMismatch {
        checkpoint: CheckpointSource,
        found: String,
    },
    #[error(
        "{checkpoint} has size {tree_size}, smaller than the earlier checkpoint's {previous_size}"
    )]
    CheckpointSizeDecreased {
        checkpoint: CheckpointSource,
        previous_size: u64,
        tree_size: u64,
    },
    #[error(
        "{checkpoint} has size {tree_size} like an earlier checkpoint but a different root: the log forked"
    )]
    CheckpointFork {
        checkpoint: CheckpointSource,
        tree_size: u64,
    },
    #[error("column `{column}` of {checkpoint} does not match its signed note")]
    CheckpointColumnMismatch {
        checkpoint: CheckpointSource,
        column: &'static str,
    },
    #[error("stored checkpoint #{seq} is missing")]
    CheckpointMissing { seq: i64 },
    #[error("corrupt export line: {detail}")]
    ExportLineCorrupt { detail: String },
    #[error("export is out of order: {detail}")]
    ExportOutOfOrder { detail: String },
}

/// The first place where a log stops being trustworthy. `index` is the
/// first entry position that is not proven good: the bad entry itself when
/// the damage is visible in one entry, otherwise the start of the range the
/// failing checkpoint was supposed to vouch for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit log fails verification at entry {index}{}: {reason}", line.map(|line| format!(" (line {line})")).unwrap_or_default())]
pub struct VerifyFailure {
    pub index: u64,
    /// The export line, when verifying an export.
    pub line: Option<u64>,
    pub reason: FailureReason,
}

/// Verification did not succeed: either the log is bad, or it could not be
/// read.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Failed(#[from] VerifyFailure),
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    pub origin: String,
    /// Entries whose leaf hash was recomputed.
    pub entries: u64,
    /// Signed checkpoints checked (store or export).
    pub checkpoints: u64,
    /// Witness checkpoints checked against the recomputed tree.
    pub witness_checkpoints: u64,
    /// The size of the largest checkpoint that verified.
    pub signed_size: u64,
    /// Entries after the last checkpoint: hashed and checked for internal
    /// consistency, but not yet vouched for by a signature.
    pub unsigned_entries: u64,
    /// The first index an export covered (0 for the store).
    pub base_size: u64,
}

struct Target {
    tree_size: u64,
    root_hash: Hash,
    /// The stored frontier column, checked against the recomputed one.
    frontier_column: Option<String>,
    checkpoint: CheckpointSource,
}

fn failure(index: u64, reason: FailureReason) -> VerifyFailure {
    VerifyFailure {
        index,
        line: None,
        reason,
    }
}

/// Opens checkpoint notes in order, checking signatures, origin and that
/// sizes only grow. Good checkpoints become targets; bad ones become
/// candidate failures.
struct CheckpointSequence<'a> {
    origin: &'a str,
    verifier: &'a NoteVerifier,
    latest: Option<(u64, Hash)>,
    failures: Vec<VerifyFailure>,
    targets: Vec<Target>,
}

impl<'a> CheckpointSequence<'a> {
    fn new(origin: &'a str, verifier: &'a NoteVerifier) -> Self {
        Self {
            origin,
            verifier,
            latest: None,
            failures: Vec::new(),
            targets: Vec::new(),
        }
    }

    fn covered_size(&self) -> u64 {
        self.latest.map_or(0, |(size, _)| size)
    }

    /// Checks one note and returns the checkpoint it carries when it is
    /// acceptable.
    fn add(&mut self, note: &str, source: CheckpointSource) -> Option<Checkpoint> {
        let covered = self.covered_size();
        let checkpoint = match Checkpoint::open(note, self.verifier) {
            Ok(checkpoint) => checkpoint,
            Err(error @ (NoteError::MalformedNote(_) | NoteError::MalformedCheckpoint(_))) => {
                self.failures.push(failure(
                    covered,
                    FailureReason::CheckpointMalformed {
                        checkpoint: source,
                        detail: error.to_string(),
                    },
                ));
                return None;
            }
            Err(error) => {
                self.failures.push(failure(
                    covered,
                    FailureReason::CheckpointSignature {
                        checkpoint: source,
                        detail: error.to_string(),
                    },
                ));
                return None;
            }
        };
        if checkpoint.origin != self.origin {
            self.failures.push(failure(
                covered,
                FailureReason::CheckpointOriginMismatch {
                    checkpoint: source,
                    found: checkpoint.origin,
                },
            ));
            return None;
        }
        if let Some((previous_size, previous_root)) = self.latest {
            if checkpoint.tree_size < previous_size {
                self.failures.push(failure(
                    checkpoint.tree_size,
                    FailureReason::CheckpointSizeDecreased {
                        checkpoint: source.clone(),
                        previous_size,
                        tree_size: checkpoint.tree_size,
                    },
                ));
            } else if checkpoint.tree_size == previous_size && checkpoint.root_hash != previous_root
            {
                self.failures.push(failure(
                    checkpoint.tree_size,
                    FailureReason::CheckpointFork {
                        checkpoint: source.clone(),
                        tree_size: checkpoint.tree_size,
                    },
                ));
            }
        }
        if checkpoint.tree_size >= self.covered_size() {
            self.latest = Some((checkpoint.tree_size, checkpoint.root_hash));
        }
        Some(checkpoint)
    }
}

/// Verifies the log `origin` in the store: every entry's leaf hash and
/// searchable columns, every stored checkpoint's signature and root, that
/// checkpoint sizes only grow, and, when `witness` names a witness file or
/// directory, that the store still matches every witnessed checkpoint.
// Owns the page fetcher and joins it before returning.
#[allow(clippy::disallowed_methods)]
pub async fn verify_store(
    pool: &AnyPool,
    origin: &str,
    verifier: &NoteVerifier,
    witness: Option<&Path>,
) -> Result<VerifyReport, VerifyError> {
    let rows = store::load_checkpoints(pool, origin).await?;
    let mut sequence = CheckpointSequence::new(origin, verifier);
    let mut missing_seq_reported = false;
    for (position, row) in rows.iter().enumerate() {
        let source = CheckpointSource::Store { seq: row.seq };
        if row.seq != position as i64 && !missing_seq_reported {
            missing_seq_reported = true;
            let covered = sequence.covered_size();
            sequence.failures.push(failure(
                covered,
                FailureReason::CheckpointMissing {
                    seq: position as i64,
                },
            ));
        }
        let covered = sequence.covered_size();
        let Some(checkpoint) = sequence.add(&row.note, source.clone()) else {
            continue;
        };
        if row.tree_size != store::to_i64(checkpoint.tree_size) {
            sequence.failures.push(failure(
                covered,
                FailureReason::CheckpointColumnMismatch {
                    checkpoint: source,
                    column: "tree_size",
                },
            ));
            continue;
        }
        if row.root_hash != store::hash_to_hex(&checkpoint.root_hash) {
            sequence.failures.push(failure(
                covered,
                FailureReason::CheckpointColumnMismatch {
                    checkpoint: source,
                    column: "root_hash",
                },
            ));
            continue;
        }
        sequence.targets.push(Target {
            tree_size: checkpoint.tree_size,
            root_hash: checkpoint.root_hash,
            frontier_column: Some(row.frontier.clone()),
            checkpoint: source,
        });
    }
    let store_checkpoints = sequence.targets.len() as u64;

    let mut witness_checkpoints = 0;
    let mut failures = std::mem::take(&mut sequence.failures);
    let mut targets = std::mem::take(&mut sequence.targets);
    if let Some(witness) = witness {
        let mut witnessed = CheckpointSequence::new(origin, verifier);
        for (position, record) in read_witness(witness, origin)?.iter().enumerate() {
            let source = CheckpointSource::Witness { line: position + 1 };
            if let Some(checkpoint) = witnessed.add(&record.note, source.clone()) {
                witnessed.targets.push(Target {
                    tree_size: checkpoint.tree_size,
                    root_hash: checkpoint.root_hash,
                    frontier_column: None,
                    checkpoint: source,
                });
            }
        }
        witness_checkpoints = witnessed.targets.len() as u64;
        failures.append(&mut witnessed.failures);
        targets.append(&mut witnessed.targets);
    }
    // Stable: for equal sizes the store's own checkpoint is checked first.
    targets.sort_by_key(|target| target.tree_size);

    let mut replay = Replay::new(Frontier::new(), targets);
    let mut stream_failure = None;
    // Pages are fetched on their own task while the previous page is being
    // hashed, so the database and the hashing use both cores.
    let (page_sender, mut pages) =
        tokio::sync::mpsc::channel::<Result<Vec<EntryRow>, AuditError>>(2);
    let fetcher = tokio::spawn(fetch_entry_pages(
        pool.clone(),
        origin.to_owned(),
        page_sender,
    ));
    'pages: while let Some(page) = pages.recv().await {
        for row in &page? {
            if let Err(found) = replay.stored_entry(row) {
                stream_failure = Some(found);
                break 'pages;
            }
        }
    }
    drop(pages);
    fetcher.abort();
    if stream_failure.is_none() {
        stream_failure = replay.finish().err();
    }
    failures.extend(stream_failure);
    if let Some(first) = failures.into_iter().min_by_key(|failure| failure.index) {
        return Err(first.into());
    }
    Ok(VerifyReport {
        origin: origin.to_owned(),
        entries: replay.frontier.size(),
        checkpoints: store_checkpoints,
        witness_checkpoints,
        signed_size: replay.verified_size,
        unsigned_entries: replay.frontier.size() - replay.verified_size,
        base_size: 0,
    })
}

/// Sends the entries of `origin` in pages of [`VERIFY_PAGE_ENTRIES`] until
/// the log ends, an error occurs, or the receiver is dropped.
async fn fetch_entry_pages(
    pool: AnyPool,
    origin: String,
    pages: tokio::sync::mpsc::Sender<Result<Vec<EntryRow>, AuditError>>,
) {
    let mut next_index = 0u64;
    loop {
        match store::load_entries_page(&pool, &origin, next_index, VERIFY_PAGE_ENTRIES).await {
            Ok(page) => {
                let last_page = (page.len() as u64) < VERIFY_PAGE_ENTRIES;
                if let Some(last) = page.last() {
                    next_index = u64::try_from(last.idx)
                        .unwrap_or(u64::MAX)
                        .saturating_add(1);
                }
                if pages.send(Ok(page)).await.is_err() || last_page {
                    return;
                }
            }
            Err(error) => {
                let _ = pages.send(Err(error)).await;
                return;
            }
        }
    }
}

const VERIFY_PAGE_ENTRIES: u64 = 10_000;

/// Recomputes the tree entry by entry and checks it against the targets as
/// their sizes are reached.
struct Replay {
    frontier: Frontier,
    targets: Vec<Target>,
    next_target: usize,
    verified_size: u64,
    checked_targets: u64,
}

impl Replay {
    fn new(frontier: Frontier, targets: Vec<Target>) -> Self {
        let verified_size = frontier.size();
        let mut replay = Self {
            frontier,
            targets,
            next_target: 0,
            verified_size,
            checked_targets: 0,
        };
        // Targets at or below the starting size cannot be recomputed here
        // (an export's base was already checked against its own note).
        while replay
            .targets
            .get(replay.next_target)
            .is_some_and(|target| target.tree_size < replay.verified_size)
        {
            replay.next_target += 1;
        }
        replay
    }

    fn stored_entry(&mut self, row: &EntryRow) -> Result<(), VerifyFailure> {
        let index = self.frontier.size();
        if row.idx != store::to_i64(index) {
            return Err(failure(index, FailureReason::EntryMissing));
        }
        let leaf = leaf_hash(row.entry.as_bytes());
        if store::hash_from_hex(&row.leaf_hash) != Some(leaf) {
            return Err(failure(index, FailureReason::LeafHashMismatch));
        }
        let unreadable = |detail: String| failure(index, FailureReason::EntryUnreadable { detail });
        let view: ColumnView<'_> =
            serde_json::from_str(&row.entry).map_err(|error| unreadable(error.to_string()))?;
        match view.index {
            Some(claimed_index) if claimed_index == index => {}
            Some(claimed_index) => {
                return Err(failure(
                    index,
                    FailureReason::EntryOutOfPlace { claimed_index },
                ));
            }
            None => return Err(unreadable("no `index` field".to_owned())),
        }
        let expected = view.indexed_columns().map_err(unreadable)?;
        let mismatched_column = if row.time_micros != expected.time_micros {
            Some("time_micros")
        } else if row.kind != expected.kind {
            Some("kind")
        } else if row.request_id != expected.request_id {
            Some("request_id")
        } else if row.principal_id != expected.principal_id {
            Some("principal_id")
        } else if row.model != expected.model {
            Some("model")
        } else if row.decision.as_deref() != expected.decision {
            Some("decision")
        } else if row.order_ids != expected.order_ids {
            Some("order_ids")
        } else if row.actor != expected.actor {
            Some("actor")
        } else {
            None
        };
        if let Some(column) = mismatched_column {
            return Err(failure(index, FailureReason::ColumnMismatch { column }));
        }
        self.append(leaf)
    }

    fn check_position_and_parse(
        &self,
        index: u64,
        mut value: Value,
    ) -> Result<AuditEntry, VerifyFailure> {
        let claimed_index = value
            .as_object_mut()
            .and_then(|object| object.remove(INDEX_KEY))
            .and_then(|claimed| claimed.as_u64());
        match claimed_index {
            Some(claimed_index) if claimed_index == index => {}
            Some(claimed_index) => {
                return Err(failure(
                    index,
                    FailureReason::EntryOutOfPlace { claimed_index },
                ));
            }
            None => {
                return Err(failure(
                    index,
                    FailureReason::EntryUnreadable {
                        detail: "no `index` field".to_owned(),
                    },
                ));
            }
        }
        serde_json::from_value(value).map_err(|error| {
            failure(
                index,
                FailureReason::EntryUnreadable {
                    detail: error.to_string(),
                },
            )
        })
    }

    fn append(&mut self, leaf: Hash) -> Result<(), VerifyFailure> {
        self.frontier.append(leaf);
        self.check_targets_at_current_size()
    }

    fn check_targets_at_current_size(&mut self) -> Result<(), VerifyFailure> {
        let size = self.frontier.size();
        while let Some(target) = self.targets.get(self.next_target) {
            if target.tree_size != size {
                break;
            }
            if target.root_hash != self.frontier.root() {
                return Err(failure(
                    self.verified_size,
                    FailureReason::RootMismatch {
                        tree_size: size,
                        checkpoint: target.checkpoint.clone(),
                    },
                ));
            }
            if let Some(column) = &target.frontier_column
                && *column != store::frontier_to_text(&self.frontier)
            {
                return Err(failure(
                    self.verified_size,
                    FailureReason::CheckpointColumnMismatch {
                        checkpoint: target.checkpoint.clone(),
                        column: "frontier",
                    },
                ));
            }
            self.verified_size = size;
            self.checked_targets += 1;
            self.next_target += 1;
        }
        Ok(())
    }

    /// After the last entry: any checkpoint beyond it means entries were cut
    /// off.
    fn finish(&self) -> Result<(), VerifyFailure> {
        match self.targets.get(self.next_target) {
            Some(target) => Err(failure(
                self.frontier.size(),
                FailureReason::Truncated {
                    tree_size: target.tree_size,
                    entries_present: self.frontier.size(),
                    checkpoint: target.checkpoint.clone(),
                },
            )),
            None => Ok(()),
        }
    }
}

/// Verifies an export produced by [`crate::export`] with only the log's
/// public key: the base checkpoint and its frontier, every entry and leaf in
/// order, and every checkpoint in the file. A line that is not valid is
/// reported by its line number.
pub fn verify_export<R: BufRead>(
    reader: R,
    verifier: &NoteVerifier,
) -> Result<VerifyReport, VerifyError> {
    let mut origin: Option<String> = None;
    let mut replay: Option<Replay> = None;
    let mut sequence_latest: Option<(u64, Hash)> = None;
    let mut base_size = 0;
    let mut full_entries = 0u64;
    let mut checkpoints = 0u64;
    for (line_index, line) in reader.lines().enumerate() {
        let line_number = line_index as u64 + 1;
        let next_index = replay.as_ref().map_or(0, |replay| replay.frontier.size());
        let at_line = |reason: FailureReason| VerifyFailure {
            index: next_index,
            line: Some(line_number),
            reason,
        };
        let corrupt = |detail: String| at_line(FailureReason::ExportLineCorrupt { detail });
        let line = line.map_err(AuditError::from)?;
        let parsed: ExportLine =
            serde_json::from_str(&line).map_err(|error| corrupt(error.to_string()))?;
        match (parsed, replay.as_mut()) {
            (
                ExportLine::Header {
                    format,
                    origin: header_origin,
                    base,
                    ..
                },
                None,
            ) if origin.is_none() => {
                if format != EXPORT_FORMAT {
                    return Err(corrupt(format!("unknown export format `{format}`")).into());
                }
                let frontier = match base {
                    None => Frontier::new(),
                    Some(base) => {
                        let source = CheckpointSource::Export { line: line_number };
                        let checkpoint =
                            Checkpoint::open(&base.checkpoint, verifier).map_err(|error| {
                                at_line(FailureReason::CheckpointSignature {
                                    checkpoint: source.clone(),
                                    detail: error.to_string(),
                                })
                            })?;
                        if checkpoint.origin != header_origin {
                            return Err(at_line(FailureReason::CheckpointOriginMismatch {
                                checkpoint: source,
                                found: checkpoint.origin,
                            })
                            .into());
                        }
                        let frontier =
                            store::frontier_from_text(checkpoint.tree_size, &base.frontier)
                                .filter(|frontier| frontier.root() == checkpoint.root_hash)
                                .ok_or_else(|| {
                                    corrupt(
                                        "base frontier does not match the base checkpoint"
                                            .to_owned(),
                                    )
                                })?;
                        sequence_latest = Some((checkpoint.tree_size, checkpoint.root_hash));
                        frontier
                    }
                };
                base_size = frontier.size();
                origin = Some(header_origin);
                replay = Some(Replay::new(frontier, Vec::new()));
            }
            (ExportLine::Header { .. }, _) => {
                return Err(at_line(FailureReason::ExportOutOfOrder {
                    detail: "second header".to_owned(),
                })
                .into());
            }
            (_, None) => {
                return Err(at_line(FailureReason::ExportOutOfOrder {
                    detail: "the first line must be the header".to_owned(),
                })
                .into());
            }
            (ExportLine::Entry { index, entry }, Some(replay)) => {
                if index != next_index {
                    return Err(at_line(FailureReason::ExportOutOfOrder {
                        detail: format!("expected index {next_index}, found {index}"),
                    })
                    .into());
                }
                let canonical =
                    canonical_json_of_value(&entry).map_err(|error| corrupt(error.to_string()))?;
                let leaf = leaf_hash(canonical.as_bytes());
                replay
                    .check_position_and_parse(index, entry)
                    .map_err(|found| VerifyFailure {
                        line: Some(line_number),
                        ..found
                    })?;
                replay.append(leaf).map_err(|found| VerifyFailure {
                    line: Some(line_number),
                    ..found
                })?;
                full_entries += 1;
            }
            (ExportLine::Leaf { index, leaf_hash }, Some(replay)) => {
                if index != next_index {
                    return Err(at_line(FailureReason::ExportOutOfOrder {
                        detail: format!("expected index {next_index}, found {index}"),
                    })
                    .into());
                }
                let leaf = store::hash_from_hex(&leaf_hash)
                    .ok_or_else(|| corrupt(format!("malformed leaf hash `{leaf_hash}`")))?;
                replay.append(leaf).map_err(|found| VerifyFailure {
                    line: Some(line_number),
                    ..found
                })?;
            }
            (ExportLine::Checkpoint { note, tree_size }, Some(replay)) => {
                let source = CheckpointSource::Export { line: line_number };
                let Some(expected_origin) = origin.as_deref() else {
                    return Err(corrupt("checkpoint before header".to_owned()).into());
                };
                let mut sequence = CheckpointSequence::new(expected_origin, verifier);
                sequence.latest = sequence_latest;
                let accepted = sequence.add(&note, source.clone());
                if let Some(first) = sequence.failures.into_iter().next() {
                    return Err(VerifyFailure {
                        line: Some(line_number),
                        ..first
                    }
                    .into());
                }
                let Some(checkpoint) = accepted else {
                    return Err(corrupt("checkpoint rejected".to_owned()).into());
                };
                if checkpoint.tree_size != tree_size || checkpoint.tree_size != next_index {
                    return Err(at_line(FailureReason::ExportOutOfOrder {
                        detail: format!(
                            "checkpoint of size {} appears after {next_index} entries",
                            checkpoint.tree_size
                        ),
                    })
                    .into());
                }
                if checkpoint.root_hash != replay.frontier.root() {
                    return Err(VerifyFailure {
                        index: replay.verified_size,
                        line: Some(line_number),
                        reason: FailureReason::RootMismatch {
                            tree_size: checkpoint.tree_size,
                            checkpoint: source,
                        },
                    }
                    .into());
                }
                sequence_latest = Some((checkpoint.tree_size, checkpoint.root_hash));
                replay.verified_size = checkpoint.tree_size;
                checkpoints += 1;
            }
        }
    }
    let (Some(origin), Some(replay)) = (origin, replay) else {
        return Err(VerifyFailure {
            index: 0,
            line: Some(1),
            reason: FailureReason::ExportLineCorrupt {
                detail: "empty export".to_owned(),
            },
        }
        .into());
    };
    Ok(VerifyReport {
        origin,
        entries: full_entries,
        checkpoints,
        witness_checkpoints: 0,
        signed_size: replay.verified_size,
        unsigned_entries: replay.frontier.size() - replay.verified_size,
        base_size,
    })
}
