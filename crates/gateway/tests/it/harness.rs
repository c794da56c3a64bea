//! A gateway on real sockets for integration tests: a fresh SQLite store in
//! a temporary directory, seeded with models and principals, served on
//! ephemeral ports.

#![allow(
    dead_code,
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use portcullis_domain::{ModelDraft, PrincipalAttributes, Provider, ReleaseState, SystemClock};
use portcullis_gateway::server::{ServeOptions, serve};
use portcullis_gateway::{Config, Gateway};
use portcullis_store::{Admin, AdminRole, Store};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const ADMIN_TOKEN: &str = "pcla_test_admin_token";

pub struct TestGateway {
    pub gateway: Arc<Gateway>,
    pub data: SocketAddr,
    pub admin: SocketAddr,
    pub keys: std::collections::HashMap<String, String>,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn model(
    name: &str,
    provider: Provider,
    base_url: Option<String>,
    upstream: &str,
    state: ReleaseState,
) -> ModelDraft {
    ModelDraft {
        name: name.into(),
        provider,
        base_url,
        upstream_model: Some(upstream.into()),
        state,
        family: None,
        tags: vec![],
        safeguard_profile: None,
        api_key: None,
        api_key_env: None,
        forward_mock_headers: false,
    }
}

impl TestGateway {
    /// Starts a gateway with the given extra models (on top of `haiku`,
    /// released, and `mythos`, internal, both on the mock) and principals
    /// `alice` (active) and `ivan` (inactive), each with a key.
    pub async fn start(mut config: Config, models: Vec<ModelDraft>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_data_dir(dir.path()).await.unwrap();
        let now = Timestamp::now();
        let mut all = vec![
            model(
                "haiku",
                Provider::Mock,
                None,
                "haiku",
                ReleaseState::Released,
            ),
            model(
                "mythos",
                Provider::Mock,
                None,
                "mythos",
                ReleaseState::Internal,
            ),
        ];
        all.extend(models);
        for draft in all {
            store
                .upsert_model(&draft.validate().unwrap(), now)
                .await
                .unwrap();
        }
        let mut keys = std::collections::HashMap::new();
        for (id, active) in [("alice", true), ("ivan", false)] {
            let attributes: PrincipalAttributes = serde_json::from_value(
                serde_json::json!({"id": id, "organization": "acme", "active": active}),
            )
            .unwrap();
            store.upsert_principal(id, &attributes, now).await.unwrap();
            let (key, secret) =
                portcullis_gateway::admin::issue_key(id, "test", None, now).unwrap();
            store.insert_key(&key).await.unwrap();
            keys.insert(id.to_owned(), secret);
        }
        store
            .insert_admin(&Admin {
                id: "root".into(),
                display_name: "root".into(),
                role: AdminRole::Admin,
                token_sha256: portcullis_domain::hash_api_key(ADMIN_TOKEN),
                created_at: now,
                disabled_at: None,
            })
            .await
            .unwrap();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.server.admin_listen = "127.0.0.1:0".parse().unwrap();
        config.store.data_dir = Some(dir.path().to_path_buf());
        let gateway = Gateway::new(config.clone(), store, Arc::new(SystemClock), None)
            .await
            .unwrap();
        let data_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let data = data_listener.local_addr().unwrap();
        let admin = admin_listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let options = ServeOptions {
            header_read_timeout: config.server.header_read_timeout(),
            drain_deadline: Duration::from_millis(500),
        };
        tokio::spawn(serve(
            data_listener,
            portcullis_gateway::data_router(gateway.clone()),
            options.clone(),
            shutdown.clone(),
            gateway.stream_cut.clone(),
        ));
        tokio::spawn(serve(
            admin_listener,
            portcullis_gateway::admin_router(gateway.clone()),
            options,
            shutdown.clone(),
            gateway.stream_cut.clone(),
        ));
        Self {
            gateway,
            data,
            admin,
            keys,
            http: reqwest::Client::new(),
            shutdown,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.data, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    pub fn key(&self, principal: &str) -> &str {
        &self.keys[principal]
    }
}

/// Starts the standalone mock upstream on an ephemeral port.
pub async fn start_mock() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = portcullis_gateway::mock::router(portcullis_gateway::mock::MockServer {
        default_token_interval: Duration::from_millis(1),
    });
    tokio::spawn(serve(
        listener,
        router,
        ServeOptions {
            header_read_timeout: Duration::from_secs(5),
            drain_deadline: Duration::from_millis(100),
        },
        CancellationToken::new(),
        CancellationToken::new(),
    ));
    addr
}

/// Parses an SSE body into (event name, data) pairs.
pub fn sse_events(body: &str) -> Vec<(Option<String>, String)> {
    body.split("\n\n")
        .filter(|frame| !frame.trim().is_empty())
        .map(|frame| {
            let mut event = None;
            let mut data = String::new();
            for line in frame.lines() {
                if let Some(rest) = line.strip_prefix("event: ") {
                    event = Some(rest.to_owned());
                } else if let Some(rest) = line.strip_prefix("data: ") {
                    data.push_str(rest);
                }
            }
            (event, data)
        })
        .collect()
}
