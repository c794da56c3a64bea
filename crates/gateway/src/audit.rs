//! The gateway's side of the tamper-evident audit log: opening this
//! replica's log from config, recording request decisions through group
//! commit, and appending admin actions durably before they are acknowledged.
//!
//! Each replica writes its own log, origin `portcullis/<replica id>`, into
//! the shared store. The signing key is generated on first start and its
//! public verifier key is written beside it, so `portcullis audit verify`
//! can check the log with nothing but the store and that file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use portcullis_audit::{
    AdminActionEntry, AdminTargetKind, AppendReceipt, AuditConfig, AuditEntry, AuditError,
    AuditHandle, AuditLog, ContentRecording, NoteSigner, PendingCommit, RequestDecisionEntry,
    RequestOutcomeEntry, WitnessTarget,
};
use serde_json::Value;

use crate::config::AuditSettings;

/// The key name in signed checkpoints.
pub const KEY_NAME: &str = "portcullis";

#[derive(Debug, thiserror::Error)]
pub enum AuditSetupError {
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Key(#[from] portcullis_audit::NoteError),
    #[error("cannot write `{path}`: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// This replica's audit log.
pub struct GatewayAudit {
    log: AuditLog,
    /// The log's signing key, which also signs report bundles.
    signer: NoteSigner,
    handle: AuditHandle,
    replica: String,
    content: ContentRecording,
    content_by_model: std::collections::BTreeMap<String, ContentRecording>,
}

/// The log origin of a replica.
pub fn origin_for(replica: &str) -> String {
    format!("portcullis/{replica}")
}

/// Where the key files and witness live when the config does not say.
pub fn default_paths(settings: &AuditSettings, data_dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    (
        settings
            .signing_key_file
            .clone()
            .unwrap_or_else(|| data_dir.join("audit-signing.key")),
        settings
            .verifier_key_file
            .clone()
            .unwrap_or_else(|| data_dir.join("audit-verifier.key")),
        settings
            .witness_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("audit-witness")),
    )
}

impl GatewayAudit {
    /// Opens the log for `replica`, creating the signing key, the verifier
    /// key file and the witness directory on first start.
    pub async fn open(
        settings: &AuditSettings,
        data_dir: &Path,
        store: &portcullis_store::Store,
        replica: &str,
    ) -> Result<Self, AuditSetupError> {
        let (key_file, verifier_file, witness_dir) = default_paths(settings, data_dir);
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| AuditSetupError::Io { path, source }
        };
        for dir in [
            key_file.parent(),
            verifier_file.parent(),
            Some(&*witness_dir),
        ]
        .into_iter()
        .flatten()
        .filter(|dir| !dir.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        let signer = NoteSigner::load_or_create(&key_file, KEY_NAME)?;
        let verifier = format!("{}\n", signer.verifier());
        if std::fs::read_to_string(&verifier_file).ok().as_deref() != Some(verifier.as_str()) {
            std::fs::write(&verifier_file, verifier).map_err(io(&verifier_file))?;
        }
        let config = AuditConfig {
            checkpoint_every_entries: settings.checkpoint_every_entries,
            checkpoint_interval: Duration::from_millis(settings.checkpoint_interval_ms),
            commit_interval: Duration::from_millis(settings.commit_interval_ms),
            commit_timeout: Duration::from_millis(settings.commit_timeout_ms),
            queue_capacity: settings.queue_capacity,
            witness: Some(WitnessTarget::Directory(witness_dir)),
            ..AuditConfig::default()
        };
        let log = AuditLog::open(
            store.pool().clone(),
            &origin_for(replica),
            signer.clone(),
            config,
        )
        .await?;
        Ok(Self {
            handle: log.handle(),
            log,
            signer,
            replica: replica.to_owned(),
            content: settings.content,
            content_by_model: settings.content_by_model.clone(),
        })
    }

    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// Signs a report's exact bytes with the log's key (see
    /// [`portcullis_audit::report_note`]).
    pub fn sign_report(&self, report: &[u8]) -> Result<String, portcullis_audit::NoteError> {
        portcullis_audit::report_note::sign_report(&self.signer, report)
    }

    /// The verifier key of this log's checkpoints, as `audit-verifier.key`
    /// holds it.
    pub fn verifier_key(&self) -> String {
        self.signer.verifier().to_string()
    }

