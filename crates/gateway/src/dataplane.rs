//! The data plane: `POST /v1/chat/completions`, `POST /v1/messages` and
//! `GET /v1/models`. Each request is authenticated, its model resolved from
//! the body, the access decision taken against the current snapshot, and the
//! upstream answer relayed (translated when the client and upstream formats
//! differ), event by event for streams.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use portcullis_domain::{Model, Provider};
use serde_json::{Map, Value, json};

use crate::Gateway;
use crate::error::{ApiError, ApiFormat, ErrorSource};
use crate::inflight::{CutSignal, InflightGuard};
use crate::mock;
use crate::policy::request_context_with_evidence;
use crate::request_id::RequestId;
use crate::snapshot::Snapshot;
use crate::sse::{SseEvent, SseSplitter};
use crate::translate::{self, AnthropicToOpenAiStream, OpenAiToAnthropicStream};
use crate::upstream::{UpstreamAnswer, provider_format};
use portcullis_domain::PrincipalAttributes;
use portcullis_policy::{Action, PrincipalRef};
use sha2::{Digest, Sha256};

/// Headers that must not name a model different from the body's.
const MODEL_OVERRIDE_HEADERS: &[&str] = &["x-model", "model", "x-portcullis-model"];
/// Client headers passed to an Anthropic upstream when formats match.
const ANTHROPIC_PASSTHROUGH_HEADERS: &[&str] = &["anthropic-version", "anthropic-beta"];

pub async fn chat_completions(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    inference(gateway, ApiFormat::OpenAi, request).await
}

pub async fn messages(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    inference(gateway, ApiFormat::Anthropic, request).await
}

fn request_id_of(parts: &Parts) -> String {
    parts
        .extensions
        .get::<RequestId>()
        .map(|id| id.0.clone())
        .unwrap_or_default()
}

async fn inference(gateway: Arc<Gateway>, format: ApiFormat, request: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let request_id = request_id_of(&parts);
    let endpoint = match format {
        ApiFormat::OpenAi => "chat_completions",
        ApiFormat::Anthropic => "messages",
    };
    let mut record = DecisionRecord::new(endpoint, &request_id, &gateway);
    let response = match handle(&gateway, format, &parts, body, &request_id, &mut record).await {
        Ok(response) => response,
        Err(error) => {
            if error.source == ErrorSource::Internal {
                tracing::error!(request_id, code = error.code, message = %error.message, "request failed");
            } else {
                log_refusal(&request_id, &error, record.entry().map(|entry| &*entry));
            }
            error.into_response_for(format, &request_id)
        }
    };
    let mut status = response.status().as_u16();
    // INVARIANT: no byte of an answer leaves before the request's decision
    // entry is durable. A decision submitted at admission has been
    // committing while the upstream worked; a refusal is written now. If the
    // commit fails, the answer is dropped (cancelling any upstream stream)
    // and the client gets 503: an unaudited request is never served.
    let response = match record.finish(&gateway, status).await {
        Ok(()) => {
            record.record_whole_answer_outcome(status);
            response
        }
        Err(error) => {
            drop(response);
            status = error.status.as_u16();
            error.into_response_for(format, &request_id)
        }
    };
    let (model, decision) = record.metric_labels(&gateway, status);
    metrics::counter!("portcullis_requests_total", "endpoint" => endpoint, "status" => status_class(status), "model" => model, "decision" => decision)
        .increment(1);
    metrics::histogram!("portcullis_request_duration_seconds", "endpoint" => endpoint)
        .record(started.elapsed().as_secs_f64());
    response
}

/// One log line per refused request, naming who, which model and which
/// rule or order. Refusals that decide access (401, 403, 429, 451, a
/// safeguard block) are `info`, so an operator sees them at the default
/// level; malformed requests and upstream failures stay at `debug`.
fn log_refusal(
    request_id: &str,
    error: &ApiError,
    entry: Option<&portcullis_audit::RequestDecisionEntry>,
) {
    let principal = entry.and_then(|e| e.principal_id.as_deref()).unwrap_or("-");
    let model = entry.and_then(|e| e.model.as_deref()).unwrap_or("-");
    let rules = entry.map(|e| e.policy_ids.join(",")).unwrap_or_default();
    let orders = entry.map(|e| e.order_ids.join(",")).unwrap_or_default();
    let status = error.status.as_u16();
    let decides_access =
        matches!(status, 401 | 403 | 429 | 451) || error.code == "content_policy_violation";
    if decides_access {
        tracing::info!(
            request_id,
            status,
            code = error.code,
            principal,
            model,
            rules,
            orders,
            "request refused"
        );
    } else {
        tracing::debug!(
            request_id,
            status,
            code = error.code,
            principal,
            model,
            "request refused"
        );
    }
}

/// The attributes the snapshot decides this caller by: the token's for a
/// token, the stored principal's for a key.
fn caller_attributes<'a>(
    caller: &'a Caller,
    snapshot: &'a Snapshot,
) -> Option<&'a PrincipalAttributes> {
    match caller {
        Caller::Token { attributes, .. } => Some(attributes),
        Caller::Key { principal_id, .. } => snapshot.engine.principal(principal_id),
    }
}

/// The attributes export-control rules read, as the audit log keeps them.
fn attribute_evidence(attributes: &PrincipalAttributes) -> portcullis_audit::AttributeEvidence {
    let verified = attributes.verified_claims.as_ref();
    portcullis_audit::AttributeEvidence {
        organization: attributes.organization.clone(),
        employee: attributes.employee,
        nationalities: verified
            .map(|claims| claims.claims.nationalities.clone())
            .unwrap_or_default(),
        us_person_basis: verified
            .and_then(|claims| claims.claims.us_person_basis)
            .map(|basis| basis.as_str().to_owned()),
        assurance_level: verified.and_then(|claims| claims.verification.assurance_level.clone()),
        verification_expires_at: verified.and_then(|claims| claims.verification.expires_at),
        screening: attributes.screening.status().as_str().to_owned(),
    }
}

/// Audit failures repeat on every request while the store is down: they
/// are logged once per second with a count of the rest.
static AUDIT_FAILURE_LOG: crate::log_throttle::LogThrottle =
    crate::log_throttle::LogThrottle::new();

/// What the audit log learns about one data-plane request, filled in as the
/// request is handled. An admitted request's decision is submitted before
/// the upstream is contacted and is durable before the answer's first byte;
/// how the request ended follows as its own outcome entry.
pub struct DecisionRecord {
    entry: Option<portcullis_audit::RequestDecisionEntry>,
    /// The commit of the decision entry submitted at admission.
    pending: Option<portcullis_audit::PendingCommit>,
    /// Writes the outcome entry of an admitted request; a stream takes it.
    outcome: Option<OutcomeRecorder>,
    /// Shared with the outcome writer: set once the decision is durable.
    decision_durable: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// The model the body named, for the metrics' `model` label.
    requested_model: Option<String>,
    /// Whether the request was admitted, for the `decision` label.
    admitted: bool,
}

