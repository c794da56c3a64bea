//! Transparency reports as JSON (`GET /admin/v1/reports/{kind}/{id}`): an
//! order, a review, a finding or a model, each fact citing the audit entry
//! that records it (origin, index, leaf hash) and the signed checkpoint
//! that covers that entry (tree size, root hash). The CLI renders them as
//! Markdown.
//!
//! Before a report is assembled the log is flushed, so a checkpoint covering
//! every cited entry exists, and each citation is read back through an
//! inclusion proof against that checkpoint: a report never cites an entry
//! it could not prove.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::{Extension, Json};
use http::StatusCode;
use portcullis_audit::{AuditEntry, AuditQuery, Checkpoint, EntryKind};
use portcullis_domain::Model;
use portcullis_store::{AuditRef, StoredOrder};
use serde_json::{Value, json};

use crate::Gateway;
use crate::admin::{Actor, AdminError};

type AdminResult<T> = Result<T, AdminError>;

/// The most request-decision entries listed one by one in an order report;
/// the totals always cover all of them.
const LISTED_REQUESTS: usize = 25;

fn audit_unavailable(error: impl std::fmt::Display) -> AdminError {
    AdminError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "audit_unavailable",
        format!("cannot read the audit log: {error}"),
    )
}

/// Finds the checkpoint covering an entry and reads the entry back through
/// its inclusion proof.
struct Citations<'g> {
    gateway: &'g Gateway,
    /// Per origin: the witnessed checkpoints, (tree size, hex root), ascending.
    checkpoints: BTreeMap<String, Vec<(u64, String)>>,
    /// Checkpoints cited so far, for the report's list.
    cited: BTreeMap<(String, u64), String>,
}

/// One proven audit entry.
struct Cited {
    entry: Value,
    citation: Value,
}

impl<'g> Citations<'g> {
    async fn new(gateway: &'g Gateway) -> AdminResult<Self> {
        if let Some(audit) = &gateway.audit {
            // Commits what is queued and signs a checkpoint over it, so every
            // entry written so far is covered.
            audit.flush().await.map_err(audit_unavailable)?;
        }
        Ok(Self {
            gateway,
            checkpoints: BTreeMap::new(),
            cited: BTreeMap::new(),
        })
    }

    fn witness_dir(&self) -> std::path::PathBuf {
        let data_dir = self
            .gateway
            .config
            .store
            .data_dir
            .clone()
            .unwrap_or_else(|| std::path::PathBuf::from("portcullis-data"));
        crate::audit::default_paths(&self.gateway.config.audit, &data_dir).2
    }

    fn load_origin(&mut self, origin: &str) -> AdminResult<&Vec<(u64, String)>> {
        if !self.checkpoints.contains_key(origin) {
            let records = portcullis_audit::read_witness(&self.witness_dir(), origin)
                .map_err(audit_unavailable)?;
            let mut sizes: Vec<(u64, String)> = records
                .iter()
                .filter_map(|record| {
                    let checkpoint = Checkpoint::from_note_text(&record.note).ok()?;
                    Some((checkpoint.tree_size, hex::encode(checkpoint.root_hash)))
                })
                .collect();
            sizes.sort();
            sizes.dedup_by_key(|(size, _)| *size);
            self.checkpoints.insert(origin.to_owned(), sizes);
        }
        self.checkpoints
            .get(origin)
            .ok_or_else(|| audit_unavailable(format!("no checkpoints for `{origin}`")))
    }

    /// The latest checkpoint of `origin`: what a count over the whole log
    /// (such as "admitted after enforcement") is computed against.
    fn latest(&mut self, origin: &str) -> AdminResult<Value> {
        let latest = self.load_origin(origin)?.last().cloned();
        Ok(match latest {
            Some((tree_size, root_hash)) => {
                self.cited
                    .insert((origin.to_owned(), tree_size), root_hash.clone());
                json!({"origin": origin, "tree_size": tree_size, "root_hash": root_hash})
            }
            None => Value::Null,
        })
    }

