//! Compliance tools over an engine: `policy eval` (the JSON-lines contract),
//! `policy who-can` and `policy diff`. The CLI wires these to files and
//! standard streams; they hold no I/O policy of their own beyond reading and
//! writing the streams they are given.

use std::io::{BufRead, Write};

use jiff::Timestamp;
use portcullis_domain::PrincipalAttributes;
use serde::{Deserialize, Serialize};

use crate::context::RequestContext;
use crate::engine::{Action, DecideError, Decision, PolicyEngine, PrincipalRef};
use crate::policies::CompiledPolicies;

/// One `policy eval` input line.
#[derive(Debug, Clone, Deserialize)]
struct EvalCase {
    id: serde_json::Value,
    /// An attribute document, or the id of a principal in the evaluated
    /// data. Kept raw so that a bad document gets a precise message.
    principal: serde_json::Value,
    model: String,
    #[serde(default)]
    context: CaseContext,
    #[serde(default)]
    action: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct CaseContext {
    #[serde(default)]
    country: Option<String>,
    #[serde(default)]
    subdivision: Option<String>,
    #[serde(default)]
    time: Option<Timestamp>,
    #[serde(default)]
    client_ip: Option<std::net::IpAddr>,
}

/// One `policy eval` output line, in the contract's field order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalOutput {
    pub id: serde_json::Value,
    /// `allow` or `deny`.
    pub decision: &'static str,
    pub status: u16,
    pub reasons: Vec<String>,
}

/// A case line that could not be evaluated. It produces no output line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("case line {line}: {message}")]
pub struct CaseError {
    /// 1-based line number in the cases input.
    pub line: usize,
    pub message: String,
}

/// Why `policy eval` could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("cannot read cases: {0}")]
    Read(std::io::Error),
    #[error("cannot write results: {0}")]
    Write(std::io::Error),
}

/// What a `policy eval` run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EvalSummary {
    pub evaluated: usize,
    /// Lines that were skipped, with the reason; never skipped silently.
    pub errors: Vec<CaseError>,
}

/// Runs `policy eval`: reads one case per line from `cases`, writes one
/// result line per evaluable case to `results`, in input order.
///
/// A case's context is taken as given: a missing or null `country` is an
/// unknown location (no default country is applied), `subdivision` is ISO
/// 3166-2, and `time` defaults to `now`. Staleness does not apply. Blank
/// lines are ignored; a line that does not parse or names an unknown model
/// or principal is reported in the summary and produces no output.
pub fn run_eval(
    engine: &PolicyEngine,
    cases: impl BufRead,
    mut results: impl Write,
    now: Timestamp,
) -> Result<EvalSummary, EvalError> {
    let mut summary = EvalSummary::default();
    for (index, line) in cases.lines().enumerate() {
        let line = line.map_err(EvalError::Read)?;
        if line.trim().is_empty() {
            continue;
        }
        match evaluate_case_line(engine, &line, now) {
            Ok(output) => {
                serde_json::to_writer(&mut results, &output)
                    .map_err(|error| EvalError::Write(error.into()))?;
                results.write_all(b"\n").map_err(EvalError::Write)?;
                summary.evaluated += 1;
            }
            Err(message) => summary.errors.push(CaseError {
                line: index + 1,
                message,
            }),
        }
    }
    results.flush().map_err(EvalError::Write)?;
    Ok(summary)
}

