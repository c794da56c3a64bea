//! The audit tables and every SQL statement that touches them.
//!
//! One set of statements serves SQLite and PostgreSQL through sqlx's `Any`
//! driver. Placeholders are written `$1, $2, …`: PostgreSQL uses them
//! natively and SQLite accepts `$NNN` as a numbered parameter (sqlx binds it
//! by number), so the same text works on both. Hashes are stored as lowercase
//! hex `TEXT` and integers as `BIGINT`, which both backends share; only the
//! append-only triggers differ, because the trigger languages do.

use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, Connection, Row, Transaction};

use crate::entry::IndexedColumns;
use crate::error::AuditError;
use crate::merkle::{Frontier, Hash};

const CREATE_TABLES: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS audit_entries (
        origin TEXT NOT NULL,
        idx BIGINT NOT NULL,
        leaf_hash TEXT NOT NULL,
        entry TEXT NOT NULL,
        time_micros BIGINT NOT NULL,
        kind TEXT NOT NULL,
        request_id TEXT,
        principal_id TEXT,
        model TEXT,
        decision TEXT,
        order_ids TEXT,
        actor TEXT,
        PRIMARY KEY (origin, idx)
    )",
    "CREATE INDEX IF NOT EXISTS audit_entries_by_time ON audit_entries (time_micros)",
    "CREATE INDEX IF NOT EXISTS audit_entries_by_principal ON audit_entries (principal_id, time_micros)",
    "CREATE INDEX IF NOT EXISTS audit_entries_by_model ON audit_entries (model, time_micros)",
    "CREATE INDEX IF NOT EXISTS audit_entries_by_request ON audit_entries (request_id)",
    "CREATE TABLE IF NOT EXISTS audit_checkpoints (
        origin TEXT NOT NULL,
        seq BIGINT NOT NULL,
        tree_size BIGINT NOT NULL,
        root_hash TEXT NOT NULL,
        frontier TEXT NOT NULL,
        note TEXT NOT NULL,
        PRIMARY KEY (origin, seq)
    )",
    // One row per log, rewritten by the writer to learn whether the store
    // takes writes again after a failure while nothing else is pending.
    "CREATE TABLE IF NOT EXISTS audit_writer_probes (
        origin TEXT NOT NULL PRIMARY KEY,
        probed_micros BIGINT NOT NULL
    )",
];

