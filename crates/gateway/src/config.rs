//! The gateway's configuration: one validated struct, read from TOML (plus
//! environment overrides applied by the binary) and passed down. An invalid
//! file is refused at start with a message naming the field.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use portcullis_domain::ModelDraft;
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub log: LogConfig,
    pub mock: MockConfig,
    pub legal: LegalConfig,
    pub location: LocationConfig,
    pub policy: PolicyConfig,
    pub audit: AuditSettings,
    /// OIDC issuers whose JWTs are accepted as bearer credentials besides
    /// API keys. Absent: API keys only.
    pub oidc: Option<portcullis_oidc::OidcConfig>,
    pub orders: OrdersConfig,
    pub replica: ReplicaConfig,
    pub safeguards: crate::guard::SafeguardsConfig,
    pub governance: GovernanceConfig,
    /// Models declared in config; they are upserted into the store at start.
    pub models: Vec<ModelDraft>,
    /// Request-rate limits (`[[limits]]`), each replica counting its own.
    pub limits: Vec<crate::limits::LimitConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// Largest accepted request body; larger ones get 413.
    pub max_body_bytes: usize,
    /// How long a client may take to send the request head.
    pub header_read_timeout_ms: u64,
    /// How long a client may take to send the request body.
    pub body_read_timeout_ms: u64,
    pub upstream_connect_timeout_ms: u64,
    /// Time allowed for a non-streaming upstream answer, and for the first
    /// byte of a streaming one.
    pub upstream_response_timeout_ms: u64,
    /// Longest silence allowed between two events of an upstream stream.
    pub stream_idle_timeout_ms: u64,
    /// How long shutdown waits for running streams before cutting them.
    pub shutdown_grace_ms: u64,
    /// This replica's name in logs, metrics and the audit log. The older
    /// spelling of `replica.id`, still accepted.
    pub replica_id: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            max_body_bytes: 4 * 1024 * 1024,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            upstream_connect_timeout_ms: 5_000,
            upstream_response_timeout_ms: 300_000,
            stream_idle_timeout_ms: 120_000,
            shutdown_grace_ms: 10_000,
            replica_id: None,
        }
    }
}

impl ServerConfig {
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }
    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_millis(self.body_read_timeout_ms)
    }
    pub fn upstream_connect_timeout(&self) -> Duration {
        Duration::from_millis(self.upstream_connect_timeout_ms)
    }
    pub fn upstream_response_timeout(&self) -> Duration {
        Duration::from_millis(self.upstream_response_timeout_ms)
    }
    pub fn stream_idle_timeout(&self) -> Duration {
        Duration::from_millis(self.stream_idle_timeout_ms)
    }
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

/// Control-plane governance: who must agree before a change takes effect.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GovernanceConfig {
    /// Whether releasing a model and lifting an order need the approval of
    /// a second admin. Unset means on, except under `--demo`.
    pub two_person_rule: Option<bool>,
}

