//! Governance through the admin API: model lifecycle transitions, the
//! two-person rule, named admins, pre-release reviews with hashed evidence
//! and enforced conditions, the findings workflow, and transparency reports
//! (in [`report`]).
//!
//! Every write here is an audited admin action, and the audit entry's
//! position (origin, index, leaf hash) is stored with the record so a
//! report can cite it and `portcullis audit prove` can prove it.

pub mod report;

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use http::StatusCode;
use jiff::Timestamp;
use portcullis_audit::AdminTargetKind;
use portcullis_domain::{Model, ReleaseState};
use portcullis_store::{
    Admin, AdminRole, Approval, ApprovalStatus, AuditRef, EvidenceArtifact, FindingEvent,
    FindingStatus, ModelTransition, Review, StoreError,
};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::Gateway;
use crate::admin::{Actor, AdminError, require_writer};

type AdminResult<T> = Result<T, AdminError>;

// ---- the lifecycle state machine ------------------------------------------

/// What the lifecycle allows for one (from, to) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransitionRule {
    /// The move needs only a rationale.
    Allowed,
    /// The move is a release: it needs a concluded review with a positive
    /// decision, or a recorded override reason.
    NeedsReview,
    /// The move is not allowed, for the reason given.
    Refused(&'static str),
}

use ReleaseState::{Internal, Released, Retired, Suspended, UnderReview};

/// Every allowed move. A pair that is not listed is refused; the reason
/// comes from [`refusal_reason`].
const ALLOWED_TRANSITIONS: &[(ReleaseState, ReleaseState, TransitionRule)] = &[
    (Internal, UnderReview, TransitionRule::Allowed),
    (Internal, Released, TransitionRule::NeedsReview),
    (Internal, Retired, TransitionRule::Allowed),
    (UnderReview, Internal, TransitionRule::Allowed),
    (UnderReview, Released, TransitionRule::NeedsReview),
    (UnderReview, Retired, TransitionRule::Allowed),
    (Released, UnderReview, TransitionRule::Allowed),
    (Released, Suspended, TransitionRule::Allowed),
    (Released, Retired, TransitionRule::Allowed),
    (Suspended, Released, TransitionRule::NeedsReview),
    (Suspended, UnderReview, TransitionRule::Allowed),
    (Suspended, Retired, TransitionRule::Allowed),
];

fn refusal_reason(from: ReleaseState, to: ReleaseState) -> &'static str {
    match (from, to) {
        _ if from == to => "the model is already in that state",
        (Retired, _) => "a retired model stays retired; declare a new model instead",
        (_, Suspended) => "only a released model can be suspended",
        (_, Internal) => "only a model under review can go back to internal",
        _ => "the lifecycle has no such step",
    }
}

/// The rule for moving a model from `from` to `to`.
pub fn transition_rule(from: ReleaseState, to: ReleaseState) -> TransitionRule {
    ALLOWED_TRANSITIONS
        .iter()
        .find(|(f, t, _)| *f == from && *t == to)
        .map(|(_, _, rule)| *rule)
        .unwrap_or_else(|| TransitionRule::Refused(refusal_reason(from, to)))
}

/// The findings workflow: every allowed (from, to) step.
const FINDING_STEPS: &[(FindingStatus, FindingStatus)] = &[
    (FindingStatus::Reported, FindingStatus::Triaged),
    (FindingStatus::Triaged, FindingStatus::Reproduced),
    (FindingStatus::Triaged, FindingStatus::NotReproduced),
    // New information can send a finding back to triage.
    (FindingStatus::NotReproduced, FindingStatus::Triaged),
    (FindingStatus::Reproduced, FindingStatus::Mitigated),
    (FindingStatus::Reproduced, FindingStatus::WontFix),
    (FindingStatus::Mitigated, FindingStatus::VerifiedFixed),
    (FindingStatus::Mitigated, FindingStatus::WontFix),
];

/// Whether a finding may move from `from` to `to`.
pub fn finding_step_allowed(from: FindingStatus, to: FindingStatus) -> bool {
    FINDING_STEPS.contains(&(from, to))
}

// ---- shared helpers --------------------------------------------------------

fn conflict(error: StoreError) -> AdminError {
    match error {
        StoreError::Conflict { .. } => {
            AdminError::new(StatusCode::CONFLICT, "conflict", error.to_string())
        }
        other => other.into(),
    }
}

fn not_found(what: &str, id: &str) -> AdminError {
    AdminError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("{what} `{id}` not found"),
    )
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> AdminResult<T> {
    serde_json::from_slice(body).map_err(|e| AdminError::invalid(format!("invalid JSON body: {e}")))
}

/// A new record id: a prefix, the time and 48 random bits.
pub fn new_record_id(prefix: &str, now: Timestamp) -> AdminResult<String> {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).map_err(|_| {
        AdminError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "no randomness available",
        )
    })?;
    Ok(format!(
        "{prefix}_{}_{}",
        now.strftime("%Y%m%dT%H%M%SZ"),
        hex::encode(bytes)
    ))
}

/// One audited governance event: what to append and which record it proves.
struct AuditedEvent<'a> {
    actor: &'a str,
    request_id: Option<&'a str>,
    action: &'a str,
    target_kind: AdminTargetKind,
    target_id: &'a str,
    payload: Value,
    record_kind: &'a str,
    record_id: &'a str,
    event: &'a str,
}

/// Appends the event to this replica's audit log, waits for its commit, and
/// stores where it landed with the record. Returns the reference, `None`
/// only when the audit log is switched off (benchmarks).
async fn audit_event(gateway: &Gateway, event: AuditedEvent<'_>) -> AdminResult<Option<AuditRef>> {
    let Some(audit) = &gateway.audit else {
        return Ok(None);
    };
    let receipt = audit
        .admin_action(crate::audit::AdminAction {
            time: gateway.clock.now(),
            actor: event.actor,
            action: event.action,
            target_kind: event.target_kind,
            target_id: event.target_id,
            payload: event.payload,
            request_id: event.request_id,
        })
        .await?;
    let reference = AuditRef {
        record_kind: event.record_kind.to_owned(),
        record_id: event.record_id.to_owned(),
        event: event.event.to_owned(),
        origin: crate::audit::origin_for(audit.replica()),
        index: receipt.index,
        leaf_hash: hex::encode(receipt.leaf_hash),
    };
    gateway.store.record_audit_ref(&reference).await?;
    Ok(Some(reference))
}

fn audit_json(reference: &Option<AuditRef>) -> Value {
    match reference {
        Some(r) => json!({"origin": r.origin, "index": r.index, "leaf_hash": r.leaf_hash}),
        None => Value::Null,
    }
}

fn with_audit(mut value: Value, reference: &Option<AuditRef>) -> Value {
    if let Some(object) = value.as_object_mut() {
        object.insert("audit".into(), audit_json(reference));
    }
    value
}

fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn require_approver(actor: &Actor) -> AdminResult<()> {
    match actor.0.role {
        AdminRole::Admin | AdminRole::Approver => Ok(()),
        AdminRole::ComplianceOfficer => Err(AdminError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the compliance_officer role is read-only and cannot approve",
        )),
    }
}

// ---- model transitions -----------------------------------------------------

