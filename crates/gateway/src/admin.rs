//! The admin API: JSON resources under `/admin/v1/` on the admin listener,
//! behind a named admin's bearer token. Every write goes to the store, and
//! the snapshot is rebuilt before the write is acknowledged, so a revoked
//! key stops working the moment the call returns.

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http::{StatusCode, header};
use jiff::Timestamp;
use portcullis_domain::{ApiKey, GeneratedKey, Model, ModelDraft, Principal, PrincipalAttributes};
use portcullis_store::{Admin, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Gateway;
use crate::request_id::RequestId;

/// The OpenAPI description of this API, served at `/admin/v1/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

/// An admin API error: a status and a JSON body `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub struct AdminError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl AdminError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
}

impl From<StoreError> for AdminError {
    fn from(error: StoreError) -> Self {
        match &error {
            StoreError::NotFound { .. } => {
                Self::new(StatusCode::NOT_FOUND, "not_found", error.to_string())
            }
            StoreError::AlreadyExists { .. } => {
                Self::new(StatusCode::CONFLICT, "already_exists", error.to_string())
            }
            _ if error.is_unavailable() => {
                tracing::error!(%error, "store unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the store is unavailable; nothing was changed",
                )
            }
            _ => {
                tracing::error!(%error, "store error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "the store failed; nothing was changed",
                )
            }
        }
    }
}

impl From<crate::RefreshError> for AdminError {
    fn from(error: crate::RefreshError) -> Self {
        match error {
            crate::RefreshError::Store(error) => error.into(),
            crate::RefreshError::Policy(error) => {
                tracing::error!(%error, "the change was stored but the snapshot could not be rebuilt");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "snapshot_rebuild_failed",
                    format!("the change was stored but is not in force: {error}"),
                )
            }
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        let mut response = (self.status, Json(body)).into_response();
        // A store or audit log that cannot take writes now is expected to
        // recover by itself; tell clients when to try again.
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, http::HeaderValue::from_static("1"));
        }
        response
    }
}

type AdminResult<T> = Result<T, AdminError>;

/// Makes every admin error JSON with the request id: axum's own rejections
/// (a body past the limit, a query string or JSON body that does not parse,
/// an unknown route) answer plain text, and the handlers' JSON errors do not
/// know the request id. Error bodies are small, so buffering them is cheap;
/// successful answers pass untouched.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .map(|id| id.0.clone())
        .unwrap_or_default();
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let is_json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    let parsed = is_json
        .then(|| serde_json::from_slice::<Value>(&bytes).ok())
        .flatten()
        .filter(|value| value.get("error").is_some());
    let mut body = parsed.unwrap_or_else(|| {
        let code = match status.as_u16() {
            400 | 422 => "invalid_request",
            404 => "not_found",
            405 => "method_not_allowed",
            413 => "request_too_large",
            415 => "unsupported_media_type",
            _ if status.is_server_error() => "internal_error",
            _ => "invalid_request",
        };
        let text = String::from_utf8_lossy(&bytes);
        let message: String = text.trim().chars().take(500).collect();
        let message = if message.is_empty() {
            status.canonical_reason().unwrap_or("error").to_lowercase()
        } else {
            message
        };
        json!({"error": {"code": code, "message": message}})
    });
    if let Some(object) = body.as_object_mut() {
        object.insert("request_id".into(), Value::from(request_id));
    }
    parts.headers.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body.to_string()))
}

/// The admin who made the call, as authenticated by [`require_admin`].
#[derive(Debug, Clone)]
pub struct Actor(pub Arc<Admin>, pub RequestId);

impl Actor {
    pub fn id(&self) -> &str {
        &self.0.id
    }

    pub fn request_id(&self) -> &str {
        &self.1.0
    }
}

impl From<portcullis_audit::AuditError> for AdminError {
    fn from(error: portcullis_audit::AuditError) -> Self {
        tracing::error!(%error, "admin action could not be written to the audit log");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit_unavailable",
            format!("the change was made but could not be recorded in the audit log: {error}"),
        )
    }
}

/// Appends an admin action to the audit log and waits for its commit, so
/// the API acknowledges only recorded changes.
pub async fn audit_admin(
    gateway: &Gateway,
    actor: &Actor,
    action: &str,
    target_kind: portcullis_audit::AdminTargetKind,
    target_id: &str,
    payload: Value,
) -> AdminResult<Option<portcullis_audit::AppendReceipt>> {
    let Some(audit) = &gateway.audit else {
        return Ok(None);
    };
    let receipt = audit
        .admin_action(crate::audit::AdminAction {
            time: gateway.clock.now(),
            actor: actor.id(),
            action,
            target_kind,
            target_id,
            // The audit log's canonical JSON has no floats (screening
            // scores are the usual ones); they are kept as integers per
            // million.
            payload: crate::audit_api::floats_per_million(payload),
            request_id: Some(actor.request_id()),
        })
        .await?;
    Ok(Some(receipt))
}