impl DecisionRecord {
    fn new(action: &str, request_id: &str, gateway: &Gateway) -> Self {
        let entry = gateway
            .audit
            .as_ref()
            .map(|audit| portcullis_audit::RequestDecisionEntry {
                request_id: request_id.to_owned(),
                time: gateway.clock.now(),
                principal_id: None,
                credential_id: None,
                model: None,
                action: action.to_owned(),
                decision: portcullis_audit::Decision::Deny,
                status: 0,
                policy_ids: Vec::new(),
                order_ids: Vec::new(),
                definition_profile: None,
                safeguard_verdict: None,
                safeguard_score_ppm: None,
                safeguard_constitution: None,
                snapshot_version: 0,
                replica: audit.replica().to_owned(),
                location: None,
                identity: None,
                attributes: None,
                prompt_sha256: None,
                response_sha256: None,
                prompt: None,
                response: None,
            });
        Self {
            entry,
            pending: None,
            outcome: None,
            decision_durable: None,
            requested_model: None,
            admitted: false,
        }
    }

    /// The `model` and `decision` labels of the request counters. A label
    /// value must come from a bounded set: a model name is used only when
    /// the registry knows it, anything else is `other` (no model at all is
    /// `none`), so a client cannot grow the metrics with invented names.
    fn metric_labels(&self, gateway: &Gateway, status: u16) -> (String, &'static str) {
        let model = match &self.requested_model {
            None => "none".to_owned(),
            Some(name) if gateway.snapshot.load().model(name).is_some() => name.clone(),
            Some(_) => "other".to_owned(),
        };
        let decision = if self.admitted && status < 500 {
            "allow"
        } else if self.admitted {
            "error"
        } else {
            "deny"
        };
        (model, decision)
    }

    /// Mutable access to the entry, when the audit log is on.
    pub fn entry(&mut self) -> Option<&mut portcullis_audit::RequestDecisionEntry> {
        self.entry.as_mut()
    }

    fn authenticated(&mut self, caller: &Caller) {
        if let Some(entry) = self.entry() {
            entry.principal_id = Some(caller.principal_id().to_owned());
            entry.credential_id = Some(caller.credential_id().to_owned());
            entry.identity = Some(Box::new(caller.identity_evidence()));
        }
    }

    /// Records the evidence the decision rested on: the location and its
    /// source, and the attributes the policies read.
    fn evidence(
        &mut self,
        location: portcullis_audit::LocationEvidence,
        attributes: Option<&PrincipalAttributes>,
    ) {
        if let Some(entry) = self.entry() {
            entry.location = Some(Box::new(location));
            entry.attributes =
                attributes.map(|attributes| Box::new(attribute_evidence(attributes)));
        }
    }

    fn decided(
        &mut self,
        snapshot: &Snapshot,
        model: &str,
        time: jiff::Timestamp,
        decision: &Result<portcullis_policy::Decision, portcullis_policy::DecideError>,
    ) {
        let Some(entry) = self.entry() else {
            return;
        };
        entry.time = time;
        entry.model = Some(model.to_owned());
        entry.snapshot_version = snapshot.version;
        if let Ok(decision) = decision {
            entry.definition_profile = Some(decision.profile.clone());
            for reason in &decision.reasons {
                match snapshot
                    .engine
                    .orders()
                    .iter()
                    .find(|order| order.reference == *reason)
                    .and_then(|order| order.id.clone())
                {
                    Some(order_id) => entry.order_ids.push(order_id),
                    None => entry.policy_ids.push(reason.clone()),
                }
            }
        }
    }

    /// Submits the decision to admit the request, before the upstream is
    /// contacted, so its commit overlaps the upstream's work.
    async fn admit(&mut self, gateway: &Arc<Gateway>) -> Result<(), ApiError> {
        self.admitted = true;
        let (Some(entry), Some(audit)) = (self.entry.take(), gateway.audit.as_ref()) else {
            return Ok(());
        };
        let mut entry = entry;
        entry.status = 200;
        entry.decision = portcullis_audit::Decision::Allow;
        let outcome = OutcomeRecorder::for_decision(gateway, &entry);
        let pending = audit.submit_decision(entry).await.map_err(|error| {
            metrics::counter!("portcullis_audit_errors_total").increment(1);
            if let Some(held_back) = AUDIT_FAILURE_LOG.admit() {
                tracing::error!(%error, held_back, "request decision could not be queued for the audit log; refusing (one line per second; `held_back` counts the rest)");
            }
            ApiError::audit_unavailable()
        })?;
        self.pending = Some(pending);
        self.decision_durable = Some(outcome.decision_durable.clone());
        self.outcome = Some(outcome);
        Ok(())
    }

    /// The outcome writer, for a stream that reports its own end.
    fn take_outcome(&mut self) -> Option<OutcomeRecorder> {
        self.outcome.take()
    }

    /// Names the order that cut this request in its outcome entry.
    fn note_cut(&mut self, cut: &CutSignal) {
        if let (Some(order_id), Some(outcome)) = (cut.order_id(), self.outcome.as_mut()) {
            outcome.add_order_id(order_id);
        }
    }

    /// Makes the decision durable: waits for the commit submitted at
    /// admission, or writes a refusal with its `status` now. An error means
    /// the entry is not durable and the answer must not be sent.
    async fn finish(&mut self, gateway: &Gateway, status: u16) -> Result<(), ApiError> {
        let Some(audit) = gateway.audit.as_ref() else {
            return Ok(());
        };
        let pending = match self.pending.take() {
            Some(pending) => pending,
            None => {
                let Some(mut entry) = self.entry.take() else {
                    return Ok(());
                };
                entry.status = status;
                entry.decision = if (200..300).contains(&status) {
                    portcullis_audit::Decision::Allow
                } else {
                    portcullis_audit::Decision::Deny
                };
                audit.submit_decision(entry).await.map_err(|error| {
                    metrics::counter!("portcullis_audit_errors_total").increment(1);
                    if let Some(held_back) = AUDIT_FAILURE_LOG.admit() {
                        tracing::error!(%error, held_back, "request decision could not be queued for the audit log (one line per second; `held_back` counts the rest)");
                    }
                    ApiError::audit_unavailable()
                })?
            }
        };
        match pending.committed().await {
            Ok(_) => {
                if let Some(durable) = &self.decision_durable {
                    durable.store(true, std::sync::atomic::Ordering::Release);
                }
                Ok(())
            }
            Err(error) => {
                metrics::counter!("portcullis_audit_errors_total").increment(1);
                if let Some(held_back) = AUDIT_FAILURE_LOG.admit() {
                    tracing::error!(%error, held_back, "request decision could not be committed to the audit log; not serving (one line per second; `held_back` counts the rest)");
                }
                Err(ApiError::audit_unavailable())
            }
        }
    }

    /// Writes the outcome of an admitted request answered as a whole (a
    /// stream writes its own when it ends).
    fn record_whole_answer_outcome(&mut self, status: u16) {
        let Some(outcome) = self.outcome.take() else {
            return;
        };
        let ended = match status {
            200..=299 => portcullis_audit::RequestOutcome::Completed,
            // After admission only an order (or the shutdown) answers 451.
            451 => portcullis_audit::RequestOutcome::Cut,
            _ => portcullis_audit::RequestOutcome::Failed,
        };
        outcome.record(ended, status, u64::from((200..300).contains(&status)));
    }
}

