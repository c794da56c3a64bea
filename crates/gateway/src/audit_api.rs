//! The admin API's read side of the audit log: search, the latest signed
//! checkpoint of every log in the store, and inclusion proofs. It reads the
//! store through the audit crate, so it sees every replica's log, not only
//! this replica's.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use http::StatusCode;
use jiff::Timestamp;
use portcullis_audit::{AuditQuery, Decision, NoteVerifier, VerifyError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Gateway;
use crate::admin::AdminError;

/// Query parameters of `GET /admin/v1/audit`, the CLI's `audit search` flags.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    pub principal: Option<String>,
    pub model: Option<String>,
    pub order: Option<String>,
    pub decision: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub limit: Option<u64>,
    pub origin: Option<String>,
}

/// Query parameters of `GET /admin/v1/audit/proof`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofParams {
    pub index: u64,
    pub origin: Option<String>,
}

/// Entries returned when the caller sets no limit.
const DEFAULT_SEARCH_LIMIT: u64 = 1_000;

fn audit_read_error(error: portcullis_audit::AuditError) -> AdminError {
    tracing::error!(%error, "cannot read the audit log");
    AdminError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "audit_unavailable",
        format!("cannot read the audit log: {error}"),
    )
}

/// The public key this deployment's checkpoints are signed with, read from
/// the verifier key file the server wrote at start.
fn verifier(gateway: &Gateway) -> Result<NoteVerifier, AdminError> {
    let data_dir = gateway
        .config
        .store
        .data_dir
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from("portcullis-data"));
    let (_, verifier_file, _) = crate::audit::default_paths(&gateway.config.audit, &data_dir);
    let unavailable = |detail: String| {
        AdminError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit_unavailable",
            format!("no verifier key at `{}`: {detail}", verifier_file.display()),
        )
    };
    std::fs::read_to_string(&verifier_file)
        .map_err(|error| unavailable(error.to_string()))?
        .trim()
        .parse()
        .map_err(|error: portcullis_audit::NoteError| unavailable(error.to_string()))
}

pub async fn search(
    State(gateway): State<Arc<Gateway>>,
    Query(params): Query<SearchParams>,
) -> Result<Json<Value>, AdminError> {
    let decision = match params.decision.as_deref() {
        None => None,
        Some("allow") => Some(Decision::Allow),
        Some("deny") => Some(Decision::Deny),
        Some(other) => {
            return Err(AdminError::invalid(format!(
                "decision `{other}` must be `allow` or `deny`"
            )));
        }
    };
    let query = AuditQuery {
        origin: params.origin,
        principal_id: params.principal,
        model: params.model,
        order_id: params.order,
        decision,
        since: params.since,
        until: params.until,
        limit: Some(params.limit.unwrap_or(DEFAULT_SEARCH_LIMIT)),
        ..AuditQuery::default()
    };
    let found = portcullis_audit::search(gateway.store.pool(), &query)
        .await
        .map_err(audit_read_error)?;
    Ok(Json(json!({"data": found})))
}

/// The newest checkpoint of `origin` that verifies, found by verifying the
/// log: a log that fails verification has no trustworthy checkpoint.
async fn latest_verified(
    gateway: &Gateway,
    origin: &str,
    verifier: &NoteVerifier,
) -> Result<Result<portcullis_audit::VerifyReport, portcullis_audit::VerifyFailure>, AdminError> {
    match portcullis_audit::verify_store(gateway.store.pool(), origin, verifier, None).await {
        Ok(report) => Ok(Ok(report)),
        Err(VerifyError::Failed(failure)) => Ok(Err(failure)),
        Err(VerifyError::Audit(error)) => Err(audit_read_error(error)),
    }
}

