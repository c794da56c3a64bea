//! Loading and compiling Cedar policy text.
//!
//! [`compile`] is pure: it turns policy sources into [`CompiledPolicies`] or
//! an error with a source location, and never touches a set already in
//! force. A caller that gets an error simply keeps the set it has.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::{Effect, Policy, PolicyId, PolicySet, Schema, ValidationMode, Validator};

/// The schema text, compiled into the crate.
pub const SCHEMA_TEXT: &str = include_str!("../data/schema.cedarschema");

/// The default policy pack, compiled into the crate.
pub const DEFAULT_POLICY_TEXT: &str = include_str!("../policies/default.cedar");

/// The reason given when no permit applies and no forbid denies.
pub const NO_PERMIT_REASON: &str = "no_permit";

/// The annotation that names a policy.
pub const ID_ANNOTATION: &str = "id";

/// The annotation that declares which status a policy denies with.
pub const STATUS_ANNOTATION: &str = "status";

/// Where in a policy source something is. Lines and columns count from 1;
/// columns count characters, not bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLocation {
    pub source_name: String,
    pub line: usize,
    pub column: usize,
}

impl SourceLocation {
    fn at_offset(source: &PolicySource, offset: usize) -> Self {
        let clamped = offset.min(source.text.len());
        let before = source.text.get(..clamped).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |index| index + 1);
        let column = before
            .get(line_start..)
            .map_or(0, |text| text.chars().count())
            + 1;
        Self {
            source_name: source.name.clone(),
            line,
            column,
        }
    }
}

impl fmt::Display for SourceLocation {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "`{}` line {} column {}",
            self.source_name, self.line, self.column
        )
    }
}

/// Why a policy set was refused. Every variant that concerns policy text
/// carries the location of the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("{location}: syntax error: {message}")]
    Syntax {
        location: SourceLocation,
        message: String,
    },
    #[error("{location}: policy `{policy_id}` does not validate against the schema: {message}")]
    Validation {
        location: SourceLocation,
        policy_id: String,
        message: String,
    },
    #[error("{location}: policy has no `@id` annotation")]
    MissingId { location: SourceLocation },
    #[error("{location}: policy id `{policy_id}` is reserved")]
    ReservedId {
        location: SourceLocation,
        policy_id: String,
    },
    #[error("{location}: policy id `{policy_id}` is already used at {first}")]
    DuplicateId {
        location: SourceLocation,
        policy_id: String,
        first: SourceLocation,
    },
    #[error(
        "{location}: policy `{policy_id}` has no `@status(\"legal\")` or `@status(\"ordinary\")` annotation"
    )]
    MissingStatus {
        location: SourceLocation,
        policy_id: String,
    },
    #[error(
        "{location}: policy `{policy_id}` has unknown status `{status}` (expected `legal` or `ordinary`)"
    )]
    UnknownStatus {
        location: SourceLocation,
        policy_id: String,
        status: String,
    },
    #[error("{location}: templates are not supported; write a static policy")]
    Template { location: SourceLocation },
    #[error("the policy schema does not parse: {0}")]
    Schema(String),
    #[error("cannot read policy file `{path}`: {message}")]
    Io { path: String, message: String },
}

impl PolicyError {
    /// The location of the problem in the policy text, when it has one.
    pub fn location(&self) -> Option<&SourceLocation> {
        match self {
            PolicyError::Syntax { location, .. }
            | PolicyError::Validation { location, .. }
            | PolicyError::MissingId { location }
            | PolicyError::ReservedId { location, .. }
            | PolicyError::DuplicateId { location, .. }
            | PolicyError::MissingStatus { location, .. }
            | PolicyError::UnknownStatus { location, .. }
            | PolicyError::Template { location } => Some(location),
            PolicyError::Schema(_) | PolicyError::Io { .. } => None,
        }
    }
}

/// One unit of policy text: a `.cedar` file or a policy stored as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySource {
    /// A name for messages, e.g. the file name.
    pub name: String,
    pub text: String,
}

impl PolicySource {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            text: text.into(),
        }
    }

    /// The default pack shipped with this crate.
    pub fn default_pack() -> Self {
        Self::new("default.cedar", DEFAULT_POLICY_TEXT)
    }
}

/// Reads every `*.cedar` file directly inside `directory`, in file-name
/// order, so that the same directory always compiles the same way.
pub fn load_policy_dir(directory: &Path) -> Result<Vec<PolicySource>, PolicyError> {
    let io_error = |path: &Path, error: std::io::Error| PolicyError::Io {
        path: path.display().to_string(),
        message: error.to_string(),
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(directory).map_err(|error| io_error(directory, error))? {
        let path = entry.map_err(|error| io_error(directory, error))?.path();
        if path
            .extension()
            .is_some_and(|extension| extension == "cedar")
            && path.is_file()
        {
            paths.push(path);
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).map_err(|error| io_error(&path, error))?;
            let name = path.file_name().map_or_else(
                || path.display().to_string(),
                |name| name.to_string_lossy().into_owned(),
            );
            Ok(PolicySource::new(name, text))
        })
        .collect()
}