/// Writes the outcome entry of one admitted request, once, and only after
/// its decision entry is durable.
pub struct OutcomeRecorder {
    gateway: Arc<Gateway>,
    entry: Option<portcullis_audit::RequestOutcomeEntry>,
    /// What the request's log line adds to the outcome entry.
    log: ServedLogFields,
    admitted_at: Instant,
    decision_durable: Arc<std::sync::atomic::AtomicBool>,
}

impl OutcomeRecorder {
    fn for_decision(
        gateway: &Arc<Gateway>,
        decision: &portcullis_audit::RequestDecisionEntry,
    ) -> Self {
        Self {
            gateway: gateway.clone(),
            entry: Some(portcullis_audit::RequestOutcomeEntry {
                request_id: decision.request_id.clone(),
                time: decision.time,
                principal_id: decision.principal_id.clone(),
                model: decision.model.clone(),
                action: decision.action.clone(),
                outcome: portcullis_audit::RequestOutcome::Completed,
                status: 200,
                order_ids: Vec::new(),
                events_relayed: 0,
                duration_ms: 0,
                replica: decision.replica.clone(),
            }),
            log: ServedLogFields {
                credential_id: decision.credential_id.clone(),
                safeguard_verdict: decision.safeguard_verdict,
                safeguard_score_ppm: decision.safeguard_score_ppm,
                rules: decision.policy_ids.join(","),
            },
            admitted_at: Instant::now(),
            decision_durable: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        }
    }

    fn add_order_id(&mut self, order_id: String) {
        if let Some(entry) = &mut self.entry
            && !entry.order_ids.contains(&order_id)
        {
            entry.order_ids.push(order_id);
        }
    }

    fn record(mut self, outcome: portcullis_audit::RequestOutcome, status: u16, events: u64) {
        self.write(outcome, status, events);
    }

    fn write(&mut self, outcome: portcullis_audit::RequestOutcome, status: u16, events: u64) {
        // An answer dropped because its decision could not be committed was
        // never served; with the store failing there is nothing to add.
        if !self
            .decision_durable
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return;
        }
        let (Some(mut entry), Some(audit)) = (self.entry.take(), self.gateway.audit.as_ref())
        else {
            return;
        };
        entry.time = self.gateway.clock.now();
        entry.outcome = outcome;
        entry.status = status;
        entry.events_relayed = events;
        entry.duration_ms =
            u64::try_from(self.admitted_at.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.log.emit(&entry);
        if entry.outcome == portcullis_audit::RequestOutcome::Cut {
            audit.record_cut(&entry);
        }
        audit.record_outcome(entry);
    }
}

/// The decision-time fields of an admitted request's log line.
struct ServedLogFields {
    credential_id: Option<String>,
    safeguard_verdict: Option<portcullis_audit::SafeguardVerdict>,
    safeguard_score_ppm: Option<u32>,
    rules: String,
}

impl ServedLogFields {
    /// One `info` line per admitted request, when it ends: who, which
    /// model and endpoint, how it ended and how long it took. Secrets never
    /// reach it: the credential is named by its id.
    fn emit(&self, outcome: &portcullis_audit::RequestOutcomeEntry) {
        let verdict = match self.safeguard_verdict {
            Some(portcullis_audit::SafeguardVerdict::Allow) => "allow",
            Some(portcullis_audit::SafeguardVerdict::Flag) => "flag",
            Some(portcullis_audit::SafeguardVerdict::Block) => "block",
            None => "-",
        };
        tracing::info!(
            request_id = %outcome.request_id,
            principal = outcome.principal_id.as_deref().unwrap_or("-"),
            credential = self.credential_id.as_deref().unwrap_or("-"),
            model = outcome.model.as_deref().unwrap_or("-"),
            endpoint = %outcome.action,
            decision = "allow",
            rules = %self.rules,
            status = outcome.status,
            outcome = outcome.outcome.as_str(),
            orders = %outcome.order_ids.join(","),
            safeguard = verdict,
            safeguard_score_ppm = self.safeguard_score_ppm.unwrap_or(0),
            events = outcome.events_relayed,
            duration_ms = outcome.duration_ms,
            "request served"
        );
    }
}

fn status_class(status: u16) -> &'static str {
    match status {
        200..=299 => "2xx",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        413 => "413",
        451 => "451",
        402..=499 => "4xx",
        _ => "5xx",
    }
}

/// Refuses a request that presents more than one credential (two
/// `Authorization` headers, or `Authorization` and `x-api-key`): which one
/// would decide is ambiguous, so neither does.
fn check_single_credential(headers: &HeaderMap) -> Result<(), ApiError> {
    let authorizations = headers.get_all(header::AUTHORIZATION).iter().count();
    let api_keys = headers.get_all("x-api-key").iter().count();
    if authorizations + api_keys > 1 {
        return Err(ApiError::bad_request(
            "conflicting_credentials",
            "the request carries more than one credential; send exactly one `Authorization` or `x-api-key` header",
        ));
    }
    Ok(())
}

/// The credential a client presented, from `Authorization: Bearer` or
/// `x-api-key`.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, token) = value.split_once(' ')?;
        if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() {
            return Some(token.trim());
        }
        return None;
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Who is calling: the principal behind an API key, or the principal a
/// verified OIDC token describes.
pub enum Caller {
    Key {
        principal_id: String,
        key_id: String,
    },
    /// A token's principal carries its attributes with it. When the store
    /// also knows the principal, the store's `active` flag and screening
    /// result override the token's: a deactivation or a denied-party match
    /// recorded by the operator must not be undone by an identity provider.
    Token {
        attributes: Arc<PrincipalAttributes>,
        token_id: String,
        issuer: String,
        verified_at: jiff::Timestamp,
    },
}

impl Caller {
    pub fn principal_id(&self) -> &str {
        match self {
            Caller::Key { principal_id, .. } => principal_id,
            Caller::Token { attributes, .. } => &attributes.id,
        }
    }

    pub fn credential_id(&self) -> &str {
        match self {
            Caller::Key { key_id, .. } => key_id,
            Caller::Token { token_id, .. } => token_id,
        }
    }

    pub fn principal_ref(&self) -> PrincipalRef<'_> {
        match self {
            Caller::Key { principal_id, .. } => PrincipalRef::Id(principal_id),
            Caller::Token { attributes, .. } => PrincipalRef::Attributes(attributes),
        }
    }

    /// How the caller was identified, for the audit log.
    pub fn identity_evidence(&self) -> portcullis_audit::IdentityEvidence {
        match self {
            Caller::Key { .. } => portcullis_audit::IdentityEvidence {
                source: portcullis_audit::IdentitySource::ApiKey,
                issuer: None,
                token_jti: None,
                verified_at: None,
            },
            Caller::Token {
                issuer,
                verified_at,
                ..
            } => portcullis_audit::IdentityEvidence {
                source: portcullis_audit::IdentitySource::Oidc,
                issuer: Some(issuer.clone()),
                token_jti: None,
                verified_at: Some(*verified_at),
            },
        }
    }

    /// The attributes to judge in-flight requests by when the snapshot does
    /// not hold the principal.
    pub fn carried_attributes(&self) -> Option<Arc<PrincipalAttributes>> {
        match self {
            Caller::Key { .. } => None,
            Caller::Token { attributes, .. } => Some(attributes.clone()),
        }
    }
}

