//! The audit entry types and their canonical JSON form.
//!
//! An entry is stored as the canonical JSON of its fields plus `kind` (which
//! variant it is) and `index` (its position in its log, which the writer
//! assigns). Binding the position into the hashed bytes is what lets the
//! verifier tell a reordered entry from an edited one.

use std::borrow::Cow;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::canonical::{CanonicalJsonError, canonical_members_split};

/// The hashed key that holds an entry's position in its log.
pub(crate) const INDEX_KEY: &str = "index";

/// The largest canonical entry the log accepts, in bytes. Every request
/// field that reaches an entry is bounded far below this (see the README's
/// request bounds); the cap is the backstop that keeps one entry from
/// growing the append-only log without limit, whatever a caller puts in.
pub const MAX_ENTRY_BYTES: usize = 1024 * 1024;

/// Whether a request was admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Allow,
    Deny,
}

impl Decision {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        }
    }
}

/// What the safeguards said about the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SafeguardVerdict {
    Allow,
    Flag,
    Block,
}

/// How much of the prompt and response an entry keeps. The default keeps
/// nothing; operators opt in to a digest or to the full text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentRecording {
    #[default]
    None,
    Sha256,
    Full,
}

/// Where a request was placed, and on what evidence: location decides
/// export-control outcomes, so every decision records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationEvidence {
    /// ISO 3166-1 alpha-2, as used by the decision; absent when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// ISO 3166-2, as used by the decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subdivision: Option<String>,
    pub source: LocationSource,
    /// The TCP peer's address (a trusted proxy when the source is
    /// `edge_header`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_address: Option<String>,
    /// What a trusted edge sent when it could not be used, bounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unusable_value: Option<String>,
}

/// Where the location of a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LocationSource {
    /// The configured headers, sent by a trusted proxy.
    EdgeHeader,
    /// `location.default_country`.
    ConfiguredDefault,
    /// No signal and no default: restricted models deny.
    Unknown,
    /// A trusted edge sent a value that is not a country code: treated as
    /// unknown.
    Unusable,
}

/// How the caller was identified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityEvidence {
    pub source: IdentitySource,
    /// The OIDC issuer that signed the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The token's `jti`, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_jti: Option<String>,
    /// When the token's signature and claims were checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentitySource {
    ApiKey,
    Oidc,
}

/// The principal attributes export-control rules read, as they stood when
/// the request was decided.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AttributeEvidence {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    pub employee: bool,
    /// Verified nationalities; empty when unverified.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nationalities: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub us_person_basis: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assurance_level: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification_expires_at: Option<Timestamp>,
    /// The denied-party screening status.
    pub screening: String,
}

/// One decision on the data plane: who asked for which model, what was
/// decided, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestDecisionEntry {
    /// The `x-request-id` of the request.
    pub request_id: String,
    /// When the decision was made.
    pub time: Timestamp,
    /// The authenticated principal, absent when authentication failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_id: Option<String>,
    /// The API key id or token id that authenticated the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<String>,
    /// The model name the client asked for, absent when the body had none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The operation, e.g. `chat.completions`, `messages` or `models.list`.
    pub action: String,
    pub decision: Decision,
    /// The HTTP status returned to the client.
    pub status: u16,
    /// The `@id`s of the policies that decided, in the order reported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_ids: Vec<String>,
    /// The ids of the orders that decided.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub order_ids: Vec<String>,
    /// The definition profile (`ear`, `itar`, `citizens_only`) in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition_profile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safeguard_verdict: Option<SafeguardVerdict>,
    /// The safeguard score as an integer per million (0 to 1,000,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safeguard_score_ppm: Option<u32>,
    /// The written rules the safeguard verdict applies, by version (for
    /// `cyber`, `cyber-constitution v1.0`), so a verdict can be argued
    /// against the text in force when it was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safeguard_constitution: Option<String>,
    /// The store version of the snapshot that decided.
    pub snapshot_version: i64,
    /// The replica that decided.
    pub replica: String,
    /// Where the request was placed and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Box<LocationEvidence>>,
    /// How the caller was identified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Box<IdentityEvidence>>,
    /// The attributes the policies read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Box<AttributeEvidence>>,
    /// Hex SHA-256 of the prompt, when content recording is `sha256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_sha256: Option<String>,
    /// Hex SHA-256 of the response, when content recording is `sha256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_sha256: Option<String>,
    /// The prompt, when content recording is `full`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// The response, when content recording is `full`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
}

