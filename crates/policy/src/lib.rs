//! The export-control access policy engine: who may use which model, here
//! and now. It holds ISO 3166 country data and versioned embargo data,
//! definition profiles (what "US person" means under `ear`, `citizens_only`,
//! `itar` or a custom profile), the Cedar schema and default policy pack,
//! a pure policy compiler, the per-snapshot [`PolicyEngine`] that decides
//! requests with 200/403/451 and the deciding rule ids, order matching, and
//! the compliance tools behind `policy eval`, `who-can` and `diff`.
//!
//! This crate knows nothing about HTTP, SQL or JWTs. It reads principals'
//! verified attributes as given and consumes, but never computes, their
//! denied-party screening status.

mod attributes;
mod context;
mod country;
mod embargo;
mod engine;
mod entities;
mod orders;
mod policies;
mod profile;
mod slices;
mod tools;

pub use attributes::{AssuranceLevel, AttributeError, AttributeProblem, validate_attributes};
pub use context::{LocationError, RequestContext};
pub use country::{CountryCode, CountryCodeError, SubdivisionCode, all_countries};
pub use embargo::{
    EmbargoConfig, EmbargoEntry, EmbargoError, EmbargoList, EmbargoPack, EmbargoSource,
};
pub use engine::{
    Action, DecideError, Decision, EngineError, EngineInputs, PolicyEngine, PrincipalRef,
    RejectedPrincipal,
};
pub use orders::{
    AllPrincipals, MATCHABLE_ATTRIBUTES, ModelSelector, Order, OrderEffect, OrderError, OrderScope,
    PrincipalScope,
};
pub use policies::{
    CompiledPolicies, DEFAULT_POLICY_TEXT, ID_ANNOTATION, NO_PERMIT_REASON, PolicyError,
    PolicySchema, PolicySource, RuleInfo, RuleStatus, SCHEMA_TEXT, STATUS_ANNOTATION,
    SourceLocation, compile, load_policy_dir,
};
pub use profile::{
    BUILT_IN_PROFILES, CountryAttribution, CustomProfileConfig, DefinitionProfile, ProfileError,
    ProfileFacts, ProfileRegistry, VerificationWindow,
};
pub use tools::{
    AccessChange, CaseError, DecisionSummary, EvalError, EvalOutput, EvalSummary,
    PrincipalDecision, WhoCanReport, diff_policies, evaluate_case_line, run_eval, who_can,
};
