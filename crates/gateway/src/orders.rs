//! Orders on this replica: applying, lifting and previewing them through the
//! admin API, enforcing them on requests already in flight, and the
//! enforcement receipt that proves when each replica began enforcing and
//! that nothing was admitted for an affected pair afterwards.
//!
//! An order is decided by the policy engine (`portcullis_policy::Order`) for
//! new requests. This module covers what the engine cannot: requests that
//! were admitted before the order took effect on this replica are stopped
//! the moment it does, and the replica records that moment (`applied_at`)
//! in the store and in its audit log.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::{Extension, Json};
use http::StatusCode;
use jiff::{SignedDuration, Timestamp};
use portcullis_audit::{AdminTargetKind, AuditQuery, Decision as AuditDecision, EntryKind};
use portcullis_domain::{Model, PrincipalAttributes};
use portcullis_policy::{Order, PolicyEngine, ProfileRegistry};
use portcullis_store::{NewOrder, OrderApplication, StoredOrder};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Gateway;
use crate::admin::{Actor, AdminError, audit_admin};
use crate::error::ApiError;

/// What this replica has applied, so each order's application is recorded
/// once and lifts are noticed.
pub struct Enforcement {
    replica: String,
    applied: tokio::sync::Mutex<BTreeSet<String>>,
}

impl Enforcement {
    pub fn new(replica: String) -> Self {
        Self {
            replica,
            applied: tokio::sync::Mutex::new(BTreeSet::new()),
        }
    }

    pub fn replica(&self) -> &str {
        &self.replica
    }
}

/// The 451 an affected request gets, naming the order.
pub fn order_error(model: &str, order: &Order, legal_contact: &str) -> ApiError {
    ApiError::legal_restriction(model, &[format!("`{}`", order.reference)], legal_contact)
}

/// The first order in force at `at` that denies this pair.
pub fn denying_order<'e>(
    engine: &'e PolicyEngine,
    principal: &PrincipalAttributes,
    model: &Model,
    at: Timestamp,
) -> Option<&'e Order> {
    engine
        .orders()
        .iter()
        .find(|order| order.denies(principal, model, engine.profiles(), at))
}

/// Brings this replica's enforcement in line with its current snapshot:
/// stops in-flight requests that an order in force now denies, and records
/// orders that came into force (or were lifted) since the last call.
/// Idempotent; called after every snapshot swap and by the order clock.
pub async fn enforce(gateway: &Gateway) {
    let mut applied = gateway.enforcement.applied.lock().await;
    let now = gateway.clock.now();
    let snapshot = gateway.snapshot.load_full();
    let engine = &snapshot.engine;
    let in_force: Vec<&Order> = engine
        .orders()
        .iter()
        .filter(|order| order.in_force_at(now))
        .collect();
    let in_force_ids: BTreeSet<String> = in_force
        .iter()
        .filter_map(|order| order.id.clone())
        .collect();
    let newly_applied: Vec<&Order> = in_force
        .iter()
        .copied()
        .filter(|order| order.id.as_ref().is_some_and(|id| !applied.contains(id)))
        .collect();
    let lifted: Vec<String> = applied.difference(&in_force_ids).cloned().collect();
    if newly_applied.is_empty() && lifted.is_empty() {
        return;
    }
    // Stop what the orders now deny. Every in-force order is checked, not
    // only new ones, so a request can never outlive an order that covers it.
    let contact = gateway.config.legal.contact.clone();
    let mut cut_by: BTreeMap<String, u64> = BTreeMap::new();
    let count = gateway
        .inflight
        .cut_where(|principal_id, carried, model_name| {
            let principal = carried.or_else(|| engine.principal(principal_id))?;
            let model = engine.model(model_name)?;
            let order = in_force
                .iter()
                .find(|order| order.denies(principal, model, engine.profiles(), now))?;
            if let Some(id) = &order.id {
                *cut_by.entry(id.clone()).or_default() += 1;
            }
            Some(crate::inflight::CutCause {
                error: order_error(model_name, order, &contact),
                order_id: order.id.clone(),
            })
        });
    let applied_at = now;
    if count.streams + count.requests > 0 {
        metrics::counter!("portcullis_order_cuts_total", "kind" => "stream")
            .increment(count.streams);
        metrics::counter!("portcullis_order_cuts_total", "kind" => "request")
            .increment(count.requests);
        tracing::warn!(
            streams = count.streams,
            requests = count.requests,
            "requests in flight stopped by an order"
        );
    }
    let replica = gateway.enforcement.replica.clone();
    let events = newly_applied
        .iter()
        .filter_map(|order| order.id.clone().map(|id| (id, "applied")))
        .chain(lifted.iter().map(|id| (id.clone(), "lifted")));
    for (order_id, event) in events {
        let cut = if event == "applied" {
            cut_by.get(&order_id).copied().unwrap_or(0)
        } else {
            0
        };
        let application = OrderApplication {
            order_id: order_id.clone(),
            replica_id: replica.clone(),
            event: event.to_owned(),
            applied_at,
            applied_version: snapshot.version,
            streams_cut: cut,
        };
        if let Err(error) = gateway.store.record_order_application(&application).await {
            tracing::error!(%error, order = %order_id, "cannot record the order application in the store");
        }
        if let Some(audit) = &gateway.audit {
            let result = audit
                .admin_action(crate::audit::AdminAction {
                    time: applied_at,
                    actor: &format!("replica:{replica}"),
                    action: if event == "applied" {
                        "order_applied"
                    } else {
                        "order_lifted_applied"
                    },
                    target_kind: AdminTargetKind::Order,
                    target_id: &order_id,
                    payload: json!({
                        "snapshot_version": snapshot.version,
                        "requests_cut": cut,
                    }),
                    request_id: None,
                })
                .await;
            if let Err(error) = result {
                tracing::error!(%error, order = %order_id, "cannot record the order application in the audit log");
            }
        }
        tracing::info!(order = %order_id, event, version = snapshot.version, "order enforcement changed");
        if event == "applied" {
            applied.insert(order_id);
        } else {
            applied.remove(&order_id);
        }
    }
}