impl RequestDecisionEntry {
    /// Fills the content fields according to the operator's recording mode.
    /// With `None` the content fields are cleared, so nothing leaks by
    /// accident.
    pub fn record_content(&mut self, mode: ContentRecording, prompt: &str, response: Option<&str>) {
        let digest = |text: &str| hex::encode(Sha256::digest(text.as_bytes()));
        self.prompt_sha256 = None;
        self.response_sha256 = None;
        self.prompt = None;
        self.response = None;
        match mode {
            ContentRecording::None => {}
            ContentRecording::Sha256 => {
                self.prompt_sha256 = Some(digest(prompt));
                self.response_sha256 = response.map(digest);
            }
            ContentRecording::Full => {
                self.prompt = Some(prompt.to_owned());
                self.response = response.map(str::to_owned);
            }
        }
    }
}

/// How an admitted request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestOutcome {
    /// The whole answer reached the client.
    Completed,
    /// An order, or the shutdown deadline, stopped the request.
    Cut,
    /// The safeguards stopped the answer part-way.
    Stopped,
    /// The upstream or the gateway failed after admission.
    Failed,
    /// The client went away before the answer was complete.
    ClientGone,
}

impl RequestOutcome {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestOutcome::Completed => "completed",
            RequestOutcome::Cut => "cut",
            RequestOutcome::Stopped => "stopped",
            RequestOutcome::Failed => "failed",
            RequestOutcome::ClientGone => "client_gone",
        }
    }
}

/// How an admitted request ended, written after its decision entry. The
/// decision entry is durable before the first byte of the answer; this one
/// follows by group commit once the answer is over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestOutcomeEntry {
    /// The `x-request-id` of the request, as in its decision entry.
    pub request_id: String,
    /// When the request ended.
    pub time: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The operation, as in the decision entry.
    pub action: String,
    pub outcome: RequestOutcome,
    /// The HTTP status the client saw.
    pub status: u16,
    /// The orders that cut the request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub order_ids: Vec<String>,
    /// Stream events (or 1 for a whole answer) relayed to the client.
    pub events_relayed: u64,
    /// Milliseconds from admission to the end.
    pub duration_ms: u64,
    /// The replica that served the request.
    pub replica: String,
}

/// What kind of object an admin action touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminTargetKind {
    Model,
    Principal,
    Key,
    Policy,
    Order,
    Review,
    Finding,
    ScreeningClearance,
}

impl AdminTargetKind {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminTargetKind::Model => "model",
            AdminTargetKind::Principal => "principal",
            AdminTargetKind::Key => "key",
            AdminTargetKind::Policy => "policy",
            AdminTargetKind::Order => "order",
            AdminTargetKind::Review => "review",
            AdminTargetKind::Finding => "finding",
            AdminTargetKind::ScreeningClearance => "screening_clearance",
        }
    }
}

/// One change made through the control plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminActionEntry {
    pub time: Timestamp,
    /// Who made the change (the admin token's subject or an operator id).
    pub actor: String,
    /// What was done, e.g. `create`, `update`, `delete`, `lift`, `revoke`.
    pub action: String,
    pub target_kind: AdminTargetKind,
    pub target_id: String,
    /// The change itself. Floats are rejected when the entry is appended.
    pub payload: Value,
    /// The admin API request id, when the change came through the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The replica that accepted the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
}

/// Any audit entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AuditEntry {
    RequestDecision(RequestDecisionEntry),
    AdminAction(AdminActionEntry),
    RequestOutcome(RequestOutcomeEntry),
}

/// Which variant an entry is, for filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    RequestDecision,
    AdminAction,
    RequestOutcome,
}

impl EntryKind {
    /// The stored spelling, equal to the entry's `kind` field.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::RequestDecision => "request_decision",
            EntryKind::AdminAction => "admin_action",
            EntryKind::RequestOutcome => "request_outcome",
        }
    }
}