/// Authenticates an API key against the snapshot, or a JWT against the
/// configured OIDC issuers. Every failure is the same 401, so the answer
/// tells an attacker nothing; the reason is logged.
async fn authenticate(
    gateway: &Gateway,
    snapshot: &Snapshot,
    headers: &HeaderMap,
) -> Result<Caller, ApiError> {
    check_single_credential(headers)?;
    let secret = presented_key(headers).ok_or_else(ApiError::unauthenticated)?;
    if let Some(entry) = snapshot.authenticate(secret, gateway.clock.now()) {
        return Ok(Caller::Key {
            principal_id: entry.principal.id.clone(),
            key_id: entry.key.id.clone(),
        });
    }
    let Some(oidc) = gateway
        .oidc
        .as_ref()
        .filter(|_| portcullis_oidc::looks_like_jwt(secret))
    else {
        return Err(ApiError::unauthenticated());
    };
    let token = oidc.authenticate(secret).await.map_err(|rejection| {
        metrics::counter!("portcullis_token_rejections_total", "reason" => rejection.reason())
            .increment(1);
        tracing::debug!(reason = rejection.reason(), "bearer token refused");
        ApiError::unauthenticated()
    })?;
    let mut attributes = token.attributes;
    if let Some(stored) = snapshot.principals.get(&attributes.id) {
        attributes.active = stored.attributes.active;
        attributes.screening = stored.attributes.screening.clone();
    }
    let digest = Sha256::digest(secret.as_bytes());
    Ok(Caller::Token {
        token_id: format!("jwt_{}", hex::encode(&digest[..8])),
        attributes: Arc::new(attributes),
        issuer: token.issuer,
        verified_at: gateway.clock.now(),
    })
}

async fn read_body(gateway: &Gateway, parts: &Parts, body: Body) -> Result<Bytes, ApiError> {
    let limit = gateway.config.server.max_body_bytes;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(ApiError::too_large(limit));
    }
    let collected = tokio::time::timeout(
        gateway.config.server.body_read_timeout(),
        Limited::new(body, limit).collect(),
    )
    .await;
    match collected {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request body was not received in time",
            ErrorSource::Client,
        )),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::too_large(limit))
        }
        Ok(Err(_)) => Err(ApiError::bad_request(
            "invalid_body",
            "the request body could not be read",
        )),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// Parses a request body into a JSON object, with errors a client can act on.
pub fn parse_body(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if std::str::from_utf8(bytes).is_err() {
        return Err(ApiError::bad_request(
            "invalid_encoding",
            "the request body is not valid UTF-8",
        ));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request(
            "invalid_json",
            "the request body must be a JSON object",
        )),
        Err(error) => Err(ApiError::bad_request(
            "invalid_json",
            format!("the request body is not valid JSON: {error}"),
        )),
    }
}

/// The longest model name accepted, in bytes. Longer names are refused
/// without being echoed, so nobody can fill the log (or the disk) with them.
pub const MAX_MODEL_NAME_BYTES: usize = 256;
/// The documented range of `max_tokens` and `max_completion_tokens`.
pub const MAX_TOKENS_RANGE: std::ops::RangeInclusive<u64> = 1..=1_000_000;
/// The documented range of `n`.
pub const CHOICES_RANGE: std::ops::RangeInclusive<u64> = 1..=128;

/// Refuses a model name that is too long or not printable, naming neither
/// the value nor its bytes.
fn check_model_name(model: &str) -> Result<(), ApiError> {
    if model.len() > MAX_MODEL_NAME_BYTES {
        return Err(ApiError::bad_request(
            "invalid_model",
            format!(
                "`model` is {} bytes long; at most {MAX_MODEL_NAME_BYTES} are accepted",
                model.len()
            ),
        ));
    }
    if model.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_model",
            "`model` must not contain control characters",
        ));
    }
    Ok(())
}

/// Checks the generation parameters against their documented ranges, so an
/// absurd value is refused here rather than passed to an upstream.
fn check_generation_parameters(body: &Map<String, Value>) -> Result<(), ApiError> {
    let integer_in = |field: &str, range: &std::ops::RangeInclusive<u64>| match body.get(field) {
        None | Some(Value::Null) => Ok(()),
        Some(value) => match value.as_u64() {
            Some(number) if range.contains(&number) => Ok(()),
            _ => Err(ApiError::bad_request(
                "invalid_request",
                format!(
                    "`{field}` must be a whole number from {} to {}",
                    range.start(),
                    range.end()
                ),
            )),
        },
    };
    integer_in("max_tokens", &MAX_TOKENS_RANGE)?;
    integer_in("max_completion_tokens", &MAX_TOKENS_RANGE)?;
    integer_in("n", &CHOICES_RANGE)?;
    for (field, low, high) in [("temperature", 0.0, 2.0), ("top_p", 0.0, 1.0)] {
        match body.get(field) {
            None | Some(Value::Null) => {}
            Some(value) => match value.as_f64() {
                Some(number) if (low..=high).contains(&number) => {}
                _ => {
                    return Err(ApiError::bad_request(
                        "invalid_request",
                        format!("`{field}` must be a number from {low} to {high}"),
                    ));
                }
            },
        }
    }
    Ok(())
}

/// The model named in the body, refusing any second, different naming in the
/// query string or headers: the body alone decides which model is checked.
fn requested_model(parts: &Parts, body: &Map<String, Value>) -> Result<String, ApiError> {
    if let Some(Value::String(model)) = body.get("model") {
        check_model_name(model)?;
    }
    let model = match body.get("model") {
        Some(Value::String(model)) if !model.is_empty() => model.clone(),
        Some(Value::String(_)) | None => {
            return Err(ApiError::bad_request(
                "missing_model",
                "the request body must name a `model`",
            ));
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "`model` must be a string",
            ));
        }
    };
    let conflict = |other: &str| {
        ApiError::bad_request(
            "conflicting_model",
            format!(
                "the model is named twice: `{model}` in the body and `{other}` elsewhere; only the body may name it"
            ),
        )
    };
    if let Some(query) = parts.uri.query() {
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if key == "model" && value != model {
                return Err(conflict(value));
            }
        }
    }
    for name in MODEL_OVERRIDE_HEADERS {
        for value in parts.headers.get_all(*name) {
            let value = value.to_str().unwrap_or("<non-ascii>");
            if value != model {
                return Err(conflict(value));
            }
        }
    }
    Ok(model)
}

fn check_shape(body: &Map<String, Value>) -> Result<bool, ApiError> {
    check_generation_parameters(body)?;
    if !matches!(body.get("messages"), Some(Value::Array(_))) {
        return Err(ApiError::bad_request(
            "invalid_request",
            "`messages` must be an array",
        ));
    }
    match body.get("stream") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(stream)) => Ok(*stream),
        Some(_) => Err(ApiError::bad_request(
            "invalid_request",
            "`stream` must be a boolean",
        )),
    }
}