// ---- validation ---------------------------------------------------------

/// An order document as posted: the contract shape plus `force`.
#[derive(Debug, Deserialize)]
pub struct OrderRequest {
    #[serde(flatten)]
    pub order: Order,
    /// Accept an order whose scope matches nothing or whose `effective_at`
    /// lies further in the past than the tolerance.
    #[serde(default)]
    pub force: bool,
}

fn parse_order(body: &[u8]) -> Result<OrderRequest, AdminError> {
    let request: OrderRequest = serde_json::from_slice(body)
        .map_err(|error| AdminError::invalid(format!("invalid order document: {error}")))?;
    if request.order.id.is_some() {
        return Err(AdminError::invalid(
            "`id` is assigned by the server; leave it out",
        ));
    }
    Ok(request)
}

/// Checks an order against the current snapshot: a valid document, model
/// selectors that name existing models, families or tags, a scope that
/// matches someone, and an `effective_at` not too far in the past.
fn check_order(
    gateway: &Gateway,
    request: &OrderRequest,
    engine: &PolicyEngine,
) -> Result<(), AdminError> {
    let order = &request.order;
    order
        .validate(engine.profiles())
        .map_err(|error| AdminError::invalid(error.to_string()))?;
    let models: Vec<&Model> = engine.models().collect();
    for selector in &order.models {
        if !models.iter().any(|model| selector.matches(model)) {
            return Err(AdminError::invalid(format!(
                "order `{}`: model selector `{}` matches no model",
                order.reference,
                String::from(selector.clone())
            )));
        }
    }
    if let portcullis_policy::PrincipalScope::Ids { ids } = &order.principals {
        if ids.is_empty() {
            return Err(AdminError::invalid(format!(
                "order `{}`: `principals.ids` is empty",
                order.reference
            )));
        }
        if let Some(unknown) = ids.iter().find(|id| engine.principal(id).is_none())
            && !request.force
        {
            return Err(AdminError::invalid(format!(
                "order `{}`: unknown principal `{unknown}` (send `\"force\": true` to apply anyway)",
                order.reference
            )));
        }
    }
    let now = gateway.clock.now();
    if let Some(effective_at) = order.effective_at {
        let tolerance = SignedDuration::from_millis(
            i64::try_from(gateway.config.orders.past_effective_tolerance_ms).unwrap_or(i64::MAX),
        );
        if effective_at < now - tolerance && !request.force {
            return Err(AdminError::invalid(format!(
                "order `{}`: `effective_at` {effective_at} is further in the past than the tolerance of {}s; use `null` for \"now\" or send `\"force\": true`",
                order.reference,
                tolerance.as_secs()
            )));
        }
    }
    if !request.force && affected_pairs(engine, order, now.max(order_start(order))).is_empty() {
        return Err(AdminError::invalid(format!(
            "order `{}`: the scope matches no (principal, model) pair (send `\"force\": true` to apply anyway)",
            order.reference
        )));
    }
    Ok(())
}