impl From<RequestDecisionEntry> for AuditEntry {
    fn from(entry: RequestDecisionEntry) -> Self {
        AuditEntry::RequestDecision(entry)
    }
}

impl From<RequestOutcomeEntry> for AuditEntry {
    fn from(entry: RequestOutcomeEntry) -> Self {
        AuditEntry::RequestOutcome(entry)
    }
}

impl From<AdminActionEntry> for AuditEntry {
    fn from(entry: AdminActionEntry) -> Self {
        AuditEntry::AdminAction(entry)
    }
}

impl AuditEntry {
    pub fn kind(&self) -> EntryKind {
        match self {
            AuditEntry::RequestDecision(_) => EntryKind::RequestDecision,
            AuditEntry::AdminAction(_) => EntryKind::AdminAction,
            AuditEntry::RequestOutcome(_) => EntryKind::RequestOutcome,
        }
    }

    pub fn time(&self) -> Timestamp {
        match self {
            AuditEntry::RequestDecision(entry) => entry.time,
            AuditEntry::AdminAction(entry) => entry.time,
            AuditEntry::RequestOutcome(entry) => entry.time,
        }
    }

    /// The canonical JSON stored and hashed for this entry at `index`.
    pub fn to_canonical_json(&self, index: u64) -> Result<String, AuditEntryError> {
        Ok(PreparedEntry::new(self)?.canonical_json_at(index))
    }

    /// The values of the searchable columns, derived from the entry alone so
    /// that the verifier can recompute and compare them.
    pub(crate) fn indexed_columns(&self) -> IndexedColumns {
        let time_micros = self.time().as_microsecond();
        match self {
            AuditEntry::RequestDecision(entry) => IndexedColumns {
                time_micros,
                kind: EntryKind::RequestDecision.as_str(),
                request_id: Some(entry.request_id.clone()),
                principal_id: entry.principal_id.clone(),
                model: entry.model.clone(),
                decision: Some(entry.decision.as_str()),
                order_ids: order_ids_column(&entry.order_ids),
                actor: None,
            },
            AuditEntry::RequestOutcome(entry) => IndexedColumns {
                time_micros,
                kind: EntryKind::RequestOutcome.as_str(),
                request_id: Some(entry.request_id.clone()),
                principal_id: entry.principal_id.clone(),
                model: entry.model.clone(),
                decision: None,
                order_ids: order_ids_column(&entry.order_ids),
                actor: None,
            },
            AuditEntry::AdminAction(entry) => {
                let target = Some(entry.target_id.clone());
                IndexedColumns {
                    time_micros,
                    kind: EntryKind::AdminAction.as_str(),
                    request_id: entry.request_id.clone(),
                    principal_id: target
                        .clone()
                        .filter(|_| entry.target_kind == AdminTargetKind::Principal),
                    model: target
                        .clone()
                        .filter(|_| entry.target_kind == AdminTargetKind::Model),
                    decision: None,
                    order_ids: (entry.target_kind == AdminTargetKind::Order)
                        .then(|| order_ids_column(std::slice::from_ref(&entry.target_id)))
                        .flatten(),
                    actor: Some(entry.actor.clone()),
                }
            }
        }
    }

    /// The order ids this entry is about: the deciding orders of a request,
    /// or the order an admin action touched.
    pub fn order_ids(&self) -> Vec<&str> {
        match self {
            AuditEntry::RequestDecision(entry) => {
                entry.order_ids.iter().map(String::as_str).collect()
            }
            AuditEntry::RequestOutcome(entry) => {
                entry.order_ids.iter().map(String::as_str).collect()
            }
            AuditEntry::AdminAction(entry) if entry.target_kind == AdminTargetKind::Order => {
                vec![entry.target_id.as_str()]
            }
            AuditEntry::AdminAction(_) => Vec::new(),
        }
    }
}

/// The stored form of a list of order ids: a JSON array, or NULL when empty.
fn order_ids_column(order_ids: &[String]) -> Option<String> {
    if order_ids.is_empty() {
        None
    } else {
        serde_json::to_string(order_ids).ok()
    }
}

