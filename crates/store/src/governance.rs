//! Governance records: model lifecycle transitions, pre-release reviews with
//! their conditions and evidence artifacts, approvals under the two-person
//! rule, finding status history, and the audit log entries behind each.
//!
//! These are records of who decided what, when and on which evidence, so
//! the store offers no way to edit or delete a transition, an artifact or a
//! finding event. Only a transition that changes a model bumps the store
//! version: the rest is never read by the request path.

use jiff::Timestamp;
use portcullis_domain::{Model, ModelDraft, ReleaseState, StoreVersion};
use serde::Serialize;
use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{FindingStatus, Store, StoreError, bump_version, encode, from_millis, millis};

/// One move of a model between release states, or the first record of a
/// model's state (`from_state` is `None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelTransition {
    pub id: String,
    pub model: String,
    pub from_state: Option<ReleaseState>,
    pub to_state: ReleaseState,
    pub rationale: String,
    /// References to the evidence: artifact ids, review ids, documents.
    pub evidence: Vec<String>,
    pub review_id: Option<String>,
    /// Why the usual requirement (a concluded review) was set aside.
    pub override_reason: Option<String>,
    /// `api`, `approval`, `config` or `demo`.
    pub source: String,
    pub actor: String,
    pub approved_by: Option<String>,
    pub approval_id: Option<String>,
    pub created_at: Timestamp,
}

/// A condition attached to a review's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReviewCondition {
    pub position: u32,
    /// E.g. `{"safeguard_profile": "cyber"}` or `{"tag": "us_persons_only"}`.
    pub condition: Value,
    /// When the system applied it to the model, if it enforces it.
    pub enforced_at: Option<Timestamp>,
}

/// A pre-release review of a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Review {
    pub id: String,
    pub model: String,
    pub model_version: Option<String>,
    pub reviewing_party: String,
    /// `government_evaluator`, `internal_red_team`, `external_red_team` or `other`.
    pub party_kind: String,
    pub programme: Option<String>,
    pub scope: String,
    pub requested_at: Timestamp,
    pub access_granted_at: Option<Timestamp>,
    /// The principal and key given to the reviewers (never the secret).
    pub access: Option<Value>,
    pub concluded_at: Option<Timestamp>,
    /// `approve`, `approve_with_conditions` or `reject`.
    pub decision: Option<String>,
    pub rationale: Option<String>,
    pub concluded_by: Option<String>,
    pub conditions: Vec<ReviewCondition>,
    pub created_by: String,
    pub created_at: Timestamp,
}

/// What concludes a review (see [`Store::conclude_review`]).
#[derive(Debug, Clone)]
pub struct ReviewConclusion<'a> {
    pub id: &'a str,
    /// `approve`, `approve_with_conditions` or `reject`.
    pub decision: &'a str,
    pub rationale: &'a str,
    pub conditions: &'a [Value],
    pub concluded_by: &'a str,
    /// The model with the enforceable conditions applied, and their
    /// positions in `conditions`.
    pub enforce: Option<(&'a Model, &'a [u32])>,
}

/// A concluded review, and the snapshot version its conditions published.
#[derive(Debug, Clone)]
pub struct ConcludedReview {
    pub review: Review,
    pub version: Option<StoreVersion>,
}

/// An immutable, hashed piece of evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EvidenceArtifact {
    pub id: String,
    pub review_id: Option<String>,
    pub finding_id: Option<String>,
    pub name: String,
    /// `eval_report`, `findings_replay`, `policy_snapshot` or `document`.
    pub kind: String,
    pub media_type: String,
    /// Hex SHA-256 of the content.
    pub sha256: String,
    pub size_bytes: u64,
    /// The content when it is stored here; never serialized with the record.
    #[serde(skip)]
    pub content: Option<Vec<u8>>,
    /// Where the content is kept when it is not stored here.
    pub reference: Option<String>,
    pub created_by: String,
    pub created_at: Timestamp,
}

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Rejected,
}