/// Middleware: only a known, enabled admin's token passes.
pub async fn require_admin(
    State(gateway): State<Arc<Gateway>>,
    mut request: Request,
    next: Next,
) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_owned());
    let snapshot = gateway.snapshot.load();
    let admin = token.and_then(|token| snapshot.authenticate_admin(&token).cloned());
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    match admin {
        Some(admin) => {
            request
                .extensions_mut()
                .insert(Actor(admin, RequestId(request_id)));
            next.run(request).await
        }
        None => {
            let body = json!({"error": {"code": "unauthorized", "message": "a valid admin token is required: send `Authorization: Bearer TOKEN`"}, "request_id": request_id});
            (StatusCode::UNAUTHORIZED, Json(body)).into_response()
        }
    }
}

/// Refuses an id that is empty, longer than `max_len`, or holds anything
/// but letters, digits, `.`, `-`, `_` and `@`.
pub(crate) fn check_id(kind: &str, id: &str, max_len: usize) -> AdminResult<()> {
    let ok = !id.is_empty()
        && id.len() <= max_len
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@'));
    if ok {
        Ok(())
    } else {
        Err(AdminError::invalid(format!(
            "{kind} id `{id}` must be 1-{max_len} characters of letters, digits, `.`, `-`, `_` or `@`"
        )))
    }
}

pub(crate) fn require_writer(actor: &Actor) -> AdminResult<()> {
    if actor.0.role == portcullis_store::AdminRole::ComplianceOfficer {
        return Err(AdminError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the compliance_officer role is read-only",
        ));
    }
    Ok(())
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> AdminResult<T> {
    serde_json::from_slice(body).map_err(|e| AdminError::invalid(format!("invalid JSON body: {e}")))
}

// ---- models -------------------------------------------------------------

fn model_json(model: &Model) -> Value {
    serde_json::to_value(model).unwrap_or(Value::Null)
}

pub async fn list_models(State(gateway): State<Arc<Gateway>>) -> Json<Value> {
    let snapshot = gateway.snapshot.load();
    Json(json!({"data": snapshot.models_in_order().map(|m| model_json(m)).collect::<Vec<_>>()}))
}

pub async fn get_model(
    State(gateway): State<Arc<Gateway>>,
    Path(name): Path<String>,
) -> AdminResult<Json<Value>> {
    let snapshot = gateway.snapshot.load();
    let model = snapshot.model(&name).ok_or_else(|| {
        AdminError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("model `{name}` not found"),
        )
    })?;
    Ok(Json(model_json(model)))
}

/// A literal upstream key would be stored in plain text in the model's
/// definition (and in every backup of the store); the key is named by the
/// environment variable that holds it instead.
fn refuse_literal_api_key(draft: &ModelDraft) -> AdminResult<()> {
    if draft.api_key.is_some() {
        return Err(AdminError::invalid(
            "`api_key` is not accepted: the store would keep it in plain text; name the environment variable that holds it in `api_key_env`",
        ));
    }
    Ok(())
}

pub async fn create_model(
    State(gateway): State<Arc<Gateway>>,
    Extension(actor): Extension<Actor>,
    body: axum::body::Bytes,
) -> AdminResult<(StatusCode, Json<Value>)> {
    require_writer(&actor)?;
    let draft: ModelDraft = parse_json(&body)?;
    refuse_literal_api_key(&draft)?;
    let model = draft
        .validate()
        .map_err(|e| AdminError::invalid(e.to_string()))?;
    gateway
        .store
        .insert_model(&model, gateway.clock.now())
        .await?;
    gateway.refresh().await?;
    audit_admin(
        &gateway,
        &actor,
        "create",
        portcullis_audit::AdminTargetKind::Model,
        &model.name,
        model_json(&model),
    )
    .await?;
    crate::governance::record_created_model(&gateway, &actor, &model).await?;
    tracing::info!(actor = %actor.id(), model = %model.name, "model created");
    Ok((StatusCode::CREATED, Json(model_json(&model))))
}