impl GovernanceConfig {
    /// The rule in force: on unless switched off explicitly.
    pub fn two_person_rule(&self) -> bool {
        self.two_person_rule.unwrap_or(true)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://FILE` or `postgres://…`. Defaults to `DATA_DIR/portcullis.db`.
    pub url: Option<String>,
    /// The data directory. Defaults to `./portcullis-data`.
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `portcullis=debug`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MockConfig {
    /// Pause between streamed chunks of the built-in mock.
    pub token_interval_ms: u64,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            token_interval_ms: 5,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LegalConfig {
    /// Named in every 451 answer so a denied user knows whom to ask.
    pub contact: String,
}

impl Default for LegalConfig {
    fn default() -> Self {
        Self {
            contact: "the operator's legal contact".into(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocationConfig {
    /// Header carrying the request's ISO 3166-1 country, set by the edge.
    pub country_header: Option<String>,
    /// Header carrying the ISO 3166-2 subdivision, set by the edge.
    pub subdivision_header: Option<String>,
    /// Peers whose location headers are trusted. Headers from anyone else
    /// are ignored.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Country assumed when no signal exists. Production leaves it unset so
    /// the location is unknown; the demo sets `US`.
    pub default_country: Option<String>,
}

/// How access is decided.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// The definition profile that says who is a US person: `ear`,
    /// `citizens_only`, `itar`, or a name under `custom_profiles`.
    pub profile: String,
    /// The operator's own organization, which alone may use `internal`
    /// models. Falls back to the value stored by the demo, then to
    /// `operator` (an organization no principal belongs to unless named so).
    pub operator_organization: Option<String>,
    /// A directory of `.cedar` files that replaces the stored policies.
    pub policy_dir: Option<PathBuf>,
    pub custom_profiles: std::collections::BTreeMap<String, portcullis_policy::CustomProfileConfig>,
    /// Destinations blocked on top of the versioned default embargo pack.
    pub embargo: portcullis_policy::EmbargoConfig,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            profile: "ear".into(),
            operator_organization: None,
            policy_dir: None,
            custom_profiles: Default::default(),
            embargo: Default::default(),
        }
    }
}

/// The tamper-evident audit log. It is always on in production: turning it
/// off is a benchmark-only switch that also needs the environment variable
/// `PORTCULLIS_BENCHMARK_ONLY_AUDIT_OFF=1`, so a config file alone cannot
/// disable it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    pub enabled: bool,
    /// The Ed25519 signing key for checkpoints. Defaults to
    /// `DATA_DIR/audit-signing.key`; generated on first start.
    pub signing_key_file: Option<PathBuf>,
    /// Where the public verifier key is written. Defaults to
    /// `DATA_DIR/audit-verifier.key`.
    pub verifier_key_file: Option<PathBuf>,
    /// A directory outside the store that receives a copy of every signed
    /// checkpoint. Defaults to `DATA_DIR/audit-witness`.
    pub witness_dir: Option<PathBuf>,
    /// What of the prompt and response is kept: `none`, `sha256` or `full`.
    pub content: portcullis_audit::ContentRecording,
    /// Per-model overrides of `content`.
    pub content_by_model: std::collections::BTreeMap<String, portcullis_audit::ContentRecording>,
    pub checkpoint_every_entries: u64,
    pub checkpoint_interval_ms: u64,
    pub commit_interval_ms: u64,
    pub queue_capacity: usize,
    /// The longest one audit commit may take before the requests waiting
    /// for it are refused with 503 (the store is then treated as failing).
    pub commit_timeout_ms: u64,
}

impl Default for AuditSettings {
    fn default() -> Self {
        let defaults = portcullis_audit::AuditConfig::default();
        Self {
            enabled: true,
            signing_key_file: None,
            verifier_key_file: None,
            witness_dir: None,
            content: Default::default(),
            content_by_model: Default::default(),
            checkpoint_every_entries: defaults.checkpoint_every_entries,
            checkpoint_interval_ms: defaults.checkpoint_interval.as_millis() as u64,
            commit_interval_ms: defaults.commit_interval.as_millis() as u64,
            queue_capacity: defaults.queue_capacity,
            commit_timeout_ms: defaults.commit_timeout.as_millis() as u64,
        }
    }
}

/// The environment variable that must accompany `audit.enabled = false`.
pub const AUDIT_OFF_ENV: &str = "PORTCULLIS_BENCHMARK_ONLY_AUDIT_OFF";

/// How orders are checked when applied.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrdersConfig {
    /// How far in the past `effective_at` may be before an order is refused
    /// (unless forced): covers clock skew and the minutes it takes to key in
    /// a letter.
    pub past_effective_tolerance_ms: u64,
}

impl Default for OrdersConfig {
    fn default() -> Self {
        Self {
            past_effective_tolerance_ms: 15 * 60 * 1000,
        }
    }
}

/// This process as one replica of a deployment that shares a store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicaConfig {
    /// This replica's name in its reports, its audit log origin and logs.
    /// Defaults to `server.replica_id`, then to `local`.
    pub id: Option<String>,
    /// How long a replica on a shared (PostgreSQL) store may go without
    /// confirming its snapshot with the store before it refuses models
    /// tagged `fail_closed` and reports not ready.
    pub staleness_bound_ms: u64,
    /// How often the store version is polled, as a safety net beside
    /// notifications; each successful poll confirms the snapshot.
    pub poll_interval_ms: u64,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        Self {
            id: None,
            staleness_bound_ms: 2_000,
            poll_interval_ms: 1_000,
        }
    }
}

impl ReplicaConfig {
    pub fn staleness_bound(&self) -> Duration {
        Duration::from_millis(self.staleness_bound_ms)
    }
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("`{field}` is invalid: {reason}")]
    Invalid { field: String, reason: String },
}

