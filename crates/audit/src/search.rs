//! Finding entries for investigations: filters over the searchable columns.
//!
//! Search trusts the store, so it is for finding entries, not for proving
//! them; run the verifier (or check an inclusion proof) before relying on a
//! result as evidence.

use jiff::Timestamp;
use sqlx::AnyPool;

use crate::entry::{AuditEntry, Decision, EntryKind, StoredEntry};
use crate::error::AuditError;
use crate::store::{ENTRY_ROW_COLUMNS, entry_from_row};

/// Which entries to find. Every field that is set must match; unset fields
/// match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only this replica's log.
    pub origin: Option<String>,
    pub kind: Option<EntryKind>,
    /// The request's principal, or the principal an admin action touched.
    pub principal_id: Option<String>,
    /// The request's model, or the model an admin action touched.
    pub model: Option<String>,
    /// Requests decided by this order, or admin actions on it.
    pub order_id: Option<String>,
    pub decision: Option<Decision>,
    pub request_id: Option<String>,
    /// The admin who acted.
    pub actor: Option<String>,
    /// Entries at or after this time.
    pub since: Option<Timestamp>,
    /// Entries strictly before this time.
    pub until: Option<Timestamp>,
    /// At most this many entries, oldest first.
    pub limit: Option<u64>,
}

enum Bind {
    Text(String),
    Integer(i64),
}

/// Escapes `%`, `_` and `\` for a `LIKE … ESCAPE '\'` pattern.
fn like_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

fn where_clause(query: &AuditQuery) -> (String, Vec<Bind>) {
    let mut conditions = Vec::new();
    let mut binds = Vec::new();
    let mut push = |condition: &str, bind: Bind| {
        binds.push(bind);
        conditions.push(condition.replace('?', &format!("${}", binds.len())));
    };
    if let Some(origin) = &query.origin {
        push("origin = ?", Bind::Text(origin.clone()));
    }
    if let Some(kind) = query.kind {
        push("kind = ?", Bind::Text(kind.as_str().to_owned()));
    }
    if let Some(principal_id) = &query.principal_id {
        push("principal_id = ?", Bind::Text(principal_id.clone()));
    }
    if let Some(model) = &query.model {
        push("model = ?", Bind::Text(model.clone()));
    }
    if let Some(order_id) = &query.order_id {
        // The column holds a JSON array of strings. The pattern narrows the
        // rows; the exact match is checked on the parsed entry afterwards.
        let quoted = serde_json::to_string(order_id).unwrap_or_default();
        push(
            "order_ids LIKE ? ESCAPE '\\'",
            Bind::Text(format!("%{}%", like_escape(&quoted))),
        );
    }
    if let Some(decision) = query.decision {
        push("decision = ?", Bind::Text(decision.as_str().to_owned()));
    }
    if let Some(request_id) = &query.request_id {
        push("request_id = ?", Bind::Text(request_id.clone()));
    }
    if let Some(actor) = &query.actor {
        push("actor = ?", Bind::Text(actor.clone()));
    }
    if let Some(since) = query.since {
        push("time_micros >= ?", Bind::Integer(since.as_microsecond()));
    }
    if let Some(until) = query.until {
        push("time_micros < ?", Bind::Integer(until.as_microsecond()));
    }
    let clause = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    (clause, binds)
}

fn bind_all<'q>(
    mut statement: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    binds: Vec<Bind>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for bind in binds {
        statement = match bind {
            Bind::Text(text) => statement.bind(text),
            Bind::Integer(integer) => statement.bind(integer),
        };
    }
    statement
}

/// Finds entries across all logs in the store (or one, with `origin`),
/// ordered by time, then origin, then position.
pub async fn search(pool: &AnyPool, query: &AuditQuery) -> Result<Vec<StoredEntry>, AuditError> {
    let (clause, binds) = where_clause(query);
    // With an order filter the SQL pattern may over-match, so the limit is
    // applied after the exact check.
    let sql_limit = if query.order_id.is_some() {
        None
    } else {
        query.limit
    };
    let sql = format!(
        "SELECT origin, {ENTRY_ROW_COLUMNS} FROM audit_entries{clause} ORDER BY time_micros, origin, idx{}",
        sql_limit
            .map(|limit| format!(" LIMIT {limit}"))
            .unwrap_or_default()
    );
    let rows = bind_all(sqlx::query(&sql), binds).fetch_all(pool).await?;
    let mut found = Vec::with_capacity(rows.len());
    for row in &rows {
        use sqlx::Row;
        let origin: String = row.try_get(0)?;
        let stored = entry_from_row(row, 1)?;
        let entry: AuditEntry =
            serde_json::from_str(&stored.entry).map_err(|error| AuditError::InconsistentStore {
                origin: origin.clone(),
                detail: format!("entry {} is not a valid audit entry: {error}", stored.idx),
            })?;
        if let Some(order_id) = &query.order_id
            && !entry.order_ids().contains(&order_id.as_str())
        {
            continue;
        }
        found.push(StoredEntry {
            origin,
            index: u64::try_from(stored.idx).unwrap_or(0),
            leaf_hash: stored.leaf_hash,
            entry,
        });
        if query.limit.is_some_and(|limit| found.len() as u64 >= limit) {
            break;
        }
    }
    Ok(found)
}

/// Counts matching entries, e.g. "request decisions for model M after T
/// that were allowed" to show that nothing was admitted after an order.
pub async fn count(pool: &AnyPool, query: &AuditQuery) -> Result<u64, AuditError> {
    if query.order_id.is_some() {
        let unlimited = AuditQuery {
            limit: None,
            ..query.clone()
        };
        return Ok(search(pool, &unlimited).await?.len() as u64);
    }
    let (clause, binds) = where_clause(query);
    let sql = format!("SELECT COUNT(*) FROM audit_entries{clause}");
    let mut statement = sqlx::query_scalar::<_, i64>(&sql);
    for bind in binds {
        statement = match bind {
            Bind::Text(text) => statement.bind(text),
            Bind::Integer(integer) => statement.bind(integer),
        };
    }
    let total = statement.fetch_one(pool).await?;
    Ok(u64::try_from(total).unwrap_or(0))
}