/// The denormalised columns stored beside each entry for search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IndexedColumns {
    pub time_micros: i64,
    pub kind: &'static str,
    pub request_id: Option<String>,
    /// The request's principal, or the principal an admin action touched.
    pub principal_id: Option<String>,
    /// The request's model, or the model an admin action touched.
    pub model: Option<String>,
    pub decision: Option<&'static str>,
    pub order_ids: Option<String>,
    /// The admin who acted.
    pub actor: Option<String>,
}

/// The fields of a stored entry that determine its searchable columns,
/// borrowed from the stored text. The verifier reads entries through this
/// view instead of building a full [`AuditEntry`], which keeps verification
/// of large logs fast; the unit tests pin it to [`AuditEntry::indexed_columns`].
#[derive(Debug, Deserialize)]
pub(crate) struct ColumnView<'a> {
    pub index: Option<u64>,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    time: Cow<'a, str>,
    #[serde(default, borrow)]
    request_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    principal_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    decision: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    order_ids: Vec<Cow<'a, str>>,
    #[serde(default, borrow)]
    actor: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    target_kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    target_id: Option<Cow<'a, str>>,
}

impl ColumnView<'_> {
    /// The searchable columns the writer stores for this entry.
    pub fn indexed_columns(&self) -> Result<IndexedColumns, String> {
        let time: Timestamp = self
            .time
            .parse()
            .map_err(|error| format!("invalid `time`: {error}"))?;
        let owned = |value: &Option<Cow<'_, str>>| value.as_deref().map(str::to_owned);
        match self.kind.as_ref() {
            "request_decision" => {
                let decision = match self.decision.as_deref() {
                    Some("allow") => Decision::Allow,
                    Some("deny") => Decision::Deny,
                    _ => return Err("missing or unknown `decision`".to_owned()),
                };
                let order_ids: Vec<String> =
                    self.order_ids.iter().map(|id| id.to_string()).collect();
                Ok(IndexedColumns {
                    time_micros: time.as_microsecond(),
                    kind: EntryKind::RequestDecision.as_str(),
                    request_id: owned(&self.request_id),
                    principal_id: owned(&self.principal_id),
                    model: owned(&self.model),
                    decision: Some(decision.as_str()),
                    order_ids: order_ids_column(&order_ids),
                    actor: None,
                })
            }
            "request_outcome" => {
                let order_ids: Vec<String> =
                    self.order_ids.iter().map(|id| id.to_string()).collect();
                Ok(IndexedColumns {
                    time_micros: time.as_microsecond(),
                    kind: EntryKind::RequestOutcome.as_str(),
                    request_id: owned(&self.request_id),
                    principal_id: owned(&self.principal_id),
                    model: owned(&self.model),
                    decision: None,
                    order_ids: order_ids_column(&order_ids),
                    actor: None,
                })
            }
            "admin_action" => {
                let target_kind = self.target_kind.as_deref().unwrap_or_default();
                let target = |kind: AdminTargetKind| {
                    (target_kind == kind.as_str())
                        .then(|| owned(&self.target_id))
                        .flatten()
                };
                Ok(IndexedColumns {
                    time_micros: time.as_microsecond(),
                    kind: EntryKind::AdminAction.as_str(),
                    request_id: owned(&self.request_id),
                    principal_id: target(AdminTargetKind::Principal),
                    model: target(AdminTargetKind::Model),
                    decision: None,
                    order_ids: target(AdminTargetKind::Order)
                        .and_then(|order_id| order_ids_column(&[order_id])),
                    actor: owned(&self.actor),
                })
            }
            other => Err(format!("unknown kind `{other}`")),
        }
    }
}

/// Why an entry cannot be appended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditEntryError {
    #[error(transparent)]
    Canonical(#[from] CanonicalJsonError),
    #[error("audit entry did not serialise to a json object")]
    NotAnObject,
    #[error("audit entry must not have its own `index` field")]
    ReservedIndexField,
    #[error("audit entry is {bytes} bytes, over the {max}-byte cap")]
    TooLarge { bytes: usize, max: usize },
}