fn order_start(order: &Order) -> Timestamp {
    order.effective_at.unwrap_or(order.received_at)
}

/// Every (principal, model) pair the order covers at `at`, ignoring whether
/// the pair is allowed today.
fn affected_pairs<'e>(
    engine: &'e PolicyEngine,
    order: &Order,
    at: Timestamp,
) -> Vec<(&'e PrincipalAttributes, &'e Model)> {
    let scope = order.scope();
    let mut pairs = Vec::new();
    let models: Vec<&Model> = engine.models().collect();
    for id in engine.principal_ids() {
        let Some(principal) = engine.principal(id) else {
            continue;
        };
        for model in &models {
            if scope.affects(principal, model, engine.profiles(), at) {
                pairs.push((principal, *model));
            }
        }
    }
    pairs
}

// ---- preview ------------------------------------------------------------

/// What applying an order would change now.
async fn preview(gateway: &Gateway, order: &Order) -> Value {
    let snapshot = gateway.snapshot.load_full();
    let engine = &snapshot.engine;
    let now = gateway.clock.now();
    let at = now.max(order_start(order));
    let context = portcullis_policy::RequestContext::at(now)
        .with_location(gateway.config.location.default_country.as_deref(), None)
        .unwrap_or_else(|_| portcullis_policy::RequestContext::at(now));
    let mut by_principal: BTreeMap<String, (bool, Vec<String>, Vec<String>)> = BTreeMap::new();
    for (principal, model) in affected_pairs(engine, order, at) {
        let allowed_now = engine
            .decide(
                portcullis_policy::PrincipalRef::Id(&principal.id),
                &model.name,
                portcullis_policy::Action::Invoke,
                &context,
            )
            .is_ok_and(|decision| decision.allowed);
        let entry = by_principal
            .entry(principal.id.clone())
            .or_insert_with(|| (principal.employee, Vec::new(), Vec::new()));
        entry.1.push(model.name.clone());
        if allowed_now {
            entry.2.push(model.name.clone());
        }
    }
    let affected: BTreeSet<&str> = by_principal.keys().map(String::as_str).collect();
    let streams: Vec<Value> = gateway
        .inflight
        .snapshot()
        .into_iter()
        .filter(|request| {
            let (Some(principal), Some(model)) = (
                request
                    .attributes
                    .as_deref()
                    .or_else(|| engine.principal(&request.principal_id)),
                engine.model(&request.model),
            ) else {
                return false;
            };
            order
                .scope()
                .affects(principal, model, engine.profiles(), at)
        })
        .map(|request| {
            json!({"principal": &*request.principal_id, "model": &*request.model, "streaming": request.streaming})
        })
        .collect();
    let mut volume = 0u64;
    let mut volume_known = gateway.audit.is_some();
    if volume_known {
        let since = now - SignedDuration::from_hours(24);
        for principal in &affected {
            let query = AuditQuery {
                kind: Some(EntryKind::RequestDecision),
                principal_id: Some((*principal).to_owned()),
                since: Some(since),
                ..AuditQuery::default()
            };
            match portcullis_audit::count(gateway.store.pool(), &query).await {
                Ok(count) => volume += count,
                Err(error) => {
                    tracing::warn!(%error, "cannot count recent requests for the preview");
                    volume_known = false;
                    break;
                }
            }
        }
    }
    let principals: Vec<Value> = by_principal
        .iter()
        .map(|(id, (employee, models, losing))| {
            json!({"id": id, "employee": employee, "models": models, "loses_access_to": losing})
        })
        .collect();
    let losing = by_principal
        .values()
        .filter(|(_, _, losing)| !losing.is_empty())
        .count();
    json!({
        "computed_at": now,
        "snapshot_version": snapshot.version,
        "principals_in_scope": by_principal.len(),
        "principals_losing_access": losing,
        "employees_in_scope": by_principal.values().filter(|(employee, _, _)| *employee).count(),
        "principals": principals,
        "active_requests_to_cut": streams.len(),
        "active_requests": streams,
        "requests_last_24h": if volume_known { json!(volume) } else { Value::Null },
    })
}

