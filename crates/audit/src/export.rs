//! JSON-lines export of one log, self-contained enough for offline
//! verification with only the public key.
//!
//! Format `portcullis-audit-export/1`, one JSON object per line, `type` first
//! in meaning though not in position:
//!
//! - `header`: `format`, `origin`, the requested `since`/`until`, and `base`
//!   when the export does not start at index 0: the signed checkpoint at the
//!   start (`checkpoint`) and the frontier (compact range) of the tree at that
//!   size (`frontier`, the hex subtree roots concatenated). The verifier checks
//!   the note's signature and that the frontier's root is the note's root, and
//!   continues the tree from there.
//! - `entry`: `index` and the canonical `entry` itself, for entries whose time
//!   is in `[since, until)`.
//! - `leaf`: `index` and `leaf_hash` only, for entries between the base and
//!   the last exported entry that fall outside the window, so the tree can be
//!   recomputed without disclosing them.
//! - `checkpoint`: `tree_size` and the signed `note`, placed right after the
//!   entry that brings the tree to that size.
//!
//! The export runs from the last checkpoint at or before the first matching
//! entry to the first checkpoint at or after the last matching entry, so every
//! exported entry is vouched for by a signature unless it is newer than the
//! latest checkpoint (the verifier reports those as unsigned).

use std::collections::BTreeMap;
use std::io::Write;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::AnyPool;

use crate::error::AuditError;
use crate::store;

/// The `format` value of the export header.
pub const EXPORT_FORMAT: &str = "portcullis-audit-export/1";

/// The starting point of an export that does not begin at index 0.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ExportBase {
    pub checkpoint: String,
    pub frontier: String,
}

/// One line of an export.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ExportLine {
    Header {
        format: String,
        origin: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<Timestamp>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<Timestamp>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        base: Option<ExportBase>,
    },
    Entry {
        index: u64,
        entry: Value,
    },
    Leaf {
        index: u64,
        leaf_hash: String,
    },
    Checkpoint {
        tree_size: u64,
        note: String,
    },
}

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExportSummary {
    /// The tree size the export starts from.
    pub base_size: u64,
    /// One past the last index exported as an entry or leaf.
    pub end_size: u64,
    /// Entries written in full.
    pub entries: u64,
    /// Entries written as leaf hashes only.
    pub leaves: u64,
    pub checkpoints: u64,
}

fn write_line(writer: &mut impl Write, line: &ExportLine) -> Result<(), AuditError> {
    serde_json::to_writer(&mut *writer, line).map_err(std::io::Error::from)?;
    writer.write_all(b"\n")?;
    Ok(())
}

/// Writes the entries of `origin` whose time is in `[since, until)` (either
/// bound optional) as a JSON-lines export; see the module docs for the format.
pub async fn export(
    pool: &AnyPool,
    origin: &str,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
    writer: &mut impl Write,
) -> Result<ExportSummary, AuditError> {
    let since_micros = since.map_or(i64::MIN, |time| time.as_microsecond());
    let until_micros = until.map_or(i64::MAX, |time| time.as_microsecond());
    let in_window = |time_micros: i64| time_micros >= since_micros && time_micros < until_micros;

    let range: (Option<i64>, Option<i64>) = {
        use sqlx::Row;
        let row = sqlx::query(
            "SELECT MIN(idx), MAX(idx) FROM audit_entries WHERE origin = $1 AND time_micros >= $2 AND time_micros < $3",
        )
        .bind(origin.to_owned())
        .bind(since_micros)
        .bind(until_micros)
        .fetch_one(pool)
        .await?;
        (row.try_get(0)?, row.try_get(1)?)
    };

    // The log's checkpoints keyed by size; for a size signed twice the first
    // note is kept.
    let mut checkpoints_by_size: BTreeMap<u64, store::CheckpointRow> = BTreeMap::new();
    for row in store::load_checkpoints(pool, origin).await? {
        if let Ok(size) = u64::try_from(row.tree_size) {
            checkpoints_by_size.entry(size).or_insert(row);
        }
    }

    let (first_index, last_index) = match range {
        (Some(first), Some(last)) => (
            u64::try_from(first).unwrap_or(0),
            u64::try_from(last).unwrap_or(0),
        ),
        _ => {
            write_line(
                writer,
                &ExportLine::Header {
                    format: EXPORT_FORMAT.to_owned(),
                    origin: origin.to_owned(),
                    since,
                    until,
                    base: None,
                },
            )?;
            return Ok(ExportSummary::default());
        }
    };
    // BTreeMap::range panics on an empty inclusive range, so index 0 (where
    // no base is needed) is handled apart.
    let base = if first_index == 0 {
        None
    } else {
        checkpoints_by_size.range(1..=first_index).next_back()
    };
    let base_size = base.map_or(0, |(size, _)| *size);
    let end_size = checkpoints_by_size
        .range(last_index + 1..)
        .next()
        .map_or(last_index + 1, |(size, _)| *size);
    write_line(
        writer,
        &ExportLine::Header {
            format: EXPORT_FORMAT.to_owned(),
            origin: origin.to_owned(),
            since,
            until,
            base: base.map(|(_, row)| ExportBase {
                checkpoint: row.note.clone(),
                frontier: row.frontier.clone(),
            }),
        },
    )?;

    let mut summary = ExportSummary {
        base_size,
        end_size,
        ..ExportSummary::default()
    };
    let mut next = base_size;
    const PAGE: u64 = 20_000;
    while next < end_size {
        let page = store::load_entries_page(pool, origin, next, PAGE.min(end_size - next)).await?;
        if page.is_empty() {
            break;
        }
        for row in page {
            // A gap is written as it is; the verifier reports it.
            let index = u64::try_from(row.idx).unwrap_or(0);
            if in_window(row.time_micros) {
                // The stored entry is already canonical; writing it verbatim
                // keeps the exact hashed bytes.
                writeln!(
                    writer,
                    r#"{{"entry":{},"index":{index},"type":"entry"}}"#,
                    row.entry
                )?;
                summary.entries += 1;
            } else {
                write_line(
                    writer,
                    &ExportLine::Leaf {
                        index,
                        leaf_hash: row.leaf_hash.clone(),
                    },
                )?;
                summary.leaves += 1;
            }
            next = index + 1;
            if let Some(checkpoint) = checkpoints_by_size.get(&next) {
                write_line(
                    writer,
                    &ExportLine::Checkpoint {
                        tree_size: next,
                        note: checkpoint.note.clone(),
                    },
                )?;
                summary.checkpoints += 1;
            }
        }
    }
    writer.flush()?;
    Ok(summary)
}
