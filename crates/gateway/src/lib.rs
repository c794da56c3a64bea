//! The HTTP gateway: the data plane (OpenAI- and Anthropic-compatible
//! endpoints), the admin API, the built-in mock upstream, translation between
//! the two API formats, and the listeners that serve them.
//!
//! This is the only crate that knows axum and hyper. Wire formats live here;
//! the domain types it works with come from `portcullis-domain`. The request
//! path reads an immutable [`snapshot::Snapshot`] and never queries the store.

pub mod admin;
pub mod audit;
pub mod config;
pub mod dataplane;
pub mod error;
pub mod inflight;
pub mod mock;
pub mod orders;
pub mod policy;
pub mod request_id;
pub mod server;
pub mod snapshot;
pub mod sse;
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
    /// Requests being served now, so an order can stop the affected ones.
    pub inflight: Arc<inflight::Inflight>,
    /// Orders this replica enforces, and the applied/lifted bookkeeping.
    pub enforcement: orders::Enforcement,
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
    #[error("cannot open the audit log: {0}")]
    Audit(#[from] audit::AuditSetupError),
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
        let replica = replica_id(&config);
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
        let gateway = Arc::new(Self {
            policy,
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

    /// Whether the gateway can decide correctly now.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Keeps the snapshot current: reloads on every version published by this
    /// process's store handle, and polls the stored version as a safety net
    /// for writes made by other processes.
    pub async fn watch_store(self: Arc<Self>, poll_every: Duration, stop: CancellationToken) {
        let mut versions = self.store.subscribe();
        let mut poll = tokio::time::interval(poll_every);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                changed = versions.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = poll.tick() => {}
            }
            let current = self.snapshot.load().version;
            match self.store.version().await {
                Ok(version) if version != current => {
                    if let Err(error) = self.refresh().await {
                        tracing::warn!(%error, "snapshot reload failed; keeping the current snapshot");
                    }
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "cannot read the store version"),
            }
        }
    }
}

/// The replica id from config, `local` when unset.
pub fn replica_id(config: &Config) -> String {
    config
        .server
        .replica_id
        .clone()
        .unwrap_or_else(|| "local".to_owned())
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(
    axum::extract::State(gateway): axum::extract::State<Arc<Gateway>>,
) -> (http::StatusCode, &'static str) {
    if gateway.is_ready() {
        (http::StatusCode::OK, "ready")
    } else {
        (http::StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
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
        .route(
            "/admin/v1/orders",
            get(orders::list_orders).post(orders::create_order),
        )
        .route("/admin/v1/orders/preview", post(orders::preview_order))
        .route("/admin/v1/orders/{id}", get(orders::get_order))
        .route("/admin/v1/orders/{id}/lift", post(orders::lift_order))
        .route("/admin/v1/replicas", get(orders::list_replicas))
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
        .with_state(gateway)
}