const SQLITE_TRIGGERS: &[&str] = &[
    "CREATE TRIGGER IF NOT EXISTS audit_entries_no_update BEFORE UPDATE ON audit_entries
     BEGIN SELECT RAISE(ABORT, 'audit_entries is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_entries_no_delete BEFORE DELETE ON audit_entries
     BEGIN SELECT RAISE(ABORT, 'audit_entries is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
     BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
     BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END",
];

const POSTGRES_TRIGGERS: &[&str] = &[
    // Serialise concurrent replicas creating the same function and triggers;
    // PostgreSQL reports "tuple concurrently updated" otherwise.
    "SELECT pg_advisory_xact_lock(7093421788513)",
    "CREATE OR REPLACE FUNCTION audit_reject_modification() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$",
    "CREATE OR REPLACE TRIGGER audit_entries_append_only BEFORE UPDATE OR DELETE ON audit_entries
     FOR EACH ROW EXECUTE FUNCTION audit_reject_modification()",
    "CREATE OR REPLACE TRIGGER audit_entries_no_truncate BEFORE TRUNCATE ON audit_entries
     FOR EACH STATEMENT EXECUTE FUNCTION audit_reject_modification()",
    "CREATE OR REPLACE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
     FOR EACH ROW EXECUTE FUNCTION audit_reject_modification()",
    "CREATE OR REPLACE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
     FOR EACH STATEMENT EXECUTE FUNCTION audit_reject_modification()",
];

/// Installs sqlx's built-in `Any` drivers. Safe to call more than once; the
/// store crate must call it (or this) before it builds the `AnyPool`.
pub fn install_sql_drivers() {
    sqlx::any::install_default_drivers();
}

/// Creates the audit tables, indexes and append-only triggers if they do not
/// exist. Idempotent, and safe to run from several replicas at once.
pub async fn ensure_schema(pool: &AnyPool) -> Result<(), AuditError> {
    let mut connection = pool.acquire().await?;
    let is_postgres = connection.backend_name().eq_ignore_ascii_case("postgresql");
    let mut transaction = connection.begin().await?;
    if is_postgres {
        sqlx::raw_sql(POSTGRES_TRIGGERS[0])
            .execute(&mut *transaction)
            .await?;
    }
    for statement in CREATE_TABLES {
        sqlx::raw_sql(statement).execute(&mut *transaction).await?;
    }
    let triggers = if is_postgres {
        &POSTGRES_TRIGGERS[1..]
    } else {
        SQLITE_TRIGGERS
    };
    for statement in triggers {
        sqlx::raw_sql(statement).execute(&mut *transaction).await?;
    }
    transaction.commit().await?;
    Ok(())
}

pub(crate) fn hash_to_hex(hash: &Hash) -> String {
    hex::encode(hash)
}

pub(crate) fn hash_from_hex(text: &str) -> Option<Hash> {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(text, &mut hash).ok()?;
    Some(hash)
}

/// The stored form of a frontier: the hex subtree roots concatenated.
pub(crate) fn frontier_to_text(frontier: &Frontier) -> String {
    frontier.subtree_roots().iter().map(hash_to_hex).collect()
}

pub(crate) fn frontier_from_text(size: u64, text: &str) -> Option<Frontier> {
    if !text.len().is_multiple_of(64) || !text.is_ascii() {
        return None;
    }
    let roots = (0..text.len() / 64)
        .map(|position| hash_from_hex(&text[position * 64..position * 64 + 64]))
        .collect::<Option<Vec<_>>>()?;
    Frontier::from_parts(size, roots).ok()
}

pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Writes this log's probe row in a transaction of its own: it succeeds
/// only when the store takes writes.
pub(crate) async fn probe_write(
    pool: &AnyPool,
    origin: &str,
    probed_micros: i64,
) -> Result<(), AuditError> {
    let mut transaction = pool.begin().await?;
    sqlx::query("DELETE FROM audit_writer_probes WHERE origin = $1")
        .bind(origin)
        .execute(&mut *transaction)
        .await?;
    sqlx::query("INSERT INTO audit_writer_probes (origin, probed_micros) VALUES ($1, $2)")
        .bind(origin)
        .bind(probed_micros)
        .execute(&mut *transaction)
        .await?;
    transaction.commit().await?;
    Ok(())
}

/// One entry ready to insert.
pub(crate) struct EntryInsert<'a> {
    pub index: u64,
    /// Hex leaf hash.
    pub leaf_hash: String,
    pub entry_json: &'a str,
    pub columns: &'a IndexedColumns,
}

const ENTRY_COLUMNS: usize = 12;

/// Rows per multi-row INSERT. A few distinct statement shapes (64, 32, …, 1
/// rows) keep the prepared-statement cache small while cutting round trips to
/// the database by that factor.
const INSERT_CHUNK_ROWS: usize = 64;

fn insert_entries_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO audit_entries (origin, idx, leaf_hash, entry, time_micros, kind, request_id, \
         principal_id, model, decision, order_ids, actor) VALUES ",
    );
    for row in 0..rows {
        if row > 0 {
            sql.push(',');
        }
        sql.push('(');
        for column in 0..ENTRY_COLUMNS {
            if column > 0 {
                sql.push(',');
            }
            sql.push('$');
            sql.push_str(&(row * ENTRY_COLUMNS + column + 1).to_string());
        }
        sql.push(')');
    }
    sql
}