/// The Portcullis Cedar schema.
#[derive(Debug, Clone)]
pub struct PolicySchema {
    schema: Schema,
}

impl PolicySchema {
    /// Parses the schema compiled into this crate.
    pub fn portcullis() -> Result<Self, PolicyError> {
        let (schema, _warnings) = Schema::from_cedarschema_str(SCHEMA_TEXT)
            .map_err(|error| PolicyError::Schema(error.to_string()))?;
        Ok(Self { schema })
    }

    pub fn cedar_schema(&self) -> &Schema {
        &self.schema
    }
}

/// Which HTTP status a policy's denial gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RuleStatus {
    /// An ordinary access rule: 403.
    Ordinary,
    /// A legal rule (export control, embargo, denied parties, orders): 451.
    Legal,
}

impl RuleStatus {
    pub fn http_status(self) -> u16 {
        match self {
            RuleStatus::Ordinary => 403,
            RuleStatus::Legal => 451,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RuleStatus::Ordinary => "ordinary",
            RuleStatus::Legal => "legal",
        }
    }
}

/// What the engine needs to know about one policy besides its Cedar form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo {
    pub id: String,
    pub status: RuleStatus,
    pub effect: Effect,
    pub location: SourceLocation,
}

/// A validated policy set. Each Cedar policy id is the policy's `@id`, so
/// Cedar's diagnostics already speak in rule ids.
#[derive(Debug, Clone)]
pub struct CompiledPolicies {
    policy_set: PolicySet,
    rules: HashMap<PolicyId, RuleInfo>,
    sources: Vec<PolicySource>,
    schema: Arc<PolicySchema>,
    warnings: Vec<String>,
}

impl CompiledPolicies {
    pub fn policy_set(&self) -> &PolicySet {
        &self.policy_set
    }

    pub fn rule(&self, id: &PolicyId) -> Option<&RuleInfo> {
        self.rules.get(id)
    }

    /// Every rule, sorted by id.
    pub fn rules(&self) -> Vec<&RuleInfo> {
        let mut rules: Vec<&RuleInfo> = self.rules.values().collect();
        rules.sort_by(|left, right| left.id.cmp(&right.id));
        rules
    }

    pub fn sources(&self) -> &[PolicySource] {
        &self.sources
    }

    pub fn schema(&self) -> &Arc<PolicySchema> {
        &self.schema
    }