pub async fn preview_order(
    State(gateway): State<Arc<Gateway>>,
    Extension(_actor): Extension<Actor>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, AdminError> {
    let request = parse_order(&body)?;
    let snapshot = gateway.snapshot.load_full();
    check_order(&gateway, &request, &snapshot.engine)?;
    Ok(Json(preview(&gateway, &request.order).await))
}

// ---- apply, lift, list, show --------------------------------------------

fn order_json(order: &StoredOrder) -> Value {
    let mut value = serde_json::to_value(order).unwrap_or(Value::Null);
    if let Some(object) = value.as_object_mut() {
        object.insert(
            "state".into(),
            json!(if order.lift.is_some() {
                "lifted"
            } else {
                "active"
            }),
        );
    }
    value
}

pub async fn create_order(
    State(gateway): State<Arc<Gateway>>,
    Extension(actor): Extension<Actor>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), AdminError> {
    crate::admin::require_writer(&actor)?;
    let request = parse_order(&body)?;
    let snapshot = gateway.snapshot.load_full();
    check_order(&gateway, &request, &snapshot.engine)?;
    let preview = preview(&gateway, &request.order).await;
    let now = gateway.clock.now();
    let id = crate::governance::new_record_id("ord", now)?;
    let mut order = request.order;
    order.id = Some(id.clone());
    let document = serde_json::to_value(&order)
        .map_err(|error| AdminError::invalid(format!("cannot encode the order: {error}")))?;
    let stored = gateway
        .store
        .insert_order(
            NewOrder {
                id: &id,
                reference: &order.reference,
                document: &document,
                created_by: actor.id(),
                preview: Some(&preview),
            },
            now,
        )
        .await?;
    // The record of the instruction comes first in this replica's log, so
    // the log's sequence reads "applied, then enforced, then cut". The
    // snapshot is swapped (and affected requests stopped) before the call
    // returns, even when the audit write failed: the order is in the store
    // and must take effect; other replicas follow through the store.
    let audited = audit_admin(
        &gateway,
        &actor,
        "apply",
        AdminTargetKind::Order,
        &id,
        json!({"order": document, "force": request.force, "committed_version": stored.committed_version, "preview": preview}),
    )
    .await;
    gateway.refresh().await?;
    audited?;
    tracing::warn!(actor = %actor.id(), order = %id, reference = %order.reference, "order applied");
    Ok((StatusCode::CREATED, Json(order_json(&stored))))
}

#[derive(Debug, Default, Deserialize)]
pub struct LiftRequest {
    #[serde(default)]
    pub reason: Option<String>,
}

pub async fn lift_order(
    State(gateway): State<Arc<Gateway>>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), AdminError> {
    crate::admin::require_writer(&actor)?;
    let request: LiftRequest = if body.is_empty() {
        LiftRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|error| AdminError::invalid(format!("invalid JSON body: {error}")))?
    };
    // Under the two-person rule the lift waits for a second admin, who
    // carries it out through `lift` below.
    if gateway.config.governance.two_person_rule() {
        let pending =
            crate::governance::request_order_lift(&gateway, &actor, &id, request.reason).await?;
        return Ok((StatusCode::ACCEPTED, Json(pending)));
    }
    Ok((
        StatusCode::OK,
        Json(lift(&gateway, &actor, &id, request).await?),
    ))
}

/// Refuses a lift that cannot happen: an unknown order (404) or one already
/// lifted (409). The store checks again when the lift is written.
pub(crate) async fn check_liftable(gateway: &Gateway, id: &str) -> Result<(), AdminError> {
    match gateway.store.get_order(id).await? {
        None => Err(portcullis_store::StoreError::NotFound {
            what: "order",
            id: id.to_owned(),
        }
        .into()),
        Some(order) if order.lift.is_some() => Err(AdminError::new(
            StatusCode::CONFLICT,
            "already_lifted",
            format!("order `{id}` is already lifted"),
        )),
        Some(_) => Ok(()),
    }
}