    /// How much content to keep for requests to `model`.
    pub fn content_mode(&self, model: &str) -> ContentRecording {
        self.content_by_model
            .get(model)
            .copied()
            .unwrap_or(self.content)
    }

    /// Queues a request decision for group commit and returns the pending
    /// commit, which the request awaits before the first byte of its answer
    /// (overlapping the upstream call). An error means the entry was not
    /// accepted, and the request must not be served.
    pub async fn submit_decision(
        &self,
        entry: RequestDecisionEntry,
    ) -> Result<PendingCommit, AuditError> {
        self.handle
            .submit(&AuditEntry::RequestDecision(entry))
            .await
    }

    /// Queues how an admitted request ended. It follows the request's
    /// decision entry, which is already durable, so nothing waits for it.
    pub fn record_outcome(&self, entry: RequestOutcomeEntry) {
        if let Err(error) = self
            .handle
            .record_detached(&AuditEntry::RequestOutcome(entry))
        {
            metrics::counter!("portcullis_audit_errors_total").increment(1);
            static OUTCOME_FAILURE_LOG: crate::log_throttle::LogThrottle =
                crate::log_throttle::LogThrottle::new();
            if let Some(held_back) = OUTCOME_FAILURE_LOG.admit() {
                tracing::error!(%error, held_back, "request outcome could not be queued for the audit log (one line per second; `held_back` counts the rest)");
            }
        }
    }

    /// Queues one `request_cut` entry per order that cut this request: the
    /// per-request enforcement record an order's receipt cites. It names the
    /// request id (the link to the request's admission entry), the
    /// principal, the model, when it was cut, what had been relayed and how
    /// the request ended. The client's stream has already ended, so nothing
    /// waits for it.
    pub fn record_cut(&self, outcome: &RequestOutcomeEntry) {
        for order_id in &outcome.order_ids {
            let entry = AdminActionEntry {
                time: outcome.time,
                actor: format!("replica:{}", outcome.replica),
                action: "request_cut".to_owned(),
                target_kind: AdminTargetKind::Order,
                target_id: order_id.clone(),
                payload: serde_json::json!({
                    "request_id": outcome.request_id,
                    "principal_id": outcome.principal_id,
                    "model": outcome.model,
                    "operation": outcome.action,
                    "cut_at": outcome.time,
                    "events_relayed": outcome.events_relayed,
                    "duration_ms": outcome.duration_ms,
                    "ended_with_status": outcome.status,
                    "orders": outcome.order_ids,
                }),
                request_id: Some(outcome.request_id.clone()),
                replica: Some(outcome.replica.clone()),
            };
            if let Err(error) = self.handle.record_detached(&AuditEntry::AdminAction(entry)) {
                metrics::counter!("portcullis_audit_errors_total").increment(1);
                tracing::error!(%error, request_id = %outcome.request_id, order = %order_id, "the cut of a request could not be queued for the audit log");
            }
        }
    }

    /// Appends an admin action and returns once it is committed.
    pub async fn admin_action(&self, action: AdminAction<'_>) -> Result<AppendReceipt, AuditError> {
        let entry = AdminActionEntry {
            time: action.time,
            actor: action.actor.to_owned(),
            action: action.action.to_owned(),
            target_kind: action.target_kind,
            target_id: action.target_id.to_owned(),
            payload: action.payload,
            request_id: action.request_id.map(str::to_owned),
            replica: Some(self.replica.clone()),
        };
        self.log.append_now(&AuditEntry::AdminAction(entry)).await
    }

    /// Commits everything queued and signs a checkpoint (at shutdown).
    pub async fn flush(&self) -> Result<(), AuditError> {
        self.log.flush().await.map(|_| ())
    }

    /// Committed entries and checkpoint size so far.
    pub fn status(&self) -> portcullis_audit::WriterStatus {
        self.handle.status()
    }
}

/// One admin action to append.
pub struct AdminAction<'a> {
    pub time: jiff::Timestamp,
    pub actor: &'a str,
    pub action: &'a str,
    pub target_kind: AdminTargetKind,
    pub target_id: &'a str,
    pub payload: Value,
    pub request_id: Option<&'a str>,
}