impl ApprovalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Rejected => "rejected",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => ApprovalStatus::Pending,
            "approved" => ApprovalStatus::Approved,
            "rejected" => ApprovalStatus::Rejected,
            _ => return None,
        })
    }
}

/// A change that waits for a second admin (the two-person rule).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Approval {
    pub id: String,
    /// `model_release` or `order_lift`.
    pub action: String,
    pub target_id: String,
    /// The request to carry out once approved.
    pub request: Value,
    pub requested_by: String,
    pub requested_at: Timestamp,
    pub status: ApprovalStatus,
    pub decided_by: Option<String>,
    pub decided_at: Option<Timestamp>,
    pub decision_note: Option<String>,
}

/// One step of a finding through triage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FindingEvent {
    pub id: String,
    pub finding_id: String,
    pub from_status: FindingStatus,
    pub to_status: FindingStatus,
    pub note: String,
    pub actor: String,
    pub created_at: Timestamp,
}

/// Where a governance event sits in the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRef {
    /// `transition`, `review`, `evidence`, `approval`, `finding_event`, `admin`.
    pub record_kind: String,
    pub record_id: String,
    /// What happened to the record, e.g. `created`, `concluded`, `approved`.
    pub event: String,
    pub origin: String,
    pub index: u64,
    /// Hex leaf hash of the entry.
    pub leaf_hash: String,
}

fn corrupt(what: &'static str, id: &str, detail: impl ToString) -> StoreError {
    StoreError::Corrupt {
        what,
        id: id.to_owned(),
        detail: detail.to_string(),
    }
}

fn state(text: &str, what: &'static str, id: &str) -> Result<ReleaseState, StoreError> {
    ReleaseState::parse(text).ok_or_else(|| corrupt(what, id, format!("state `{text}`")))
}

fn json_column(
    text: Option<String>,
    what: &'static str,
    id: &str,
) -> Result<Option<Value>, StoreError> {
    text.map(|text| serde_json::from_str(&text).map_err(|error| corrupt(what, id, error)))
        .transpose()
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

const TRANSITION_COLUMNS: &str = "SELECT id, model, from_state, to_state, rationale, evidence, \
     review_id, override_reason, source, actor, approved_by, approval_id, created_at \
     FROM model_transitions";

fn transition_from_row(row: &AnyRow) -> Result<ModelTransition, StoreError> {
    let id: String = row.try_get(0)?;
    let from_state: Option<String> = row.try_get(2)?;
    let to_state: String = row.try_get(3)?;
    let evidence: String = row.try_get(5)?;
    Ok(ModelTransition {
        model: row.try_get(1)?,
        from_state: from_state
            .map(|text| state(&text, "model transition", &id))
            .transpose()?,
        to_state: state(&to_state, "model transition", &id)?,
        rationale: row.try_get(4)?,
        evidence: serde_json::from_str(&evidence)
            .map_err(|error| corrupt("model transition", &id, error))?,
        review_id: row.try_get(6)?,
        override_reason: row.try_get(7)?,
        source: row.try_get(8)?,
        actor: row.try_get(9)?,
        approved_by: row.try_get(10)?,
        approval_id: row.try_get(11)?,
        created_at: from_millis(row.try_get(12)?),
        id,
    })
}

const REVIEW_COLUMNS: &str = "SELECT id, model, model_version, reviewing_party, party_kind, \
     programme, scope, requested_at, access_granted_at, access, concluded_at, decision, \
     rationale, concluded_by, created_by, created_at FROM reviews";

fn review_from_row(row: &AnyRow) -> Result<Review, StoreError> {
    let id: String = row.try_get(0)?;
    let access_granted_at: Option<i64> = row.try_get(8)?;
    let concluded_at: Option<i64> = row.try_get(10)?;
    Ok(Review {
        model: row.try_get(1)?,
        model_version: row.try_get(2)?,
        reviewing_party: row.try_get(3)?,
        party_kind: row.try_get(4)?,
        programme: row.try_get(5)?,
        scope: row.try_get(6)?,
        requested_at: from_millis(row.try_get(7)?),
        access_granted_at: access_granted_at.map(from_millis),
        access: json_column(row.try_get(9)?, "review", &id)?,
        concluded_at: concluded_at.map(from_millis),
        decision: row.try_get(11)?,
        rationale: row.try_get(12)?,
        concluded_by: row.try_get(13)?,
        conditions: Vec::new(),
        created_by: row.try_get(14)?,
        created_at: from_millis(row.try_get(15)?),
        id,
    })
}

const EVIDENCE_COLUMNS: &str = "SELECT id, review_id, finding_id, name, kind, media_type, \
     sha256, size_bytes, content_base64, reference, created_by, created_at FROM evidence_artifacts";

fn evidence_from_row(row: &AnyRow) -> Result<EvidenceArtifact, StoreError> {
    use base64::Engine as _;
    let id: String = row.try_get(0)?;
    let content: Option<String> = row.try_get(8)?;
    let content = content
        .map(|text| {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|error| corrupt("evidence artifact", &id, error))
        })
        .transpose()?;
    Ok(EvidenceArtifact {
        review_id: row.try_get(1)?,
        finding_id: row.try_get(2)?,
        name: row.try_get(3)?,
        kind: row.try_get(4)?,
        media_type: row.try_get(5)?,
        sha256: row.try_get(6)?,
        size_bytes: to_u64(row.try_get(7)?),
        content,
        reference: row.try_get(9)?,
        created_by: row.try_get(10)?,
        created_at: from_millis(row.try_get(11)?),
        id,
    })
}

