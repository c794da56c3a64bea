//! `/admin/v1/policies`: Cedar policy sources held in the store. A change is
//! compiled together with every other source against the schema (strict
//! validation) before it is stored; an invalid set is refused with the
//! source, line and column, and the set in force stays.
//!
//! The default pack is always part of the set as `default` unless a stored
//! source with that id replaces it, so adding one operator rule never drops
//! the export-control defaults by accident.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::{Extension, Json};
use http::StatusCode;
use portcullis_audit::AdminTargetKind;
use portcullis_policy::PolicySource;
use serde_json::{Value, json};

use crate::Gateway;
use crate::admin::{Actor, AdminError, audit_admin, require_writer};
use crate::policy::DEFAULT_POLICY_ID;

fn refuse_when_files_rule(gateway: &Gateway) -> Result<(), AdminError> {
    if gateway.policy.file_policies.is_some() {
        return Err(AdminError::new(
            StatusCode::CONFLICT,
            "policies_from_files",
            "policies come from `policy.policy_dir` in this deployment; change the files instead",
        ));
    }
    Ok(())
}

fn valid_id(id: &str) -> Result<(), AdminError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(AdminError::invalid(format!(
            "policy id `{id}` must be 1-128 characters of letters, digits, `-`, `_` or `.`"
        )))
    }
}

/// The set that would be in force with `change` applied (`None` deletes).
async fn candidate(
    gateway: &Gateway,
    id: &str,
    change: Option<&str>,
) -> Result<Vec<PolicySource>, AdminError> {
    let contents = gateway.store.load().await?;
    let mut sources: Vec<(String, String)> = contents
        .policies
        .iter()
        .filter(|p| p.id != id)
        .map(|p| (p.id.clone(), p.source.clone()))
        .collect();
    if let Some(text) = change {
        sources.push((id.to_owned(), text.to_owned()));
    }
    Ok(crate::policy::with_default_pack(
        sources
            .into_iter()
            .map(|(id, text)| PolicySource::new(format!("{id}.cedar"), text))
            .collect(),
    ))
}

pub async fn list_policies(
    State(gateway): State<Arc<Gateway>>,
    Extension(_actor): Extension<Actor>,
) -> Result<Json<Value>, AdminError> {
    let contents = gateway.store.load().await?;
    let mut data: Vec<Value> = contents
        .policies
        .iter()
        .map(|p| json!({"id": p.id, "source": p.source, "updated_at": p.updated_at, "builtin": false}))
        .collect();
    if !contents.policies.iter().any(|p| p.id == DEFAULT_POLICY_ID) {
        data.insert(
            0,
            json!({"id": DEFAULT_POLICY_ID, "source": PolicySource::default_pack().text, "builtin": true}),
        );
    }
    Ok(Json(json!({
        "data": data,
        "from_files": gateway.policy.file_policies.is_some(),
        "rules": rule_list(gateway.snapshot.load().engine.policies()),
    })))
}

pub async fn get_policy(
    State(gateway): State<Arc<Gateway>>,
    Extension(_actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AdminError> {
    let contents = gateway.store.load().await?;
    match contents.policies.iter().find(|p| p.id == id) {
        Some(p) => Ok(Json(
            json!({"id": p.id, "source": p.source, "updated_at": p.updated_at, "builtin": false}),
        )),
        None if id == DEFAULT_POLICY_ID => Ok(Json(
            json!({"id": id, "source": PolicySource::default_pack().text, "builtin": true}),
        )),
        None => Err(AdminError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("policy `{id}` not found"),
        )),
    }
}

/// The largest policy source accepted, in bytes. Each source is recorded
/// whole in its audit entry, so it stays well under the entry cap.
pub const MAX_POLICY_BYTES: usize = 256 * 1024;

/// The body is the Cedar text itself, or JSON `{"source": "..."}`.
fn policy_text(body: &[u8]) -> Result<String, AdminError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| AdminError::invalid("the policy must be UTF-8 text"))?;
    let text = if text.trim_start().starts_with('{') {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| AdminError::invalid(format!("invalid JSON body: {e}")))?;
        value
            .get("source")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| AdminError::invalid("the JSON body needs a string `source`"))?
    } else {
        text.to_owned()
    };
    if text.len() > MAX_POLICY_BYTES {
        return Err(AdminError::invalid(format!(
            "the policy is {} bytes; at most {MAX_POLICY_BYTES} are accepted",
            text.len()
        )));
    }
    Ok(text)
}

pub async fn put_policy(
    State(gateway): State<Arc<Gateway>>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, AdminError> {
    require_writer(&actor)?;
    refuse_when_files_rule(&gateway)?;
    valid_id(&id)?;
    let text = policy_text(&body)?;
    let sources = candidate(&gateway, &id, Some(&text)).await?;
    let compiled =
        portcullis_policy::compile(&sources, &gateway.policy.schema).map_err(|error| {
            AdminError::new(StatusCode::BAD_REQUEST, "invalid_policy", error.to_string())
        })?;
    gateway
        .store
        .upsert_policy(&id, &text, gateway.clock.now())
        .await?;
    gateway.refresh().await?;
    audit_admin(
        &gateway,
        &actor,
        "put",
        AdminTargetKind::Policy,
        &id,
        json!({"source": text}),
    )
    .await?;
    Ok(Json(json!({
        "id": id,
        "source": text,
        "rules": rule_list(&compiled),
    })))
}

pub async fn delete_policy(
    State(gateway): State<Arc<Gateway>>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<StatusCode, AdminError> {
    require_writer(&actor)?;
    refuse_when_files_rule(&gateway)?;
    let sources = candidate(&gateway, &id, None).await?;
    portcullis_policy::compile(&sources, &gateway.policy.schema).map_err(|error| {
        AdminError::new(StatusCode::BAD_REQUEST, "invalid_policy", error.to_string())
    })?;
    gateway.store.delete_policy(&id).await?;
    gateway.refresh().await?;
    audit_admin(
        &gateway,
        &actor,
        "delete",
        AdminTargetKind::Policy,
        &id,
        Value::Null,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The rules of a compiled set: id, status and effect, sorted by id.
fn rule_list(compiled: &portcullis_policy::CompiledPolicies) -> Vec<Value> {
    let mut rules = compiled.rules();
    rules.sort_by(|a, b| a.id.cmp(&b.id));
    rules
        .into_iter()
        .map(|rule| {
            json!({
                "id": rule.id,
                "status": rule.status.as_str(),
                "effect": format!("{:?}", rule.effect).to_lowercase(),
                "source": rule.location.to_string(),
            })
        })
        .collect()
}
