//! Orders in force: legal instructions that deny (principal, model) pairs
//! with 451, naming the order's reference.
//!
//! Orders are checked after Cedar and override it: an order that affects a
//! pair denies it whatever the policies say. The store owns an order's life
//! (creation, lifting, audit); this module only answers "does this order
//! affect this request".

use std::collections::BTreeMap;

use jiff::Timestamp;
use portcullis_domain::{Model, PrincipalAttributes, ScreeningStatus};
use serde::{Deserialize, Serialize};

use crate::country::CountryCode;
use crate::profile::ProfileRegistry;

/// Why an order document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error("order `{reference}`: model selector `{selector}` is empty")]
    EmptyModelSelector { reference: String, selector: String },
    #[error("order `{reference}`: `models` must not be empty")]
    NoModels { reference: String },
    #[error("order `{reference}`: unknown definition profile `{profile}`")]
    UnknownProfile { reference: String, profile: String },
    #[error("order `{reference}`: cannot match on principal attribute `{attribute}`")]
    UnknownAttribute {
        reference: String,
        attribute: String,
    },
    #[error("order `{reference}`: principal attribute `{attribute}` must be {expected}")]
    BadAttributeValue {
        reference: String,
        attribute: String,
        expected: &'static str,
    },
    #[error("order `{reference}`: `restrict` needs a `safeguard_profile`")]
    RestrictWithoutProfile { reference: String },
    #[error("order `{reference}`: `reference` must not be empty")]
    EmptyReference { reference: String },
    #[error("order `{reference}`: `document_sha256` must be 64 hexadecimal digits")]
    BadDocumentHash { reference: String },
}

/// What an order does to the pairs it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderEffect {
    /// The pairs are denied.
    Suspend,
    /// Only models with the order's `safeguard_profile` may serve the pairs.
    Restrict,
}

/// Which models an order covers: by name, `family:NAME` or `tag:NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ModelSelector {
    Name(String),
    Family(String),
    Tag(String),
}

impl TryFrom<String> for ModelSelector {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        let selector = if let Some(family) = text.strip_prefix("family:") {
            ModelSelector::Family(family.to_owned())
        } else if let Some(tag) = text.strip_prefix("tag:") {
            ModelSelector::Tag(tag.to_owned())
        } else {
            ModelSelector::Name(text.clone())
        };
        match &selector {
            ModelSelector::Name(value)
            | ModelSelector::Family(value)
            | ModelSelector::Tag(value)
                if value.is_empty() =>
            {
                Err(format!("model selector `{text}` is empty"))
            }
            _ => Ok(selector),
        }
    }
}

impl From<ModelSelector> for String {
    fn from(selector: ModelSelector) -> Self {
        match selector {
            ModelSelector::Name(name) => name,
            ModelSelector::Family(family) => format!("family:{family}"),
            ModelSelector::Tag(tag) => format!("tag:{tag}"),
        }
    }
}

impl ModelSelector {
    pub fn matches(&self, model: &Model) -> bool {
        match self {
            ModelSelector::Name(name) => model.name == *name,
            ModelSelector::Family(family) => model.family == *family,
            ModelSelector::Tag(tag) => model.has_tag(tag),
        }
    }
}

/// Which principals an order covers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PrincipalScope {
    /// `"all"`.
    All(AllPrincipals),
    /// `{"foreign_persons_under": PROFILE}`: everyone who is not a verified
    /// US person under the profile.
    ForeignPersonsUnder { foreign_persons_under: String },
    /// `{"ids": [...]}`.
    Ids { ids: Vec<String> },
    /// `{"attributes": {...}}`: every listed attribute matches.
    Attributes {
        attributes: BTreeMap<String, serde_json::Value>,
    },
}

/// The literal `"all"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AllPrincipals {
    All,
}

/// The attributes an order may match on. Nationality and residence come
/// from `verified_claims` only.
pub const MATCHABLE_ATTRIBUTES: [&str; 6] = [
    "organization",
    "employee",
    "screening",
    "nationalities",
    "residence_country",
    "us_person_basis",
];

/// What an order covers: models and principals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderScope {
    pub models: Vec<ModelSelector>,
    pub principals: PrincipalScope,
}

