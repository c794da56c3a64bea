//! Validation of a principal attribute document at import.
//!
//! The domain type keeps codes as the caller sent them. Import runs
//! [`validate_attributes`], which refuses what policy could not interpret
//! (unknown country codes, unknown assurance levels) and returns a copy with
//! every country code normalised to ISO 3166-1 alpha-2.

use std::fmt;
use std::str::FromStr;

use portcullis_domain::PrincipalAttributes;
use serde::{Deserialize, Serialize};

use crate::country::{CountryCode, CountryCodeError};

/// Identity assurance levels in NIST SP 800-63A terms, ordered by strength.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssuranceLevel {
    Ial1,
    Ial2,
    Ial3,
}

impl AssuranceLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            AssuranceLevel::Ial1 => "ial1",
            AssuranceLevel::Ial2 => "ial2",
            AssuranceLevel::Ial3 => "ial3",
        }
    }

    /// The number policies compare against: `ial1` is 1, `ial2` is 2,
    /// `ial3` is 3. A principal with no current verification has rank 0.
    pub fn rank(self) -> i64 {
        match self {
            AssuranceLevel::Ial1 => 1,
            AssuranceLevel::Ial2 => 2,
            AssuranceLevel::Ial3 => 3,
        }
    }
}

impl FromStr for AssuranceLevel {
    type Err = AttributeProblem;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "ial1" => Ok(AssuranceLevel::Ial1),
            "ial2" => Ok(AssuranceLevel::Ial2),
            "ial3" => Ok(AssuranceLevel::Ial3),
            _ => Err(AttributeProblem::UnknownAssuranceLevel(text.to_owned())),
        }
    }
}