pub async fn update_model(
    State(gateway): State<Arc<Gateway>>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> AdminResult<Json<Value>> {
    require_writer(&actor)?;
    let draft: ModelDraft = parse_json(&body)?;
    if draft.name != name {
        return Err(AdminError::invalid(format!(
            "the body names model `{}` but the path names `{name}`",
            draft.name
        )));
    }
    refuse_literal_api_key(&draft)?;
    let model = draft
        .validate()
        .map_err(|e| AdminError::invalid(e.to_string()))?;
    // A release state change is a governed transition with its own record.
    if let Some(current) = gateway.snapshot.load().model(&name)
        && current.state != model.state
    {
        return Err(AdminError::new(
            StatusCode::CONFLICT,
            "state_change_needs_transition",
            format!(
                "model `{name}` is `{}`; change its state with POST /admin/v1/models/{name}/transitions, not PUT",
                current.state.as_str()
            ),
        ));
    }
    gateway
        .store
        .update_model(&model, gateway.clock.now())
        .await?;
    gateway.refresh().await?;
    audit_admin(
        &gateway,
        &actor,
        "update",
        portcullis_audit::AdminTargetKind::Model,
        &model.name,
        model_json(&model),
    )
    .await?;
    tracing::info!(actor = %actor.id(), model = %model.name, "model updated");
    Ok(Json(model_json(&model)))
}

pub async fn delete_model(
    State(gateway): State<Arc<Gateway>>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
) -> AdminResult<StatusCode> {
    require_writer(&actor)?;
    gateway.store.delete_model(&name).await?;
    gateway.refresh().await?;
    audit_admin(
        &gateway,
        &actor,
        "delete",
        portcullis_audit::AdminTargetKind::Model,
        &name,
        Value::Null,
    )
    .await?;
    tracing::info!(actor = %actor.id(), model = %name, "model deleted");
    Ok(StatusCode::NO_CONTENT)
}

// ---- principals ---------------------------------------------------------

fn principal_json(principal: &Principal) -> Value {
    json!({
        "id": principal.id,
        "display_name": principal.display_name,
        "attributes": principal.attributes,
        "created_at": principal.created_at.to_string(),
    })
}

/// Reads a principal document: the attribute contract, optionally with a
/// top-level `display_name`.
fn principal_document(body: &[u8]) -> AdminResult<(String, PrincipalAttributes)> {
    let raw: PrincipalAttributes = parse_json(body)?;
    let mut attributes = portcullis_policy::validate_attributes(&raw)
        .map_err(|e| AdminError::invalid(e.to_string()))?;
    let display_name = match attributes.unverified.remove("display_name") {
        Some(Value::String(name)) => name,
        Some(_) => return Err(AdminError::invalid("`display_name` must be a string")),
        None => attributes.id.clone(),
    };
    check_id("principal", &attributes.id, 128)?;
    Ok((display_name, attributes))
}

pub async fn list_principals(State(gateway): State<Arc<Gateway>>) -> Json<Value> {
    let snapshot = gateway.snapshot.load();
    let mut principals: Vec<&Arc<Principal>> = snapshot.principals.values().collect();
    principals.sort_by(|a, b| a.id.cmp(&b.id));
    Json(json!({"data": principals.into_iter().map(|p| principal_json(p)).collect::<Vec<_>>()}))
}

pub async fn get_principal(
    State(gateway): State<Arc<Gateway>>,
    Path(id): Path<String>,
) -> AdminResult<Json<Value>> {
    let snapshot = gateway.snapshot.load();
    let principal = snapshot.principals.get(&id).ok_or_else(|| {
        AdminError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("principal `{id}` not found"),
        )
    })?;
    Ok(Json(principal_json(principal)))
}

pub async fn create_principal(
    State(gateway): State<Arc<Gateway>>,
    Extension(actor): Extension<Actor>,
    body: axum::body::Bytes,
) -> AdminResult<(StatusCode, Json<Value>)> {
    require_writer(&actor)?;
    let (display_name, mut attributes) = principal_document(&body)?;
    // DESIGN: an unscreened principal is screened on first sight when name
    // claims exist, so it is never stored unscreened while a list is known.
    crate::screening::screen_on_first_sight(&gateway.store, &mut attributes)
        .await
        .map_err(|error| {
            AdminError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "screening_unavailable",
                format!("cannot screen the principal: {error}"),
            )
        })?;
    gateway
        .store
        .insert_principal(&display_name, &attributes, gateway.clock.now())
        .await?;
    gateway.refresh().await?;
    audit_admin(
        &gateway,
        &actor,
        "create",
        portcullis_audit::AdminTargetKind::Principal,
        &attributes.id,
        json!({"display_name": display_name, "attributes": attributes}),
    )
    .await?;
    tracing::info!(actor = %actor.id(), principal = %attributes.id, "principal created");
    let snapshot = gateway.snapshot.load();
    let principal = snapshot
        .principals
        .get(&attributes.id)
        .map(|p| principal_json(p))
        .unwrap_or(Value::Null);
    Ok((StatusCode::CREATED, Json(principal)))
}