/// `POST /admin/v1/models/{name}/transitions`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TransitionRequest {
    pub to: ReleaseState,
    pub rationale: String,
    #[serde(default)]
    pub evidence: Vec<String>,
    #[serde(default)]
    pub review_id: Option<String>,
    #[serde(default)]
    pub override_reason: Option<String>,
}

fn current_model(gateway: &Gateway, name: &str) -> AdminResult<Model> {
    gateway
        .snapshot
        .load()
        .model(name)
        .map(|model| (**model).clone())
        .ok_or_else(|| not_found("model", name))
}

/// Checks a requested transition against the state machine and, for a
/// release, against the reviews. Returns the review that supports a release.
async fn check_transition(
    gateway: &Gateway,
    model: &Model,
    request: &TransitionRequest,
) -> AdminResult<Option<String>> {
    if request.rationale.trim().is_empty() {
        return Err(AdminError::invalid("a transition needs a `rationale`"));
    }
    let refuse = |reason: String| {
        AdminError::new(
            StatusCode::CONFLICT,
            "transition_not_allowed",
            format!(
                "model `{}`: `{}` -> `{}` is not allowed: {reason}",
                model.name,
                model.state.as_str(),
                request.to.as_str()
            ),
        )
    };
    for reference in request.evidence.iter().filter(|e| e.starts_with("evd_")) {
        if gateway.store.get_evidence(reference).await?.is_none() {
            return Err(AdminError::invalid(format!(
                "evidence `{reference}` not found"
            )));
        }
    }
    match transition_rule(model.state, request.to) {
        TransitionRule::Refused(reason) => Err(refuse(reason.to_owned())),
        TransitionRule::Allowed => Ok(request.review_id.clone()),
        TransitionRule::NeedsReview => {
            let reviews = gateway.store.list_reviews(Some(&model.name)).await?;
            let positive = |review: &&Review| {
                review.concluded_at.is_some()
                    && matches!(
                        review.decision.as_deref(),
                        Some("approve" | "approve_with_conditions")
                    )
            };
            let supporting = match &request.review_id {
                Some(id) => {
                    let review = reviews.iter().find(|r| &r.id == id).ok_or_else(|| {
                        AdminError::invalid(format!(
                            "review `{id}` is not a review of model `{}`",
                            model.name
                        ))
                    })?;
                    Some(review).filter(positive)
                }
                None => reviews.iter().rev().find(positive),
            };
            let lapsed = supporting.and_then(|review| conditions_not_in_force(review, model));
            match (supporting, &request.override_reason) {
                (Some(review), None) if lapsed.is_some() => Err(refuse(format!(
                    "review `{}` approved it with conditions that are not in force: {}",
                    review.id,
                    lapsed.unwrap_or_default()
                ))),
                (Some(review), _) => Ok(Some(review.id.clone())),
                (None, Some(reason)) if !reason.trim().is_empty() => Ok(request.review_id.clone()),
                (None, _) => Err(refuse(
                    "a release needs a concluded review with decision `approve` or `approve_with_conditions` (name it in `review_id`), or an `override_reason`"
                        .to_owned(),
                )),
            }
        }
    }
}

/// Why a review's conditions are not in force on `model`, if they are not:
/// each enforceable condition must have been applied (`enforced_at`) and
/// still hold on the model as it is now.
pub fn conditions_not_in_force(review: &Review, model: &Model) -> Option<String> {
    let lapsed: Vec<String> = review
        .conditions
        .iter()
        .filter_map(|condition| {
            let holds = match parse_condition(&condition.condition) {
                Err(reason) => return Some(format!("condition {}: {reason}", condition.position)),
                Ok(ConditionEffect::Recorded) => return None,
                Ok(ConditionEffect::SafeguardProfile(profile)) => {
                    model.safeguard_profile.as_deref() == Some(profile.as_str())
                }
                Ok(ConditionEffect::Tag(tag)) => model.has_tag(&tag),
            };
            match (condition.enforced_at, holds) {
                (Some(_), true) => None,
                (None, _) => Some(format!(
                    "condition {} `{}` was never applied",
                    condition.position, condition.condition
                )),
                (Some(_), false) => Some(format!(
                    "condition {} `{}` no longer holds on the model",
                    condition.position, condition.condition
                )),
            }
        })
        .collect();
    (!lapsed.is_empty()).then(|| lapsed.join("; "))
}

/// Who made a transition and how.
pub struct TransitionOrigin<'a> {
    pub actor: &'a str,
    pub request_id: Option<&'a str>,
    /// `api`, `approval`, `config` or `demo`.
    pub source: &'a str,
    pub approved_by: Option<&'a str>,
    pub approval_id: Option<&'a str>,
}

/// Carries out a checked transition: stores the model and the record in
/// one transaction, swaps the snapshot, audits it.
async fn execute_transition(
    gateway: &Gateway,
    model: &Model,
    request: &TransitionRequest,
    review_id: Option<String>,
    origin: TransitionOrigin<'_>,
) -> AdminResult<Value> {
    let now = gateway.clock.now();
    let transition = ModelTransition {
        id: new_record_id("trn", now)?,
        model: model.name.clone(),
        from_state: Some(model.state),
        to_state: request.to,
        rationale: request.rationale.clone(),
        evidence: request.evidence.clone(),
        review_id,
        override_reason: request.override_reason.clone(),
        source: origin.source.to_owned(),
        actor: origin.actor.to_owned(),
        approved_by: origin.approved_by.map(str::to_owned),
        approval_id: origin.approval_id.map(str::to_owned),
        created_at: now,
    };
    let mut changed = model.clone();
    changed.state = request.to;
    gateway
        .store
        .apply_model_transition(&changed, &transition)
        .await
        .map_err(conflict)?;
    gateway.refresh().await?;
    let reference = audit_event(
        gateway,
        AuditedEvent {
            actor: origin.approved_by.unwrap_or(origin.actor),
            request_id: origin.request_id,
            action: "transition",
            target_kind: AdminTargetKind::Model,
            target_id: &model.name,
            payload: to_json(&transition),
            record_kind: "transition",
            record_id: &transition.id,
            event: "recorded",
        },
    )
    .await?;
    tracing::warn!(model = %model.name, from = model.state.as_str(), to = request.to.as_str(), actor = origin.actor, "model transition");
    Ok(with_audit(to_json(&transition), &reference))
}