    /// Validator warnings (for example a policy that can never apply). They
    /// do not stop a set from compiling but deserve an operator's look.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The number of policies in the set.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// Parses, names and validates `sources` against `schema` in strict mode.
///
/// Every policy needs an `@id` that is unique across all sources and not
/// `no_permit`, and an `@status` of `legal` or `ordinary`. Templates are
/// refused. The first problem found is returned with its location.
pub fn compile(
    sources: &[PolicySource],
    schema: &Arc<PolicySchema>,
) -> Result<CompiledPolicies, PolicyError> {
    let mut policy_set = PolicySet::new();
    let mut rules: HashMap<PolicyId, RuleInfo> = HashMap::new();
    let mut source_of_policy: HashMap<PolicyId, usize> = HashMap::new();
    for (source_index, source) in sources.iter().enumerate() {
        let parsed = PolicySet::from_str(&source.text).map_err(|errors| {
            let (offset, message) = first_diagnostic(&errors);
            PolicyError::Syntax {
                location: SourceLocation::at_offset(source, offset.unwrap_or(0)),
                message,
            }
        })?;
        if let Some(template) = parsed.templates().next() {
            let offset = locate_text(&source.text, &template.to_string(), 0).unwrap_or(0);
            return Err(PolicyError::Template {
                location: SourceLocation::at_offset(source, offset),
            });
        }
        for (policy, offset) in policies_in_source_order(&parsed, &source.text) {
            let location = SourceLocation::at_offset(source, offset);
            let rule = rule_info(&policy, location)?;
            let policy_id = PolicyId::new(&rule.id);
            if let Some(first) = rules.get(&policy_id) {
                return Err(PolicyError::DuplicateId {
                    location: rule.location,
                    policy_id: rule.id,
                    first: first.location.clone(),
                });
            }
            // The id cannot collide: uniqueness was checked just above.
            policy_set
                .add(policy.new_id(policy_id.clone()))
                .map_err(|error| PolicyError::Syntax {
                    location: rule.location.clone(),
                    message: error.to_string(),
                })?;
            source_of_policy.insert(policy_id.clone(), source_index);
            rules.insert(policy_id, rule);
        }
    }

    let validator = Validator::new(schema.cedar_schema().clone());
    let result = validator.validate(&policy_set, ValidationMode::Strict);
    if let Some(error) = result.validation_errors().next() {
        let policy_id = error.policy_id().clone();
        let fallback = rules
            .get(&policy_id)
            .map(|rule| rule.location.clone())
            .unwrap_or_else(|| SourceLocation {
                source_name: String::new(),
                line: 1,
                column: 1,
            });
        let (offset, message) = first_diagnostic(error);
        let location = match (offset, source_of_policy.get(&policy_id)) {
            (Some(offset), Some(&index)) => sources
                .get(index)
                .map_or(fallback, |source| SourceLocation::at_offset(source, offset)),
            _ => fallback,
        };
        return Err(PolicyError::Validation {
            location,
            policy_id: policy_id.to_string(),
            message,
        });
    }
    let warnings = result
        .validation_warnings()
        .map(|warning| format!("policy `{}`: {warning}", warning.policy_id()))
        .collect();

    Ok(CompiledPolicies {
        policy_set,
        rules,
        sources: sources.to_vec(),
        schema: Arc::clone(schema),
        warnings,
    })
}

/// The policies of one parsed source with the byte offset where each starts,
/// in the order they appear. Cedar names parsed policies `policy0`,
/// `policy1`, … in source order; each policy's text is its original source
/// text, found by searching forward from the end of the previous one.
fn policies_in_source_order(parsed: &PolicySet, text: &str) -> Vec<(Policy, usize)> {
    let mut policies: Vec<&Policy> = parsed.policies().collect();
    policies.sort_by_key(|policy| {
        policy
            .id()
            .to_string()
            .strip_prefix("policy")
            .and_then(|number| number.parse::<usize>().ok())
            .unwrap_or(usize::MAX)
    });
    let mut search_from = 0;
    policies
        .into_iter()
        .map(|policy| {
            let policy_text = policy.to_string();
            let offset = locate_text(text, &policy_text, search_from).unwrap_or(search_from);
            search_from = offset + policy_text.len().min(text.len().saturating_sub(offset));
            (policy.clone(), offset)
        })
        .collect()
}

fn locate_text(haystack: &str, needle: &str, from: usize) -> Option<usize> {
    haystack
        .get(from..)
        .and_then(|rest| rest.find(needle))
        .map(|found| found + from)
}

fn rule_info(policy: &Policy, location: SourceLocation) -> Result<RuleInfo, PolicyError> {
    let Some(id) = policy.annotation(ID_ANNOTATION) else {
        return Err(PolicyError::MissingId { location });
    };
    if id == NO_PERMIT_REASON || id.trim().is_empty() {
        return Err(PolicyError::ReservedId {
            location,
            policy_id: id.to_owned(),
        });
    }
    let status = match policy.annotation(STATUS_ANNOTATION) {
        Some("legal") => RuleStatus::Legal,
        Some("ordinary") => RuleStatus::Ordinary,
        Some(other) => {
            return Err(PolicyError::UnknownStatus {
                location,
                policy_id: id.to_owned(),
                status: other.to_owned(),
            });
        }
        None => {
            return Err(PolicyError::MissingStatus {
                location,
                policy_id: id.to_owned(),
            });
        }
    };
    Ok(RuleInfo {
        id: id.to_owned(),
        status,
        effect: policy.effect(),
        location,
    })
}

/// The byte offset of the first labelled span of a Cedar diagnostic (or of
/// its first related diagnostic) and a one-line message.
fn first_diagnostic(diagnostic: &dyn miette::Diagnostic) -> (Option<usize>, String) {
    let offset = first_label_offset(diagnostic);
    let mut message = diagnostic.to_string();
    if let Some(help) = diagnostic.help() {
        message = format!("{message} ({help})");
    }
    (offset, message.replace('\n', " "))
}

fn first_label_offset(diagnostic: &dyn miette::Diagnostic) -> Option<usize> {
    if let Some(offset) = diagnostic
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|label| label.offset())
    {
        return Some(offset);
    }
    diagnostic
        .related()
        .and_then(|mut related| related.find_map(first_label_offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Arc<PolicySchema> {
        Arc::new(PolicySchema::portcullis().unwrap())
    }

    #[test]
    fn default_pack_compiles_with_every_rule_declared() {
        let compiled = compile(&[PolicySource::default_pack()], &schema()).unwrap();
        let declared: Vec<(&str, RuleStatus)> = compiled
            .rules()
            .into_iter()
            .map(|rule| (rule.id.as_str(), rule.status))
            .collect();
        assert_eq!(
            declared,
            [
                ("denied_party", RuleStatus::Legal),
                ("embargoed_attributed_country", RuleStatus::Legal),
                ("embargoed_location", RuleStatus::Legal),
                ("embargoed_residence", RuleStatus::Legal),
                ("internal_model_operator_access", RuleStatus::Ordinary),
                ("internal_model_outside_operator", RuleStatus::Ordinary),
                ("released_model_access", RuleStatus::Ordinary),
                ("restricted_model_unknown_location", RuleStatus::Legal),
                ("unscreened_restricted_model", RuleStatus::Legal),
                ("us_persons_only", RuleStatus::Legal),
            ]
        );
        assert_eq!(compiled.warnings(), &[] as &[String]);
    }

    #[test]
    fn rule_locations_point_at_the_start_of_each_policy() {
        let text = "// header\n\n@id(\"a\")\n@status(\"ordinary\")\npermit (principal, action, resource);\n\n  @id(\"b\") @status(\"legal\") forbid (principal, action, resource);\n";
        let compiled = compile(&[PolicySource::new("two.cedar", text)], &schema()).unwrap();
        let locations: Vec<(String, usize, usize)> = compiled
            .rules()
            .into_iter()
            .map(|rule| (rule.id.clone(), rule.location.line, rule.location.column))
            .collect();
        assert_eq!(locations, [("a".to_owned(), 3, 1), ("b".to_owned(), 7, 3)]);
    }

    fn compile_error(text: &str) -> PolicyError {
        compile(&[PolicySource::new("bad.cedar", text)], &schema()).unwrap_err()
    }

    #[test]
    fn refusals_table() {
        let cases: &[(&str, &str, usize, usize)] = &[
            (
                "@id(\"a\")\n@status(\"ordinary\")\npermit (principal, action, resource)\nwhen { principal.active && };\n",
                "syntax",
                4,
                28,
            ),
            (
                "@status(\"ordinary\")\npermit (principal, action, resource);\n",
                "missing id",
                1,
                1,
            ),
            (
                "@id(\"a\")\npermit (principal, action, resource);\n",
                "missing status",
                1,
                1,
            ),
            (
                "@id(\"a\") @status(\"sometimes\")\npermit (principal, action, resource);\n",
                "unknown status",
                1,
                1,
            ),
            (
                "@id(\"no_permit\") @status(\"ordinary\")\npermit (principal, action, resource);\n",
                "reserved",
                1,
                1,
            ),
            (
                "@id(\"a\") @status(\"ordinary\")\npermit (principal, action, resource);\n@id(\"a\") @status(\"legal\")\nforbid (principal, action, resource);\n",
                "duplicate",
                3,
                1,
            ),
            (
                "@id(\"t\") @status(\"ordinary\")\npermit (principal == ?principal, action, resource);\n",
                "template",
                1,
                1,
            ),
        ];
        for (text, label, line, column) in cases {
            let error = compile_error(text);
            let location = error.location().unwrap();
            assert_eq!(
                (location.line, location.column),
                (*line, *column),
                "{label}: {error}"
            );
            assert_eq!(location.source_name, "bad.cedar");
        }
    }

    #[test]
    fn strict_validation_reports_line_and_column_of_the_bad_expression() {
        // `principal.nationality` does not exist in the schema: strict
        // validation must refuse it and point at the attribute access.
        let text = "@id(\"raw_claims\")\n@status(\"legal\")\nforbid (principal, action, resource)\nwhen { principal.nationality == \"CN\" };\n";
        let error = compile_error(text);
        match &error {
            PolicyError::Validation {
                location,
                policy_id,
                ..
            } => {
                assert_eq!(policy_id, "raw_claims");
                assert_eq!((location.line, location.column), (4, 8), "{error}");
            }
            other => panic!("expected a validation error, got {other}"),
        }
        assert!(
            error
                .to_string()
                .starts_with("`bad.cedar` line 4 column 8: policy `raw_claims` does not validate"),
            "{error}"
        );
    }

    #[test]
    fn duplicate_ids_across_files_name_both_places() {
        let first = PolicySource::new(
            "one.cedar",
            "@id(\"x\") @status(\"ordinary\")\npermit (principal, action, resource);\n",
        );
        let second = PolicySource::new(
            "two.cedar",
            "\n@id(\"x\") @status(\"legal\")\nforbid (principal, action, resource);\n",
        );
        let error = compile(&[first, second], &schema()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "`two.cedar` line 2 column 1: policy id `x` is already used at `one.cedar` line 1 column 1"
        );
    }
}