pub async fn update_principal(
    State(gateway): State<Arc<Gateway>>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> AdminResult<Json<Value>> {
    require_writer(&actor)?;
    let (display_name, attributes) = principal_document(&body)?;
    if attributes.id != id {
        return Err(AdminError::invalid(format!(
            "the body names principal `{}` but the path names `{id}`",
            attributes.id
        )));
    }
    gateway
        .store
        .update_principal(&display_name, &attributes, gateway.clock.now())
        .await?;
    gateway.refresh().await?;
    audit_admin(
        &gateway,
        &actor,
        "update",
        portcullis_audit::AdminTargetKind::Principal,
        &id,
        json!({"display_name": display_name, "attributes": attributes}),
    )
    .await?;
    tracing::info!(actor = %actor.id(), principal = %id, "principal updated");
    let snapshot = gateway.snapshot.load();
    Ok(Json(
        snapshot
            .principals
            .get(&id)
            .map(|p| principal_json(p))
            .unwrap_or(Value::Null),
    ))
}

pub async fn delete_principal(
    State(gateway): State<Arc<Gateway>>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> AdminResult<StatusCode> {
    require_writer(&actor)?;
    gateway.store.delete_principal(&id).await?;
    gateway.refresh().await?;
    audit_admin(
        &gateway,
        &actor,
        "delete",
        portcullis_audit::AdminTargetKind::Principal,
        &id,
        Value::Null,
    )
    .await?;
    tracing::info!(actor = %actor.id(), principal = %id, "principal deleted");
    Ok(StatusCode::NO_CONTENT)
}

// ---- keys ---------------------------------------------------------------

fn key_json(key: &ApiKey) -> Value {
    json!({
        "id": key.id,
        "principal_id": key.principal_id,
        "name": key.name,
        "display_prefix": key.display_prefix,
        "created_at": key.created_at.to_string(),
        "expires_at": key.expires_at.map(|t| t.to_string()),
        "revoked_at": key.revoked_at.map(|t| t.to_string()),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    pub principal_id: String,
    pub name: String,
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
}

#[derive(Debug, Deserialize)]
pub struct KeyFilter {
    pub principal: Option<String>,
}

pub async fn list_keys(
    State(gateway): State<Arc<Gateway>>,
    Query(filter): Query<KeyFilter>,
) -> AdminResult<Json<Value>> {
    let contents = gateway.store.load().await?;
    let keys: Vec<Value> = contents
        .keys
        .iter()
        .filter(|k| {
            filter
                .principal
                .as_ref()
                .is_none_or(|p| &k.principal_id == p)
        })
        .map(key_json)
        .collect();
    Ok(Json(json!({"data": keys})))
}

pub async fn get_key(
    State(gateway): State<Arc<Gateway>>,
    Path(id): Path<String>,
) -> AdminResult<Json<Value>> {
    let key = gateway.store.get_key(&id).await?.ok_or_else(|| {
        AdminError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("key `{id}` not found"),
        )
    })?;
    Ok(Json(key_json(&key)))
}

/// Creates a key and returns its secret. This is the only time the secret
/// is ever shown; only its SHA-256 is stored.
pub async fn create_key(
    State(gateway): State<Arc<Gateway>>,
    Extension(actor): Extension<Actor>,
    body: axum::body::Bytes,
) -> AdminResult<(StatusCode, Json<Value>)> {
    require_writer(&actor)?;
    let request: CreateKey = parse_json(&body)?;
    if request.name.trim().is_empty() || request.name.len() > 128 {
        return Err(AdminError::invalid("key `name` must be 1-128 characters"));
    }
    let now = gateway.clock.now();
    if request.expires_at.is_some_and(|t| t <= now) {
        return Err(AdminError::invalid("`expires_at` must be in the future"));
    }
    let (key, secret) = issue_key(
        &request.principal_id,
        &request.name,
        request.expires_at,
        now,
    )?;
    gateway.store.insert_key(&key).await?;
    gateway.refresh().await?;
    audit_admin(
        &gateway,
        &actor,
        "create",
        portcullis_audit::AdminTargetKind::Key,
        &key.id,
        key_json(&key),
    )
    .await?;
    tracing::info!(actor = %actor.id(), key = %key.id, principal = %key.principal_id, "key created");
    let mut body = key_json(&key);
    body["secret"] = Value::String(secret);
    Ok((StatusCode::CREATED, Json(body)))
}

/// Generates a new key for a principal: the stored record and the secret.
pub fn issue_key(
    principal_id: &str,
    name: &str,
    expires_at: Option<Timestamp>,
    now: Timestamp,
) -> AdminResult<(ApiKey, String)> {
    let generated = GeneratedKey::generate().map_err(|_| {
        AdminError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "no randomness available",
        )
    })?;
    let id = format!("key_{}", &generated.secret_sha256[..16]);
    let key = ApiKey {
        id,
        principal_id: principal_id.to_owned(),
        name: name.to_owned(),
        display_prefix: generated.display_prefix,
        secret_sha256: generated.secret_sha256,
        created_at: now,
        expires_at,
        revoked_at: None,
    };
    Ok((key, generated.secret))
}

pub async fn revoke_key(
    State(gateway): State<Arc<Gateway>>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> AdminResult<Json<Value>> {
    require_writer(&actor)?;
    gateway.store.revoke_key(&id, gateway.clock.now()).await?;
    gateway.refresh().await?;
    audit_admin(
        &gateway,
        &actor,
        "revoke",
        portcullis_audit::AdminTargetKind::Key,
        &id,
        Value::Null,
    )
    .await?;
    tracing::info!(actor = %actor.id(), key = %id, "key revoked");
    let key = gateway.store.get_key(&id).await?;
    Ok(Json(key.as_ref().map(key_json).unwrap_or(Value::Null)))
}

pub async fn delete_key(
    State(gateway): State<Arc<Gateway>>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> AdminResult<StatusCode> {
    require_writer(&actor)?;
    gateway.store.delete_key(&id).await?;
    gateway.refresh().await?;
    audit_admin(
        &gateway,
        &actor,
        "delete",
        portcullis_audit::AdminTargetKind::Key,
        &id,
        Value::Null,
    )
    .await?;
    tracing::info!(actor = %actor.id(), key = %id, "key deleted");
    Ok(StatusCode::NO_CONTENT)
}

// ---- findings -------------------------------------------------------------

fn finding_json(finding: &portcullis_store::StoredFinding) -> Value {
    serde_json::to_value(finding).unwrap_or(Value::Null)
}

pub async fn list_findings(State(gateway): State<Arc<Gateway>>) -> AdminResult<Json<Value>> {
    let findings = gateway.store.list_findings().await?;
    Ok(Json(
        json!({"data": findings.iter().map(finding_json).collect::<Vec<_>>()}),
    ))
}

pub async fn get_finding(
    State(gateway): State<Arc<Gateway>>,
    Path(id): Path<String>,
) -> AdminResult<Json<Value>> {
    let finding = gateway.store.get_finding(&id).await?.ok_or_else(|| {
        AdminError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("finding `{id}` not found"),
        )
    })?;
    Ok(Json(finding_json(&finding)))
}

/// Records a reported safeguard bypass with status `reported`.
pub async fn create_finding(
    State(gateway): State<Arc<Gateway>>,
    Extension(actor): Extension<Actor>,
    body: axum::body::Bytes,
) -> AdminResult<(StatusCode, Json<Value>)> {
    require_writer(&actor)?;
    let document: crate::guard::FindingDocument = parse_json(&body)?;
    document.validate().map_err(AdminError::invalid)?;
    if let Some(model) = &document.model
        && gateway.snapshot.load().model(model).is_none()
    {
        return Err(AdminError::invalid(format!(
            "model `{model}` does not exist"
        )));
    }
    let id = match &document.id {
        Some(id) => id.clone(),
        None => crate::guard::new_finding_id().map_err(|error| {
            AdminError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                format!("no randomness for a finding id: {error}"),
            )
        })?,
    };
    let prompts = serde_json::to_value(&document.prompts)
        .map_err(|error| AdminError::invalid(error.to_string()))?;
    let severity = document.severity_name();
    let finding = gateway
        .store
        .insert_finding(
            portcullis_store::NewFinding {
                id: &id,
                model: document.model.as_deref(),
                reporter: &document.reporter,
                severity: &severity,
                prompts: &prompts,
                notes: &document.notes,
                created_by: actor.id(),
            },
            gateway.clock.now(),
        )
        .await?;
    let value = finding_json(&finding);
    audit_admin(
        &gateway,
        &actor,
        "create",
        portcullis_audit::AdminTargetKind::Finding,
        &finding.id,
        value.clone(),
    )
    .await?;
    tracing::info!(actor = %actor.id(), finding = %finding.id, "finding recorded");
    Ok((StatusCode::CREATED, Json(value)))
}

pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}

pub async fn metrics(State(gateway): State<Arc<Gateway>>) -> Response {
    let text = gateway
        .metrics
        .as_ref()
        .map(|h| h.render())
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