pub(crate) async fn insert_entries<'a>(
    transaction: &mut Transaction<'static, Any>,
    origin: &'a str,
    rows: &'a [EntryInsert<'a>],
) -> Result<(), AuditError> {
    let mut remaining = rows;
    while !remaining.is_empty() {
        let chunk_rows = if remaining.len() >= INSERT_CHUNK_ROWS {
            INSERT_CHUNK_ROWS
        } else {
            // The largest power of two that fits, so that at most seven
            // statement shapes ever exist.
            1 << (usize::BITS - 1 - remaining.len().leading_zeros())
        };
        let (chunk, rest) = remaining.split_at(chunk_rows);
        remaining = rest;
        let sql = insert_entries_sql(chunk_rows);
        let mut query = sqlx::query(&sql);
        for row in chunk {
            // Borrowed binds: the rows outlive the statement, so nothing is
            // copied on the way to the driver.
            query = query
                .bind(origin)
                .bind(to_i64(row.index))
                .bind(row.leaf_hash.as_str())
                .bind(row.entry_json)
                .bind(row.columns.time_micros)
                .bind(row.columns.kind)
                .bind(row.columns.request_id.as_deref())
                .bind(row.columns.principal_id.as_deref())
                .bind(row.columns.model.as_deref())
                .bind(row.columns.decision)
                .bind(row.columns.order_ids.as_deref())
                .bind(row.columns.actor.as_deref());
        }
        query.execute(&mut **transaction).await?;
    }
    Ok(())
}

/// A checkpoint row as stored.
#[derive(Debug, Clone)]
pub(crate) struct CheckpointRow {
    pub seq: i64,
    pub tree_size: i64,
    pub root_hash: String,
    pub frontier: String,
    pub note: String,
}

pub(crate) async fn insert_checkpoint(
    transaction: &mut Transaction<'static, Any>,
    origin: &str,
    row: &CheckpointRow,
) -> Result<(), AuditError> {
    sqlx::query(
        "INSERT INTO audit_checkpoints (origin, seq, tree_size, root_hash, frontier, note) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(origin.to_owned())
    .bind(row.seq)
    .bind(row.tree_size)
    .bind(row.root_hash.clone())
    .bind(row.frontier.clone())
    .bind(row.note.clone())
    .execute(&mut **transaction)
    .await?;
    Ok(())
}

fn checkpoint_from_row(row: &AnyRow) -> Result<CheckpointRow, sqlx::Error> {
    Ok(CheckpointRow {
        seq: row.try_get(0)?,
        tree_size: row.try_get(1)?,
        root_hash: row.try_get(2)?,
        frontier: row.try_get(3)?,
        note: row.try_get(4)?,
    })
}

/// Every checkpoint of `origin`, in the order they were written.
pub(crate) async fn load_checkpoints(
    pool: &AnyPool,
    origin: &str,
) -> Result<Vec<CheckpointRow>, AuditError> {
    let rows = sqlx::query(
        "SELECT seq, tree_size, root_hash, frontier, note FROM audit_checkpoints \
         WHERE origin = $1 ORDER BY seq",
    )
    .bind(origin.to_owned())
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(checkpoint_from_row)
        .collect::<Result<_, _>>()?)
}

/// The most recently written checkpoint of `origin`.
pub(crate) async fn load_latest_checkpoint(
    pool: &AnyPool,
    origin: &str,
) -> Result<Option<CheckpointRow>, AuditError> {
    let row = sqlx::query(
        "SELECT seq, tree_size, root_hash, frontier, note FROM audit_checkpoints \
         WHERE origin = $1 ORDER BY seq DESC LIMIT 1",
    )
    .bind(origin.to_owned())
    .fetch_optional(pool)
    .await?;
    Ok(row.as_ref().map(checkpoint_from_row).transpose()?)
}

/// An entry row as stored, with every column.
#[derive(Debug, Clone)]
pub(crate) struct EntryRow {
    pub idx: i64,
    pub leaf_hash: String,
    pub entry: String,
    pub time_micros: i64,
    pub kind: String,
    pub request_id: Option<String>,
    pub principal_id: Option<String>,
    pub model: Option<String>,
    pub decision: Option<String>,
    pub order_ids: Option<String>,
    pub actor: Option<String>,
}

pub(crate) const ENTRY_ROW_COLUMNS: &str = "idx, leaf_hash, entry, time_micros, kind, request_id, principal_id, \
     model, decision, order_ids, actor";