    /// Cites entry `index` of `origin` against the latest witnessed
    /// checkpoint (signed just before the report was assembled), the one
    /// `portcullis audit prove` also proves against. One checkpoint per log
    /// keeps a report short and its proofs uniform.
    async fn cite(&mut self, origin: &str, index: u64) -> AdminResult<Cited> {
        let covering = self
            .load_origin(origin)?
            .last()
            .filter(|(size, _)| *size > index)
            .cloned()
            .ok_or_else(|| {
                audit_unavailable(format!(
                    "entry {index} of `{origin}` is not covered by a witnessed checkpoint"
                ))
            })?;
        let (tree_size, root_hash) = covering;
        let proof =
            portcullis_audit::prove_inclusion(self.gateway.store.pool(), origin, index, tree_size)
                .await
                .map_err(audit_unavailable)?;
        if proof.root_hash != root_hash {
            return Err(audit_unavailable(format!(
                "checkpoint {tree_size} of `{origin}` disagrees with its witnessed copy"
            )));
        }
        self.cited
            .insert((origin.to_owned(), tree_size), root_hash.clone());
        Ok(Cited {
            citation: json!({
                "origin": origin,
                "index": index,
                "leaf_hash": proof.leaf_hash,
                "checkpoint": {"tree_size": tree_size, "root_hash": root_hash},
                "verify": format!("portcullis audit prove --index {index} --origin {origin}"),
            }),
            entry: proof.entry,
        })
    }

    async fn cite_ref(&mut self, reference: &AuditRef) -> AdminResult<Cited> {
        self.cite(&reference.origin, reference.index).await
    }

    fn checkpoints_json(&self) -> Value {
        Value::Array(
            self.cited
                .iter()
                .map(|((origin, size), root)| {
                    json!({"origin": origin, "tree_size": size, "root_hash": root})
                })
                .collect(),
        )
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "none".to_owned(),
        other => other.to_string(),
    }
}

/// A fact: a sentence, when it happened, who did it, and its citation.
fn fact(statement: String, entry: &Value, citation: Value) -> Value {
    json!({
        "time": entry.get("time").cloned().unwrap_or(Value::Null),
        "actor": entry.get("actor").cloned().or_else(|| entry.get("principal_id").cloned()).unwrap_or(Value::Null),
        "statement": statement,
        "audit": citation,
    })
}

/// Orders facts the way the audit log does. Within one log (one origin)
/// the sequence number decides, never the wall clock: two entries written
/// in one order read in that order even if a clock stepped back between
/// them. Facts from different logs (the admin log and each replica's) are
/// interleaved by time, the only order they share.
fn sort_facts(facts: &mut [Value]) {
    let index = |v: &Value| v["audit"]["index"].as_u64().unwrap_or(0);
    let origin = |v: &Value| text(&v["audit"]["origin"]);
    facts.sort_by(|a, b| {
        (text(&a["time"]), origin(a), index(a)).cmp(&(text(&b["time"]), origin(b), index(b)))
    });
    let mut slots: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (position, fact) in facts.iter().enumerate() {
        slots.entry(origin(fact)).or_default().push(position);
    }
    for positions in slots.values() {
        let mut in_sequence: Vec<Value> = positions
            .iter()
            .filter_map(|&position| facts.get(position).cloned())
            .collect();
        in_sequence.sort_by_key(index);
        for (&position, fact) in positions.iter().zip(in_sequence) {
            if let Some(slot) = facts.get_mut(position) {
                *slot = fact;
            }
        }
    }
}

fn scope_text(document: &Value) -> String {
    let models = document["models"]
        .as_array()
        .map(|m| m.iter().map(text).collect::<Vec<_>>().join(", "))
        .unwrap_or_default();
    let principals = match &document["principals"] {
        Value::String(s) => s.clone(),
        Value::Object(o) if o.contains_key("foreign_persons_under") => {
            format!(
                "foreign persons under `{}`",
                text(&o["foreign_persons_under"])
            )
        }
        Value::Object(o) if o.contains_key("ids") => format!("principals {}", text(&o["ids"])),
        other => other.to_string(),
    };
    format!("models {models}; principals: {principals}")
}