/// An entry already validated and rendered, waiting only for its position.
/// Callers render entries on their own task so that the single writer task
/// only concatenates strings.
#[derive(Debug, Clone)]
pub(crate) struct PreparedEntry {
    members_before_index: String,
    members_after_index: String,
    pub columns: IndexedColumns,
}

impl PreparedEntry {
    pub fn new(entry: &AuditEntry) -> Result<Self, AuditEntryError> {
        let value = serde_json::to_value(entry)
            .map_err(|error| CanonicalJsonError::Serialize(error.to_string()))?;
        let Value::Object(object) = value else {
            return Err(AuditEntryError::NotAnObject);
        };
        if object.contains_key(INDEX_KEY) {
            return Err(AuditEntryError::ReservedIndexField);
        }
        let (members_before_index, members_after_index) =
            canonical_members_split(&object, INDEX_KEY)?;
        let bytes = members_before_index.len() + members_after_index.len();
        if bytes > MAX_ENTRY_BYTES {
            return Err(AuditEntryError::TooLarge {
                bytes,
                max: MAX_ENTRY_BYTES,
            });
        }
        Ok(Self {
            members_before_index,
            members_after_index,
            columns: entry.indexed_columns(),
        })
    }

    /// The canonical JSON of the entry with `"index": index` inserted in its
    /// sorted place.
    pub fn canonical_json_at(&self, index: u64) -> String {
        let mut out = String::with_capacity(
            self.members_before_index.len() + self.members_after_index.len() + 32,
        );
        out.push('{');
        if !self.members_before_index.is_empty() {
            out.push_str(&self.members_before_index);
            out.push(',');
        }
        out.push_str("\"index\":");
        out.push_str(&index.to_string());
        if !self.members_after_index.is_empty() {
            out.push(',');
            out.push_str(&self.members_after_index);
        }
        out.push('}');
        out
    }
}

