//! Findings: reported safeguard bypasses with their prompts, reporter,
//! severity, notes and workflow status.
//!
//! The prompts are stored as the JSON the safeguards crate reads; this crate
//! does not interpret them, so the store knows nothing about classifiers.

use jiff::Timestamp;
use portcullis_domain::StoreVersion;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Store, StoreError, bump_version, encode, from_millis, millis};

/// Where a finding stands in triage. Every finding starts as
/// [`FindingStatus::Reported`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingStatus {
    Reported,
    Triaged,
    Reproduced,
    NotReproduced,
    Mitigated,
    VerifiedFixed,
    WontFix,
}

impl FindingStatus {
    /// Every status, in workflow order.
    pub const ALL: [FindingStatus; 7] = [
        FindingStatus::Reported,
        FindingStatus::Triaged,
        FindingStatus::Reproduced,
        FindingStatus::NotReproduced,
        FindingStatus::Mitigated,
        FindingStatus::VerifiedFixed,
        FindingStatus::WontFix,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FindingStatus::Reported => "reported",
            FindingStatus::Triaged => "triaged",
            FindingStatus::Reproduced => "reproduced",
            FindingStatus::NotReproduced => "not_reproduced",
            FindingStatus::Mitigated => "mitigated",
            FindingStatus::VerifiedFixed => "verified_fixed",
            FindingStatus::WontFix => "wont_fix",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == text)
    }
}

/// A finding as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredFinding {
    pub id: String,
    /// The model the bypass was reported against, if the reporter named one.
    pub model: Option<String>,
    pub reporter: String,
    /// `low`, `medium`, `high` or `critical`, checked by the caller.
    pub severity: String,
    pub status: FindingStatus,
    /// The prompts as JSON: an array of strings or `{"messages": [...]}`.
    pub prompts: serde_json::Value,
    pub notes: String,
    pub created_at: Timestamp,
    pub created_by: String,
    /// The store version whose commit created the finding.
    pub committed_version: StoreVersion,
}

/// A new finding to insert.
#[derive(Debug, Clone)]
pub struct NewFinding<'a> {
    pub id: &'a str,
    pub model: Option<&'a str>,
    pub reporter: &'a str,
    pub severity: &'a str,
    pub prompts: &'a serde_json::Value,
    pub notes: &'a str,
    pub created_by: &'a str,
}

const FINDING_COLUMNS: &str = "SELECT id, model, reporter, severity, status, prompts, notes, \
     created_at, created_by, committed_version FROM findings";

fn finding_from_row(row: &AnyRow) -> Result<StoredFinding, StoreError> {
    let id: String = row.try_get(0)?;
    let corrupt = |detail: String| StoreError::Corrupt {
        what: "finding",
        id: id.clone(),
        detail,
    };
    let status: String = row.try_get(4)?;
    let status =
        FindingStatus::parse(&status).ok_or_else(|| corrupt(format!("status `{status}`")))?;
    let prompts: String = row.try_get(5)?;
    let prompts = serde_json::from_str(&prompts).map_err(|error| corrupt(error.to_string()))?;
    Ok(StoredFinding {
        id: id.clone(),
        model: row.try_get(1)?,
        reporter: row.try_get(2)?,
        severity: row.try_get(3)?,
        status,
        prompts,
        notes: row.try_get(6)?,
        created_at: from_millis(row.try_get(7)?),
        created_by: row.try_get(8)?,
        committed_version: row.try_get(9)?,
    })
}

impl Store {
    /// Inserts a finding with status `reported` and returns it as stored.
    /// `AlreadyExists` if the id is taken.
    pub async fn insert_finding(
        &self,
        finding: NewFinding<'_>,
        now: Timestamp,
    ) -> Result<StoredFinding, StoreError> {
        let prompts = encode("finding prompts", finding.prompts)?;
        let mut tx = self.begin_write().await?;
        let version = bump_version(&mut tx).await?;
        let result = sqlx::query(
            "INSERT INTO findings (id, model, reporter, severity, status, prompts, notes, \
             created_at, created_by, committed_version) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(finding.id)
        .bind(finding.model)
        .bind(finding.reporter)
        .bind(finding.severity)
        .bind(FindingStatus::Reported.as_str())
        .bind(prompts)
        .bind(finding.notes)
        .bind(millis(now))
        .bind(finding.created_by)
        .bind(version)
        .execute(&mut *tx)
        .await;
        if let Err(error) = result {
            return Err(crate::conflict_or(error, "finding", finding.id));
        }
        tx.commit().await?;
        self.published(version);
        Ok(StoredFinding {
            id: finding.id.to_owned(),
            model: finding.model.map(str::to_owned),
            reporter: finding.reporter.to_owned(),
            severity: finding.severity.to_owned(),
            status: FindingStatus::Reported,
            prompts: finding.prompts.clone(),
            notes: finding.notes.to_owned(),
            created_at: from_millis(millis(now)),
            created_by: finding.created_by.to_owned(),
            committed_version: version,
        })
    }

    /// Every finding, oldest first.
    pub async fn list_findings(&self) -> Result<Vec<StoredFinding>, StoreError> {
        sqlx::query(&format!("{FINDING_COLUMNS} ORDER BY created_at, id"))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(finding_from_row)
            .collect()
    }

    pub async fn get_finding(&self, id: &str) -> Result<Option<StoredFinding>, StoreError> {
        sqlx::query(&format!("{FINDING_COLUMNS} WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(finding_from_row)
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_names() {
        for status in FindingStatus::ALL {
            assert_eq!(FindingStatus::parse(status.as_str()), Some(status));
            let json = serde_json::to_value(status).unwrap();
            assert_eq!(json, status.as_str());
        }
        assert_eq!(FindingStatus::parse("fixed"), None);
    }

    #[tokio::test]
    async fn findings_are_stored_listed_and_bump_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_data_dir(dir.path()).await.unwrap();
        let before = store.version().await.unwrap();
        let prompts = serde_json::json!(["first attempt", {"messages": [{"role": "user", "content": "second"}]}]);
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let stored = store
            .insert_finding(
                NewFinding {
                    id: "F-1",
                    model: Some("fable"),
                    reporter: "researcher",
                    severity: "high",
                    prompts: &prompts,
                    notes: "split across turns",
                    created_by: "admin",
                },
                now,
            )
            .await
            .unwrap();
        assert_eq!(stored.status, FindingStatus::Reported);
        assert!(stored.committed_version > before);
        assert_eq!(store.version().await.unwrap(), stored.committed_version);
        assert_eq!(
            store.get_finding("F-1").await.unwrap(),
            Some(stored.clone())
        );
        assert_eq!(store.list_findings().await.unwrap(), vec![stored]);
        assert_eq!(store.get_finding("F-2").await.unwrap(), None);
        let duplicate = store
            .insert_finding(
                NewFinding {
                    id: "F-1",
                    model: None,
                    reporter: "someone else",
                    severity: "low",
                    prompts: &prompts,
                    notes: "",
                    created_by: "admin",
                },
                now,
            )
            .await;
        assert!(matches!(
            duplicate,
            Err(StoreError::AlreadyExists {
                what: "finding",
                ..
            })
        ));
    }
}