/// The sentence for one audit entry about an order.
fn order_statement(entry: &Value, reference: &str) -> String {
    let actor = text(&entry["actor"]);
    let payload = &entry["payload"];
    match entry["kind"].as_str() {
        Some("request_decision") => format!(
            "Request `{}` by `{}` for `{}` refused with status {} under order `{reference}`",
            text(&entry["request_id"]),
            text(&entry["principal_id"]),
            text(&entry["model"]),
            text(&entry["status"]),
        ),
        Some("request_outcome") => format!(
            "Request `{}` by `{}` for `{}`, admitted before the order, was cut by order `{reference}` after {} events (status {})",
            text(&entry["request_id"]),
            text(&entry["principal_id"]),
            text(&entry["model"]),
            text(&entry["events_relayed"]),
            text(&entry["status"]),
        ),
        _ => match entry["action"].as_str().unwrap_or_default() {
            "apply" => format!(
                "Order `{reference}` applied by `{actor}`: effect `{}`, {}; committed as store version {}",
                text(&payload["order"]["effect"]),
                scope_text(&payload["order"]),
                text(&payload["committed_version"]),
            ),
            "order_applied" => format!(
                "Replica `{}` began enforcing order `{reference}` at snapshot version {}; requests in flight cut: {}",
                actor.trim_start_matches("replica:"),
                text(&payload["snapshot_version"]),
                text(&payload["requests_cut"]),
            ),
            "request_cut" => format!(
                "Request `{}` by `{}` for `{}` was cut on replica `{}` by order `{reference}` after {} events",
                text(&payload["request_id"]),
                text(&payload["principal_id"]),
                text(&payload["model"]),
                actor.trim_start_matches("replica:"),
                text(&payload["events_relayed"]),
            ),
            "request_approval" => format!(
                "`{actor}` asked to lift order `{reference}` (approval `{}`); under the two-person rule it waits for a second admin",
                text(&payload["approval_id"]),
            ),
            "approve" => format!(
                "`{actor}` approved lifting order `{reference}` (approval `{}`, requested by `{}`)",
                text(&payload["approval_id"]),
                text(&payload["requested_by"]),
            ),
            "reject" => format!(
                "`{actor}` rejected approval `{}` for order `{reference}`",
                text(&payload["approval_id"]),
            ),
            "lift" => format!(
                "Order `{reference}` lifted by `{actor}`; reason: {}",
                text(&payload["reason"]),
            ),
            "order_lifted_applied" => format!(
                "Replica `{}` stopped enforcing order `{reference}` at snapshot version {}",
                actor.trim_start_matches("replica:"),
                text(&payload["snapshot_version"]),
            ),
            other => format!("`{other}` on order `{reference}` by `{actor}`"),
        },
    }
}

