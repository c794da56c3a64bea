//! Fixtures shared by the integration tests: the demo story (alice, bruno,
//! chen, dara, emeka; mythos, fable, haiku; operator organization `lab`) plus
//! hard cases, all committed under `tests/fixtures/`.

// Each test binary uses a different subset of these fixtures. Helpers
// unwrap: in a test, a failed unwrap is a failed test with its message.
#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

use std::path::PathBuf;

use jiff::Timestamp;
use portcullis_domain::{Model, ModelDraft, PrincipalAttributes};
use portcullis_policy::{
    CompiledPolicies, EmbargoList, EngineInputs, Order, PolicyEngine, PolicySchema, PolicySource,
    ProfileRegistry, compile,
};
use std::sync::Arc;

pub const OPERATOR_ORGANIZATION: &str = "lab";

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

pub fn read_fixture(name: &str) -> String {
    std::fs::read_to_string(fixture_path(name)).unwrap()
}

/// The instant the demo's snapshot is built and, unless a case says
/// otherwise, decisions are made.
pub fn demo_now() -> Timestamp {
    "2026-11-20T12:00:00Z".parse().unwrap()
}

pub fn models() -> Vec<Model> {
    let drafts: Vec<ModelDraft> = serde_json::from_str(&read_fixture("demo_models.json")).unwrap();
    drafts
        .into_iter()
        .map(|draft| draft.validate().unwrap())
        .collect()
}

/// The five demo principals followed by the hard cases.
pub fn principals() -> Vec<PrincipalAttributes> {
    let mut all: Vec<PrincipalAttributes> =
        serde_json::from_str(&read_fixture("demo_principals.json")).unwrap();
    let hard: Vec<PrincipalAttributes> =
        serde_json::from_str(&read_fixture("hard_case_principals.json")).unwrap();
    all.extend(hard);
    all
}

pub fn principal(id: &str) -> PrincipalAttributes {
    principals().into_iter().find(|p| p.id == id).unwrap()
}

pub fn schema() -> Arc<PolicySchema> {
    Arc::new(PolicySchema::portcullis().unwrap())
}

pub fn default_policies() -> CompiledPolicies {
    compile(&[PolicySource::default_pack()], &schema()).unwrap()
}

/// The contract's example order: frontier suspended for foreign persons
/// under `ear`.
pub fn bis_order() -> Order {
    serde_json::from_value(serde_json::json!({
        "reference": "BIS-2026-0521", "issuer": "US Department of Commerce",
        "received_at": "2026-11-20T17:21:00-05:00", "effective_at": null,
        "effect": "suspend", "models": ["family:frontier"],
        "principals": {"foreign_persons_under": "ear"}, "reason": "test"}))
    .unwrap()
}

pub fn inputs(profile: &str, policies: CompiledPolicies, orders: Vec<Order>) -> EngineInputs {
    EngineInputs {
        policies,
        models: models(),
        principals: principals(),
        orders,
        operator_organization: OPERATOR_ORGANIZATION.into(),
        active_profile: profile.into(),
        profiles: ProfileRegistry::default(),
        embargo: EmbargoList::default_list().unwrap(),
        built_at: demo_now(),
    }
}

pub fn engine(profile: &str, orders: Vec<Order>) -> PolicyEngine {
    PolicyEngine::build(inputs(profile, default_policies(), orders)).unwrap()
}

/// Where the shared reference data is, or why a test must skip.
pub fn shared_data_dir() -> Result<PathBuf, String> {
    let dir = match std::env::var_os("PORTCULLIS_SHARED_DATA") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("..")
            .join("..")
            .join("shared")
            .join("data"),
    };
    if dir.is_dir() {
        Ok(dir)
    } else {
        Err(format!("shared data not found at {}", dir.display()))
    }
}

/// Returns the shared data directory, or prints `skipped: <reason>` and
/// returns `None`; with `PORTCULLIS_REQUIRE_ALL=1` a missing directory fails.
pub fn shared_data_or_skip() -> Option<PathBuf> {
    match shared_data_dir() {
        Ok(dir) => Some(dir),
        Err(reason) => {
            if std::env::var("PORTCULLIS_REQUIRE_ALL").as_deref() == Ok("1") {
                panic!("PORTCULLIS_REQUIRE_ALL=1 but {reason}");
            }
            println!("skipped: {reason}");
            None
        }
    }
}
