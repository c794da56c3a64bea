//! Conversions between stored rows and domain types.

use jiff::Timestamp;
use portcullis_domain::{ApiKey, Model, ModelDraft, Principal, PrincipalAttributes};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{StoreError, from_millis};

pub(crate) const KEY_COLUMNS_SELECT: &str = "SELECT id, principal_id, name, display_prefix, secret_sha256, created_at, expires_at, revoked_at FROM api_keys";
pub(crate) const KEY_COLUMNS_QUERY: &str = "SELECT id, principal_id, name, display_prefix, secret_sha256, created_at, expires_at, revoked_at FROM api_keys ORDER BY created_at, id";
pub(crate) const ADMIN_COLUMNS_QUERY: &str =
    "SELECT id, display_name, role, token_sha256, created_at, disabled_at FROM admins ORDER BY id";

/// A named administrator of the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    pub id: String,
    pub display_name: String,
    pub role: AdminRole,
    pub token_sha256: String,
    pub created_at: Timestamp,
    pub disabled_at: Option<Timestamp>,
}

/// What an admin may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminRole {
    /// Full read-write access.
    Admin,
    /// May approve changes that need a second person.
    Approver,
    /// Read-only access for compliance review.
    ComplianceOfficer,
}

impl AdminRole {
    pub fn as_str(self) -> &'static str {
        match self {
            AdminRole::Admin => "admin",
            AdminRole::Approver => "approver",
            AdminRole::ComplianceOfficer => "compliance_officer",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "admin" => AdminRole::Admin,
            "approver" => AdminRole::Approver,
            "compliance_officer" => AdminRole::ComplianceOfficer,
            _ => return None,
        })
    }
}

/// A Cedar policy source held in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySource {
    pub id: String,
    pub source: String,
    pub updated_at: Timestamp,
}

fn corrupt(what: &'static str, id: &str, detail: impl ToString) -> StoreError {
    StoreError::Corrupt {
        what,
        id: id.to_owned(),
        detail: detail.to_string(),
    }
}

pub(crate) fn model_from_row(row: &AnyRow) -> Result<Model, StoreError> {
    let name: String = row.try_get(0)?;
    let definition: String = row.try_get(1)?;
    let draft: ModelDraft =
        serde_json::from_str(&definition).map_err(|e| corrupt("model", &name, e))?;
    draft.validate().map_err(|e| corrupt("model", &name, e))
}

pub(crate) fn principal_from_row(row: &AnyRow) -> Result<Principal, StoreError> {
    let id: String = row.try_get(0)?;
    let display_name: String = row.try_get(1)?;
    let document: String = row.try_get(2)?;
    let created_at: i64 = row.try_get(3)?;
    let attributes: PrincipalAttributes =
        serde_json::from_str(&document).map_err(|e| corrupt("principal", &id, e))?;
    Ok(Principal {
        id,
        display_name,
        attributes,
        created_at: from_millis(created_at),
    })
}

pub(crate) fn key_from_row(row: &AnyRow) -> Result<ApiKey, StoreError> {
    let expires_at: Option<i64> = row.try_get(6)?;
    let revoked_at: Option<i64> = row.try_get(7)?;
    Ok(ApiKey {
        id: row.try_get(0)?,
        principal_id: row.try_get(1)?,
        name: row.try_get(2)?,
        display_prefix: row.try_get(3)?,
        secret_sha256: row.try_get(4)?,
        created_at: from_millis(row.try_get(5)?),
        expires_at: expires_at.map(from_millis),
        revoked_at: revoked_at.map(from_millis),
    })
}

pub(crate) fn admin_from_row(row: &AnyRow) -> Result<Admin, StoreError> {
    let id: String = row.try_get(0)?;
    let role: String = row.try_get(2)?;
    let disabled_at: Option<i64> = row.try_get(5)?;
    Ok(Admin {
        role: AdminRole::parse(&role)
            .ok_or_else(|| corrupt("admin", &id, format!("role `{role}`")))?,
        display_name: row.try_get(1)?,
        token_sha256: row.try_get(3)?,
        created_at: from_millis(row.try_get(4)?),
        disabled_at: disabled_at.map(from_millis),
        id,
    })
}

pub(crate) fn policy_from_row(row: &AnyRow) -> Result<PolicySource, StoreError> {
    Ok(PolicySource {
        id: row.try_get(0)?,
        source: row.try_get(1)?,
        updated_at: from_millis(row.try_get(2)?),
    })
}