impl OrderScope {
    /// Whether the pair is inside this scope at `at`.
    ///
    /// Fails closed wherever it cannot tell: `foreign_persons_under` covers
    /// anyone who is not a *verified* US person under the profile (missing,
    /// self-asserted, expired or weak verification included), and covers
    /// everyone if the profile is unknown; an attribute match on verified
    /// claims covers a principal who has no verified claims.
    pub fn affects(
        &self,
        principal: &PrincipalAttributes,
        model: &Model,
        profiles: &ProfileRegistry,
        at: Timestamp,
    ) -> bool {
        self.models.iter().any(|selector| selector.matches(model))
            && covers_principal(&self.principals, principal, profiles, at)
    }
}

fn covers_principal(
    scope: &PrincipalScope,
    principal: &PrincipalAttributes,
    profiles: &ProfileRegistry,
    at: Timestamp,
) -> bool {
    match scope {
        PrincipalScope::All(_) => true,
        PrincipalScope::ForeignPersonsUnder {
            foreign_persons_under,
        } => profiles.get(foreign_persons_under).map_or(true, |profile| {
            !profile.is_verified_us_person_at(principal, at)
        }),
        PrincipalScope::Ids { ids } => ids.contains(&principal.id),
        PrincipalScope::Attributes { attributes } => attributes
            .iter()
            .all(|(name, expected)| attribute_matches(principal, name, expected)),
    }
}

fn attribute_matches(
    principal: &PrincipalAttributes,
    name: &str,
    expected: &serde_json::Value,
) -> bool {
    let verified_claims = principal
        .verified_claims
        .as_ref()
        .map(|verified| &verified.claims);
    match name {
        "organization" => principal.organization.as_deref() == expected.as_str(),
        "employee" => Some(principal.employee) == expected.as_bool(),
        "screening" => Some(principal.screening.status().as_str()) == expected.as_str(),
        "nationalities" => {
            let Some(claims) = verified_claims else {
                return true;
            };
            let wanted = country_list(expected);
            claims
                .nationalities
                .iter()
                .filter_map(|code| CountryCode::parse(code).ok())
                .any(|country| wanted.contains(&country))
        }
        "residence_country" => {
            let Some(claims) = verified_claims else {
                return true;
            };
            let wanted = country_list(expected);
            claims
                .residence_country
                .as_deref()
                .and_then(|code| CountryCode::parse(code).ok())
                .is_none_or(|country| wanted.contains(&country))
        }
        "us_person_basis" => {
            let Some(claims) = verified_claims else {
                return true;
            };
            let basis = claims
                .us_person_basis
                .and_then(|basis| serde_json::to_value(basis).ok());
            match expected {
                serde_json::Value::Array(values) => {
                    basis.is_none_or(|basis| values.contains(&basis))
                }
                value => basis.is_none_or(|basis| basis == *value),
            }
        }
        // Unknown attributes are refused when the order is validated; an
        // order that bypassed validation covers everyone rather than no one.
        _ => true,
    }
}

/// A country or a list of countries, normalised; unknown codes are dropped
/// here because validation refused them already.
fn country_list(value: &serde_json::Value) -> Vec<CountryCode> {
    match value {
        serde_json::Value::String(code) => CountryCode::parse(code).into_iter().collect(),
        serde_json::Value::Array(values) => values
            .iter()
            .filter_map(serde_json::Value::as_str)
            .filter_map(|code| CountryCode::parse(code).ok())
            .collect(),
        _ => Vec::new(),
    }
}

/// An order as the store holds it, in the `orders apply` document shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// The server-assigned id; absent in a document not yet applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub reference: String,
    pub issuer: String,
    pub received_at: Timestamp,
    /// `None` means the order took effect when it was received.
    #[serde(default)]
    pub effective_at: Option<Timestamp>,
    pub effect: OrderEffect,
    pub models: Vec<ModelSelector>,
    pub principals: PrincipalScope,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safeguard_profile: Option<String>,
}

impl Order {
    pub fn scope(&self) -> OrderScope {
        OrderScope {
            models: self.models.clone(),
            principals: self.principals.clone(),
        }
    }

