//! Building the policy engine for a snapshot, and the request context it
//! decides in (time, client address, location from a trusted edge).

use std::sync::Arc;

use http::request::Parts;
use jiff::Timestamp;
use portcullis_audit::{LocationEvidence, LocationSource};
use portcullis_policy::{
    CompiledPolicies, EmbargoList, EngineInputs, Order, PolicyEngine, PolicySchema, PolicySource,
    ProfileRegistry, RequestContext,
};
use portcullis_store::StoreContents;

use crate::config::{Config, LocationConfig};
use crate::server::PeerAddr;

/// Meta key under which the store records the operator's organization.
pub const OPERATOR_ORGANIZATION_META: &str = "operator_organization";
/// The organization used when none is configured: nobody belongs to it.
pub const UNSET_OPERATOR_ORGANIZATION: &str = "operator";

/// What every snapshot's engine is built from besides the store contents.
/// Validated once at start so a bad profile or embargo entry stops the
/// process instead of silently weakening policy.
pub struct PolicyBase {
    pub schema: Arc<PolicySchema>,
    pub profiles: ProfileRegistry,
    pub active_profile: String,
    pub embargo: EmbargoList,
    /// Policies from `policy.policy_dir`, which replace stored ones.
    pub file_policies: Option<Vec<PolicySource>>,
    pub configured_organization: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicySetupError {
    #[error("policy schema: {0}")]
    Schema(portcullis_policy::PolicyError),
    #[error("policy profiles: {0}")]
    Profile(#[from] portcullis_policy::ProfileError),
    #[error("embargo data: {0}")]
    Embargo(#[from] portcullis_policy::EmbargoError),
    #[error("policies: {0}")]
    Policies(portcullis_policy::PolicyError),
    #[error("stored order `{id}` does not parse: {detail}")]
    CorruptOrder { id: String, detail: String },
    #[error("policy engine: {0}")]
    Engine(#[from] portcullis_policy::EngineError),
}

impl PolicyBase {
    pub fn from_config(config: &Config) -> Result<Self, PolicySetupError> {
        let schema = Arc::new(PolicySchema::portcullis().map_err(PolicySetupError::Schema)?);
        let profiles = ProfileRegistry::with_custom(
            config
                .policy
                .custom_profiles
                .iter()
                .map(|(name, profile)| (name.as_str(), profile)),
        )?;
        profiles.get(&config.policy.profile)?;
        let pack = portcullis_policy::EmbargoPack::default_pack()?;
        let embargo = EmbargoList::new(&pack, &config.policy.embargo)?;
        let file_policies = config
            .policy
            .policy_dir
            .as_deref()
            .map(portcullis_policy::load_policy_dir)
            .transpose()
            .map_err(PolicySetupError::Policies)?;
        Ok(Self {
            schema,
            profiles,
            active_profile: config.policy.profile.clone(),
            embargo,
            file_policies,
            configured_organization: config.policy.operator_organization.clone(),
        })
    }

    /// Compiles the policies in force for these store contents: the policy
    /// directory if configured, else the stored policies, else the default
    /// pack. An invalid set is an error and the caller keeps its old one.
    pub fn compile(&self, contents: &StoreContents) -> Result<CompiledPolicies, PolicySetupError> {
        let sources: Vec<PolicySource> = match &self.file_policies {
            Some(files) => files.clone(),
            None => with_default_pack(
                contents
                    .policies
                    .iter()
                    .map(|p| PolicySource::new(format!("{}.cedar", p.id), p.source.clone()))
                    .collect(),
            ),
        };
        portcullis_policy::compile(&sources, &self.schema).map_err(PolicySetupError::Policies)
    }

    pub fn engine(
        &self,
        contents: &StoreContents,
        built_at: Timestamp,
    ) -> Result<PolicyEngine, PolicySetupError> {
        let policies = self.compile(contents)?;
        let stored_organization = contents
            .meta
            .iter()
            .find(|(key, _)| key == OPERATOR_ORGANIZATION_META)
            .map(|(_, value)| value.clone());
        let operator_organization = self
            .configured_organization
            .clone()
            .or(stored_organization)
            .unwrap_or_else(|| UNSET_OPERATOR_ORGANIZATION.to_owned());
        Ok(PolicyEngine::build(EngineInputs {
            policies,
            models: contents.models.clone(),
            principals: contents
                .principals
                .iter()
                .map(|p| p.attributes.clone())
                .collect(),
            orders: orders_in_force(contents)?,
            operator_organization,
            active_profile: self.active_profile.clone(),
            profiles: self.profiles.clone(),
            embargo: self.embargo.clone(),
            built_at,
        })?)
    }
}

/// The stored id under which an operator may replace the default pack.
pub const DEFAULT_POLICY_ID: &str = "default";

/// Stored sources plus the default pack, unless a stored source named
/// `default` replaces it.
pub fn with_default_pack(mut sources: Vec<PolicySource>) -> Vec<PolicySource> {
    let replaced = sources
        .iter()
        .any(|source| source.name == format!("{DEFAULT_POLICY_ID}.cedar"));
    if !replaced {
        sources.insert(0, PolicySource::default_pack());
    }
    sources
}

/// The orders the engine enforces: every stored order not lifted. An order
/// whose stored document no longer parses fails the snapshot build (the
/// old snapshot stays, and goes stale), because dropping it would lift it.
pub fn orders_in_force(contents: &StoreContents) -> Result<Vec<Order>, PolicySetupError> {
    contents
        .orders
        .iter()
        .filter(|stored| stored.lift.is_none())
        .map(|stored| {
            let mut order =
                serde_json::from_value::<Order>(stored.document.clone()).map_err(|error| {
                    PolicySetupError::CorruptOrder {
                        id: stored.id.clone(),
                        detail: error.to_string(),
                    }
                })?;
            order.id = Some(stored.id.clone());
            Ok(order)
        })
        .collect()
}

/// The longest unusable edge value kept in the audit log.
const MAX_UNUSABLE_VALUE_CHARS: usize = 64;

/// The context of one request, and the evidence for the audit log: the
/// place used, where it came from and the peer's address. The location
/// comes from the configured headers only when the peer is a trusted
/// proxy; otherwise the configured default country applies, and without
/// one the location is unknown. An unparseable location counts as unknown,
/// which restricted models deny.
pub fn request_context_with_evidence(
    location: &LocationConfig,
    parts: &Parts,
    now: Timestamp,
) -> (RequestContext, LocationEvidence) {
    let peer = parts.extensions.get::<PeerAddr>().map(|p| p.0.ip());
    let mut context = RequestContext::at(now);
    if let Some(ip) = peer {
        context = context.with_client_ip(ip);
    }
    let mut evidence = LocationEvidence {
        country: None,
        subdivision: None,
        source: LocationSource::Unknown,
        client_address: peer.map(|ip| ip.to_string()),
        unusable_value: None,
    };
    let trusted = peer.is_some_and(|ip| location.trusted_proxies.contains(&ip));
    let header = |name: &Option<String>| {
        name.as_ref()
            .filter(|_| trusted)
            .and_then(|name| parts.headers.get(name.as_str()))
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
    };
    let country = header(&location.country_header);
    let subdivision = header(&location.subdivision_header);
    let (country, subdivision, source) = if country.is_some() || subdivision.is_some() {
        (country, subdivision, LocationSource::EdgeHeader)
    } else {
        (
            location.default_country.clone(),
            None,
            LocationSource::ConfiguredDefault,
        )
    };
    if country.is_none() && subdivision.is_none() {
        return (context, evidence);
    }
    match context
        .clone()
        .with_location(country.as_deref(), subdivision.as_deref())
    {
        Ok(located) => {
            evidence.country = located.country().map(|code| code.as_str().to_owned());
            evidence.subdivision = located.subdivision().map(|code| code.as_str().to_owned());
            evidence.source = source;
            (located, evidence)
        }
        Err(error) => {
            tracing::debug!(%error, "unusable location; treating it as unknown");
            let given = [country, subdivision]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            evidence.source = LocationSource::Unusable;
            evidence.unusable_value = Some(given.chars().take(MAX_UNUSABLE_VALUE_CHARS).collect());
            (context, evidence)
        }
    }
}