const APPROVAL_COLUMNS: &str = "SELECT id, action, target_id, request, requested_by, \
     requested_at, status, decided_by, decided_at, decision_note FROM approvals";

fn approval_from_row(row: &AnyRow) -> Result<Approval, StoreError> {
    let id: String = row.try_get(0)?;
    let request: String = row.try_get(3)?;
    let status: String = row.try_get(6)?;
    let decided_at: Option<i64> = row.try_get(8)?;
    Ok(Approval {
        action: row.try_get(1)?,
        target_id: row.try_get(2)?,
        request: serde_json::from_str(&request).map_err(|error| corrupt("approval", &id, error))?,
        requested_by: row.try_get(4)?,
        requested_at: from_millis(row.try_get(5)?),
        status: ApprovalStatus::parse(&status)
            .ok_or_else(|| corrupt("approval", &id, format!("status `{status}`")))?,
        decided_by: row.try_get(7)?,
        decided_at: decided_at.map(from_millis),
        decision_note: row.try_get(9)?,
        id,
    })
}

fn finding_event_from_row(row: &AnyRow) -> Result<FindingEvent, StoreError> {
    let id: String = row.try_get(0)?;
    let status = |text: String| {
        FindingStatus::parse(&text)
            .ok_or_else(|| corrupt("finding event", &id, format!("status `{text}`")))
    };
    Ok(FindingEvent {
        finding_id: row.try_get(1)?,
        from_status: status(row.try_get(2)?)?,
        to_status: status(row.try_get(3)?)?,
        note: row.try_get(4)?,
        actor: row.try_get(5)?,
        created_at: from_millis(row.try_get(6)?),
        id,
    })
}