    /// Checks what the engine relies on: a reference, at least one model
    /// selector, a known profile, matchable attributes with the right value
    /// shapes, valid country codes, and a profile for `restrict`.
    pub fn validate(&self, profiles: &ProfileRegistry) -> Result<(), OrderError> {
        let reference = || self.reference.clone();
        if self.reference.trim().is_empty() {
            return Err(OrderError::EmptyReference {
                reference: reference(),
            });
        }
        if self.models.is_empty() {
            return Err(OrderError::NoModels {
                reference: reference(),
            });
        }
        if let Some(hash) = &self.document_sha256
            && !is_sha256_hex(hash)
        {
            return Err(OrderError::BadDocumentHash {
                reference: reference(),
            });
        }
        if self.effect == OrderEffect::Restrict && self.safeguard_profile.is_none() {
            return Err(OrderError::RestrictWithoutProfile {
                reference: reference(),
            });
        }
        match &self.principals {
            PrincipalScope::ForeignPersonsUnder {
                foreign_persons_under,
            } => {
                if profiles.get(foreign_persons_under).is_err() {
                    return Err(OrderError::UnknownProfile {
                        reference: reference(),
                        profile: foreign_persons_under.clone(),
                    });
                }
            }
            PrincipalScope::Attributes { attributes } => {
                for (attribute, value) in attributes {
                    validate_attribute(&self.reference, attribute, value)?;
                }
            }
            PrincipalScope::All(_) | PrincipalScope::Ids { .. } => {}
        }
        Ok(())
    }

    /// Whether the order is in force at `at`. Lifting is the store's
    /// business: a lifted order is not handed to the engine.
    pub fn in_force_at(&self, at: Timestamp) -> bool {
        self.effective_at.unwrap_or(self.received_at) <= at
    }

    /// Whether the order denies this pair at `at`.
    pub fn denies(
        &self,
        principal: &PrincipalAttributes,
        model: &Model,
        profiles: &ProfileRegistry,
        at: Timestamp,
    ) -> bool {
        if !self.in_force_at(at) {
            return false;
        }
        let in_scope = self.models.iter().any(|selector| selector.matches(model))
            && covers_principal(&self.principals, principal, profiles, at);
        if !in_scope {
            return false;
        }
        match self.effect {
            OrderEffect::Suspend => true,
            // An order without a profile (one that bypassed validation)
            // leaves no model allowed to serve the scope.
            OrderEffect::Restrict => match (&self.safeguard_profile, &model.safeguard_profile) {
                (Some(required), Some(actual)) => required != actual,
                _ => true,
            },
        }
    }
}

