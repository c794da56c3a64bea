//! The HTTP gateway: the data plane (OpenAI- and Anthropic-compatible
//! endpoints), the admin API, the built-in mock upstream, translation between
//! the two API formats, and the listeners that serve them.
//!
//! This is the only crate that knows axum and hyper. Wire formats live here;
//! the domain types it works with come from `portcullis-domain`. The request
//! path reads an immutable [`snapshot::Snapshot`] and never queries the store.

pub mod admin;
pub mod audit;
pub mod audit_api;
pub mod config;
pub mod dataplane;
pub mod error;
pub mod governance;
pub mod guard;
pub mod inflight;
pub mod limits;
pub mod log_throttle;
pub mod mock;
pub mod orders;
pub mod policy;
pub mod policy_admin;
pub mod replica;
pub mod request_id;
pub mod screening;
pub mod server;
pub mod snapshot;
pub mod sse;
pub mod telemetry;
pub mod translate;
pub mod upstream;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use portcullis_domain::Clock;
use portcullis_store::Store;
use tokio_util::sync::CancellationToken;

pub use config::Config;
use snapshot::Snapshot;
use upstream::UpstreamClient;

/// Shared state of one gateway process.
pub struct Gateway {
    pub config: Config,
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub snapshot: ArcSwap<Snapshot>,
    pub upstream: UpstreamClient,
    pub metrics: Option<PrometheusHandle>,
    pub policy: policy::PolicyBase,
    /// Cancelled when running streams must end now (shutdown deadline).
    pub stream_cut: CancellationToken,
    /// This replica's audit log; `None` only in benchmark runs with the log
    /// switched off.
    pub audit: Option<audit::GatewayAudit>,
    /// Verifies OIDC bearer tokens, when issuers are configured.
    pub oidc: Option<Arc<portcullis_oidc::OidcAuthenticator>>,
    /// Requests being served now, so an order can stop the affected ones.
    pub inflight: Arc<inflight::Inflight>,
    /// Orders this replica enforces, and the applied/lifted bookkeeping.
    pub enforcement: orders::Enforcement,
    /// The cyber-misuse safeguards: the loaded cascade and its profiles.
    pub safeguards: guard::Safeguards,
    /// The `[[limits]]` buckets of this replica.
    pub limiter: limits::Limiter,
    /// What this replica has applied and when it last confirmed it with the
    /// store, which decides whether `fail_closed` models may be served.
    pub replica: replica::ReplicaState,
    /// Serialises snapshot rebuilds so versions are applied in order.
    refresh_lock: tokio::sync::Mutex<()>,
    ready: AtomicBool,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot build the upstream HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
    #[error(transparent)]
    Store(#[from] portcullis_store::StoreError),
    #[error(transparent)]
    Policy(#[from] policy::PolicySetupError),
    #[error("invalid OIDC configuration: {0}")]
    Oidc(#[from] portcullis_oidc::OidcConfigError),
    #[error("cannot open the audit log: {0}")]
    Audit(#[from] audit::AuditSetupError),
    #[error(transparent)]
    Safeguards(#[from] guard::GuardSetupError),
}

/// Why a snapshot could not be refreshed. The current snapshot stays.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    Store(#[from] portcullis_store::StoreError),
    #[error(transparent)]
    Policy(#[from] policy::PolicySetupError),
}

impl Gateway {
    /// Builds the gateway and its first snapshot from the store.
    pub async fn new(
        config: Config,
        store: Store,
        clock: Arc<dyn Clock>,
        metrics: Option<PrometheusHandle>,
    ) -> Result<Arc<Self>, GatewayError> {
        let upstream = UpstreamClient::new(
            config.server.upstream_connect_timeout(),
            config.server.upstream_response_timeout(),
        )?;
        let policy = policy::PolicyBase::from_config(&config)?;
        let contents = store.load().await?;
        let snapshot = Snapshot::build(contents, clock.now(), &policy)?;
        let safeguards = guard::Safeguards::from_config(&config.safeguards)?;
        safeguards.check_models(snapshot.models_in_order().map(|model| model.as_ref()))?;
        let replica = replica_id(&config);
        let replica_state = replica::ReplicaState::new(
            replica.clone(),
            store.backend(),
            &config.replica,
            snapshot.version,
            clock.now(),
        );
        let audit = if config.audit.enabled {
            let data_dir = config
                .store
                .data_dir
                .clone()
                .unwrap_or_else(|| std::path::PathBuf::from("portcullis-data"));
            Some(audit::GatewayAudit::open(&config.audit, &data_dir, &store, &replica).await?)
        } else {
            tracing::warn!("the audit log is OFF: this is a benchmark-only mode");
            None
        };
        let oidc = config
            .oidc
            .clone()
            .filter(|oidc| !oidc.issuers.is_empty())
            .map(|oidc| portcullis_oidc::OidcAuthenticator::new(oidc, clock.clone()))
            .transpose()?
            .map(Arc::new);
        let gateway = Arc::new(Self {
            oidc,
            policy,
            limiter: limits::Limiter::new(&config.limits),
            config,
            store,
            clock,
            snapshot: ArcSwap::from_pointee(snapshot),
            upstream,
            metrics,
            stream_cut: CancellationToken::new(),
            audit,
            inflight: Arc::new(inflight::Inflight::default()),
            enforcement: orders::Enforcement::new(replica),
            safeguards,
            replica: replica_state,
            refresh_lock: tokio::sync::Mutex::new(()),
            ready: AtomicBool::new(true),
        });
        orders::enforce(&gateway).await;
        Ok(gateway)
    }

    /// This replica's id, which names its audit log and its reports.
    pub fn replica_id(&self) -> &str {
        self.enforcement.replica()
    }

    /// Reloads the snapshot from the store and swaps it in. On failure the
    /// current snapshot stays in force.
    ///
    /// After the swap, orders that came into force are enforced on requests
    /// already in flight (see [`orders::enforce`]).
    pub async fn refresh(&self) -> Result<(), RefreshError> {
        let _serial = self.refresh_lock.lock().await;
        let contents = self.store.load().await?;
        let version = contents.version;
        if version < self.snapshot.load().version {
            // A newer snapshot was applied while this load ran.
            return Ok(());
        }
        let snapshot = Snapshot::build(contents, self.clock.now(), &self.policy)?;
        self.snapshot.store(Arc::new(snapshot));
        self.replica.record_applied(version, self.clock.now());
        metrics::gauge!("portcullis_snapshot_version").set(version as f64);
        orders::enforce(self).await;
        Ok(())
    }

    /// Enforces orders whose `effective_at` arrives while no write happens:
    /// checks every `every` whether an order came into force.
    pub async fn run_order_clock(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => orders::enforce(&self).await,
            }
        }
    }

    /// Whether the gateway can decide correctly now: it is not shutting
    /// down, and its snapshot is confirmed within the staleness bound.
    pub fn is_ready(&self) -> bool {
        self.readiness().ready
    }

    /// Whether this replica's snapshot may decide requests for models tagged
    /// `fail_closed` at `now` (see [`replica`]).
    pub fn replica_is_current(&self, now: jiff::Timestamp) -> bool {
        self.replica.is_current(now)
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Keeps the snapshot current until `stop`: listens for notifications
    /// on PostgreSQL, polls the stored version every `poll_every` on both
    /// backends, confirms the snapshot on every answer and reports this
    /// replica's state to the store (see [`replica::watch_store`]).
    pub async fn watch_store(self: Arc<Self>, poll_every: Duration, stop: CancellationToken) {
        replica::watch_store(self, poll_every, stop).await;
    }
}

/// The replica id from config (`replica.id`, or its older spelling
/// `server.replica_id`), `local` when unset.
pub fn replica_id(config: &Config) -> String {
    config
        .replica
        .id
        .clone()
        .or_else(|| config.server.replica_id.clone())
        .unwrap_or_else(|| "local".to_owned())
}

async fn healthz() -> &'static str {
    "ok"
}

/// Why this replica can or cannot decide correctly now, as `/readyz`
/// reports it (the JSON contract in DESIGN.md).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub checks: serde_json::Map<String, serde_json::Value>,
}

impl Gateway {
    /// Each readiness check with its state. Ready only when every check
    /// passes: accepting traffic, a confirmed snapshot, and an audit writer
    /// whose last commit succeeded (an entry that cannot be committed means
    /// requests are refused, so a load balancer should look elsewhere).
    pub fn readiness(&self) -> Readiness {
        use serde_json::{Value, json};
        let now = self.clock.now();
        let mut checks = serde_json::Map::new();
        let accepting = self.ready.load(Ordering::Relaxed);
        checks.insert(
            "accepting".into(),
            Value::from(if accepting { "ok" } else { "draining" }),
        );
        let current = self.replica_is_current(now);
        let snapshot = self.snapshot.load();
        checks.insert(
            "snapshot".into(),
            json!({
                "state": if current { "current" } else { "stale" },
                "version": snapshot.version,
                "unconfirmed_ms": self.replica.staleness_millis(now),
            }),
        );
        checks.insert(
            "store".into(),
            Value::from(if current { "ok" } else { "unconfirmed" }),
        );
        let audit_ok = match &self.audit {
            None => {
                checks.insert("audit".into(), Value::from("off"));
                true
            }
            Some(audit) => {
                let status = audit.status();
                match &status.last_error {
                    None => {
                        checks.insert("audit".into(), Value::from("ok"));
                        true
                    }
                    Some(error) => {
                        checks.insert(
                            "audit".into(),
                            json!({
                                "state": "failing",
                                "error": error,
                                "retained_entries": status.retained_entries,
                                "lost_entries": status.lost_entries,
                            }),
                        );
                        false
                    }
                }
            }
        };
        let guarded = snapshot
            .models
            .values()
            .any(|model| model.safeguard_profile.is_some());
        let stage2 = if !guarded {
            "not_needed"
        } else if self.safeguards.has_stage2() {
            "loaded"
        } else {
            "missing"
        };
        checks.insert("stage2".into(), Value::from(stage2));
        Readiness {
            ready: accepting && current && audit_ok,
            checks,
        }
    }
}

async fn readyz(
    axum::extract::State(gateway): axum::extract::State<Arc<Gateway>>,
) -> (http::StatusCode, axum::Json<Readiness>) {
    let readiness = gateway.readiness();
    let status = if readiness.ready {
        http::StatusCode::OK
    } else {
        http::StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(readiness))
}

/// Routes of the data-plane listener.
pub fn data_router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(dataplane::chat_completions))
        .route("/v1/messages", post(dataplane::messages))
        .route("/v1/models", get(dataplane::list_models))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .with_state(gateway)
}