async fn insert_transition(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    transition: &ModelTransition,
) -> Result<(), StoreError> {
    let step: i64 =
        sqlx::query("SELECT COALESCE(MAX(step), 0) + 1 FROM model_transitions WHERE model = $1")
            .bind(&transition.model)
            .fetch_one(&mut **tx)
            .await?
            .try_get(0)?;
    let result = sqlx::query(
        "INSERT INTO model_transitions (id, model, from_state, to_state, rationale, evidence, \
         review_id, override_reason, source, actor, approved_by, approval_id, created_at, step) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(&transition.id)
    .bind(&transition.model)
    .bind(transition.from_state.map(ReleaseState::as_str))
    .bind(transition.to_state.as_str())
    .bind(&transition.rationale)
    .bind(encode("transition evidence", &transition.evidence)?)
    .bind(&transition.review_id)
    .bind(&transition.override_reason)
    .bind(&transition.source)
    .bind(&transition.actor)
    .bind(&transition.approved_by)
    .bind(&transition.approval_id)
    .bind(millis(transition.created_at))
    .bind(step)
    .execute(&mut **tx)
    .await;
    result
        .map(|_| ())
        .map_err(|error| crate::conflict_or(error, "model transition", &transition.id))
}

impl Store {
    // ---- model transitions ---------------------------------------------

    /// Changes a model and records the transition in one transaction. The
    /// stored model must still be in `transition.from_state`, so two
    /// concurrent transitions cannot both apply (`Conflict` otherwise).
    pub async fn apply_model_transition(
        &self,
        model: &Model,
        transition: &ModelTransition,
    ) -> Result<StoreVersion, StoreError> {
        let definition = encode("model", &ModelDraft::from(model))?;
        let mut tx = self.begin_write().await?;
        let current = sqlx::query("SELECT name, definition FROM models WHERE name = $1")
            .bind(&model.name)
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(crate::rows::model_from_row)
            .transpose()?
            .ok_or_else(|| StoreError::NotFound {
                what: "model",
                id: model.name.clone(),
            })?;
        if Some(current.state) != transition.from_state {
            return Err(StoreError::Conflict {
                what: "model",
                id: model.name.clone(),
                detail: format!("its state is now `{}`", current.state.as_str()),
            });
        }
        sqlx::query("UPDATE models SET definition = $1, updated_at = $2 WHERE name = $3")
            .bind(definition)
            .bind(millis(transition.created_at))
            .bind(&model.name)
            .execute(&mut *tx)
            .await?;
        insert_transition(&mut tx, transition).await?;
        let version = bump_version(&mut tx).await?;
        tx.commit().await?;
        Ok(self.published(version))
    }

    /// Records a transition that was already made elsewhere (a model
    /// declared in config and upserted at start). Does not bump the version.
    pub async fn record_model_transition(
        &self,
        transition: &ModelTransition,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        insert_transition(&mut tx, transition).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A model's transitions, oldest first.
    pub async fn model_transitions(&self, model: &str) -> Result<Vec<ModelTransition>, StoreError> {
        sqlx::query(&format!(
            "{TRANSITION_COLUMNS} WHERE model = $1 ORDER BY step"
        ))
        .bind(model)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(transition_from_row)
        .collect()
    }

    // ---- reviews --------------------------------------------------------

    /// Inserts a new review; its conditions are set when it concludes.
    pub async fn insert_review(&self, review: &Review) -> Result<(), StoreError> {
        let result = sqlx::query(
            "INSERT INTO reviews (id, model, model_version, reviewing_party, party_kind, programme, \
             scope, requested_at, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&review.id)
        .bind(&review.model)
        .bind(&review.model_version)
        .bind(&review.reviewing_party)
        .bind(&review.party_kind)
        .bind(&review.programme)
        .bind(&review.scope)
        .bind(millis(review.requested_at))
        .bind(&review.created_by)
        .bind(millis(review.created_at))
        .execute(&self.pool)
        .await;
        result
            .map(|_| ())
            .map_err(|error| crate::conflict_or(error, "review", &review.id))
    }

    pub async fn get_review(&self, id: &str) -> Result<Option<Review>, StoreError> {
        let Some(row) = sqlx::query(&format!("{REVIEW_COLUMNS} WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let mut review = review_from_row(&row)?;
        review.conditions = self.review_conditions(id).await?;
        Ok(Some(review))
    }

    /// Reviews, oldest first, optionally of one model.
    pub async fn list_reviews(&self, model: Option<&str>) -> Result<Vec<Review>, StoreError> {
        let rows = match model {
            Some(model) => {
                sqlx::query(&format!(
                    "{REVIEW_COLUMNS} WHERE model = $1 ORDER BY created_at, id"
                ))
                .bind(model)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!("{REVIEW_COLUMNS} ORDER BY created_at, id"))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        let mut reviews = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut review = review_from_row(row)?;
            review.conditions = self.review_conditions(&review.id).await?;
            reviews.push(review);
        }
        Ok(reviews)
    }

    async fn review_conditions(&self, review_id: &str) -> Result<Vec<ReviewCondition>, StoreError> {
        sqlx::query(
            "SELECT position, condition_json, enforced_at FROM review_conditions \
             WHERE review_id = $1 ORDER BY position",
        )
        .bind(review_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            let text: String = row.try_get(1)?;
            let enforced_at: Option<i64> = row.try_get(2)?;
            Ok(ReviewCondition {
                position: u32::try_from(row.try_get::<i64, _>(0)?).unwrap_or(0),
                condition: serde_json::from_str(&text)
                    .map_err(|error| corrupt("review condition", review_id, error))?,
                enforced_at: enforced_at.map(from_millis),
            })
        })
        .collect()
    }

    /// Records that reviewers were given access. Once only: `Conflict` if
    /// access was already granted, `NotFound` for an unknown review.
    pub async fn grant_review_access(
        &self,
        id: &str,
        access: &Value,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let changed = sqlx::query(
            "UPDATE reviews SET access_granted_at = $1, access = $2 \
             WHERE id = $3 AND access_granted_at IS NULL AND concluded_at IS NULL",
        )
        .bind(millis(at))
        .bind(encode("review access", access)?)
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if changed == 0 {
            return Err(self
                .review_conflict(id, "access was already granted or it is concluded")
                .await);
        }
        Ok(())
    }

    async fn review_conflict(&self, id: &str, detail: &str) -> StoreError {
        match self.get_review(id).await {
            Ok(Some(_)) => StoreError::Conflict {
                what: "review",
                id: id.to_owned(),
                detail: detail.to_owned(),
            },
            Ok(None) => StoreError::NotFound {
                what: "review",
                id: id.to_owned(),
            },
            Err(error) => error,
        }
    }

    /// Concludes a review, records its conditions and applies the ones the
    /// system enforces, all in one transaction: a conclusion is never
    /// visible without its conditions in force, whatever fails or crashes
    /// in between. `enforce` is the conditioned model and the positions of
    /// the conditions it carries out; with it the snapshot version is
    /// bumped, so every replica loads the change.
    pub async fn conclude_review(
        &self,
        conclusion: &ReviewConclusion<'_>,
        at: Timestamp,
    ) -> Result<ConcludedReview, StoreError> {
        let id = conclusion.id;
        let mut tx = self.begin_write().await?;
        let changed = sqlx::query(
            "UPDATE reviews SET concluded_at = $1, decision = $2, rationale = $3, concluded_by = $4 \
             WHERE id = $5 AND concluded_at IS NULL",
        )
        .bind(millis(at))
        .bind(conclusion.decision)
        .bind(conclusion.rationale)
        .bind(conclusion.concluded_by)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            drop(tx);
            return Err(self.review_conflict(id, "it is already concluded").await);
        }
        let enforced = |position: usize| {
            conclusion.enforce.as_ref().is_some_and(|(_, positions)| {
                u32::try_from(position).is_ok_and(|p| positions.contains(&p))
            })
        };
        for (position, condition) in conclusion.conditions.iter().enumerate() {
            sqlx::query(
                "INSERT INTO review_conditions (review_id, position, condition_json, enforced_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(id)
            .bind(i64::try_from(position).unwrap_or(i64::MAX))
            .bind(encode("review condition", condition)?)
            .bind(enforced(position).then(|| millis(at)))
            .execute(&mut *tx)
            .await?;
        }
        let mut version = None;
        if let Some((model, _)) = &conclusion.enforce {
            crate::replace_model_definition(&mut tx, model, at).await?;
            version = Some(bump_version(&mut tx).await?);
        }
        tx.commit().await?;
        let review = self
            .get_review(id)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: "review",
                id: id.to_owned(),
            })?;
        Ok(ConcludedReview {
            review,
            version: version.map(|v| self.published(v)),
        })
    }

    // ---- evidence -------------------------------------------------------

    /// Stores an evidence artifact. The caller has checked its hash.
    pub async fn insert_evidence(&self, artifact: &EvidenceArtifact) -> Result<(), StoreError> {
        use base64::Engine as _;
        let content = artifact
            .content
            .as_ref()
            .map(|bytes| base64::engine::general_purpose::STANDARD.encode(bytes));
        let result = sqlx::query(
            "INSERT INTO evidence_artifacts (id, review_id, finding_id, name, kind, media_type, \
             sha256, size_bytes, content_base64, reference, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&artifact.id)
        .bind(&artifact.review_id)
        .bind(&artifact.finding_id)
        .bind(&artifact.name)
        .bind(&artifact.kind)
        .bind(&artifact.media_type)
        .bind(&artifact.sha256)
        .bind(to_i64(artifact.size_bytes))
        .bind(content)
        .bind(&artifact.reference)
        .bind(&artifact.created_by)
        .bind(millis(artifact.created_at))
        .execute(&self.pool)
        .await;
        result
            .map(|_| ())
            .map_err(|error| crate::conflict_or(error, "evidence artifact", &artifact.id))
    }

    pub async fn get_evidence(&self, id: &str) -> Result<Option<EvidenceArtifact>, StoreError> {
        sqlx::query(&format!("{EVIDENCE_COLUMNS} WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(evidence_from_row)
            .transpose()
    }

    /// Artifacts attached to a review, oldest first.
    pub async fn review_evidence(
        &self,
        review_id: &str,
    ) -> Result<Vec<EvidenceArtifact>, StoreError> {
        sqlx::query(&format!(
            "{EVIDENCE_COLUMNS} WHERE review_id = $1 ORDER BY created_at, id"
        ))
        .bind(review_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(evidence_from_row)
        .collect()
    }

    /// Artifacts attached to a finding (replay results), oldest first.
    pub async fn finding_evidence(
        &self,
        finding_id: &str,
    ) -> Result<Vec<EvidenceArtifact>, StoreError> {
        sqlx::query(&format!(
            "{EVIDENCE_COLUMNS} WHERE finding_id = $1 ORDER BY created_at, id"
        ))
        .bind(finding_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(evidence_from_row)
        .collect()
    }

    // ---- approvals ------------------------------------------------------

    pub async fn insert_approval(&self, approval: &Approval) -> Result<(), StoreError> {
        let result = sqlx::query(
            "INSERT INTO approvals (id, action, target_id, request, requested_by, requested_at, status) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&approval.id)
        .bind(&approval.action)
        .bind(&approval.target_id)
        .bind(encode("approval request", &approval.request)?)
        .bind(&approval.requested_by)
        .bind(millis(approval.requested_at))
        .bind(approval.status.as_str())
        .execute(&self.pool)
        .await;
        result
            .map(|_| ())
            .map_err(|error| crate::conflict_or(error, "approval", &approval.id))
    }

    pub async fn get_approval(&self, id: &str) -> Result<Option<Approval>, StoreError> {
        sqlx::query(&format!("{APPROVAL_COLUMNS} WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(approval_from_row)
            .transpose()
    }

    /// Approvals, oldest first, optionally only those in one status or for
    /// one target.
    pub async fn list_approvals(
        &self,
        status: Option<ApprovalStatus>,
        target_id: Option<&str>,
    ) -> Result<Vec<Approval>, StoreError> {
        let all = sqlx::query(&format!("{APPROVAL_COLUMNS} ORDER BY requested_at, id"))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(approval_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(all
            .into_iter()
            .filter(|a| status.is_none_or(|s| a.status == s))
            .filter(|a| target_id.is_none_or(|t| a.target_id == t))
            .collect())
    }

    /// Decides a pending approval, once: `Conflict` if it is no longer
    /// pending, `NotFound` if there is no such approval.
    pub async fn decide_approval(
        &self,
        id: &str,
        status: ApprovalStatus,
        decided_by: &str,
        note: Option<&str>,
        at: Timestamp,
    ) -> Result<Approval, StoreError> {
        let changed = sqlx::query(
            "UPDATE approvals SET status = $1, decided_by = $2, decided_at = $3, decision_note = $4 \
             WHERE id = $5 AND status = 'pending'",
        )
        .bind(status.as_str())
        .bind(decided_by)
        .bind(millis(at))
        .bind(note)
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        let approval = self
            .get_approval(id)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: "approval",
                id: id.to_owned(),
            })?;
        if changed == 0 {
            return Err(StoreError::Conflict {
                what: "approval",
                id: id.to_owned(),
                detail: format!("it is already {}", approval.status.as_str()),
            });
        }
        Ok(approval)
    }

    // ---- finding workflow ----------------------------------------------

    /// Moves a finding from `event.from_status` to `event.to_status` and
    /// records the step. `Conflict` if the finding is no longer in
    /// `from_status` (someone else moved it first).
    pub async fn transition_finding(&self, event: &FindingEvent) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let changed = sqlx::query("UPDATE findings SET status = $1 WHERE id = $2 AND status = $3")
            .bind(event.to_status.as_str())
            .bind(&event.finding_id)
            .bind(event.from_status.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if changed == 0 {
            drop(tx);
            return Err(match self.get_finding(&event.finding_id).await? {
                Some(finding) => StoreError::Conflict {
                    what: "finding",
                    id: event.finding_id.clone(),
                    detail: format!("its status is now `{}`", finding.status.as_str()),
                },
                None => StoreError::NotFound {
                    what: "finding",
                    id: event.finding_id.clone(),
                },
            });
        }
        let step: i64 = sqlx::query(
            "SELECT COALESCE(MAX(step), 0) + 1 FROM finding_events WHERE finding_id = $1",
        )
        .bind(&event.finding_id)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        sqlx::query(
            "INSERT INTO finding_events (id, finding_id, from_status, to_status, note, actor, created_at, step) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&event.id)
        .bind(&event.finding_id)
        .bind(event.from_status.as_str())
        .bind(event.to_status.as_str())
        .bind(&event.note)
        .bind(&event.actor)
        .bind(millis(event.created_at))
        .bind(step)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A finding's steps through triage, oldest first.
    pub async fn finding_events(&self, finding_id: &str) -> Result<Vec<FindingEvent>, StoreError> {
        sqlx::query(
            "SELECT id, finding_id, from_status, to_status, note, actor, created_at \
             FROM finding_events WHERE finding_id = $1 ORDER BY step",
        )
        .bind(finding_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(finding_event_from_row)
        .collect()
    }

    // ---- audit references ----------------------------------------------

    /// Records where a governance event sits in the audit log. The first
    /// reference per (kind, id, event) stays.
    pub async fn record_audit_ref(&self, reference: &AuditRef) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO governance_audit_refs (record_kind, record_id, event, origin, entry_index, leaf_hash) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (record_kind, record_id, event) DO NOTHING",
        )
        .bind(&reference.record_kind)
        .bind(&reference.record_id)
        .bind(&reference.event)
        .bind(&reference.origin)
        .bind(to_i64(reference.index))
        .bind(&reference.leaf_hash)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The audit references of one record, in log order.
    pub async fn audit_refs(
        &self,
        record_kind: &str,
        record_id: &str,
    ) -> Result<Vec<AuditRef>, StoreError> {
        sqlx::query(
            "SELECT record_kind, record_id, event, origin, entry_index, leaf_hash \
             FROM governance_audit_refs WHERE record_kind = $1 AND record_id = $2 \
             ORDER BY origin, entry_index",
        )
        .bind(record_kind)
        .bind(record_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            Ok(AuditRef {
                record_kind: row.try_get(0)?,
                record_id: row.try_get(1)?,
                event: row.try_get(2)?,
                origin: row.try_get(3)?,
                index: to_u64(row.try_get(4)?),
                leaf_hash: row.try_get(5)?,
            })
        })
        .collect()
    }
}