impl fmt::Display for AssuranceLevel {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// What is wrong with one attribute.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttributeProblem {
    #[error(transparent)]
    Country(#[from] CountryCodeError),
    #[error("must not be empty")]
    Empty,
    #[error("unknown assurance level `{0}` (expected `ial1`, `ial2` or `ial3`)")]
    UnknownAssuranceLevel(String),
    #[error("expiry is earlier than the verification time")]
    ExpiresBeforeVerified,
}

/// A principal attribute document was refused; `field` is a path into the
/// document such as `verified_claims.claims.nationalities[1]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid principal attribute `{field}`: {problem}")]
pub struct AttributeError {
    pub field: String,
    #[source]
    pub problem: AttributeProblem,
}

fn field_error(field: impl Into<String>, problem: impl Into<AttributeProblem>) -> AttributeError {
    AttributeError {
        field: field.into(),
        problem: problem.into(),
    }
}

/// Checks a whole attribute document and returns it with every verified
/// country code normalised to alpha-2. Claims outside `verified_claims` are
/// kept as they are: they are never read by policy, so they are not judged.
pub fn validate_attributes(
    attributes: &PrincipalAttributes,
) -> Result<PrincipalAttributes, AttributeError> {
    let mut normalised = attributes.clone();
    if normalised.id.trim().is_empty() {
        return Err(field_error("id", AttributeProblem::Empty));
    }
    if let Some(organization) = &normalised.organization
        && organization.trim().is_empty()
    {
        return Err(field_error("organization", AttributeProblem::Empty));
    }
    let Some(verified_claims) = normalised.verified_claims.as_mut() else {
        return Ok(normalised);
    };
    let verification = &verified_claims.verification;
    if verification.trust_framework.trim().is_empty() {
        return Err(field_error(
            "verified_claims.verification.trust_framework",
            AttributeProblem::Empty,
        ));
    }
    if let Some(level) = &verification.assurance_level {
        level.parse::<AssuranceLevel>().map_err(|problem| {
            field_error("verified_claims.verification.assurance_level", problem)
        })?;
    }
    if let (Some(time), Some(expires_at)) = (verification.time, verification.expires_at)
        && expires_at < time
    {
        return Err(field_error(
            "verified_claims.verification.expires_at",
            AttributeProblem::ExpiresBeforeVerified,
        ));
    }
    let claims = &mut verified_claims.claims;
    normalise_list(
        &mut claims.nationalities,
        "verified_claims.claims.nationalities",
    )?;
    normalise_list(
        &mut claims.former_nationalities,
        "verified_claims.claims.former_nationalities",
    )?;
    normalise_one(
        &mut claims.most_recent_nationality,
        "verified_claims.claims.most_recent_nationality",
    )?;
    normalise_one(
        &mut claims.residence_country,
        "verified_claims.claims.residence_country",
    )?;
    Ok(normalised)
}

fn normalise_list(codes: &mut [String], field: &str) -> Result<(), AttributeError> {
    for (index, code) in codes.iter_mut().enumerate() {
        let country = CountryCode::parse(code)
            .map_err(|error| field_error(format!("{field}[{index}]"), error))?;
        *code = country.as_str().to_owned();
    }
    Ok(())
}

fn normalise_one(code: &mut Option<String>, field: &str) -> Result<(), AttributeError> {
    if let Some(text) = code.as_mut() {
        let country = CountryCode::parse(text).map_err(|error| field_error(field, error))?;
        *text = country.as_str().to_owned();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: serde_json::Value) -> PrincipalAttributes {
        serde_json::from_value(value).unwrap()
    }

    fn with_claims(claims: serde_json::Value) -> PrincipalAttributes {
        parse(json!({
            "id": "p1",
            "verified_claims": {
                "verification": {"trust_framework": "nist_800_63A", "assurance_level": "ial2",
                                 "time": "2026-01-10T00:00:00Z", "expires_at": "2027-01-10T00:00:00Z"},
                "claims": claims}}))
    }

    #[test]
    fn validation_table() {
        let cases: Vec<(PrincipalAttributes, Result<(), &str>)> = vec![
            (with_claims(json!({"nationalities": ["US", "CHN"]})), Ok(())),
            (parse(json!({"id": "p1"})), Ok(())),
            (
                // Unverified claims are kept for the record and not judged.
                parse(json!({"id": "p1", "nationalities": ["XX"]})),
                Ok(()),
            ),
            (
                with_claims(json!({"nationalities": ["US", "XX"]})),
                Err(
                    "invalid principal attribute `verified_claims.claims.nationalities[1]`: unknown country code `XX`",
                ),
            ),
            (
                with_claims(json!({"former_nationalities": ["ZZZ"]})),
                Err(
                    "invalid principal attribute `verified_claims.claims.former_nationalities[0]`: unknown country code `ZZZ`",
                ),
            ),
            (
                with_claims(json!({"residence_country": "UK"})),
                Err(
                    "invalid principal attribute `verified_claims.claims.residence_country`: unknown country code `UK`",
                ),
            ),
            (
                with_claims(json!({"most_recent_nationality": "QQ"})),
                Err(
                    "invalid principal attribute `verified_claims.claims.most_recent_nationality`: unknown country code `QQ`",
                ),
            ),
            (
                parse(json!({"id": " "})),
                Err("invalid principal attribute `id`: must not be empty"),
            ),
            (
                parse(json!({"id": "p1", "verified_claims": {
                    "verification": {"trust_framework": "nist_800_63A", "assurance_level": "loa9"},
                    "claims": {}}})),
                Err(
                    "invalid principal attribute `verified_claims.verification.assurance_level`: unknown assurance level `loa9` (expected `ial1`, `ial2` or `ial3`)",
                ),
            ),
            (
                parse(json!({"id": "p1", "verified_claims": {
                    "verification": {"trust_framework": ""}, "claims": {}}})),
                Err(
                    "invalid principal attribute `verified_claims.verification.trust_framework`: must not be empty",
                ),
            ),
            (
                parse(json!({"id": "p1", "verified_claims": {
                    "verification": {"trust_framework": "nist_800_63A",
                                     "time": "2026-01-10T00:00:00Z", "expires_at": "2025-01-10T00:00:00Z"},
                    "claims": {}}})),
                Err(
                    "invalid principal attribute `verified_claims.verification.expires_at`: expiry is earlier than the verification time",
                ),
            ),
        ];
        for (input, expected) in cases {
            let got = validate_attributes(&input)
                .map(|_| ())
                .map_err(|error| error.to_string());
            assert_eq!(got, expected.map_err(str::to_owned), "{input:?}");
        }
    }

    #[test]
    fn alpha3_codes_are_normalised() {
        let input = with_claims(json!({
            "nationalities": ["usa", "CHN"], "former_nationalities": ["IRN"],
            "most_recent_nationality": "chn", "residence_country": "USA"}));
        let normalised = validate_attributes(&input).unwrap();
        let claims = normalised.verified_claims.unwrap().claims;
        assert_eq!(claims.nationalities, ["US", "CN"]);
        assert_eq!(claims.former_nationalities, ["IR"]);
        assert_eq!(claims.most_recent_nationality.as_deref(), Some("CN"));
        assert_eq!(claims.residence_country.as_deref(), Some("US"));
    }

    #[test]
    fn assurance_levels_order_by_strength() {
        assert!(AssuranceLevel::Ial1 < AssuranceLevel::Ial2);
        assert!(AssuranceLevel::Ial2 < AssuranceLevel::Ial3);
        assert_eq!("IAL2".parse::<AssuranceLevel>(), Ok(AssuranceLevel::Ial2));
    }
}