async fn handle(
    gateway: &Arc<Gateway>,
    format: ApiFormat,
    parts: &Parts,
    body: Body,
    request_id: &str,
    record: &mut DecisionRecord,
) -> Result<Response, ApiError> {
    let snapshot = gateway.snapshot.load_full();
    let caller = authenticate(gateway, &snapshot, &parts.headers).await?;
    record.authenticated(&caller);
    drop(snapshot);
    let bytes = read_body(gateway, parts, body).await?;
    let body = parse_body(&bytes)?;
    let model_name = requested_model(parts, &body)?;
    record.requested_model = Some(model_name.clone());
    if let Some(entry) = record.entry() {
        entry.model = Some(model_name.clone());
    }
    let stream = check_shape(&body)?;
    // Register before loading the snapshot that decides: an order applied
    // from here on either is in that snapshot or finds this request in the
    // registry (see `inflight`).
    let (mut inflight, cut) = gateway.inflight.register(
        caller.principal_id(),
        caller.carried_attributes(),
        &model_name,
        stream,
        &gateway.stream_cut,
    );
    let now = gateway.clock.now();
    let snapshot = gateway.snapshot.load_full();
    let model = snapshot
        .model(&model_name)
        .cloned()
        .ok_or_else(|| ApiError::model_not_found(&model_name))?;
    // A restricted model is decided only on a snapshot the store confirmed
    // within the staleness bound: an older one may miss an order or a
    // revocation, so it fails closed.
    if model.is_restricted() && !gateway.replica_is_current(now) {
        return Err(ApiError::policy_state_unconfirmed(
            &model.name,
            gateway.replica.retry_after_seconds(),
        ));
    }
    let (context, location) = request_context_with_evidence(&gateway.config.location, parts, now);
    record.evidence(location, caller_attributes(&caller, &snapshot));
    let decision = snapshot.engine.decide(
        caller.principal_ref(),
        &model.name,
        Action::Invoke,
        &context,
    );
    record.decided(&snapshot, &model.name, now, &decision);
    check_decision(gateway, &model.name, decision)?;
    // Limits count allowed requests only, before any safeguard or upstream
    // work is spent on them.
    if !gateway.limiter.is_empty() {
        let permit = gateway.limiter.admit(
            &crate::limits::LimitSubject {
                principal: caller.principal_id(),
                organization: caller_attributes(&caller, &snapshot)
                    .and_then(|attributes| attributes.organization.as_deref()),
                key: caller.credential_id(),
                model: &model.name,
                family: &model.family,
            },
            stream,
        )?;
        // Stream slots are held as long as the request is in flight.
        inflight.hold(permit);
    }
    drop(snapshot);
    let safeguard_outcome = gateway.safeguards.check_input(&model, &body).await?;
    if let (Some(outcome), Some(entry)) = (&safeguard_outcome, record.entry()) {
        entry.safeguard_verdict = Some(match outcome.verdict {
            crate::guard::OutcomeVerdict::Allow => portcullis_audit::SafeguardVerdict::Allow,
            crate::guard::OutcomeVerdict::Block => portcullis_audit::SafeguardVerdict::Block,
            // A shadow block is served; the log keeps that it would have
            // been blocked as a flag.
            crate::guard::OutcomeVerdict::Flag | crate::guard::OutcomeVerdict::ShadowBlock => {
                portcullis_audit::SafeguardVerdict::Flag
            }
        });
        entry.safeguard_score_ppm = Some(outcome.score_ppm);
        entry.safeguard_constitution = outcome.constitution.clone();
    }
    if let Some(rejection) = safeguard_outcome
        .as_ref()
        .and_then(crate::guard::SafeguardOutcome::rejection)
    {
        return Err(rejection);
    }
    record.admit(gateway).await?;
    let upstream_format = provider_format(model.provider, format);
    if model.provider == Provider::Mock {
        let mock = serve_mock(
            gateway, format, parts, &body, &model, stream, request_id, inflight, &cut, record,
        );
        let answered = until_cut(&cut, mock).await;
        if answered.is_err() {
            record.note_cut(&cut);
        }
        return answered;
    }
    let upstream_body = if upstream_format == format {
        if model.upstream_model == model.name {
            bytes
        } else {
            let mut body = body.clone();
            body.insert("model".into(), Value::String(model.upstream_model.clone()));
            Bytes::from(serde_json::to_vec(&body).map_err(|e| ApiError::internal(e.to_string()))?)
        }
    } else {
        let translated = match format {
            ApiFormat::OpenAi => {
                translate::openai_request_to_anthropic(&body, &model.upstream_model)?
            }
            ApiFormat::Anthropic => {
                translate::anthropic_request_to_openai(&body, &model.upstream_model)?
            }
        };
        Bytes::from(translated.to_string())
    };
    let mut forwarded: Vec<(HeaderName, HeaderValue)> =
        if upstream_format == ApiFormat::Anthropic && format == ApiFormat::Anthropic {
            ANTHROPIC_PASSTHROUGH_HEADERS
                .iter()
                .filter_map(|name| {
                    Some((
                        HeaderName::from_static(name),
                        parts.headers.get(*name)?.clone(),
                    ))
                })
                .collect()
        } else {
            Vec::new()
        };
    // The mock's test headers reach a model pointed at `portcullis mock`
    // only when its config says so, and no other upstream ever.
    if model.forward_mock_headers {
        forwarded.extend(
            parts
                .headers
                .iter()
                .filter(|(name, _)| name.as_str().starts_with("x-mock-"))
                .map(|(name, value)| (name.clone(), value.clone())),
        );
    }
    let answer = match until_cut(
        &cut,
        gateway
            .upstream
            .send(&model, upstream_body, stream, &forwarded),
    )
    .await
    {
        Ok(answer) => answer,
        Err(error) => {
            record.note_cut(&cut);
            return Err(error);
        }
    };
    match answer {
        UpstreamAnswer::Rejected {
            status,
            body,
            retry_after_seconds,
        } => Err(upstream_rejection(
            &model,
            request_id,
            status,
            &body,
            retry_after_seconds,
        )),
        UpstreamAnswer::Complete(bytes) => {
            if upstream_format == format {
                guarded_json_response(gateway, &model, format, with_alias(&model, bytes))
            } else {
                let value: Value = serde_json::from_slice(&bytes).map_err(|_| {
                    ApiError::upstream(
                        StatusCode::BAD_GATEWAY,
                        "upstream_error",
                        "the upstream answered with malformed JSON",
                    )
                })?;
                let translated = match format {
                    ApiFormat::OpenAi => translate::anthropic_response_to_openai(
                        &value,
                        &model.name,
                        gateway.clock.now().as_second(),
                    )?,
                    ApiFormat::Anthropic => {
                        translate::openai_response_to_anthropic(&value, &model.name)?
                    }
                };
                guarded_json_response(gateway, &model, format, Bytes::from(translated.to_string()))
            }
        }
        UpstreamAnswer::Stream(upstream) => {
            let translator = Translator::for_formats(
                format,
                upstream_format,
                &model,
                request_id,
                gateway,
                &body,
            );
            let upstream = upstream.map(|item| item.map_err(|_| ())).boxed();
            let output_guard = gateway
                .safeguards
                .stream_guard(&model, format, request_id)?;
            Ok(stream_response(
                Relay::new(
                    gateway,
                    upstream,
                    translator,
                    format,
                    upstream_format,
                    request_id,
                    (inflight, cut),
                )
                .with_output_guard(output_guard)
                .with_outcome(record.take_outcome()),
            ))
        }
    }
}