pub async fn create_transition(
    State(gateway): State<Arc<Gateway>>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> AdminResult<(StatusCode, Json<Value>)> {
    require_writer(&actor)?;
    let request: TransitionRequest = parse_body(&body)?;
    let model = current_model(&gateway, &name)?;
    let review_id = check_transition(&gateway, &model, &request).await?;
    if request.to == ReleaseState::Released && gateway.config.governance.two_person_rule() {
        let approval = request_approval(
            &gateway,
            &actor,
            "model_release",
            AdminTargetKind::Model,
            &name,
            json!({"model": name, "from": model.state, "transition": request}),
        )
        .await?;
        return Ok((StatusCode::ACCEPTED, Json(approval)));
    }
    let transition = execute_transition(
        &gateway,
        &model,
        &request,
        review_id,
        TransitionOrigin {
            actor: actor.id(),
            request_id: Some(actor.request_id()),
            source: "api",
            approved_by: None,
            approval_id: None,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(transition)))
}

pub async fn list_transitions(
    State(gateway): State<Arc<Gateway>>,
    Path(name): Path<String>,
) -> AdminResult<Json<Value>> {
    let transitions = gateway.store.model_transitions(&name).await?;
    let mut data = Vec::with_capacity(transitions.len());
    for transition in &transitions {
        let refs = gateway
            .store
            .audit_refs("transition", &transition.id)
            .await?;
        data.push(with_audit(to_json(transition), &refs.into_iter().next()));
    }
    Ok(Json(json!({"data": data})))
}

/// Records the state of models declared outside the admin API (config or
/// the demo seed) as transitions with that `source` and a recorded override
/// reason. A model whose last recorded state already matches is skipped, so
/// restarts add nothing.
pub async fn record_declared_models(
    gateway: &Gateway,
    names: &[String],
    source: &str,
) -> Result<(), AdminError> {
    let snapshot = gateway.snapshot.load_full();
    for name in names {
        let Some(model) = snapshot.model(name) else {
            continue;
        };
        let history = gateway.store.model_transitions(name).await?;
        let last = history.last().map(|t| t.to_state);
        if last == Some(model.state) {
            continue;
        }
        let now = gateway.clock.now();
        let transition = ModelTransition {
            id: new_record_id("trn", now)?,
            model: name.clone(),
            from_state: last,
            to_state: model.state,
            rationale: format!("declared in the {source} at start"),
            evidence: Vec::new(),
            review_id: None,
            override_reason: Some(format!(
                "the {source} declares the model's state; it is not gated by a review"
            )),
            source: source.to_owned(),
            actor: format!("system:{source}"),
            approved_by: None,
            approval_id: None,
            created_at: now,
        };
        match gateway.store.record_model_transition(&transition).await {
            Ok(()) => {}
            // Replicas starting together on one database declare the same
            // models at once; the first one's record stands for all.
            Err(portcullis_store::StoreError::AlreadyExists { .. }) => {
                let history = gateway.store.model_transitions(name).await?;
                if history.last().map(|t| t.to_state) == Some(model.state) {
                    continue;
                }
                return Err(AdminError::new(
                    StatusCode::CONFLICT,
                    "transition_conflict",
                    format!("model `{name}` changed state while its declaration was recorded"),
                ));
            }
            Err(error) => return Err(error.into()),
        }
        audit_event(
            gateway,
            AuditedEvent {
                actor: &transition.actor,
                request_id: None,
                action: "transition",
                target_kind: AdminTargetKind::Model,
                target_id: name,
                payload: to_json(&transition),
                record_kind: "transition",
                record_id: &transition.id,
                event: "recorded",
            },
        )
        .await?;
    }
    Ok(())
}

/// Records the state a model was created in through the admin API, as the
/// first transition of its history.
pub async fn record_created_model(
    gateway: &Gateway,
    actor: &Actor,
    model: &Model,
) -> AdminResult<()> {
    let now = gateway.clock.now();
    let transition = ModelTransition {
        id: new_record_id("trn", now)?,
        model: model.name.clone(),
        from_state: None,
        to_state: model.state,
        rationale: "created through the admin API".to_owned(),
        evidence: Vec::new(),
        review_id: None,
        override_reason: None,
        source: "api".to_owned(),
        actor: actor.id().to_owned(),
        approved_by: None,
        approval_id: None,
        created_at: now,
    };
    gateway.store.record_model_transition(&transition).await?;
    audit_event(
        gateway,
        AuditedEvent {
            actor: actor.id(),
            request_id: Some(actor.request_id()),
            action: "transition",
            target_kind: AdminTargetKind::Model,
            target_id: &model.name,
            payload: to_json(&transition),
            record_kind: "transition",
            record_id: &transition.id,
            event: "recorded",
        },
    )
    .await?;
    Ok(())
}

// ---- approvals (the two-person rule) ---------------------------------------

async fn request_approval(
    gateway: &Gateway,
    actor: &Actor,
    action: &str,
    target_kind: AdminTargetKind,
    target_id: &str,
    request: Value,
) -> AdminResult<Value> {
    let now = gateway.clock.now();
    let approval = Approval {
        id: new_record_id("apr", now)?,
        action: action.to_owned(),
        target_id: target_id.to_owned(),
        request,
        requested_by: actor.id().to_owned(),
        requested_at: now,
        status: ApprovalStatus::Pending,
        decided_by: None,
        decided_at: None,
        decision_note: None,
    };
    gateway.store.insert_approval(&approval).await?;
    let reference = audit_event(
        gateway,
        AuditedEvent {
            actor: actor.id(),
            request_id: Some(actor.request_id()),
            action: "request_approval",
            target_kind,
            target_id,
            payload: json!({"approval_id": approval.id, "action": action, "request": approval.request}),
            record_kind: "approval",
            record_id: &approval.id,
            event: "requested",
        },
    )
    .await?;
    tracing::info!(approval = %approval.id, action, target = target_id, "change waits for a second admin");
    Ok(json!({
        "status": "pending_approval",
        "message": format!("the two-person rule applies: a second admin (role admin or approver, not `{}`) must approve it with POST /admin/v1/approvals/{}/approve", actor.id(), approval.id),
        "approval": with_audit(to_json(&approval), &reference),
    }))
}

/// Called by the order lift handler when the two-person rule is on: checks
/// the lift could happen now and files it for approval.
pub async fn request_order_lift(
    gateway: &Gateway,
    actor: &Actor,
    order_id: &str,
    reason: Option<String>,
) -> AdminResult<Value> {
    let order = gateway
        .store
        .get_order(order_id)
        .await?
        .ok_or_else(|| not_found("order", order_id))?;
    if order.lift.is_some() {
        return Err(AdminError::new(
            StatusCode::CONFLICT,
            "already_lifted",
            format!("order `{order_id}` is already lifted"),
        ));
    }
    let pending = gateway
        .store
        .list_approvals(Some(ApprovalStatus::Pending), Some(order_id))
        .await?;
    if let Some(existing) = pending.iter().find(|a| a.action == "order_lift") {
        return Err(AdminError::new(
            StatusCode::CONFLICT,
            "approval_pending",
            format!(
                "lifting order `{order_id}` already waits for approval `{}`",
                existing.id
            ),
        ));
    }
    request_approval(
        gateway,
        actor,
        "order_lift",
        AdminTargetKind::Order,
        order_id,
        json!({"order_id": order_id, "reason": reason}),
    )
    .await
}

pub async fn list_approvals(
    State(gateway): State<Arc<Gateway>>,
    Query(filter): Query<ApprovalFilter>,
) -> AdminResult<Json<Value>> {
    let status = filter
        .status
        .as_deref()
        .map(|s| {
            ApprovalStatus::parse(s).ok_or_else(|| {
                AdminError::invalid(format!(
                    "status `{s}` must be `pending`, `approved` or `rejected`"
                ))
            })
        })
        .transpose()?;
    let approvals = gateway
        .store
        .list_approvals(status, filter.target.as_deref())
        .await?;
    Ok(Json(json!({"data": approvals})))
}

#[derive(Debug, Deserialize)]
pub struct ApprovalFilter {
    pub status: Option<String>,
    pub target: Option<String>,
}

pub async fn get_approval(
    State(gateway): State<Arc<Gateway>>,
    Path(id): Path<String>,
) -> AdminResult<Json<Value>> {
    let approval = gateway
        .store
        .get_approval(&id)
        .await?
        .ok_or_else(|| not_found("approval", &id))?;
    let refs = gateway.store.audit_refs("approval", &id).await?;
    let mut body = to_json(&approval);
    body["audit"] = to_json(&refs);
    Ok(Json(body))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    #[serde(default)]
    pub note: Option<String>,
}

async fn pending_approval(gateway: &Gateway, id: &str) -> AdminResult<Approval> {
    let approval = gateway
        .store
        .get_approval(id)
        .await?
        .ok_or_else(|| not_found("approval", id))?;
    if approval.status != ApprovalStatus::Pending {
        return Err(AdminError::new(
            StatusCode::CONFLICT,
            "not_pending",
            format!("approval `{id}` is already {}", approval.status.as_str()),
        ));
    }
    Ok(approval)
}

fn target_kind_of(approval: &Approval) -> AdminTargetKind {
    match approval.action.as_str() {
        "order_lift" => AdminTargetKind::Order,
        "admin_create" => AdminTargetKind::Principal,
        _ => AdminTargetKind::Model,
    }
}

/// A pending change, read and checked, waiting for its approval to be
/// recorded.
enum ApprovedChange {
    Release {
        model: Box<Model>,
        request: TransitionRequest,
        review_id: Option<String>,
    },
    CreateAdmin(CreateAdmin),
    LiftOrder {
        reason: Option<String>,
    },
}

/// `POST /admin/v1/approvals/{id}/approve`: a second admin carries out the
/// pending change.
pub async fn approve(
    State(gateway): State<Arc<Gateway>>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> AdminResult<Json<Value>> {
    require_approver(&actor)?;
    let decision: DecisionRequest = if body.is_empty() {
        DecisionRequest::default()
    } else {
        parse_body(&body)?
    };
    let approval = pending_approval(&gateway, &id).await?;
    // INVARIANT: the two-person rule — nobody approves their own request.
    if approval.requested_by == actor.id() {
        return Err(AdminError::new(
            StatusCode::FORBIDDEN,
            "same_person",
            format!(
                "approval `{id}` was requested by `{}`; the two-person rule needs a different admin to approve it",
                approval.requested_by
            ),
        ));
    }
    // Everything the change needs is checked before the approval is
    // decided, so an approval that cannot be carried out stays pending.
    let unreadable = |e: serde_json::Error| {
        AdminError::invalid(format!("approval `{id}` holds an unreadable request: {e}"))
    };
    let change = match approval.action.as_str() {
        "model_release" => {
            let request: TransitionRequest =
                serde_json::from_value(approval.request["transition"].clone())
                    .map_err(unreadable)?;
            let model = current_model(&gateway, &approval.target_id)?;
            // The model may have moved since the request: check again.
            let review_id = check_transition(&gateway, &model, &request).await?;
            ApprovedChange::Release {
                model: Box::new(model),
                request,
                review_id,
            }
        }
        "admin_create" => {
            let request: CreateAdmin =
                serde_json::from_value(approval.request["admin"].clone()).map_err(unreadable)?;
            check_new_admin(&gateway, &request).await?;
            ApprovedChange::CreateAdmin(request)
        }
        "order_lift" => {
            crate::orders::check_liftable(&gateway, &approval.target_id).await?;
            ApprovedChange::LiftOrder {
                reason: approval.request["reason"].as_str().map(str::to_owned),
            }
        }
        other => {
            return Err(AdminError::invalid(format!(
                "approval `{id}` has unknown action `{other}`"
            )));
        }
    };
    // INVARIANT: the approval is decided and audited before the change it
    // approves, so the audit log's sequence reads "approved, then done".
    // Deciding is a compare-and-set on a pending approval: of two admins
    // approving at once, one carries the change out.
    let decided = gateway
        .store
        .decide_approval(
            &id,
            ApprovalStatus::Approved,
            actor.id(),
            decision.note.as_deref(),
            gateway.clock.now(),
        )
        .await
        .map_err(conflict)?;
    let reference = audit_event(
        &gateway,
        AuditedEvent {
            actor: actor.id(),
            request_id: Some(actor.request_id()),
            action: "approve",
            target_kind: target_kind_of(&approval),
            target_id: &approval.target_id,
            payload: json!({"approval_id": id, "action": approval.action, "requested_by": approval.requested_by, "note": decision.note}),
            record_kind: "approval",
            record_id: &id,
            event: "approved",
        },
    )
    .await?;
    let result = match change {
        ApprovedChange::Release {
            model,
            request,
            review_id,
        } => {
            execute_transition(
                &gateway,
                &model,
                &request,
                review_id,
                TransitionOrigin {
                    actor: &approval.requested_by,
                    request_id: Some(actor.request_id()),
                    source: "approval",
                    approved_by: Some(actor.id()),
                    approval_id: Some(&id),
                },
            )
            .await?
        }
        ApprovedChange::CreateAdmin(request) => {
            insert_admin(
                &gateway,
                &actor,
                request,
                Some((&id, &approval.requested_by)),
            )
            .await?
        }
        ApprovedChange::LiftOrder { reason } => {
            crate::orders::lift(
                &gateway,
                &actor,
                &approval.target_id,
                crate::orders::LiftRequest { reason },
            )
            .await?
        }
    };
    Ok(Json(json!({
        "approval": with_audit(to_json(&decided), &reference),
        "result": result,
    })))
}

/// `POST /admin/v1/approvals/{id}/reject`: any writer, the requester
/// included, may turn a pending change down.
pub async fn reject(
    State(gateway): State<Arc<Gateway>>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> AdminResult<Json<Value>> {
    require_writer(&actor)?;
    let decision: DecisionRequest = if body.is_empty() {
        DecisionRequest::default()
    } else {
        parse_body(&body)?
    };
    let approval = pending_approval(&gateway, &id).await?;
    let decided = gateway
        .store
        .decide_approval(
            &id,
            ApprovalStatus::Rejected,
            actor.id(),
            decision.note.as_deref(),
            gateway.clock.now(),
        )
        .await
        .map_err(conflict)?;
    let reference = audit_event(
        &gateway,
        AuditedEvent {
            actor: actor.id(),
            request_id: Some(actor.request_id()),
            action: "reject",
            target_kind: target_kind_of(&approval),
            target_id: &approval.target_id,
            payload: json!({"approval_id": id, "action": approval.action, "note": decision.note}),
            record_kind: "approval",
            record_id: &id,
            event: "rejected",
        },
    )
    .await?;
    Ok(Json(with_audit(to_json(&decided), &reference)))
}

// ---- admins ----------------------------------------------------------------

fn admin_json(admin: &Admin) -> Value {
    json!({
        "id": admin.id,
        "display_name": admin.display_name,
        "role": admin.role,
        "created_at": admin.created_at,
        "disabled_at": admin.disabled_at,
    })
}

pub async fn list_admins(State(gateway): State<Arc<Gateway>>) -> AdminResult<Json<Value>> {
    let contents = gateway.store.load().await?;
    Ok(Json(
        json!({"data": contents.admins.iter().map(admin_json).collect::<Vec<_>>()}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAdmin {
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    pub role: AdminRole,
}

/// `POST /admin/v1/admins`: only an `admin` may create admins. Creating one
/// is a privilege change, so under the two-person rule it waits for a
/// second admin (202 `pending_approval`); the approver's response carries
/// the new token, and nobody else ever sees it. The token is shown once;
/// only its SHA-256 is stored.
pub async fn create_admin(
    State(gateway): State<Arc<Gateway>>,
    Extension(actor): Extension<Actor>,
    body: axum::body::Bytes,
) -> AdminResult<(StatusCode, Json<Value>)> {
    if actor.0.role != AdminRole::Admin {
        return Err(AdminError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "only the admin role may create admins; `{}` is `{}`",
                actor.id(),
                actor.0.role.as_str()
            ),
        ));
    }
    let request: CreateAdmin = parse_body(&body)?;
    check_new_admin(&gateway, &request).await?;
    if gateway.config.governance.two_person_rule() {
        let target = format!("admin:{}", request.id);
        let approval = request_approval(
            &gateway,
            &actor,
            "admin_create",
            AdminTargetKind::Principal,
            &target,
            json!({"admin": {"id": request.id, "display_name": request.display_name, "role": request.role}}),
        )
        .await?;
        return Ok((StatusCode::ACCEPTED, Json(approval)));
    }
    let body = insert_admin(&gateway, &actor, request, None).await?;
    Ok((StatusCode::CREATED, Json(body)))
}

async fn check_new_admin(gateway: &Gateway, request: &CreateAdmin) -> AdminResult<()> {
    crate::admin::check_id("admin", &request.id, 64)?;
    if let Some(name) = &request.display_name
        && (name.chars().count() > 200 || name.chars().any(char::is_control))
    {
        return Err(AdminError::invalid(
            "`display_name` must be at most 200 characters with no control characters",
        ));
    }
    let contents = gateway.store.load().await?;
    if contents.admins.iter().any(|a| a.id == request.id) {
        return Err(AdminError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("admin `{}` already exists", request.id),
        ));
    }
    Ok(())
}

/// Creates the admin and audits it; `approval` names the approval that
/// authorised it and who asked for it.
async fn insert_admin(
    gateway: &Gateway,
    actor: &Actor,
    request: CreateAdmin,
    approval: Option<(&str, &str)>,
) -> AdminResult<Value> {
    let generated = portcullis_domain::GeneratedKey::generate().map_err(|_| {
        AdminError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "no randomness available",
        )
    })?;
    let token = generated
        .secret
        .replacen(portcullis_domain::KEY_PREFIX, "pcla_", 1);
    let admin = Admin {
        id: request.id.clone(),
        display_name: request.display_name.unwrap_or_else(|| request.id.clone()),
        role: request.role,
        token_sha256: portcullis_domain::hash_api_key(&token),
        created_at: gateway.clock.now(),
        disabled_at: None,
    };
    gateway.store.insert_admin(&admin).await?;
    gateway.refresh().await?;
    // The audit log has no admin target kind; an admin is recorded as a
    // principal of the control plane, `admin:ID`.
    let target = format!("admin:{}", admin.id);
    let mut payload = admin_json(&admin);
    payload["two_person_rule"] = Value::Bool(gateway.config.governance.two_person_rule());
    if let Some((approval_id, requested_by)) = approval {
        payload["approval_id"] = Value::String(approval_id.to_owned());
        payload["requested_by"] = Value::String(requested_by.to_owned());
    }
    let reference = audit_event(
        gateway,
        AuditedEvent {
            actor: actor.id(),
            request_id: Some(actor.request_id()),
            action: "create_admin",
            target_kind: AdminTargetKind::Principal,
            target_id: &target,
            payload,
            record_kind: "admin",
            record_id: &admin.id,
            event: "created",
        },
    )
    .await?;
    let mut body = with_audit(admin_json(&admin), &reference);
    body["token"] = Value::String(token);
    Ok(body)
}

// ---- reviews ---------------------------------------------------------------

const PARTY_KINDS: &[&str] = &[
    "government_evaluator",
    "internal_red_team",
    "external_red_team",
    "other",
];
const DECISIONS: &[&str] = &["approve", "approve_with_conditions", "reject"];
const EVIDENCE_KINDS: &[&str] = &[
    "eval_report",
    "findings_replay",
    "policy_snapshot",
    "document",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateReview {
    pub model: String,
    #[serde(default)]
    pub model_version: Option<String>,
    pub reviewing_party: String,
    pub party_kind: String,
    #[serde(default)]
    pub programme: Option<String>,
    pub scope: String,
    #[serde(default)]
    pub requested_at: Option<Timestamp>,
}

pub async fn create_review(
    State(gateway): State<Arc<Gateway>>,
    Extension(actor): Extension<Actor>,
    body: axum::body::Bytes,
) -> AdminResult<(StatusCode, Json<Value>)> {
    require_writer(&actor)?;
    let request: CreateReview = parse_body(&body)?;
    current_model(&gateway, &request.model)?;
    if !PARTY_KINDS.contains(&request.party_kind.as_str()) {
        return Err(AdminError::invalid(format!(
            "`party_kind` `{}` must be one of {}",
            request.party_kind,
            PARTY_KINDS.join(", ")
        )));
    }
    if request.reviewing_party.trim().is_empty() || request.scope.trim().is_empty() {
        return Err(AdminError::invalid(
            "a review needs a `reviewing_party` and a `scope`",
        ));
    }
    let now = gateway.clock.now();
    let review = Review {
        id: new_record_id("rev", now)?,
        model: request.model,
        model_version: request.model_version,
        reviewing_party: request.reviewing_party,
        party_kind: request.party_kind,
        programme: request.programme,
        scope: request.scope,
        requested_at: request.requested_at.unwrap_or(now),
        access_granted_at: None,
        access: None,
        concluded_at: None,
        decision: None,
        rationale: None,
        concluded_by: None,
        conditions: Vec::new(),
        created_by: actor.id().to_owned(),
        created_at: now,
    };
    gateway.store.insert_review(&review).await?;
    let reference = audit_event(
        &gateway,
        AuditedEvent {
            actor: actor.id(),
            request_id: Some(actor.request_id()),
            action: "create",
            target_kind: AdminTargetKind::Review,
            target_id: &review.id,
            payload: to_json(&review),
            record_kind: "review",
            record_id: &review.id,
            event: "created",
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(with_audit(to_json(&review), &reference)),
    ))
}

#[derive(Debug, Deserialize)]
pub struct ReviewFilter {
    pub model: Option<String>,
}

pub async fn list_reviews(
    State(gateway): State<Arc<Gateway>>,
    Query(filter): Query<ReviewFilter>,
) -> AdminResult<Json<Value>> {
    let reviews = gateway.store.list_reviews(filter.model.as_deref()).await?;
    Ok(Json(json!({"data": reviews})))
}

pub async fn get_review(
    State(gateway): State<Arc<Gateway>>,
    Path(id): Path<String>,
) -> AdminResult<Json<Value>> {
    let review = gateway
        .store
        .get_review(&id)
        .await?
        .ok_or_else(|| not_found("review", &id))?;
    let evidence = gateway.store.review_evidence(&id).await?;
    let refs = gateway.store.audit_refs("review", &id).await?;
    let mut body = to_json(&review);
    body["evidence"] = to_json(&evidence);
    body["audit"] = to_json(&refs);
    Ok(Json(body))
}

/// An evidence upload: the content inline (`content` as UTF-8 text, or
/// `content_base64`), or a `reference` with the `sha256` it must hash to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceUpload {
    pub name: String,
    pub kind: String,
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub content: Option<Value>,
    #[serde(default)]
    pub content_base64: Option<String>,
    #[serde(default)]
    pub reference: Option<String>,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub size_bytes: Option<u64>,
}

/// Checks an upload and turns it into an artifact. A declared `sha256` that
/// does not match the content is refused.
fn evidence_artifact(
    upload: EvidenceUpload,
    id: String,
    review_id: Option<String>,
    finding_id: Option<String>,
    actor: &str,
    now: Timestamp,
) -> AdminResult<EvidenceArtifact> {
    use base64::Engine as _;
    if upload.name.trim().is_empty() || upload.name.len() > 256 {
        return Err(AdminError::invalid(
            "evidence `name` must be 1-256 characters",
        ));
    }
    if !EVIDENCE_KINDS.contains(&upload.kind.as_str()) {
        return Err(AdminError::invalid(format!(
            "evidence `kind` `{}` must be one of {}",
            upload.kind,
            EVIDENCE_KINDS.join(", ")
        )));
    }
    let declared = upload.sha256.as_deref().map(str::to_ascii_lowercase);
    if let Some(declared) = &declared
        && (declared.len() != 64 || !declared.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(AdminError::invalid(format!(
            "evidence `{}`: `sha256` `{declared}` is not 64 hex digits",
            upload.name
        )));
    }
    let (content, default_media) = match (upload.content, upload.content_base64) {
        (Some(_), Some(_)) => {
            return Err(AdminError::invalid(
                "send either `content` or `content_base64`, not both",
            ));
        }
        (Some(Value::String(text)), None) => (Some(text.into_bytes()), "text/plain"),
        // A JSON document (an eval report, a replay result) is stored as
        // the exact bytes of its compact serialization.
        (Some(value), None) => (
            Some(serde_json::to_vec(&value).unwrap_or_default()),
            "application/json",
        ),
        (None, Some(encoded)) => (
            Some(
                base64::engine::general_purpose::STANDARD
                    .decode(encoded.as_bytes())
                    .map_err(|e| {
                        AdminError::invalid(format!("`content_base64` is not base64: {e}"))
                    })?,
            ),
            "application/octet-stream",
        ),
        (None, None) => (None, "application/octet-stream"),
    };
    let (sha256, size_bytes) = match &content {
        Some(bytes) => {
            let actual = hex::encode(Sha256::digest(bytes));
            if let Some(declared) = &declared
                && *declared != actual
            {
                return Err(AdminError::new(
                    StatusCode::BAD_REQUEST,
                    "hash_mismatch",
                    format!(
                        "evidence `{}`: declared sha256 `{declared}` does not match the content's `{actual}`",
                        upload.name
                    ),
                ));
            }
            (actual, bytes.len() as u64)
        }
        None => {
            let (Some(_), Some(declared)) = (&upload.reference, declared) else {
                return Err(AdminError::invalid(format!(
                    "evidence `{}` needs `content`, `content_base64`, or a `reference` with its `sha256`",
                    upload.name
                )));
            };
            (declared, upload.size_bytes.unwrap_or(0))
        }
    };
    Ok(EvidenceArtifact {
        id,
        review_id,
        finding_id,
        name: upload.name,
        kind: upload.kind,
        media_type: upload
            .media_type
            .unwrap_or_else(|| default_media.to_owned()),
        sha256,
        size_bytes,
        content,
        reference: upload.reference,
        created_by: actor.to_owned(),
        created_at: now,
    })
}

async fn attach_evidence(
    gateway: &Gateway,
    actor: &Actor,
    upload: EvidenceUpload,
    review_id: Option<String>,
    finding_id: Option<String>,
) -> AdminResult<Value> {
    let now = gateway.clock.now();
    let artifact = evidence_artifact(
        upload,
        new_record_id("evd", now)?,
        review_id.clone(),
        finding_id.clone(),
        actor.id(),
        now,
    )?;
    gateway.store.insert_evidence(&artifact).await?;
    let (target_kind, target_id) = match (&review_id, &finding_id) {
        (Some(review), _) => (AdminTargetKind::Review, review.clone()),
        (None, Some(finding)) => (AdminTargetKind::Finding, finding.clone()),
        (None, None) => (AdminTargetKind::Review, String::new()),
    };
    let reference = audit_event(
        gateway,
        AuditedEvent {
            actor: actor.id(),
            request_id: Some(actor.request_id()),
            action: "attach_evidence",
            target_kind,
            target_id: &target_id,
            payload: to_json(&artifact),
            record_kind: "evidence",
            record_id: &artifact.id,
            event: "attached",
        },
    )
    .await?;
    Ok(with_audit(to_json(&artifact), &reference))
}

pub async fn add_review_evidence(
    State(gateway): State<Arc<Gateway>>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> AdminResult<(StatusCode, Json<Value>)> {
    require_writer(&actor)?;
    let upload: EvidenceUpload = parse_body(&body)?;
    let review = gateway
        .store
        .get_review(&id)
        .await?
        .ok_or_else(|| not_found("review", &id))?;
    if review.concluded_at.is_some() {
        return Err(AdminError::new(
            StatusCode::CONFLICT,
            "review_concluded",
            format!("review `{id}` is concluded; its evidence is closed"),
        ));
    }
    let artifact = attach_evidence(&gateway, &actor, upload, Some(id), None).await?;
    Ok((StatusCode::CREATED, Json(artifact)))
}

/// `GET /admin/v1/evidence/{id}`: the record, with the content (base64)
/// when it is stored here.
pub async fn get_evidence(
    State(gateway): State<Arc<Gateway>>,
    Path(id): Path<String>,
) -> AdminResult<Json<Value>> {
    use base64::Engine as _;
    let artifact = gateway
        .store
        .get_evidence(&id)
        .await?
        .ok_or_else(|| not_found("evidence", &id))?;
    let mut body = to_json(&artifact);
    body["content_base64"] = artifact
        .content
        .as_ref()
        .map(|bytes| Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)))
        .unwrap_or(Value::Null);
    Ok(Json(body))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantAccess {
    /// The reviewers' principal; it must exist and be allowed by policy.
    pub principal_id: String,
    /// When the key stops working. Required: reviewer access is time-limited.
    pub expires_at: Timestamp,
    #[serde(default)]
    pub key_name: Option<String>,
}

/// `POST /admin/v1/reviews/{id}/access`: issues an ordinary API key with an
/// expiry for the reviewers' principal. There is no other way in: what the
/// key may reach is decided by the normal policy.
pub async fn grant_access(
    State(gateway): State<Arc<Gateway>>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> AdminResult<(StatusCode, Json<Value>)> {
    require_writer(&actor)?;
    let request: GrantAccess = parse_body(&body)?;
    let review = gateway
        .store
        .get_review(&id)
        .await?
        .ok_or_else(|| not_found("review", &id))?;
    let now = gateway.clock.now();
    if request.expires_at <= now {
        return Err(AdminError::invalid("`expires_at` must be in the future"));
    }
    if gateway
        .store
        .get_principal(&request.principal_id)
        .await?
        .is_none()
    {
        return Err(not_found("principal", &request.principal_id));
    }
    let name = request
        .key_name
        .unwrap_or_else(|| format!("review {}", review.id));
    let (key, secret) =
        crate::admin::issue_key(&request.principal_id, &name, Some(request.expires_at), now)?;
    let access = json!({
        "principal_id": request.principal_id,
        "key_id": key.id,
        "expires_at": request.expires_at,
        "model": review.model,
    });
    gateway
        .store
        .grant_review_access(&id, &access, now)
        .await
        .map_err(conflict)?;
    gateway.store.insert_key(&key).await?;
    gateway.refresh().await?;
    let reference = audit_event(
        &gateway,
        AuditedEvent {
            actor: actor.id(),
            request_id: Some(actor.request_id()),
            action: "grant_access",
            target_kind: AdminTargetKind::Review,
            target_id: &id,
            payload: access.clone(),
            record_kind: "review",
            record_id: &id,
            event: "access_granted",
        },
    )
    .await?;
    let mut body = with_audit(access, &reference);
    body["secret"] = Value::String(secret);
    Ok((StatusCode::CREATED, Json(body)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConcludeReview {
    pub decision: String,
    pub rationale: String,
    #[serde(default)]
    pub conditions: Vec<Value>,
}

/// What a condition asks of the model, if the system can enforce it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConditionEffect {
    SafeguardProfile(String),
    Tag(String),
    /// A condition recorded for people to honour (`{"text": ...}`).
    Recorded,
}

/// Reads one condition: `{"safeguard_profile": P}`, `{"tag": T}` or
/// `{"text": "..."}`.
pub fn parse_condition(condition: &Value) -> Result<ConditionEffect, String> {
    let object = condition
        .as_object()
        .filter(|o| o.len() == 1)
        .ok_or_else(|| {
            format!("condition `{condition}` must be an object with one of `safeguard_profile`, `tag` or `text`")
        })?;
    let (key, value) = object
        .iter()
        .next()
        .ok_or_else(|| format!("condition `{condition}` is empty"))?;
    let text = value
        .as_str()
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| format!("condition `{key}` needs a non-empty string"))?;
    match key.as_str() {
        "safeguard_profile" => Ok(ConditionEffect::SafeguardProfile(text.to_owned())),
        "tag" => Ok(ConditionEffect::Tag(text.to_owned())),
        "text" => Ok(ConditionEffect::Recorded),
        other => Err(format!(
            "condition `{other}` is unknown: use `safeguard_profile`, `tag` or `text`"
        )),
    }
}

pub async fn conclude_review(
    State(gateway): State<Arc<Gateway>>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> AdminResult<Json<Value>> {
    require_writer(&actor)?;
    let request: ConcludeReview = parse_body(&body)?;
    if !DECISIONS.contains(&request.decision.as_str()) {
        return Err(AdminError::invalid(format!(
            "`decision` `{}` must be one of {}",
            request.decision,
            DECISIONS.join(", ")
        )));
    }
    if request.rationale.trim().is_empty() {
        return Err(AdminError::invalid("a conclusion needs a `rationale`"));
    }
    let effects = request
        .conditions
        .iter()
        .map(parse_condition)
        .collect::<Result<Vec<_>, _>>()
        .map_err(AdminError::invalid)?;
    let review = gateway
        .store
        .get_review(&id)
        .await?
        .ok_or_else(|| not_found("review", &id))?;
    // Work out the conditioned model before anything is stored, so a
    // condition the system cannot enforce refuses the whole conclusion.
    let mut model = current_model(&gateway, &review.model)?;
    let mut enforced = Vec::new();
    if request.decision != "reject" {
        for (position, effect) in effects.iter().enumerate() {
            match effect {
                ConditionEffect::SafeguardProfile(profile) => {
                    model.safeguard_profile = Some(profile.clone());
                }
                ConditionEffect::Tag(tag) => {
                    if !model.has_tag(tag) {
                        model.tags.push(tag.clone());
                    }
                }
                ConditionEffect::Recorded => continue,
            }
            enforced.push(u32::try_from(position).unwrap_or(u32::MAX));
        }
        if !enforced.is_empty() {
            portcullis_domain::ModelDraft::from(&model)
                .validate()
                .map_err(|e| AdminError::invalid(format!("condition: {e}")))?;
            gateway
                .safeguards
                .check_models(std::iter::once(&model))
                .map_err(|e| AdminError::invalid(format!("condition: {e}")))?;
        }
    }
    let now = gateway.clock.now();
    let concluded = gateway
        .store
        .conclude_review(
            &portcullis_store::ReviewConclusion {
                id: &id,
                decision: &request.decision,
                rationale: &request.rationale,
                conditions: &request.conditions,
                concluded_by: actor.id(),
                enforce: (!enforced.is_empty()).then_some((&model, enforced.as_slice())),
            },
            now,
        )
        .await
        .map_err(conflict)?;
    if concluded.version.is_some() {
        gateway.refresh().await?;
    }
    let reference = audit_event(
        &gateway,
        AuditedEvent {
            actor: actor.id(),
            request_id: Some(actor.request_id()),
            action: "conclude",
            target_kind: AdminTargetKind::Review,
            target_id: &id,
            payload: json!({"decision": request.decision, "rationale": request.rationale, "conditions": request.conditions}),
            record_kind: "review",
            record_id: &id,
            event: "concluded",
        },
    )
    .await?;
    let mut condition_reference = None;
    if concluded.version.is_some() {
        condition_reference = audit_event(
            &gateway,
            AuditedEvent {
                actor: actor.id(),
                request_id: Some(actor.request_id()),
                action: "apply_review_conditions",
                target_kind: AdminTargetKind::Model,
                target_id: &model.name,
                payload: json!({"review_id": id, "tags": model.tags, "safeguard_profile": model.safeguard_profile}),
                record_kind: "review",
                record_id: &id,
                event: "conditions_enforced",
            },
        )
        .await?;
    }
    let review = concluded.review;
    let mut body = with_audit(to_json(&review), &reference);
    body["conditions_audit"] = audit_json(&condition_reference);
    Ok(Json(body))
}

// ---- findings workflow -----------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FindingStep {
    pub to: FindingStatus,
    pub note: String,
}

/// `POST /admin/v1/findings/{id}/transitions`.
pub async fn create_finding_event(
    State(gateway): State<Arc<Gateway>>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> AdminResult<(StatusCode, Json<Value>)> {
    require_writer(&actor)?;
    let step: FindingStep = parse_body(&body)?;
    if step.note.trim().is_empty() {
        return Err(AdminError::invalid("a finding step needs a `note`"));
    }
    let finding = gateway
        .store
        .get_finding(&id)
        .await?
        .ok_or_else(|| not_found("finding", &id))?;
    if !finding_step_allowed(finding.status, step.to) {
        let next: Vec<&str> = FINDING_STEPS
            .iter()
            .filter(|(from, _)| *from == finding.status)
            .map(|(_, to)| to.as_str())
            .collect();
        return Err(AdminError::new(
            StatusCode::CONFLICT,
            "transition_not_allowed",
            format!(
                "finding `{id}`: `{}` -> `{}` is not allowed; from `{}` it can go to {}",
                finding.status.as_str(),
                step.to.as_str(),
                finding.status.as_str(),
                if next.is_empty() {
                    "nowhere (it is closed)".to_owned()
                } else {
                    next.iter()
                        .map(|s| format!("`{s}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
        ));
    }
    let now = gateway.clock.now();
    let event = FindingEvent {
        id: new_record_id("fev", now)?,
        finding_id: id.clone(),
        from_status: finding.status,
        to_status: step.to,
        note: step.note,
        actor: actor.id().to_owned(),
        created_at: now,
    };
    gateway
        .store
        .transition_finding(&event)
        .await
        .map_err(conflict)?;
    let reference = audit_event(
        &gateway,
        AuditedEvent {
            actor: actor.id(),
            request_id: Some(actor.request_id()),
            action: "transition",
            target_kind: AdminTargetKind::Finding,
            target_id: &id,
            payload: to_json(&event),
            record_kind: "finding_event",
            record_id: &event.id,
            event: "recorded",
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(with_audit(to_json(&event), &reference)),
    ))
}

pub async fn list_finding_events(
    State(gateway): State<Arc<Gateway>>,
    Path(id): Path<String>,
) -> AdminResult<Json<Value>> {
    let events = gateway.store.finding_events(&id).await?;
    let evidence = gateway.store.finding_evidence(&id).await?;
    Ok(Json(json!({"data": events, "evidence": evidence})))
}

/// `POST /admin/v1/findings/{id}/evidence`: stores a replay result (or any
/// artifact) as immutable evidence on the finding.
pub async fn add_finding_evidence(
    State(gateway): State<Arc<Gateway>>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> AdminResult<(StatusCode, Json<Value>)> {
    require_writer(&actor)?;
    let upload: EvidenceUpload = parse_body(&body)?;
    if gateway.store.get_finding(&id).await?.is_none() {
        return Err(not_found("finding", &id));
    }
    let artifact = attach_evidence(&gateway, &actor, upload, None, Some(id)).await?;
    Ok((StatusCode::CREATED, Json(artifact)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lifecycle_state_machine() {
        use TransitionRule::{Allowed, NeedsReview};
        let all = [Internal, UnderReview, Released, Suspended, Retired];
        // (from, to, expected); every pair not listed is refused.
        let table = [
            (Internal, UnderReview, Allowed),
            (Internal, Released, NeedsReview),
            (Internal, Retired, Allowed),
            (UnderReview, Internal, Allowed),
            (UnderReview, Released, NeedsReview),
            (UnderReview, Retired, Allowed),
            (Released, UnderReview, Allowed),
            (Released, Suspended, Allowed),
            (Released, Retired, Allowed),
            (Suspended, Released, NeedsReview),
            (Suspended, UnderReview, Allowed),
            (Suspended, Retired, Allowed),
        ];
        for from in all {
            for to in all {
                let expected = table
                    .iter()
                    .find(|(f, t, _)| *f == from && *t == to)
                    .map(|(_, _, rule)| *rule);
                let actual = transition_rule(from, to);
                match expected {
                    Some(rule) => assert_eq!(actual, rule, "{from:?} -> {to:?}"),
                    None => assert!(
                        matches!(actual, TransitionRule::Refused(_)),
                        "{from:?} -> {to:?} must be refused, got {actual:?}"
                    ),
                }
            }
        }
        assert_eq!(
            transition_rule(Retired, Released),
            TransitionRule::Refused("a retired model stays retired; declare a new model instead")
        );
        assert_eq!(
            transition_rule(Internal, Suspended),
            TransitionRule::Refused("only a released model can be suspended")
        );
    }

    #[test]
    fn the_findings_workflow() {
        use FindingStatus::*;
        let cases = [
            (Reported, Triaged, true),
            (Reported, Reproduced, false),
            (Triaged, Reproduced, true),
            (Triaged, NotReproduced, true),
            (NotReproduced, Triaged, true),
            (NotReproduced, Mitigated, false),
            (Reproduced, Mitigated, true),
            (Reproduced, WontFix, true),
            (Reproduced, VerifiedFixed, false),
            (Mitigated, VerifiedFixed, true),
            (Mitigated, WontFix, true),
            (VerifiedFixed, Reported, false),
            (WontFix, Triaged, false),
        ];
        for (from, to, allowed) in cases {
            assert_eq!(
                finding_step_allowed(from, to),
                allowed,
                "{from:?} -> {to:?}"
            );
        }
    }

    #[test]
    fn conditions_parse_or_are_refused_with_the_reason() {
        let cases = [
            (
                json!({"safeguard_profile": "cyber"}),
                Ok(ConditionEffect::SafeguardProfile("cyber".into())),
            ),
            (
                json!({"tag": "us_persons_only"}),
                Ok(ConditionEffect::Tag("us_persons_only".into())),
            ),
            (
                json!({"text": "publish the system card"}),
                Ok(ConditionEffect::Recorded),
            ),
            (
                json!({"region": "US"}),
                Err(
                    "condition `region` is unknown: use `safeguard_profile`, `tag` or `text`"
                        .to_owned(),
                ),
            ),
            (
                json!({"tag": ""}),
                Err("condition `tag` needs a non-empty string".to_owned()),
            ),
        ];
        for (condition, expected) in cases {
            assert_eq!(parse_condition(&condition), expected, "{condition}");
        }
        assert!(parse_condition(&json!({"tag": "a", "text": "b"})).is_err());
    }

    fn upload(content: Option<Value>, sha256: Option<&str>) -> EvidenceUpload {
        EvidenceUpload {
            name: "eval.json".into(),
            kind: "eval_report".into(),
            media_type: None,
            content,
            content_base64: None,
            reference: None,
            sha256: sha256.map(str::to_owned),
            size_bytes: None,
        }
    }

    #[test]
    fn evidence_hashes_are_computed_and_a_mismatch_is_refused() {
        let now = Timestamp::UNIX_EPOCH;
        let text = "hello";
        let digest = hex::encode(Sha256::digest(text.as_bytes()));
        let ok = evidence_artifact(
            upload(Some(json!(text)), Some(&digest)),
            "e".into(),
            None,
            None,
            "a",
            now,
        )
        .unwrap();
        assert_eq!(ok.sha256, digest);
        assert_eq!(ok.size_bytes, 5);
        assert_eq!(ok.media_type, "text/plain");
        let wrong = "0".repeat(64);
        let refused = evidence_artifact(
            upload(Some(json!(text)), Some(&wrong)),
            "e".into(),
            None,
            None,
            "a",
            now,
        )
        .unwrap_err();
        assert_eq!(refused.code, "hash_mismatch");
        assert!(refused.message.contains(&digest), "{}", refused.message);
        let nothing =
            evidence_artifact(upload(None, None), "e".into(), None, None, "a", now).unwrap_err();
        assert_eq!(nothing.status, StatusCode::BAD_REQUEST);
    }
}