/// Lifts an order now, as `actor`: stores the lift, swaps the snapshot and
/// audits it. `lift_order` and approved lift requests both end here.
pub(crate) async fn lift(
    gateway: &Gateway,
    actor: &Actor,
    id: &str,
    request: LiftRequest,
) -> Result<Value, AdminError> {
    let lifted = gateway
        .store
        .lift_order(
            id,
            actor.id(),
            request.reason.as_deref(),
            gateway.clock.now(),
        )
        .await
        .map_err(|error| match error {
            portcullis_store::StoreError::AlreadyExists { .. } => AdminError::new(
                StatusCode::CONFLICT,
                "already_lifted",
                format!("order `{id}` is already lifted"),
            ),
            other => other.into(),
        })?;
    let audited = audit_admin(
        gateway,
        actor,
        "lift",
        AdminTargetKind::Order,
        id,
        json!({"reason": request.reason, "lifts": id, "committed_version": lifted.lift.as_ref().map(|l| l.committed_version)}),
    )
    .await;
    gateway.refresh().await?;
    audited?;
    tracing::warn!(actor = %actor.id(), order = %id, "order lifted");
    Ok(order_json(&lifted))
}

pub async fn list_orders(
    State(gateway): State<Arc<Gateway>>,
    Extension(_actor): Extension<Actor>,
) -> Result<Json<Value>, AdminError> {
    let orders = gateway.store.list_orders().await?;
    Ok(Json(
        json!({"data": orders.iter().map(order_json).collect::<Vec<_>>()}),
    ))
}

pub async fn list_replicas(
    State(gateway): State<Arc<Gateway>>,
    Extension(_actor): Extension<Actor>,
) -> Result<Json<Value>, AdminError> {
    let replicas = gateway.store.replicas().await?;
    Ok(Json(json!({"data": replicas})))
}