/// The gateway's own error for an upstream that refused a request. The
/// upstream's body is logged (redacted) and never relayed: it may echo the
/// upstream's key, and its 401 or 403 would read as if the client's own
/// credential had failed. A 429 stays a 429, with the upstream's
/// `Retry-After`; anything else is 502 `upstream_error` naming the status.
fn upstream_rejection(
    model: &Model,
    request_id: &str,
    status: StatusCode,
    body: &[u8],
    retry_after_seconds: Option<u32>,
) -> ApiError {
    tracing::warn!(
        request_id,
        model = %model.name,
        upstream_status = status.as_u16(),
        upstream_body = %crate::upstream::redact_secrets(&String::from_utf8_lossy(body)),
        "the upstream refused the request"
    );
    metrics::counter!("portcullis_upstream_errors_total", "kind" => "status_4xx").increment(1);
    if status == StatusCode::TOO_MANY_REQUESTS {
        return ApiError {
            retry_after_seconds: Some(retry_after_seconds.unwrap_or(1)),
            upstream_status: Some(status.as_u16()),
            ..ApiError::upstream(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_exceeded",
                format!(
                    "the upstream of model `{}` is rate limiting; retry later",
                    model.name
                ),
            )
        };
    }
    ApiError {
        upstream_status: Some(status.as_u16()),
        ..ApiError::upstream(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            format!(
                "the upstream of model `{}` refused the request with status {}",
                model.name,
                status.as_u16()
            ),
        )
    }
}

/// Runs a request's wait for the upstream unless the request is cut first
/// (an order, or the shutdown deadline); dropping the future cancels the
/// upstream request.
async fn until_cut<T>(
    cut: &CutSignal,
    work: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    tokio::select! {
        biased;
        _ = cut.token.cancelled() => Err(cut.reason().unwrap_or_else(shutdown_cut)),
        result = work => result,
    }
}

fn shutdown_cut() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "stream_cut",
        "the gateway is shutting down and ended this request",
        ErrorSource::Internal,
    )
}

/// Turns a policy decision into a refusal, or nothing when allowed. A
/// decision that could not be made is a denial, never an allow.
fn check_decision(
    gateway: &Gateway,
    model_name: &str,
    decision: Result<portcullis_policy::Decision, portcullis_policy::DecideError>,
) -> Result<(), ApiError> {
    let decision = match decision {
        Ok(decision) => decision,
        Err(error) => {
            tracing::warn!(%error, "no decision could be made; denying");
            return Err(ApiError::access_denied(
                model_name,
                &["principal_not_decidable".to_owned()],
            ));
        }
    };
    if decision.allowed {
        return Ok(());
    }
    let message = decision.denial_message(model_name).unwrap_or_default();
    Err(if decision.status == 451 {
        ApiError::new(
            StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS,
            "legal_restriction",
            format!("{message}; contact {}", gateway.config.legal.contact),
            ErrorSource::Policy,
        )
    } else {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "model_access_denied",
            message,
            ErrorSource::Policy,
        )
    })
}

// The arguments are the request's parts as `handle` holds them; bundling
// them into a one-use struct would only rename them.
#[allow(clippy::too_many_arguments)]
async fn serve_mock(
    gateway: &Arc<Gateway>,
    format: ApiFormat,
    parts: &Parts,
    body: &Map<String, Value>,
    model: &Model,
    stream: bool,
    request_id: &str,
    inflight: InflightGuard,
    cut: &CutSignal,
    record: &mut DecisionRecord,
) -> Result<Response, ApiError> {
    let plan = mock::plan_with_tool(
        body,
        &model.upstream_model,
        parts
            .headers
            .get(mock::TOOL_CALL_HEADER)
            .and_then(|v| v.to_str().ok()),
    );
    match plan.failure {
        mock::MockFailure::ServerError => {
            metrics::counter!("portcullis_upstream_errors_total", "kind" => "status_5xx")
                .increment(1);
            return Err(ApiError::upstream(
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                "the upstream answered 500",
            ));
        }
        mock::MockFailure::Hang => {
            tokio::time::sleep(gateway.config.server.upstream_response_timeout()).await;
            return Err(ApiError::upstream(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                "the upstream did not answer in time",
            ));
        }
        _ => {}
    }
    if !stream {
        // The built-in mock answers as an upstream would, but under the
        // alias, as every relayed answer is.
        let body = mock::complete_body(format, &plan, &model.name);
        return guarded_json_response(gateway, model, format, Bytes::from(body.to_string()));
    }
    let default_interval = Duration::from_millis(gateway.config.mock.token_interval_ms);
    let interval = mock::token_interval(&parts.headers, default_interval);
    let upstream = mock::stream_frames(format, plan, model.name.clone(), interval)
        .map(|item| item.map_err(|_| ()))
        .boxed();
    let output_guard = gateway.safeguards.stream_guard(model, format, request_id)?;
    Ok(stream_response(
        Relay::new(
            gateway,
            upstream,
            Translator::None,
            format,
            format,
            request_id,
            (inflight, cut.clone()),
        )
        .with_output_guard(output_guard)
        .with_outcome(record.take_outcome()),
    ))
}

/// A same-format answer with the client's alias in place of the upstream's
/// model name (see `translate::alias_model`).
fn with_alias(model: &Model, bytes: Bytes) -> Bytes {
    if model.upstream_model == model.name {
        return bytes;
    }
    let Ok(mut value) = serde_json::from_slice::<Value>(&bytes) else {
        return bytes;
    };
    if translate::alias_model(&mut value, &model.name) {
        Bytes::from(value.to_string())
    } else {
        bytes
    }
}

/// A whole answer, after the output guard has read it (see `guard`).
fn guarded_json_response(
    gateway: &Gateway,
    model: &Model,
    format: ApiFormat,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let (bytes, _output_outcome) = gateway
        .safeguards
        .guard_complete_response(model, format, bytes)?;
    Ok(json_response(bytes))
}