async fn not_found(request: axum::extract::Request) -> axum::response::Response {
    let request_id = request
        .extensions()
        .get::<request_id::RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    error::ApiError::new(
        http::StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {} {}", request.method(), request.uri().path()),
        error::ErrorSource::Client,
    )
    .into_response_for(error::ApiFormat::OpenAi, &request_id)
}

/// Routes of the admin listener.
pub fn admin_router(gateway: Arc<Gateway>) -> Router {
    use admin::*;
    let protected = Router::new()
        .route("/admin/v1/models", get(list_models).post(create_model))
        .route(
            "/admin/v1/models/{name}",
            get(get_model).put(update_model).delete(delete_model),
        )
        .route(
            "/admin/v1/principals",
            get(list_principals).post(create_principal),
        )
        .route(
            "/admin/v1/principals/{id}",
            get(get_principal)
                .put(update_principal)
                .delete(delete_principal),
        )
        .route("/admin/v1/keys", get(list_keys).post(create_key))
        .route("/admin/v1/keys/{id}", get(get_key).delete(delete_key))
        .route("/admin/v1/keys/{id}/revoke", post(revoke_key))
        .route("/admin/v1/audit", get(audit_api::search))
        .route("/admin/v1/audit/checkpoints", get(audit_api::checkpoints))
        .route("/admin/v1/audit/proof", get(audit_api::proof))
        .route(
            "/admin/v1/principals/{id}/screening/clear",
            post(screening::clear_screening),
        )
        .route(
            "/admin/v1/orders",
            get(orders::list_orders).post(orders::create_order),
        )
        .route("/admin/v1/orders/preview", post(orders::preview_order))
        .route("/admin/v1/orders/{id}", get(orders::get_order))
        .route("/admin/v1/orders/{id}/lift", post(orders::lift_order))
        .route("/admin/v1/replicas", get(orders::list_replicas))
        .route("/admin/v1/policies", get(policy_admin::list_policies))
        .route(
            "/admin/v1/policies/{id}",
            get(policy_admin::get_policy)
                .put(policy_admin::put_policy)
                .delete(policy_admin::delete_policy),
        )
        .route(
            "/admin/v1/findings",
            get(list_findings).post(create_finding),
        )
        .route("/admin/v1/findings/{id}", get(get_finding))
        .route(
            "/admin/v1/models/{name}/transitions",
            get(governance::list_transitions).post(governance::create_transition),
        )
        .route("/admin/v1/approvals", get(governance::list_approvals))
        .route("/admin/v1/approvals/{id}", get(governance::get_approval))
        .route(
            "/admin/v1/approvals/{id}/approve",
            post(governance::approve),
        )
        .route("/admin/v1/approvals/{id}/reject", post(governance::reject))
        .route(
            "/admin/v1/admins",
            get(governance::list_admins).post(governance::create_admin),
        )
        .route(
            "/admin/v1/reviews",
            get(governance::list_reviews).post(governance::create_review),
        )
        .route("/admin/v1/reviews/{id}", get(governance::get_review))
        .route(
            "/admin/v1/reviews/{id}/evidence",
            post(governance::add_review_evidence),
        )
        .route(
            "/admin/v1/reviews/{id}/access",
            post(governance::grant_access),
        )
        .route(
            "/admin/v1/reviews/{id}/conclude",
            post(governance::conclude_review),
        )
        .route("/admin/v1/evidence/{id}", get(governance::get_evidence))
        .route(
            "/admin/v1/findings/{id}/transitions",
            get(governance::list_finding_events).post(governance::create_finding_event),
        )
        .route(
            "/admin/v1/findings/{id}/evidence",
            post(governance::add_finding_evidence),
        )
        .route(
            "/admin/v1/reports/{kind}/{id}",
            get(governance::report::get_report),
        )
        .route(
            "/admin/v1/reports/{kind}/{id}/bundle",
            get(governance::report::get_report_bundle),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            gateway.clone(),
            require_admin,
        ));
    Router::new()
        .merge(protected)
        .route("/admin/v1/openapi.json", get(openapi))
        .route("/metrics", get(admin::metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .layer(axum::middleware::from_fn(admin::json_errors))
        .with_state(gateway)
}