/// A SHA-256 digest as lowercase hex: what `orders apply --document` writes
/// and what `sha256sum` prints, so a reader can compare the two by eye.
fn is_sha256_hex(hash: &str) -> bool {
    hash.len() == 64
        && hash
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

fn validate_attribute(
    reference: &str,
    attribute: &str,
    value: &serde_json::Value,
) -> Result<(), OrderError> {
    let bad_value = |expected| OrderError::BadAttributeValue {
        reference: reference.to_owned(),
        attribute: attribute.to_owned(),
        expected,
    };
    match attribute {
        "organization" => value
            .as_str()
            .map(|_| ())
            .ok_or_else(|| bad_value("a string")),
        "employee" => value
            .as_bool()
            .map(|_| ())
            .ok_or_else(|| bad_value("a boolean")),
        "screening" => serde_json::from_value::<ScreeningStatus>(value.clone())
            .map(|_| ())
            .map_err(|_| bad_value("a screening status")),
        "nationalities" | "residence_country" => {
            let codes: Vec<&str> = match value {
                serde_json::Value::String(code) => vec![code.as_str()],
                serde_json::Value::Array(values) => values
                    .iter()
                    .filter_map(serde_json::Value::as_str)
                    .collect(),
                _ => Vec::new(),
            };
            let all_strings = !value.is_array()
                || value
                    .as_array()
                    .is_some_and(|values| values.iter().all(serde_json::Value::is_string));
            if codes.is_empty()
                || !all_strings
                || codes.iter().any(|code| CountryCode::parse(code).is_err())
            {
                Err(bad_value("an ISO 3166-1 country code or a list of them"))
            } else {
                Ok(())
            }
        }
        "us_person_basis" => {
            let values: Vec<serde_json::Value> = match value {
                serde_json::Value::Array(values) => values.clone(),
                value => vec![value.clone()],
            };
            let all_known = !values.is_empty()
                && values.into_iter().all(|value| {
                    serde_json::from_value::<portcullis_domain::UsPersonBasis>(value).is_ok()
                });
            if all_known {
                Ok(())
            } else {
                Err(bad_value("a `us_person_basis` value or a list of them"))
            }
        }
        _ => Err(OrderError::UnknownAttribute {
            reference: reference.to_owned(),
            attribute: attribute.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_domain::{ModelDraft, Provider, ReleaseState};
    use serde_json::json;

    fn model(name: &str, family: &str, tags: &[&str], safeguard_profile: Option<&str>) -> Model {
        ModelDraft {
            name: name.into(),
            provider: Provider::Mock,
            base_url: None,
            upstream_model: None,
            state: ReleaseState::Released,
            family: Some(family.into()),
            tags: tags.iter().map(|tag| (*tag).to_owned()).collect(),
            safeguard_profile: safeguard_profile.map(str::to_owned),
            api_key: None,
            api_key_env: None,
            forward_mock_headers: false,
        }
        .validate()
        .unwrap()
    }

    fn person(
        id: &str,
        basis: &str,
        nationalities: &[&str],
        expires_at: &str,
    ) -> PrincipalAttributes {
        serde_json::from_value(json!({
            "id": id, "organization": "acme", "screening": "clear",
            "verified_claims": {
                "verification": {"trust_framework": "nist_800_63A", "assurance_level": "ial2",
                                 "time": "2026-01-01T00:00:00Z", "expires_at": expires_at},
                "claims": {"nationalities": nationalities, "us_person_basis": basis}}}))
        .unwrap()
    }

    fn order(value: serde_json::Value) -> Order {
        let mut document = json!({
            "reference": "BIS-2026-0521", "issuer": "US Department of Commerce",
            "received_at": "2026-11-20T17:21:00-05:00", "effective_at": null,
            "effect": "suspend", "models": ["family:frontier"],
            "principals": {"foreign_persons_under": "ear"}, "reason": "test"});
        if let (Some(target), Some(overrides)) = (document.as_object_mut(), value.as_object()) {
            for (key, value) in overrides {
                target.insert(key.clone(), value.clone());
            }
        }
        serde_json::from_value(document).unwrap()
    }

    #[test]
    fn the_contract_example_parses() {
        let parsed = order(json!({}));
        assert_eq!(parsed.models, [ModelSelector::Family("frontier".into())]);
        assert_eq!(
            parsed.principals,
            PrincipalScope::ForeignPersonsUnder {
                foreign_persons_under: "ear".into()
            }
        );
        assert!(parsed.validate(&ProfileRegistry::default()).is_ok());
        let all = order(json!({"principals": "all", "models": ["fable", "tag:fail_closed"]}));
        assert_eq!(all.principals, PrincipalScope::All(AllPrincipals::All));
        assert_eq!(
            all.models,
            [
                ModelSelector::Name("fable".into()),
                ModelSelector::Tag("fail_closed".into())
            ]
        );
    }

    #[test]
    fn denial_table() {
        let profiles = ProfileRegistry::default();
        let now: Timestamp = "2026-11-21T00:00:00Z".parse().unwrap();
        let fable = model("fable", "frontier", &["fail_closed"], Some("cyber"));
        let mythos = model("mythos", "frontier", &["fail_closed"], None);
        let haiku = model("haiku", "haiku", &[], None);
        let alice = person("alice", "citizen", &["US"], "2027-01-01T00:00:00Z");
        let dara = person(
            "dara",
            "lawful_permanent_resident",
            &["IN"],
            "2027-01-01T00:00:00Z",
        );
        let bruno = person("bruno", "none", &["FR"], "2027-01-01T00:00:00Z");
        let expired_alice = person("alice", "citizen", &["US"], "2026-06-01T00:00:00Z");
        let unverified: PrincipalAttributes =
            serde_json::from_value(json!({"id": "anon", "us_person_basis": "citizen"})).unwrap();

        let suspend_ear = order(json!({}));
        let suspend_citizens =
            order(json!({"principals": {"foreign_persons_under": "citizens_only"}}));
        let restrict_all =
            order(json!({"effect": "restrict", "safeguard_profile": "cyber", "principals": "all"}));
        let later = order(json!({"effective_at": "2026-12-01T00:00:00Z"}));
        let by_id = order(json!({"principals": {"ids": ["dara"]}, "models": ["haiku"]}));
        let by_nationality =
            order(json!({"principals": {"attributes": {"nationalities": ["FR", "CN"]}}}));

        let cases: Vec<(&str, &Order, &PrincipalAttributes, &Model, bool)> = vec![
            ("US citizen under ear", &suspend_ear, &alice, &fable, false),
            ("LPR under ear", &suspend_ear, &dara, &fable, false),
            (
                "LPR under citizens_only",
                &suspend_citizens,
                &dara,
                &fable,
                true,
            ),
            ("foreign employee", &suspend_ear, &bruno, &mythos, true),
            ("model outside scope", &suspend_ear, &bruno, &haiku, false),
            (
                "expired verification fails closed",
                &suspend_ear,
                &expired_alice,
                &fable,
                true,
            ),
            (
                "self-asserted fails closed",
                &suspend_ear,
                &unverified,
                &fable,
                true,
            ),
            (
                "restrict lets the named profile serve",
                &restrict_all,
                &bruno,
                &fable,
                false,
            ),
            (
                "restrict stops other profiles",
                &restrict_all,
                &bruno,
                &mythos,
                true,
            ),
            ("not yet effective", &later, &bruno, &fable, false),
            ("by id, listed", &by_id, &dara, &haiku, true),
            ("by id, not listed", &by_id, &alice, &haiku, false),
            (
                "by nationality, match",
                &by_nationality,
                &bruno,
                &fable,
                true,
            ),
            (
                "by nationality, no match",
                &by_nationality,
                &dara,
                &fable,
                false,
            ),
            (
                "by nationality, unverified fails closed",
                &by_nationality,
                &unverified,
                &fable,
                true,
            ),
        ];
        for (label, order, principal, model, expected) in cases {
            assert_eq!(
                order.denies(principal, model, &profiles, now),
                expected,
                "{label}"
            );
        }
    }

    #[test]
    fn validation_table() {
        let profiles = ProfileRegistry::default();
        let cases = [
            (
                json!({"principals": {"foreign_persons_under": "gdpr"}}),
                "order `BIS-2026-0521`: unknown definition profile `gdpr`",
            ),
            (
                json!({"models": []}),
                "order `BIS-2026-0521`: `models` must not be empty",
            ),
            (
                json!({"effect": "restrict"}),
                "order `BIS-2026-0521`: `restrict` needs a `safeguard_profile`",
            ),
            (
                json!({"principals": {"attributes": {"shoe_size": 9}}}),
                "order `BIS-2026-0521`: cannot match on principal attribute `shoe_size`",
            ),
            (
                json!({"principals": {"attributes": {"nationalities": ["XX"]}}}),
                "order `BIS-2026-0521`: principal attribute `nationalities` must be an ISO 3166-1 country code or a list of them",
            ),
            (
                json!({"principals": {"attributes": {"employee": "yes"}}}),
                "order `BIS-2026-0521`: principal attribute `employee` must be a boolean",
            ),
            (
                json!({"document_sha256": "abc"}),
                "order `BIS-2026-0521`: `document_sha256` must be 64 hexadecimal digits",
            ),
            (
                json!({"document_sha256": "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"}),
                "order `BIS-2026-0521`: `document_sha256` must be 64 hexadecimal digits",
            ),
        ];
        for (overrides, expected) in cases {
            let error = order(overrides.clone()).validate(&profiles).unwrap_err();
            assert_eq!(error.to_string(), expected, "{overrides}");
        }
        let hashed = order(json!({
            "document_sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        }));
        assert_eq!(hashed.validate(&profiles), Ok(()));
        let empty_selector: Result<Order, _> = serde_json::from_value(json!({
            "reference": "R", "issuer": "I", "received_at": "2026-11-20T00:00:00Z",
            "effect": "suspend", "models": ["family:"], "principals": "all"}));
        assert!(empty_selector.is_err());
    }

    #[test]
    fn scope_affects_is_the_pair_test_without_effect() {
        let profiles = ProfileRegistry::default();
        let now: Timestamp = "2026-11-21T00:00:00Z".parse().unwrap();
        let scope = order(json!({})).scope();
        let bruno = person("bruno", "none", &["FR"], "2027-01-01T00:00:00Z");
        let alice = person("alice", "citizen", &["US"], "2027-01-01T00:00:00Z");
        let fable = model("fable", "frontier", &["fail_closed"], Some("cyber"));
        assert!(scope.affects(&bruno, &fable, &profiles, now));
        assert!(!scope.affects(&alice, &fable, &profiles, now));
    }
}