impl Config {
    /// Checks everything that serde's types cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &str, reason: &str| ConfigError::Invalid {
            field: field.to_owned(),
            reason: reason.to_owned(),
        };
        crate::limits::validate(&self.limits)?;
        if !self.audit.enabled && std::env::var(AUDIT_OFF_ENV).as_deref() != Ok("1") {
            return Err(invalid(
                "audit.enabled",
                "the audit log cannot be turned off in a deployment; `false` is a benchmark-only switch that also needs PORTCULLIS_BENCHMARK_ONLY_AUDIT_OFF=1",
            ));
        }
        if let (Some(id), Some(legacy)) = (&self.replica.id, &self.server.replica_id)
            && id != legacy
        {
            return Err(invalid(
                "replica.id",
                "differs from `server.replica_id`; set only `replica.id`",
            ));
        }
        if self.replica.poll_interval_ms == 0 {
            return Err(invalid(
                "replica.poll_interval_ms",
                "must be greater than 0",
            ));
        }
        if self.replica.staleness_bound_ms <= self.replica.poll_interval_ms {
            return Err(invalid(
                "replica.staleness_bound_ms",
                "must be greater than `replica.poll_interval_ms`, or an idle replica would go stale between two polls",
            ));
        }
        if self.server.max_body_bytes < 1024 {
            return Err(invalid("server.max_body_bytes", "must be at least 1024"));
        }
        if self.server.listen == self.server.admin_listen && self.server.listen.port() != 0 {
            return Err(invalid(
                "server.admin_listen",
                "must differ from server.listen",
            ));
        }
        for (field, value) in [
            (
                "server.header_read_timeout_ms",
                self.server.header_read_timeout_ms,
            ),
            (
                "server.body_read_timeout_ms",
                self.server.body_read_timeout_ms,
            ),
            (
                "server.upstream_connect_timeout_ms",
                self.server.upstream_connect_timeout_ms,
            ),
            (
                "server.upstream_response_timeout_ms",
                self.server.upstream_response_timeout_ms,
            ),
            (
                "server.stream_idle_timeout_ms",
                self.server.stream_idle_timeout_ms,
            ),
            ("audit.commit_timeout_ms", self.audit.commit_timeout_ms),
        ] {
            if value == 0 {
                return Err(invalid(field, "must be greater than 0"));
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, model) in self.models.iter().enumerate() {
            if model.api_key.is_some() {
                return Err(invalid(
                    &format!("models[{i}].api_key"),
                    "a literal key is not accepted (it would be stored in plain text); name the environment variable that holds it in `api_key_env`",
                ));
            }
            model
                .clone()
                .validate()
                .map_err(|e| invalid(&format!("models[{i}]"), &e.to_string()))?;
            if !names.insert(model.name.clone()) {
                return Err(invalid(&format!("models[{i}].name"), "is declared twice"));
            }
        }
        if let Some(country) = &self.location.default_country
            && (country.len() != 2 || !country.chars().all(|c| c.is_ascii_uppercase()))
        {
            return Err(invalid(
                "location.default_country",
                "must be an ISO 3166-1 alpha-2 code such as `US`",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_model_block_parses_and_validates() {
        let config: Config = toml_like(
            r#"{"models": [{"name": "bench", "provider": "openai", "base_url": "http://127.0.0.1:9000/v1",
                "upstream_model": "mock", "state": "released", "family": "bench", "tags": []}]}"#,
        );
        config.validate().unwrap();
        assert_eq!(config.models[0].name, "bench");
        assert_eq!(config.server.max_body_bytes, 4 * 1024 * 1024);
    }

    #[test]
    fn invalid_values_name_the_field() {
        let cases = [
            (
                r#"{"server": {"max_body_bytes": 10}}"#,
                "server.max_body_bytes",
            ),
            (
                r#"{"location": {"default_country": "usa"}}"#,
                "location.default_country",
            ),
            (
                r#"{"replica": {"staleness_bound_ms": 1000, "poll_interval_ms": 1000}}"#,
                "replica.staleness_bound_ms",
            ),
            (
                r#"{"replica": {"id": "a"}, "server": {"replica_id": "b"}}"#,
                "replica.id",
            ),
            (
                r#"{"models": [{"name": "a", "provider": "openai", "state": "released"}]}"#,
                "models[0]",
            ),
            (
                r#"{"models": [{"name": "a", "provider": "openai", "base_url": "http://u/v1",
                    "state": "released", "api_key": "sk-live-plaintext"}]}"#,
                "models[0].api_key",
            ),
            (
                r#"{"audit": {"commit_timeout_ms": 0}}"#,
                "audit.commit_timeout_ms",
            ),
        ];
        for (text, field) in cases {
            let error = toml_like(text).validate().unwrap_err().to_string();
            assert!(error.contains(field), "{error}");
        }
        assert!(
            serde_json::from_str::<Config>(r#"{"sever": {}}"#).is_err(),
            "unknown sections are refused"
        );
    }

    fn toml_like(json: &str) -> Config {
        serde_json::from_str(json).unwrap()
    }
}