/// An entry as stored: its log, position, leaf hash and content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEntry {
    pub origin: String,
    pub index: u64,
    /// Hex SHA-256(0x00 ‖ canonical entry).
    pub leaf_hash: String,
    pub entry: AuditEntry,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::canonical_json_of_value;
    use serde_json::json;

    fn sample_request() -> RequestDecisionEntry {
        RequestDecisionEntry {
            request_id: "req-1".to_owned(),
            time: "2026-11-20T22:21:00Z".parse().unwrap(),
            principal_id: Some("alice".to_owned()),
            credential_id: Some("key-1".to_owned()),
            model: Some("fable".to_owned()),
            action: "chat.completions".to_owned(),
            decision: Decision::Deny,
            status: 451,
            policy_ids: vec![],
            order_ids: vec!["ord-1".to_owned()],
            definition_profile: Some("ear".to_owned()),
            safeguard_verdict: Some(SafeguardVerdict::Allow),
            safeguard_score_ppm: Some(12_500),
            safeguard_constitution: None,
            snapshot_version: 42,
            replica: "r1".to_owned(),
            location: None,
            identity: None,
            attributes: None,
            prompt_sha256: None,
            response_sha256: None,
            prompt: None,
            response: None,
        }
    }

    #[test]
    fn request_decision_has_a_fixed_canonical_form() {
        let entry = AuditEntry::from(sample_request());
        assert_eq!(
            entry.to_canonical_json(7).unwrap(),
            concat!(
                r#"{"action":"chat.completions","credential_id":"key-1","decision":"deny","#,
                r#""definition_profile":"ear","index":7,"kind":"request_decision","model":"fable","#,
                r#""order_ids":["ord-1"],"principal_id":"alice","replica":"r1","request_id":"req-1","#,
                r#""safeguard_score_ppm":12500,"safeguard_verdict":"allow","snapshot_version":42,"#,
                r#""status":451,"time":"2026-11-20T22:21:00Z"}"#
            )
        );
    }

    #[test]
    fn an_entry_over_the_cap_is_refused_before_it_reaches_the_log() {
        let admin = |payload: String| {
            AuditEntry::from(AdminActionEntry {
                time: "2026-11-20T22:21:00Z".parse().unwrap(),
                actor: "admin".to_owned(),
                action: "put".to_owned(),
                target_kind: AdminTargetKind::Policy,
                target_id: "operator".to_owned(),
                payload: json!({"source": payload}),
                request_id: None,
                replica: None,
            })
        };
        assert!(PreparedEntry::new(&admin("x".repeat(MAX_ENTRY_BYTES - 1024))).is_ok());
        let refused = PreparedEntry::new(&admin("x".repeat(MAX_ENTRY_BYTES)));
        assert!(
            matches!(refused, Err(AuditEntryError::TooLarge { bytes, max }) if bytes > max && max == MAX_ENTRY_BYTES),
            "{refused:?}"
        );
    }

    #[test]
    fn prepared_entry_matches_full_canonicalisation_and_round_trips() {
        let admin = AuditEntry::from(AdminActionEntry {
            time: "2026-11-20T22:21:00.5Z".parse().unwrap(),
            actor: "admin".to_owned(),
            action: "create".to_owned(),
            target_kind: AdminTargetKind::Order,
            target_id: "ord-1".to_owned(),
            payload: json!({"reference": "BIS-2026-0521", "models": ["family:frontier"]}),
            request_id: None,
            replica: Some("r1".to_owned()),
        });
        for entry in [AuditEntry::from(sample_request()), admin] {
            let stored = entry.to_canonical_json(99).unwrap();
            let mut value = serde_json::to_value(&entry).unwrap();
            value
                .as_object_mut()
                .unwrap()
                .insert("index".to_owned(), json!(99));
            assert_eq!(stored, canonical_json_of_value(&value).unwrap());
            let parsed: AuditEntry = serde_json::from_str(&stored).unwrap();
            assert_eq!(parsed, entry);
        }
    }

    #[test]
    fn column_view_derives_the_same_columns_as_the_entry() {
        let mut entries = vec![AuditEntry::from(sample_request())];
        let mut anonymous = sample_request();
        anonymous.principal_id = None;
        anonymous.model = None;
        anonymous.order_ids = vec![];
        anonymous.decision = Decision::Allow;
        entries.push(anonymous.into());
        for target_kind in [
            AdminTargetKind::Model,
            AdminTargetKind::Principal,
            AdminTargetKind::Order,
            AdminTargetKind::Finding,
        ] {
            entries.push(AuditEntry::from(AdminActionEntry {
                time: "2026-11-20T22:21:00.123456789Z".parse().unwrap(),
                actor: "admin".to_owned(),
                action: "update".to_owned(),
                target_kind,
                target_id: "t\"1".to_owned(),
                payload: json!({"index": 3, "model": "not-a-column"}),
                request_id: Some("r".to_owned()),
                replica: None,
            }));
        }
        for entry in entries {
            let stored = entry.to_canonical_json(5).unwrap();
            let view: ColumnView<'_> = serde_json::from_str(&stored).unwrap();
            assert_eq!(view.index, Some(5));
            assert_eq!(
                view.indexed_columns().unwrap(),
                entry.indexed_columns(),
                "{stored}"
            );
        }
    }

    #[test]
    fn float_payloads_are_rejected() {
        let entry = AuditEntry::from(AdminActionEntry {
            time: Timestamp::UNIX_EPOCH,
            actor: "admin".to_owned(),
            action: "create".to_owned(),
            target_kind: AdminTargetKind::Finding,
            target_id: "f1".to_owned(),
            payload: json!({"score": 0.93}),
            request_id: None,
            replica: None,
        });
        assert!(matches!(
            entry.to_canonical_json(0),
            Err(AuditEntryError::Canonical(CanonicalJsonError::FloatNotAllowed { path })) if path == "$.payload.score"
        ));
    }

    #[test]
    fn content_recording_modes() {
        let mut entry = sample_request();
        entry.record_content(ContentRecording::Sha256, "abc", None);
        assert_eq!(
            entry.prompt_sha256.as_deref(),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(entry.prompt, None);
        entry.record_content(ContentRecording::Full, "abc", Some("def"));
        assert_eq!(
            (entry.prompt.as_deref(), entry.response.as_deref()),
            (Some("abc"), Some("def"))
        );
        assert_eq!(entry.prompt_sha256, None);
        entry.record_content(ContentRecording::None, "abc", Some("def"));
        assert_eq!((entry.prompt, entry.response), (None, None));
    }
}