fn json_response(bytes: Bytes) -> Response {
    let mut response = Response::new(Body::from(bytes));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn stream_response(relay: Relay) -> Response {
    let frames = stream::unfold(relay, |mut relay| async move {
        let frame = relay.next_frame().await?;
        Some((Ok::<Bytes, std::convert::Infallible>(frame), relay))
    });
    let mut response = Response::new(Body::from_stream(frames));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// How upstream events become client events.
enum Translator {
    None,
    /// Same format, but the upstream's model name is replaced by this alias.
    Alias(String),
    OpenAiToAnthropic(OpenAiToAnthropicStream),
    AnthropicToOpenAi(AnthropicToOpenAiStream),
}

impl Translator {
    fn for_formats(
        client: ApiFormat,
        upstream: ApiFormat,
        model: &Model,
        request_id: &str,
        gateway: &Gateway,
        body: &Map<String, Value>,
    ) -> Self {
        match (client, upstream) {
            (ApiFormat::Anthropic, ApiFormat::OpenAi) => Translator::OpenAiToAnthropic(
                OpenAiToAnthropicStream::new(&model.name, &format!("msg_{request_id}")),
            ),
            (ApiFormat::OpenAi, ApiFormat::Anthropic) => {
                let include_usage = body
                    .get("stream_options")
                    .and_then(|o| o.get("include_usage"))
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                Translator::AnthropicToOpenAi(AnthropicToOpenAiStream::new(
                    &model.name,
                    &format!("chatcmpl-{request_id}"),
                    gateway.clock.now().as_second(),
                    include_usage,
                ))
            }
            _ if model.upstream_model != model.name => Translator::Alias(model.name.clone()),
            _ => Translator::None,
        }
    }
}

/// Counts a running stream in the `portcullis_active_streams` gauge for as
/// long as it lives.
struct ActiveStream;

impl ActiveStream {
    fn start() -> Self {
        metrics::gauge!("portcullis_active_streams").increment(1.0);
        ActiveStream
    }
}

impl Drop for ActiveStream {
    fn drop(&mut self) {
        metrics::gauge!("portcullis_active_streams").decrement(1.0);
    }
}

/// Relays one upstream stream to one client, event by event.
///
/// INVARIANT: every upstream event is handled as a unit. Same-format events
/// are passed on byte for byte; translated events become whole client
/// events. Nothing is merged or split, and each is yielded (and so flushed)
/// as soon as it is complete.
struct Relay {
    upstream: BoxStream<'static, Result<Bytes, ()>>,
    splitter: SseSplitter,
    translator: Translator,
    client_format: ApiFormat,
    upstream_format: ApiFormat,
    request_id: String,
    pending: VecDeque<Bytes>,
    idle_timeout: Duration,
    /// Cancelled when the stream must stop now: an order that covers it, or
    /// the shutdown deadline.
    cut: CutSignal,
    finished: bool,
    /// Holds text events until the output classifier has passed them.
    output_guard: Option<crate::guard::StreamOutputGuard>,
    /// Writes how the stream ended when the relay is dropped.
    outcome: Option<OutcomeRecorder>,
    /// How the stream ended, once it has.
    ended: Option<(portcullis_audit::RequestOutcome, u16)>,
    events_relayed: u64,
    _active: ActiveStream,
    /// Keeps the request registered while the stream runs.
    _inflight: InflightGuard,
}

impl Relay {
    fn new(
        gateway: &Gateway,
        upstream: BoxStream<'static, Result<Bytes, ()>>,
        translator: Translator,
        client_format: ApiFormat,
        upstream_format: ApiFormat,
        request_id: &str,
        (inflight, cut): (InflightGuard, CutSignal),
    ) -> Self {
        Self {
            upstream,
            splitter: SseSplitter::new(),
            translator,
            client_format,
            upstream_format,
            request_id: request_id.to_owned(),
            pending: VecDeque::new(),
            idle_timeout: gateway.config.server.stream_idle_timeout(),
            cut,
            finished: false,
            output_guard: None,
            outcome: None,
            ended: None,
            events_relayed: 0,
            _active: ActiveStream::start(),
            _inflight: inflight,
        }
    }

    fn with_output_guard(mut self, guard: Option<crate::guard::StreamOutputGuard>) -> Self {
        self.output_guard = guard;
        self
    }

    fn with_outcome(mut self, outcome: Option<OutcomeRecorder>) -> Self {
        self.outcome = outcome;
        self
    }

    /// Notes how the stream ended; the first cause wins.
    fn end_as(&mut self, outcome: portcullis_audit::RequestOutcome, status: u16) {
        self.ended.get_or_insert((outcome, status));
    }

    /// Queues client frames, through the output guard when there is one.
    fn emit(&mut self, frames: Vec<Bytes>) {
        match &mut self.output_guard {
            None => self.pending.extend(frames),
            Some(guard) => {
                let release = guard.on_frames(frames);
                self.pending.extend(release.frames);
                if release.stopped {
                    self.end_as(portcullis_audit::RequestOutcome::Stopped, 200);
                }
                self.finished |= release.stopped;
            }
        }
    }

    fn fail(&mut self, error: ApiError) {
        let outcome = if self.cut.token.is_cancelled() {
            portcullis_audit::RequestOutcome::Cut
        } else {
            portcullis_audit::RequestOutcome::Failed
        };
        self.end_as(outcome, error.status.as_u16());
        metrics::counter!("portcullis_stream_errors_total", "code" => error.code).increment(1);
        // Text still held was never screened in full: it is dropped, not sent.
        if let Some(guard) = &mut self.output_guard {
            guard.discard_held();
        }
        self.pending
            .push_back(error.sse_frame(self.client_format, &self.request_id));
        self.finished = true;
    }

    fn is_terminal(&self, event: &SseEvent) -> bool {
        match self.upstream_format {
            ApiFormat::OpenAi => event.data == "[DONE]",
            ApiFormat::Anthropic => event.event.as_deref() == Some("message_stop"),
        }
    }

    fn is_upstream_error(&self, event: &SseEvent) -> bool {
        match self.upstream_format {
            ApiFormat::Anthropic => event.event.as_deref() == Some("error"),
            ApiFormat::OpenAi => {
                event.data.starts_with("{\"error\"")
                    || (event.data.contains("\"error\"") && {
                        serde_json::from_str::<Value>(&event.data)
                            .ok()
                            .is_some_and(|v| v.get("error").is_some())
                    })
            }
        }
    }

    fn on_event(&mut self, event: SseEvent) {
        let terminal = self.is_terminal(&event);
        let upstream_error = self.is_upstream_error(&event);
        let result = match &mut self.translator {
            Translator::None => Ok(vec![event.raw.clone()]),
            Translator::Alias(alias) => Ok(vec![
                translate::alias_model_in_event(&event, alias).unwrap_or_else(|| event.raw.clone()),
            ]),
            Translator::OpenAiToAnthropic(t) => t.on_event(&event),
            Translator::AnthropicToOpenAi(t) => t.on_event(&event),
        };
        match result {
            Ok(frames) => self.emit(frames),
            Err(error) => {
                self.fail(error);
                return;
            }
        }
        if terminal || upstream_error {
            if upstream_error {
                metrics::counter!("portcullis_stream_errors_total", "code" => "upstream_error")
                    .increment(1);
            }
            self.finished = true;
        }
    }

    async fn next_frame(&mut self) -> Option<Bytes> {
        loop {
            if let Some(frame) = self.pending.pop_front() {
                self.events_relayed += 1;
                return Some(frame);
            }
            if self.finished {
                if let Some(guard) = &mut self.output_guard {
                    let release = guard.finish();
                    if !release.frames.is_empty() {
                        self.pending.extend(release.frames);
                        continue;
                    }
                }
                return None;
            }
            if let Some(event) = self.splitter.next_event() {
                self.on_event(event);
                continue;
            }
            let next = tokio::select! {
                biased;
                _ = self.cut.token.cancelled() => {
                    let error = self.cut.reason().unwrap_or_else(shutdown_cut);
                    self.fail(error);
                    continue;
                }
                _ = crate::guard::hold_back_deadline(self.output_guard.as_ref()) => {
                    if let Some(guard) = &mut self.output_guard {
                        let release = guard.on_tick();
                        self.pending.extend(release.frames);
                        if release.stopped {
                            self.end_as(portcullis_audit::RequestOutcome::Stopped, 200);
                        }
                        self.finished |= release.stopped;
                    }
                    continue;
                }
                next = tokio::time::timeout(self.idle_timeout, self.upstream.next()) => next,
            };
            match next {
                Err(_) => self.fail(ApiError::upstream(
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream_timeout",
                    "the upstream stream went silent",
                )),
                Ok(Some(Ok(chunk))) => {
                    if self.splitter.push(&chunk).is_err() {
                        self.fail(ApiError::upstream(
                            StatusCode::BAD_GATEWAY,
                            "upstream_error",
                            "the upstream sent an oversized event",
                        ));
                    }
                }
                Ok(Some(Err(()))) => {
                    metrics::counter!("portcullis_upstream_errors_total", "kind" => "stream_broken").increment(1);
                    self.fail(ApiError::upstream(
                        StatusCode::BAD_GATEWAY,
                        "upstream_error",
                        "the upstream broke off the stream",
                    ));
                }
                Ok(None) => {
                    if let Some(event) = self.splitter.finish() {
                        self.on_event(event);
                    }
                    if !self.finished {
                        metrics::counter!("portcullis_upstream_errors_total", "kind" => "stream_truncated").increment(1);
                        self.fail(ApiError::upstream(
                            StatusCode::BAD_GATEWAY,
                            "upstream_error",
                            "the upstream ended the stream early",
                        ));
                    }
                }
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let Some(mut outcome) = self.outcome.take() else {
            return;
        };
        if let Some(order_id) = self.cut.order_id() {
            outcome.add_order_id(order_id);
        }
        let (ended, status) = match self.ended {
            Some(ended) => ended,
            // Everything was relayed: the stream ran to its end.
            None if self.finished && self.pending.is_empty() => {
                (portcullis_audit::RequestOutcome::Completed, 200)
            }
            None => (portcullis_audit::RequestOutcome::ClientGone, 200),
        };
        outcome.write(ended, status, self.events_relayed);
    }
}

/// `GET /v1/models`: the models the caller may invoke, in the OpenAI list
/// format, or the Anthropic one when the client sends `anthropic-version`.
pub async fn list_models(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let request_id = request_id_of(&parts);
    let format = if parts.headers.contains_key("anthropic-version") {
        ApiFormat::Anthropic
    } else {
        ApiFormat::OpenAi
    };
    let mut record = DecisionRecord::new("models.list", &request_id, &gateway);
    let snapshot = gateway.snapshot.load_full();
    let caller = match authenticate(&gateway, &snapshot, &parts.headers).await {
        Ok(caller) => caller,
        Err(error) => {
            let response = error.into_response_for(format, &request_id);
            return match record.finish(&gateway, response.status().as_u16()).await {
                Ok(()) => response,
                Err(error) => error.into_response_for(format, &request_id),
            };
        }
    };
    record.authenticated(&caller);
    let now = gateway.clock.now();
    if let Some(entry) = record.entry() {
        entry.time = now;
        entry.snapshot_version = snapshot.version;
        entry.definition_profile = Some(snapshot.engine.profile().name().to_owned());
    }
    let (context, location) = request_context_with_evidence(&gateway.config.location, &parts, now);
    record.evidence(location, caller_attributes(&caller, &snapshot));
    let visible: Vec<&Model> = snapshot
        .engine
        .allowed_models(caller.principal_ref(), &context)
        .unwrap_or_default();
    let body = match format {
        ApiFormat::OpenAi => json!({
            "object": "list",
            "data": visible.iter().map(|m| json!({"id": m.name, "object": "model", "created": 0, "owned_by": "portcullis"})).collect::<Vec<_>>(),
        }),
        ApiFormat::Anthropic => json!({
            "data": visible.iter().map(|m| json!({"type": "model", "id": m.name, "display_name": m.name, "created_at": "1970-01-01T00:00:00Z"})).collect::<Vec<_>>(),
            "has_more": false,
            "first_id": visible.first().map(|m| m.name.clone()),
            "last_id": visible.last().map(|m| m.name.clone()),
        }),
    };
    if let Err(error) = record.finish(&gateway, 200).await {
        return error.into_response_for(format, &request_id);
    }
    json_response(Bytes::from(body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_from_either_header() {
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>);
        let cases: &[Case] = &[
            (&[("authorization", "Bearer pcl_abc")], Some("pcl_abc")),
            (&[("authorization", "bearer  pcl_abc ")], Some("pcl_abc")),
            (&[("x-api-key", "pcl_xyz")], Some("pcl_xyz")),
            (&[("authorization", "Basic Zm9v")], None),
            (&[("authorization", "Bearer ")], None),
            (&[], None),
        ];
        for (headers, expected) in cases {
            let mut map = HeaderMap::new();
            for (name, value) in *headers {
                map.insert(
                    HeaderName::from_static(name),
                    HeaderValue::from_str(value).unwrap(),
                );
            }
            assert_eq!(presented_key(&map), *expected, "{headers:?}");
        }
    }

    #[test]
    fn body_errors_are_specific() {
        let cases: &[(&[u8], &str)] = &[
            (b"{\"model\": ", "invalid_json"),
            (b"[1,2]", "invalid_json"),
            (b"{\"model\": \"\xff\"}", "invalid_encoding"),
        ];
        for (bytes, code) in cases {
            assert_eq!(parse_body(bytes).unwrap_err().code, *code);
        }
    }

    #[test]
    fn a_second_model_name_must_agree_with_the_body() {
        let body = parse_body(br#"{"model": "fable"}"#).unwrap();
        let cases = [
            ("/v1/chat/completions", None, Ok("fable")),
            ("/v1/chat/completions?model=fable", None, Ok("fable")),
            (
                "/v1/chat/completions?model=mythos",
                None,
                Err("conflicting_model"),
            ),
            (
                "/v1/chat/completions",
                Some("mythos"),
                Err("conflicting_model"),
            ),
        ];
        for (uri, header, expected) in cases {
            let mut builder = http::Request::builder().uri(uri);
            if let Some(h) = header {
                builder = builder.header("x-model", h);
            }
            let (parts, _) = builder.body(()).unwrap().into_parts();
            let got = requested_model(&parts, &body);
            let got = got.as_deref().map_err(|e| e.code);
            assert_eq!(got, expected, "{uri} {header:?}");
        }
    }
}