async fn order_report(gateway: &Gateway, stored: &StoredOrder) -> AdminResult<Value> {
    let mut receipt = crate::orders::receipt(gateway, stored).await?;
    let mut citations = Citations::new(gateway).await?;
    // Each cut request is cited like any fact, so the bundle can prove it.
    if let Some(cuts) = receipt["cut_requests"].as_array_mut() {
        for cut in cuts {
            let (Some(origin), Some(index)) = (
                cut["audit"]["origin"].as_str().map(str::to_owned),
                cut["audit"]["index"].as_u64(),
            ) else {
                continue;
            };
            cut["audit"] = citations.cite(&origin, index).await?.citation;
        }
    }
    let entries = portcullis_audit::search(
        gateway.store.pool(),
        &AuditQuery {
            order_id: Some(stored.id.clone()),
            ..AuditQuery::default()
        },
    )
    .await
    .map_err(audit_unavailable)?;
    let mut facts = Vec::new();
    let mut listed_requests = 0usize;
    let mut refused_requests = 0u64;
    let mut applications: BTreeMap<String, Value> = BTreeMap::new();
    let mut apply_citation = Value::Null;
    let mut lift_citation = Value::Null;
    for stored_entry in &entries {
        if let AuditEntry::RequestDecision(_) = &stored_entry.entry {
            refused_requests += 1;
            if listed_requests >= LISTED_REQUESTS {
                continue;
            }
            listed_requests += 1;
        }
        let cited = citations
            .cite(&stored_entry.origin, stored_entry.index)
            .await?;
        let action = cited.entry["action"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        match action.as_str() {
            "apply" => apply_citation = cited.citation.clone(),
            "lift" => lift_citation = cited.citation.clone(),
            "order_applied" => {
                let replica = text(&cited.entry["actor"])
                    .trim_start_matches("replica:")
                    .to_owned();
                applications.insert(replica, cited.citation.clone());
            }
            _ => {}
        }
        facts.push(fact(
            order_statement(&cited.entry, &stored.reference),
            &cited.entry,
            cited.citation,
        ));
    }
    sort_facts(&mut facts);
    let mut enforcement = Vec::new();
    if let Some(replicas) = receipt["replicas"].as_array() {
        for replica in replicas {
            let name = text(&replica["replica"]);
            let mut row = replica.clone();
            row["audit"] = applications.get(&name).cloned().unwrap_or(Value::Null);
            row["log_checkpoint"] = citations.latest(&crate::audit::origin_for(&name))?;
            enforcement.push(row);
        }
    }
    let approvals = gateway.store.list_approvals(None, Some(&stored.id)).await?;
    let document = &stored.document;
    Ok(json!({
        "report": "order",
        "subject": stored.id,
        "title": format!("Order {}: transparency record", stored.reference),
        "order": {
            "id": stored.id,
            "reference": stored.reference,
            "issuer": document["issuer"],
            "received_at": document["received_at"],
            "effective_at": receipt["effective_at"],
            "effective_at_requested": receipt["effective_at_requested"],
            "effect": document["effect"],
            "models": document["models"],
            "principals": document["principals"],
            "reason": document["reason"],
            "document_sha256": document.get("document_sha256").cloned().unwrap_or(Value::Null),
            "applied_by": stored.created_by,
            "committed_at": stored.created_at,
            "committed_version": stored.committed_version,
            "audit": apply_citation,
        },
        "preview_at_issue": stored.preview,
        "enforcement": enforcement,
        "time_to_enforce_ms": receipt["time_to_enforce_ms"],
        "requests_cut": receipt["requests_cut"],
        "cut_requests": receipt["cut_requests"],
        "requests_refused": refused_requests,
        "admitted_after_enforcement": receipt["admitted_after_enforcement"],
        "lift": stored.lift.as_ref().map(|lift| json!({
            "lifted_at": lift.lifted_at,
            "lifted_by": lift.lifted_by,
            "reason": lift.reason,
            "committed_version": lift.committed_version,
            "approval": approvals.iter().find(|a| a.action == "order_lift" && a.status == portcullis_store::ApprovalStatus::Approved),
            "replica_lifts": receipt["replica_lifts"],
            "audit": lift_citation,
        })),
        "facts": facts,
        "checkpoints": citations.checkpoints_json(),
    }))
}

async fn cite_refs(
    citations: &mut Citations<'_>,
    refs: &[AuditRef],
    facts: &mut Vec<Value>,
    statement: impl Fn(&AuditRef, &Value) -> String,
) -> AdminResult<()> {
    for reference in refs {
        let cited = citations.cite_ref(reference).await?;
        facts.push(fact(
            statement(reference, &cited.entry),
            &cited.entry,
            cited.citation,
        ));
    }
    Ok(())
}

async fn review_report(gateway: &Gateway, id: &str) -> AdminResult<Value> {
    let review = gateway
        .store
        .get_review(id)
        .await?
        .ok_or_else(|| not_found("review", id))?;
    let evidence = gateway.store.review_evidence(id).await?;
    let transitions: Vec<_> = gateway
        .store
        .model_transitions(&review.model)
        .await?
        .into_iter()
        .filter(|t| t.review_id.as_deref() == Some(id))
        .collect();
    let mut citations = Citations::new(gateway).await?;
    let mut facts = Vec::new();
    let refs = gateway.store.audit_refs("review", id).await?;
    cite_refs(&mut citations, &refs, &mut facts, |reference, entry| {
        let payload = &entry["payload"];
        match reference.event.as_str() {
            "created" => format!(
                "Review `{id}` of `{}` opened by `{}`: party `{}` ({}), scope: {}",
                review.model,
                text(&entry["actor"]),
                review.reviewing_party,
                review.party_kind,
                review.scope
            ),
            "access_granted" => format!(
                "Reviewer access granted to principal `{}` with key `{}` until {}",
                text(&payload["principal_id"]),
                text(&payload["key_id"]),
                text(&payload["expires_at"])
            ),
            "concluded" => format!(
                "Review concluded by `{}`: decision `{}`; rationale: {}",
                text(&entry["actor"]),
                text(&payload["decision"]),
                text(&payload["rationale"])
            ),
            "conditions_enforced" => format!(
                "Conditions applied to model `{}`: tags {}, safeguard profile {}",
                text(&entry["target_id"]),
                text(&payload["tags"]),
                text(&payload["safeguard_profile"])
            ),
            other => format!("`{other}` on review `{id}`"),
        }
    })
    .await?;
    let mut artifacts = Vec::new();
    for artifact in &evidence {
        let refs = gateway.store.audit_refs("evidence", &artifact.id).await?;
        cite_refs(&mut citations, &refs, &mut facts, |_, _| {
            format!(
                "Evidence `{}` ({}) attached: sha256 `{}`, {} bytes",
                artifact.name, artifact.kind, artifact.sha256, artifact.size_bytes
            )
        })
        .await?;
        artifacts.push(serde_json::to_value(artifact).unwrap_or(Value::Null));
    }
    for transition in &transitions {
        let refs = gateway
            .store
            .audit_refs("transition", &transition.id)
            .await?;
        cite_refs(&mut citations, &refs, &mut facts, |_, _| {
            transition_statement(transition)
        })
        .await?;
    }
    sort_facts(&mut facts);
    Ok(json!({
        "report": "review",
        "subject": id,
        "title": format!("Review {id} of {}: transparency record", review.model),
        "review": review,
        "evidence": artifacts,
        "transitions": transitions,
        "facts": facts,
        "checkpoints": citations.checkpoints_json(),
    }))
}

fn transition_statement(transition: &portcullis_store::ModelTransition) -> String {
    let mut sentence = format!(
        "Model `{}` moved from `{}` to `{}` by `{}` (source `{}`); rationale: {}",
        transition.model,
        transition.from_state.map(|s| s.as_str()).unwrap_or("none"),
        transition.to_state.as_str(),
        transition.actor,
        transition.source,
        transition.rationale
    );
    if let Some(approver) = &transition.approved_by {
        sentence.push_str(&format!("; approved by `{approver}`"));
    }
    if let Some(review) = &transition.review_id {
        sentence.push_str(&format!("; review `{review}`"));
    }
    if let Some(reason) = &transition.override_reason {
        sentence.push_str(&format!("; override: {reason}"));
    }
    sentence
}

async fn finding_report(gateway: &Gateway, id: &str) -> AdminResult<Value> {
    let finding = gateway
        .store
        .get_finding(id)
        .await?
        .ok_or_else(|| not_found("finding", id))?;
    let events = gateway.store.finding_events(id).await?;
    let evidence = gateway.store.finding_evidence(id).await?;
    let mut citations = Citations::new(gateway).await?;
    let mut facts = Vec::new();
    for event in &events {
        let refs = gateway.store.audit_refs("finding_event", &event.id).await?;
        cite_refs(&mut citations, &refs, &mut facts, |_, _| {
            format!(
                "Finding `{id}` moved from `{}` to `{}` by `{}`: {}",
                event.from_status.as_str(),
                event.to_status.as_str(),
                event.actor,
                event.note
            )
        })
        .await?;
    }
    let mut artifacts = Vec::new();
    for artifact in &evidence {
        let refs = gateway.store.audit_refs("evidence", &artifact.id).await?;
        cite_refs(&mut citations, &refs, &mut facts, |_, _| {
            format!(
                "Evidence `{}` ({}) attached: sha256 `{}`, {} bytes",
                artifact.name, artifact.kind, artifact.sha256, artifact.size_bytes
            )
        })
        .await?;
        let mut value = serde_json::to_value(artifact).unwrap_or(Value::Null);
        // Replay results are small JSON documents: include them whole so
        // the report shows what the safeguards did with each prompt.
        if let Some(content) = &artifact.content
            && artifact.media_type == "application/json"
            && content.len() <= 64 * 1024
        {
            value["content"] = serde_json::from_slice(content).unwrap_or(Value::Null);
        }
        artifacts.push(value);
    }
    sort_facts(&mut facts);
    Ok(json!({
        "report": "finding",
        "subject": id,
        "title": format!("Finding {id}: transparency record"),
        // The rules a bypass is judged against: a finding is a bypass only
        // if this text says the exchange should have been refused.
        "constitution": portcullis_safeguards::CYBER_CONSTITUTION_VERSION,
        "finding": {
            "id": finding.id, "model": finding.model, "reporter": finding.reporter,
            "severity": finding.severity, "status": finding.status,
            "created_at": finding.created_at, "created_by": finding.created_by,
            "notes": finding.notes,
        },
        "events": events,
        "evidence": artifacts,
        "facts": facts,
        "checkpoints": citations.checkpoints_json(),
    }))
}

async fn model_report(gateway: &Gateway, name: &str) -> AdminResult<Value> {
    let model: Model = gateway
        .snapshot
        .load()
        .model(name)
        .map(|m| (**m).clone())
        .ok_or_else(|| not_found("model", name))?;
    let transitions = gateway.store.model_transitions(name).await?;
    let reviews = gateway.store.list_reviews(Some(name)).await?;
    let now = gateway.clock.now();
    let mut citations = Citations::new(gateway).await?;
    let mut facts = Vec::new();
    for transition in &transitions {
        let refs = gateway
            .store
            .audit_refs("transition", &transition.id)
            .await?;
        cite_refs(&mut citations, &refs, &mut facts, |_, _| {
            transition_statement(transition)
        })
        .await?;
    }
    let mut safeguard_evidence = Vec::new();
    for review in &reviews {
        let refs: Vec<AuditRef> = gateway
            .store
            .audit_refs("review", &review.id)
            .await?
            .into_iter()
            .filter(|r| r.event == "concluded" || r.event == "conditions_enforced")
            .collect();
        cite_refs(&mut citations, &refs, &mut facts, |reference, entry| {
            if reference.event == "concluded" {
                format!(
                    "Review `{}` by {} concluded: `{}`",
                    review.id,
                    review.reviewing_party,
                    text(&entry["payload"]["decision"])
                )
            } else {
                format!("Conditions of review `{}` applied to the model", review.id)
            }
        })
        .await?;
        for artifact in gateway.store.review_evidence(&review.id).await? {
            if artifact.kind == "eval_report" {
                let mut value = serde_json::to_value(&artifact).unwrap_or(Value::Null);
                if let Some(content) = &artifact.content
                    && artifact.media_type == "application/json"
                    && content.len() <= 64 * 1024
                {
                    value["content"] = serde_json::from_slice(content).unwrap_or(Value::Null);
                }
                safeguard_evidence.push(value);
            }
        }
    }
    let mut orders = Vec::new();
    let mut restrictions = Vec::new();
    for stored in gateway.store.list_orders().await? {
        let Ok(order) = serde_json::from_value::<portcullis_policy::Order>(stored.document.clone())
        else {
            continue;
        };
        if !order.models.iter().any(|selector| selector.matches(&model)) {
            continue;
        }
        let in_force = stored.lift.is_none() && order.in_force_at(now);
        let applied = portcullis_audit::search(
            gateway.store.pool(),
            &AuditQuery {
                order_id: Some(stored.id.clone()),
                kind: Some(EntryKind::AdminAction),
                ..AuditQuery::default()
            },
        )
        .await
        .map_err(audit_unavailable)?;
        for entry in applied.iter().filter(|e| {
            matches!(&e.entry, AuditEntry::AdminAction(a) if a.action == "apply" || a.action == "lift")
        }) {
            let cited = citations.cite(&entry.origin, entry.index).await?;
            facts.push(fact(
                order_statement(&cited.entry, &stored.reference),
                &cited.entry,
                cited.citation,
            ));
        }
        let summary = json!({
            "id": stored.id,
            "reference": stored.reference,
            "effect": stored.document["effect"],
            "scope": scope_text(&stored.document),
            "committed_at": stored.created_at,
            "lifted_at": stored.lift.as_ref().map(|l| l.lifted_at),
            "in_force": in_force,
        });
        if in_force {
            restrictions.push(json!({"order": summary.clone()}));
        }
        orders.push(summary);
    }
    if let Some(profile) = &model.safeguard_profile {
        restrictions.push(json!({"safeguard_profile": profile,
            "constitution": portcullis_safeguards::CYBER_CONSTITUTION_VERSION}));
    }
    for tag in &model.tags {
        restrictions.push(json!({"tag": tag}));
    }
    sort_facts(&mut facts);
    Ok(json!({
        "report": "model",
        "subject": name,
        "title": format!("Model {name}: model card and record"),
        "model": model,
        "transitions": transitions,
        "reviews": reviews,
        "orders": orders,
        "current_restrictions": restrictions,
        "safeguard_evidence": safeguard_evidence,
        "facts": facts,
        "checkpoints": citations.checkpoints_json(),
    }))
}

fn not_found(what: &str, id: &str) -> AdminError {
    AdminError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("{what} `{id}` not found"),
    )
}