/// Evaluates one case line.
pub fn evaluate_case_line(
    engine: &PolicyEngine,
    line: &str,
    now: Timestamp,
) -> Result<EvalOutput, String> {
    let case: EvalCase = serde_json::from_str(line).map_err(|error| error.to_string())?;
    let action = match case.action.as_deref() {
        None | Some("invoke") => Action::Invoke,
        Some("list_models") => Action::ListModels,
        Some(other) => return Err(format!("unknown action `{other}`")),
    };
    let context = RequestContext::at(case.context.time.unwrap_or(now))
        .with_location(
            case.context.country.as_deref(),
            case.context.subdivision.as_deref(),
        )
        .map_err(|error| error.to_string())?;
    let context = match case.context.client_ip {
        Some(client_ip) => context.with_client_ip(client_ip),
        None => context,
    };
    let attributes: PrincipalAttributes;
    let principal = match &case.principal {
        serde_json::Value::String(id) => PrincipalRef::Id(id),
        document => {
            attributes = serde_json::from_value(document.clone())
                .map_err(|error| format!("principal: {error}"))?;
            PrincipalRef::Attributes(&attributes)
        }
    };
    let decision = engine
        .decide(principal, &case.model, action, &context)
        .map_err(|error| error.to_string())?;
    Ok(EvalOutput {
        id: case.id,
        decision: if decision.allowed { "allow" } else { "deny" },
        status: decision.status,
        reasons: decision.reasons,
    })
}

/// One principal's decision in a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrincipalDecision {
    pub principal: String,
    pub status: u16,
    pub reasons: Vec<String>,
}

/// The answer to `policy who-can --model M`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WhoCanReport {
    pub model: String,
    pub profile: String,
    pub allowed: Vec<PrincipalDecision>,
    pub denied: Vec<PrincipalDecision>,
}

/// Every principal in the snapshot, split into those allowed to invoke
/// `model_name` in `context` and those denied, with the deciding rules.
pub fn who_can(
    engine: &PolicyEngine,
    model_name: &str,
    context: &RequestContext,
) -> Result<WhoCanReport, DecideError> {
    let mut report = WhoCanReport {
        model: model_name.to_owned(),
        profile: engine.profile().name().to_owned(),
        allowed: Vec::new(),
        denied: Vec::new(),
    };
    for principal_id in engine.principal_ids() {
        let decision = engine.decide(
            PrincipalRef::Id(principal_id),
            model_name,
            Action::Invoke,
            context,
        )?;
        let entry = PrincipalDecision {
            principal: principal_id.to_owned(),
            status: decision.status,
            reasons: decision.reasons,
        };
        if decision.allowed {
            report.allowed.push(entry);
        } else {
            report.denied.push(entry);
        }
    }
    Ok(report)
}

/// A (principal, model) pair whose decision a proposed policy set changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessChange {
    pub principal: String,
    pub model: String,
    /// True when allow turns into deny or back; false when only the status
    /// or the deciding rules change.
    pub access_changed: bool,
    pub before: DecisionSummary,
    pub after: DecisionSummary,
}

/// The parts of a decision a diff shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecisionSummary {
    pub allowed: bool,
    pub status: u16,
    pub reasons: Vec<String>,
}

impl From<Decision> for DecisionSummary {
    fn from(decision: Decision) -> Self {
        Self {
            allowed: decision.allowed,
            status: decision.status,
            reasons: decision.reasons,
        }
    }
}

/// Which (principal, model) pairs `proposed` would decide differently from
/// the engine's current set for `invoke` in `context`, sorted by principal
/// then model.
pub fn diff_policies(
    current: &PolicyEngine,
    proposed: CompiledPolicies,
    context: &RequestContext,
) -> Result<Vec<AccessChange>, DecideError> {
    let proposed_engine = current
        .with_policies(proposed)
        .map_err(|error| DecideError::Request(error.to_string()))?;
    let model_names: Vec<String> = current.models().map(|model| model.name.clone()).collect();
    let mut changes = Vec::new();
    for principal_id in current.principal_ids() {
        for model_name in &model_names {
            let principal = PrincipalRef::Id(principal_id);
            let before = current.decide(principal, model_name, Action::Invoke, context)?;
            let after = proposed_engine.decide(principal, model_name, Action::Invoke, context)?;
            if before == after {
                continue;
            }
            changes.push(AccessChange {
                principal: principal_id.to_owned(),
                model: model_name.clone(),
                access_changed: before.allowed != after.allowed,
                before: before.into(),
                after: after.into(),
            });
        }
    }
    Ok(changes)
}