/// `GET /admin/v1/audit/checkpoints`: per log, the latest signed checkpoint
/// and its note, or why the log does not verify.
pub async fn checkpoints(State(gateway): State<Arc<Gateway>>) -> Result<Json<Value>, AdminError> {
    let verifier = verifier(&gateway)?;
    let origins = portcullis_audit::list_origins(gateway.store.pool())
        .await
        .map_err(audit_read_error)?;
    let mut logs = Vec::with_capacity(origins.len());
    for origin in origins {
        let report = match latest_verified(&gateway, &origin, &verifier).await? {
            Ok(report) => report,
            Err(failure) => {
                logs.push(json!({"origin": origin, "verified": false,
                    "index": failure.index, "reason": failure.reason.to_string()}));
                continue;
            }
        };
        let note = if report.signed_size == 0 {
            None
        } else {
            // The proof of entry 0 carries the signed note of that size.
            let proof = portcullis_audit::prove_inclusion(
                gateway.store.pool(),
                &origin,
                0,
                report.signed_size,
            )
            .await
            .map_err(audit_read_error)?;
            Some(proof.checkpoint)
        };
        logs.push(
            json!({"origin": origin, "verified": true, "tree_size": report.signed_size,
            "entries": report.entries, "unsigned_entries": report.unsigned_entries, "note": note}),
        );
    }
    Ok(Json(
        json!({"verifier_key": verifier.to_string(), "data": logs}),
    ))
}

/// `GET /admin/v1/audit/proof?index=N&origin=O`: the inclusion proof of one
/// entry against the newest signed checkpoint, checkable offline with
/// `portcullis audit check-proof`.
pub async fn proof(
    State(gateway): State<Arc<Gateway>>,
    Query(params): Query<ProofParams>,
) -> Result<Json<Value>, AdminError> {
    let verifier = verifier(&gateway)?;
    let origin = match params.origin {
        Some(origin) => origin,
        None => gateway
            .audit
            .as_ref()
            .map(|_| crate::audit::origin_for(gateway.replica_id()))
            .ok_or_else(|| AdminError::invalid("`origin` is required"))?,
    };
    let report = match latest_verified(&gateway, &origin, &verifier).await? {
        Ok(report) => report,
        Err(failure) => {
            return Err(AdminError::new(
                StatusCode::CONFLICT,
                "audit_log_invalid",
                format!("no proof from a log that fails verification: {failure}"),
            ));
        }
    };
    if params.index >= report.signed_size {
        return Err(AdminError::new(
            StatusCode::NOT_FOUND,
            "not_yet_signed",
            format!(
                "entry {} of `{origin}` is not covered by a signed checkpoint yet (signed size {})",
                params.index, report.signed_size
            ),
        ));
    }
    let proof = portcullis_audit::prove_inclusion(
        gateway.store.pool(),
        &origin,
        params.index,
        report.signed_size,
    )
    .await
    .map_err(audit_read_error)?;
    Ok(Json(serde_json::to_value(proof).unwrap_or(Value::Null)))
}

/// Makes an admin-action payload acceptable to the audit log, whose
/// canonical JSON has no floats: every float field `name` becomes the
/// integer `name_per_million` (a screening score of 0.93 is recorded as
/// `score_per_million: 930000`), and floats in arrays become integers per
/// million in place.
pub fn floats_per_million(value: Value) -> Value {
    fn per_million(number: &serde_json::Number) -> Option<Value> {
        if number.is_f64() {
            number
                .as_f64()
                .map(|float| Value::from((float * 1_000_000.0).round() as i64))
        } else {
            None
        }
    }
    match value {
        Value::Object(members) => Value::Object(
            members
                .into_iter()
                .map(|(key, member)| match &member {
                    Value::Number(number) => match per_million(number) {
                        Some(integer) => (format!("{key}_per_million"), integer),
                        None => (key, member),
                    },
                    _ => (key, floats_per_million(member)),
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|item| match &item {
                    Value::Number(number) => per_million(number).unwrap_or(item),
                    _ => floats_per_million(item),
                })
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_become_integers_per_million_under_a_marked_name() {
        let payload = json!({"attributes": {"screening": {"status": "potential_match", "score": 0.93}},
            "scores": [0.5, 1], "count": 3, "name": "x"});
        assert_eq!(
            floats_per_million(payload),
            json!({"attributes": {"screening": {"status": "potential_match", "score_per_million": 930000}},
                "scores": [500000, 1], "count": 3, "name": "x"})
        );
    }
}