pub async fn get_order(
    State(gateway): State<Arc<Gateway>>,
    Extension(_actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AdminError> {
    let order = gateway.store.get_order(&id).await?.ok_or_else(|| {
        AdminError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("order `{id}` not found"),
        )
    })?;
    let receipt = receipt(&gateway, &order).await?;
    let mut body = order_json(&order);
    if let Some(object) = body.as_object_mut() {
        object.insert("receipt".into(), receipt);
    }
    Ok(Json(body))
}

// ---- receipt ------------------------------------------------------------

/// The enforcement receipt: the timeline, each replica's `applied_at`, the
/// requests stopped and denied, and — from the audit log — how many requests
/// for affected pairs were admitted after each replica applied the order.
pub(crate) async fn receipt(gateway: &Gateway, stored: &StoredOrder) -> Result<Value, AdminError> {
    let order: Order = serde_json::from_value(stored.document.clone())
        .map_err(|error| AdminError::invalid(format!("stored order does not parse: {error}")))?;
    let applications = gateway.store.order_applications(&stored.id).await?;
    let snapshot = gateway.snapshot.load_full();
    let engine = &snapshot.engine;
    let lifted_at = stored.lift.as_ref().map(|lift| lift.lifted_at);
    let mut replicas = Vec::new();
    let mut admitted_total = 0u64;
    let mut streams_cut = 0u64;
    let audit_on = gateway.audit.is_some();
    for application in applications.iter().filter(|a| a.event == "applied") {
        streams_cut += application.streams_cut;
        let admitted = if audit_on {
            let admitted = admitted_after(
                gateway,
                engine.profiles(),
                engine,
                &order,
                &application.replica_id,
                application.applied_at,
                lifted_at,
            )
            .await?;
            admitted_total += admitted;
            json!(admitted)
        } else {
            Value::Null
        };
        replicas.push(json!({
            "replica": application.replica_id,
            "applied_at": application.applied_at,
            "applied_version": application.applied_version,
            "commit_to_applied_ms": application.applied_at.as_millisecond() - stored.created_at.as_millisecond(),
            "requests_cut": application.streams_cut,
            "admitted_after_enforcement": admitted,
        }));
    }
    let denied = if audit_on {
        let query = AuditQuery {
            kind: Some(EntryKind::RequestDecision),
            order_id: Some(stored.id.clone()),
            decision: Some(AuditDecision::Deny),
            ..AuditQuery::default()
        };
        json!(
            portcullis_audit::count(gateway.store.pool(), &query)
                .await
                .map_err(audit_read)?
        )
    } else {
        Value::Null
    };
    let cut_requests = if audit_on {
        json!(cut_requests(gateway, &stored.id).await?)
    } else {
        Value::Null
    };
    // Commit to the last replica applying it: how long the order took to
    // be enforced everywhere it was applied.
    let time_to_enforce_ms = applications
        .iter()
        .filter(|a| a.event == "applied")
        .map(|a| a.applied_at.as_millisecond() - stored.created_at.as_millisecond())
        .max();
    let lifts: Vec<Value> = applications
        .iter()
        .filter(|a| a.event == "lifted")
        .map(|a| json!({"replica": a.replica_id, "lifted_at": a.applied_at}))
        .collect();
    Ok(json!({
        "received_at": order.received_at,
        "committed_at": stored.created_at,
        "committed_version": stored.committed_version,
        // An order cannot take effect before it is committed: a letter
        // received days earlier with no effective time takes effect on
        // commit, not on its date of receipt.
        "effective_at": order_start(&order).max(stored.created_at),
        "effective_at_requested": order.effective_at,
        "lifted_at": lifted_at,
        "replicas": replicas,
        "replica_lifts": lifts,
        "time_to_enforce_ms": time_to_enforce_ms,
        "requests_cut": streams_cut,
        "cut_requests": cut_requests,
        "requests_denied": denied,
        "admitted_after_enforcement": if audit_on { json!(admitted_total) } else { Value::Null },
    }))
}

/// The most cut requests a receipt lists one by one; the count is always
/// whole.
const LISTED_CUT_REQUESTS: usize = 1_000;

/// The order's `request_cut` entries, one per request it stopped in flight.
async fn cut_requests(gateway: &Gateway, order_id: &str) -> Result<Vec<Value>, AdminError> {
    let query = AuditQuery {
        kind: Some(EntryKind::AdminAction),
        order_id: Some(order_id.to_owned()),
        ..AuditQuery::default()
    };
    let entries = portcullis_audit::search(gateway.store.pool(), &query)
        .await
        .map_err(audit_read)?;
    Ok(entries
        .iter()
        .filter_map(|stored| match &stored.entry {
            portcullis_audit::AuditEntry::AdminAction(entry) if entry.action == "request_cut" => {
                Some(json!({
                    "request_id": entry.payload["request_id"],
                    "principal_id": entry.payload["principal_id"],
                    "model": entry.payload["model"],
                    "replica": entry.replica,
                    "cut_at": entry.payload["cut_at"],
                    "events_relayed": entry.payload["events_relayed"],
                    "ended_with_status": entry.payload["ended_with_status"],
                    "audit": {"origin": stored.origin, "index": stored.index},
                }))
            }
            _ => None,
        })
        .take(LISTED_CUT_REQUESTS)
        .collect())
}

fn audit_read(error: portcullis_audit::AuditError) -> AdminError {
    tracing::error!(%error, "cannot read the audit log");
    AdminError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "audit_unavailable",
        format!("cannot read the audit log: {error}"),
    )
}

/// Requests admitted by `replica` after `applied_at` (and before the lift)
/// for a pair the order denies. The order's own judgement is re-run on every
/// admitted entry, with the principal's current attributes.
async fn admitted_after(
    gateway: &Gateway,
    profiles: &ProfileRegistry,
    engine: &PolicyEngine,
    order: &Order,
    replica: &str,
    applied_at: Timestamp,
    lifted_at: Option<Timestamp>,
) -> Result<u64, AdminError> {
    let query = AuditQuery {
        origin: Some(crate::audit::origin_for(replica)),
        kind: Some(EntryKind::RequestDecision),
        decision: Some(AuditDecision::Allow),
        since: Some(applied_at),
        until: lifted_at,
        ..AuditQuery::default()
    };
    let entries = portcullis_audit::search(gateway.store.pool(), &query)
        .await
        .map_err(audit_read)?;
    let mut admitted = 0u64;
    for stored in entries {
        let portcullis_audit::AuditEntry::RequestDecision(entry) = &stored.entry else {
            continue;
        };
        let (Some(principal_id), Some(model_name)) = (&entry.principal_id, &entry.model) else {
            continue;
        };
        let (Some(principal), Some(model)) =
            (engine.principal(principal_id), engine.model(model_name))
        else {
            continue;
        };
        if order.denies(principal, model, profiles, entry.time) {
            admitted += 1;
        }
    }
    Ok(admitted)
}