/// An order by id, or by its reference when no id matches. A reference
/// shared by several orders is ambiguous and answered 409 naming them.
async fn order_by_id_or_reference(gateway: &Gateway, key: &str) -> AdminResult<StoredOrder> {
    if let Some(stored) = gateway.store.get_order(key).await? {
        return Ok(stored);
    }
    let mut matching: Vec<StoredOrder> = gateway
        .store
        .list_orders()
        .await?
        .into_iter()
        .filter(|stored| stored.reference == key)
        .collect();
    match matching.len() {
        0 => Err(not_found("order", key)),
        1 => Ok(matching.remove(0)),
        _ => Err(AdminError::new(
            StatusCode::CONFLICT,
            "ambiguous_reference",
            format!(
                "reference `{key}` names {} orders ({}); ask for one by id",
                matching.len(),
                matching
                    .iter()
                    .map(|stored| stored.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

async fn assemble_report(
    gateway: &Gateway,
    actor: &Actor,
    kind: &str,
    id: &str,
) -> AdminResult<Value> {
    let mut report = match kind {
        "order" => {
            let stored = order_by_id_or_reference(gateway, id).await?;
            order_report(gateway, &stored).await?
        }
        "review" => review_report(gateway, id).await?,
        "finding" => finding_report(gateway, id).await?,
        "model" => model_report(gateway, id).await?,
        other => {
            return Err(not_found("report kind", other));
        }
    };
    report["generated_at"] = json!(gateway.clock.now());
    report["generated_by"] = json!(actor.id());
    report["replica"] = json!(gateway.replica_id());
    Ok(report)
}

/// `GET /admin/v1/reports/{kind}/{id}`: `order` (by id or reference),
/// `review`, `finding` or `model`.
pub async fn get_report(
    State(gateway): State<Arc<Gateway>>,
    Extension(actor): Extension<Actor>,
    Path((kind, id)): Path<(String, String)>,
) -> AdminResult<Json<Value>> {
    Ok(Json(assemble_report(&gateway, &actor, &kind, &id).await?))
}

/// Every audit citation in a report: (origin, index, checkpoint tree size).
/// A citation is an object with `origin`, `index` and `checkpoint.tree_size`,
/// wherever it sits.
pub fn citations_in(report: &Value) -> std::collections::BTreeSet<(String, u64, u64)> {
    let mut found = std::collections::BTreeSet::new();
    let mut pending = vec![report];
    while let Some(value) = pending.pop() {
        match value {
            Value::Object(object) => {
                if let (Some(origin), Some(index), Some(tree_size)) = (
                    object.get("origin").and_then(Value::as_str),
                    object.get("index").and_then(Value::as_u64),
                    object
                        .get("checkpoint")
                        .and_then(|checkpoint| checkpoint.get("tree_size"))
                        .and_then(Value::as_u64),
                ) {
                    found.insert((origin.to_owned(), index, tree_size));
                }
                pending.extend(object.values());
            }
            Value::Array(values) => pending.extend(values),
            _ => {}
        }
    }
    found
}

/// `GET /admin/v1/reports/{kind}/{id}/bundle`: the report as exact bytes,
/// a note signed by this replica's audit key over those bytes, the
/// verifier key, and one inclusion proof (with its signed checkpoint) per
/// cited entry: everything `portcullis verify-bundle` needs, with no access
/// to the store.
pub async fn get_report_bundle(
    State(gateway): State<Arc<Gateway>>,
    Extension(actor): Extension<Actor>,
    Path((kind, id)): Path<(String, String)>,
) -> AdminResult<Json<Value>> {
    let Some(audit) = &gateway.audit else {
        return Err(audit_unavailable("the audit log is off on this replica"));
    };
    let report = assemble_report(&gateway, &actor, &kind, &id).await?;
    let report_json = format!(
        "{}\n",
        serde_json::to_string_pretty(&report)
            .map_err(|error| audit_unavailable(format!("cannot encode the report: {error}")))?
    );
    let mut proofs = Vec::new();
    for (origin, index, tree_size) in citations_in(&report) {
        let proof =
            portcullis_audit::prove_inclusion(gateway.store.pool(), &origin, index, tree_size)
                .await
                .map_err(audit_unavailable)?;
        proofs.push(proof);
    }
    let report_note = audit
        .sign_report(report_json.as_bytes())
        .map_err(audit_unavailable)?;
    Ok(Json(json!({
        "report_json": report_json,
        "report_note": report_note,
        "verifier_key": audit.verifier_key(),
        "proofs": proofs,
    })))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::{Value, json};

    use super::sort_facts;

    fn at(origin: &str, index: u64, time: &str) -> Value {
        json!({"time": time, "statement": format!("{origin}#{index}"),
               "audit": {"origin": origin, "index": index}})
    }

    #[test]
    fn facts_of_one_log_keep_its_sequence_even_when_the_clock_stepped_back() {
        let cases = [
            (
                "in time order already",
                vec![
                    at("admin", 1, "2026-11-20T00:00:01Z"),
                    at("replica", 7, "2026-11-20T00:00:02Z"),
                    at("admin", 2, "2026-11-20T00:00:03Z"),
                ],
                vec!["admin#1", "replica#7", "admin#2"],
            ),
            (
                // The approval (index 2) was written before the lift (index
                // 3) but carries a later time.
                "a later time on an earlier entry",
                vec![
                    at("admin", 3, "2026-11-20T00:00:01Z"),
                    at("admin", 2, "2026-11-20T00:00:05Z"),
                    at("replica", 9, "2026-11-20T00:00:03Z"),
                ],
                vec!["admin#2", "replica#9", "admin#3"],
            ),
        ];
        for (label, mut facts, expected) in cases {
            sort_facts(&mut facts);
            let order: Vec<&str> = facts
                .iter()
                .map(|fact| fact["statement"].as_str().unwrap())
                .collect();
            assert_eq!(order, expected, "{label}");
        }
    }
}