/// Reads the entry columns of a row, starting at column `first_column`.
pub(crate) fn entry_from_row(row: &AnyRow, first_column: usize) -> Result<EntryRow, sqlx::Error> {
    let column = |offset: usize| first_column + offset;
    Ok(EntryRow {
        idx: row.try_get(column(0))?,
        leaf_hash: row.try_get(column(1))?,
        entry: row.try_get(column(2))?,
        time_micros: row.try_get(column(3))?,
        kind: row.try_get(column(4))?,
        request_id: row.try_get(column(5))?,
        principal_id: row.try_get(column(6))?,
        model: row.try_get(column(7))?,
        decision: row.try_get(column(8))?,
        order_ids: row.try_get(column(9))?,
        actor: row.try_get(column(10))?,
    })
}

/// Up to `limit` entries of `origin` with `idx >= from_index`, in order.
pub(crate) async fn load_entries_page(
    pool: &AnyPool,
    origin: &str,
    from_index: u64,
    limit: u64,
) -> Result<Vec<EntryRow>, AuditError> {
    let sql = format!(
        "SELECT {ENTRY_ROW_COLUMNS} FROM audit_entries WHERE origin = $1 AND idx >= $2 ORDER BY idx LIMIT $3"
    );
    let rows = sqlx::query(&sql)
        .bind(origin.to_owned())
        .bind(to_i64(from_index))
        .bind(to_i64(limit))
        .fetch_all(pool)
        .await?;
    Ok(rows
        .iter()
        .map(|row| entry_from_row(row, 0))
        .collect::<Result<_, _>>()?)
}

/// Up to `limit` `(idx, leaf_hash)` pairs of `origin` with `idx >= from_index`.
pub(crate) async fn load_leaf_hashes_page(
    pool: &AnyPool,
    origin: &str,
    from_index: u64,
    limit: u64,
) -> Result<Vec<(i64, String)>, AuditError> {
    let rows = sqlx::query(
        "SELECT idx, leaf_hash FROM audit_entries WHERE origin = $1 AND idx >= $2 ORDER BY idx LIMIT $3",
    )
    .bind(origin.to_owned())
    .bind(to_i64(from_index))
    .bind(to_i64(limit))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect::<Result<_, sqlx::Error>>()
        .map_err(AuditError::from)
}

/// The leaf hashes of entries `[0, tree_size)` of `origin`, checking that
/// none is missing.
pub(crate) async fn load_leaf_hashes(
    pool: &AnyPool,
    origin: &str,
    tree_size: u64,
) -> Result<Vec<Hash>, AuditError> {
    const PAGE: u64 = 50_000;
    let inconsistent = |detail: String| AuditError::InconsistentStore {
        origin: origin.to_owned(),
        detail,
    };
    let mut leaves = Vec::with_capacity(usize::try_from(tree_size).unwrap_or(0));
    while (leaves.len() as u64) < tree_size {
        let next = leaves.len() as u64;
        let page = load_leaf_hashes_page(pool, origin, next, PAGE.min(tree_size - next)).await?;
        if page.is_empty() {
            return Err(inconsistent(format!("entry {next} is missing")));
        }
        for (idx, leaf_hash) in page {
            let expected = leaves.len() as u64;
            if idx != to_i64(expected) {
                return Err(inconsistent(format!("entry {expected} is missing")));
            }
            leaves.push(
                hash_from_hex(&leaf_hash).ok_or_else(|| {
                    inconsistent(format!("entry {idx} has a malformed leaf hash"))
                })?,
            );
        }
    }
    Ok(leaves)
}

/// The distinct origins present in the store, for verifying every replica's
/// log.
pub async fn list_origins(pool: &AnyPool) -> Result<Vec<String>, AuditError> {
    let rows = sqlx::query(
        "SELECT origin FROM audit_entries GROUP BY origin \
         UNION SELECT origin FROM audit_checkpoints GROUP BY origin ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, sqlx::Error>>()
        .map_err(AuditError::from)
}

/// The number of entries of `origin` with `idx >= from_index`.
pub(crate) async fn count_entries_from(
    pool: &AnyPool,
    origin: &str,
    from_index: u64,
) -> Result<u64, AuditError> {
    let count: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_entries WHERE origin = $1 AND idx >= $2")
            .bind(origin.to_owned())
            .bind(to_i64(from_index))
            .fetch_one(pool)
            .await?;
    Ok(u64::try_from(count).unwrap_or(0))
}
