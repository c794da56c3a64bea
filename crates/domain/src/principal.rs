use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// A person or service account that can hold keys and make requests.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub id: String,
    pub display_name: String,
    pub attributes: PrincipalAttributes,
    pub created_at: Timestamp,
}

/// The attribute document of a principal, in the contract shape shared by the
/// admin API, `policy eval` cases and the JWT claim mapping.
///
/// Only what sits inside `verified_claims` may ever satisfy a restriction.
/// Anything else the caller sends (for example a top-level `nationalities`) is
/// kept in `unverified` for the record and is never read by policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrincipalAttributes {
    pub id: String,
    #[serde(default)]
    pub organization: Option<String>,
    #[serde(default)]
    pub employee: bool,
    #[serde(default = "default_active")]
    pub active: bool,
    #[serde(default)]
    pub screening: Screening,
    #[serde(default)]
    pub verified_claims: Option<VerifiedClaims>,
    /// Self-asserted or otherwise unverified attributes. Never used by policy.
    #[serde(flatten)]
    pub unverified: BTreeMap<String, serde_json::Value>,
}

fn default_active() -> bool {
    true
}

/// OpenID Connect for Identity Assurance `verified_claims`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifiedClaims {
    pub verification: Verification,
    pub claims: VerifiedIdentityClaims,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    pub trust_framework: String,
    #[serde(default)]
    pub assurance_level: Option<String>,
    /// When the verification was performed.
    #[serde(default)]
    pub time: Option<Timestamp>,
    /// When the verification stops counting. Missing means it never counts
    /// as current for restricted models (fail closed).
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
}

/// The verified claims themselves. Country codes are kept as given here; the
/// policy crate normalises alpha-3 to alpha-2 and rejects unknown codes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct VerifiedIdentityClaims {
    #[serde(default)]
    pub nationalities: Vec<String>,
    #[serde(default)]
    pub former_nationalities: Vec<String>,
    #[serde(default)]
    pub most_recent_nationality: Option<String>,
    #[serde(default)]
    pub us_person_basis: Option<UsPersonBasis>,
    #[serde(default)]
    pub residence_country: Option<String>,
    #[serde(default)]
    pub given_name: Option<String>,
    #[serde(default)]
    pub family_name: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

/// The basis on which a person is a US person. Portcullis' own claim inside
/// `verified_claims`; no identity standard defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsPersonBasis {
    Citizen,
    LawfulPermanentResident,
    ProtectedIndividual,
    None,
}

impl UsPersonBasis {
    /// The contract's spelling, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            UsPersonBasis::Citizen => "citizen",
            UsPersonBasis::LawfulPermanentResident => "lawful_permanent_resident",
            UsPersonBasis::ProtectedIndividual => "protected_individual",
            UsPersonBasis::None => "none",
        }
    }
}

/// Denied-party screening status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScreeningStatus {
    Clear,
    PotentialMatch,
    ConfirmedMatch,
    #[default]
    Unscreened,
}

impl ScreeningStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ScreeningStatus::Clear => "clear",
            ScreeningStatus::PotentialMatch => "potential_match",
            ScreeningStatus::ConfirmedMatch => "confirmed_match",
            ScreeningStatus::Unscreened => "unscreened",
        }
    }
}

/// Screening as the contract allows it: a bare status string, or an object
/// recording the list version, the matched entry and the score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Screening {
    Status(ScreeningStatus),
    Detailed {
        status: ScreeningStatus,
        #[serde(default)]
        list_version: Option<String>,
        #[serde(default)]
        entry: Option<String>,
        #[serde(default)]
        score: Option<f64>,
    },
}

impl Default for Screening {
    fn default() -> Self {
        Screening::Status(ScreeningStatus::Unscreened)
    }
}

impl Screening {
    pub fn status(&self) -> ScreeningStatus {
        match self {
            Screening::Status(status) | Screening::Detailed { status, .. } => *status,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn us_person_basis_spelling_matches_its_serialisation() {
        for basis in [
            UsPersonBasis::Citizen,
            UsPersonBasis::LawfulPermanentResident,
            UsPersonBasis::ProtectedIndividual,
            UsPersonBasis::None,
        ] {
            assert_eq!(
                serde_json::to_value(basis).ok(),
                Some(serde_json::Value::from(basis.as_str()))
            );
        }
    }

    #[test]
    fn contract_example_parses_and_keeps_unverified_claims_apart() {
        let attributes: PrincipalAttributes = serde_json::from_value(serde_json::json!({
            "id": "p1", "organization": "lab", "employee": true, "screening": "clear",
            "nationalities": ["US"],
            "verified_claims": {
                "verification": {"trust_framework": "nist_800_63A", "assurance_level": "ial2",
                                 "time": "2026-01-10T00:00:00Z", "expires_at": "2027-01-10T00:00:00Z"},
                "claims": {"nationalities": ["US", "CN"], "us_person_basis": "citizen", "residence_country": "US"}}
        }))
        .unwrap();
        assert!(attributes.active);
        assert_eq!(attributes.screening.status(), ScreeningStatus::Clear);
        let claims = attributes.verified_claims.as_ref().unwrap();
        assert_eq!(claims.claims.us_person_basis, Some(UsPersonBasis::Citizen));
        assert_eq!(claims.claims.nationalities, ["US", "CN"]);
        assert!(attributes.unverified.contains_key("nationalities"));
    }

    #[test]
    fn screening_forms() {
        let cases = [
            (
                serde_json::json!("potential_match"),
                ScreeningStatus::PotentialMatch,
            ),
            (
                serde_json::json!({"status": "confirmed_match", "list_version": "sdn-2026-11", "entry": "123", "score": 0.93}),
                ScreeningStatus::ConfirmedMatch,
            ),
        ];
        for (value, expected) in cases {
            let screening: Screening = serde_json::from_value(value).unwrap();
            assert_eq!(screening.status(), expected);
        }
        let missing: PrincipalAttributes =
            serde_json::from_value(serde_json::json!({"id": "x"})).unwrap();
        assert_eq!(missing.screening.status(), ScreeningStatus::Unscreened);
    }
}
