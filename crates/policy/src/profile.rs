//! Definition profiles: what "US person" and "foreign person" mean, and which
//! countries a foreign person is attributed to.
//!
//! A profile is a positive test for "verified US person"; everyone else is a
//! foreign person. Only claims inside `verified_claims` are read. The result
//! of a profile is what Cedar policies see (`principal.us_person`,
//! `principal.attributed_countries`), never the raw claims.

use std::collections::BTreeMap;

use jiff::Timestamp;
use portcullis_domain::{PrincipalAttributes, UsPersonBasis, Verification};
use serde::{Deserialize, Serialize};

use crate::attributes::AssuranceLevel;
use crate::country::CountryCode;

/// How a foreign person's countries are worked out from their nationalities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CountryAttribution {
    /// The most recent citizenship (EAR deemed exports, 15 CFR 734.13(b)).
    /// When `most_recent_nationality` is absent and the person holds several
    /// nationalities, every current one is attributed: an ambiguity must not
    /// let a country drop out.
    MostRecent,
    /// Every current nationality.
    AllCurrent,
    /// Every current and former nationality (ITAR, 22 CFR 120.50(b)).
    AllCurrentAndFormer,
}

/// A custom profile as written in the operator's config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomProfileConfig {
    /// The `us_person_basis` values that make a verified principal a US person.
    pub us_person_bases: Vec<UsPersonBasis>,
    pub country_attribution: CountryAttribution,
    /// The weakest verification that counts. Defaults to `ial2`.
    #[serde(default = "default_minimum_assurance")]
    pub minimum_assurance: AssuranceLevel,
}

fn default_minimum_assurance() -> AssuranceLevel {
    AssuranceLevel::Ial2
}

/// Why a profile could not be defined or found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error("unknown definition profile `{0}`")]
    UnknownProfile(String),
    #[error("profile `{0}` is built in and cannot be redefined")]
    BuiltInName(String),
    #[error("profile name `{0}` must be 1-64 characters of lowercase letters, digits, `-` or `_`")]
    BadName(String),
    #[error("profile `{0}` counts `us_person_basis` `none` as a US person")]
    NoneCountsAsUsPerson(String),
}

/// A named definition profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionProfile {
    name: String,
    us_person_bases: Vec<UsPersonBasis>,
    country_attribution: CountryAttribution,
    minimum_assurance: AssuranceLevel,
}

/// The names of the built-in profiles.
pub const BUILT_IN_PROFILES: [&str; 3] = ["ear", "citizens_only", "itar"];

impl DefinitionProfile {
    /// EAR: US person = citizen, lawful permanent resident or protected
    /// individual (15 CFR 772.1); attributed country = most recent citizenship.
    pub fn ear() -> Self {
        Self {
            name: "ear".into(),
            us_person_bases: vec![
                UsPersonBasis::Citizen,
                UsPersonBasis::LawfulPermanentResident,
                UsPersonBasis::ProtectedIndividual,
            ],
            country_attribution: CountryAttribution::MostRecent,
            minimum_assurance: AssuranceLevel::Ial2,
        }
    }

    /// Citizens only: US person = citizen; attributed country as under `ear`.
    pub fn citizens_only() -> Self {
        Self {
            name: "citizens_only".into(),
            us_person_bases: vec![UsPersonBasis::Citizen],
            country_attribution: CountryAttribution::MostRecent,
            minimum_assurance: AssuranceLevel::Ial2,
        }
    }

    /// ITAR: US persons as under `ear` (22 CFR 120.62); attributed countries =
    /// every current and former nationality (22 CFR 120.50(b)).
    pub fn itar() -> Self {
        Self {
            name: "itar".into(),
            country_attribution: CountryAttribution::AllCurrentAndFormer,
            ..Self::ear()
        }
    }

    /// A built-in profile by name.
    pub fn built_in(name: &str) -> Result<Self, ProfileError> {
        match name {
            "ear" => Ok(Self::ear()),
            "citizens_only" => Ok(Self::citizens_only()),
            "itar" => Ok(Self::itar()),
            _ => Err(ProfileError::UnknownProfile(name.to_owned())),
        }
    }

    /// A profile defined in the operator's config.
    pub fn custom(name: &str, config: &CustomProfileConfig) -> Result<Self, ProfileError> {
        if BUILT_IN_PROFILES.contains(&name) {
            return Err(ProfileError::BuiltInName(name.to_owned()));
        }
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !name_ok {
            return Err(ProfileError::BadName(name.to_owned()));
        }
        if config.us_person_bases.contains(&UsPersonBasis::None) {
            return Err(ProfileError::NoneCountsAsUsPerson(name.to_owned()));
        }
        Ok(Self {
            name: name.to_owned(),
            us_person_bases: config.us_person_bases.clone(),
            country_attribution: config.country_attribution,
            minimum_assurance: config.minimum_assurance,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn minimum_assurance(&self) -> AssuranceLevel {
        self.minimum_assurance
    }

    pub fn country_attribution(&self) -> CountryAttribution {
        self.country_attribution
    }

    pub fn us_person_bases(&self) -> &[UsPersonBasis] {
        &self.us_person_bases
    }

    /// The interval in which the principal's verification counts under this
    /// profile, or `None` when it never counts (no `verified_claims`, no
    /// trust framework, assurance below the minimum or unknown, or no expiry:
    /// a verification without an expiry is never current).
    ///
    /// The interval starts at the verification time (a verification cannot
    /// count before it happened; a missing time places no lower bound) and
    /// ends, exclusively, at the expiry.
    pub fn verification_window(
        &self,
        attributes: &PrincipalAttributes,
    ) -> Option<VerificationWindow> {
        let verified_claims = attributes.verified_claims.as_ref()?;
        if claims_contradiction(&verified_claims.claims).is_some() {
            return None;
        }
        let verification: &Verification = &verified_claims.verification;
        if verification.trust_framework.trim().is_empty() {
            return None;
        }
        let assurance = assurance_of(verification)?;
        if assurance < self.minimum_assurance {
            return None;
        }
        let expires_at = verification.expires_at?;
        Some(VerificationWindow {
            verified_at: verification.time,
            expires_at,
        })
    }

    /// Whether the principal is verified under this profile at `at`
    /// (verified claims that contradict each other never are).
    pub fn is_verified_at(&self, attributes: &PrincipalAttributes, at: Timestamp) -> bool {
        self.verification_window(attributes)
            .is_some_and(|window| window.contains(at))
    }

    /// Whether the principal's verified `us_person_basis` is one this profile
    /// counts. This alone is not US-person status: the verification must
    /// also be current (see [`Self::is_verified_us_person_at`]).
    pub fn basis_counts(&self, attributes: &PrincipalAttributes) -> bool {
        attributes
            .verified_claims
            .as_ref()
            .and_then(|verified| verified.claims.us_person_basis)
            .is_some_and(|basis| self.us_person_bases.contains(&basis))
    }

    /// Whether the principal is a verified US person under this profile at
    /// `at`. Everyone else, including anyone whose verification is missing,
    /// self-asserted, expired or too weak, is a foreign person (fail closed).
    pub fn is_verified_us_person_at(
        &self,
        attributes: &PrincipalAttributes,
        at: Timestamp,
    ) -> bool {
        self.basis_counts(attributes) && self.is_verified_at(attributes, at)
    }

    /// The countries attributed to the principal, as sorted alpha-2 codes.
    ///
    /// They come from `verified_claims` only, and from an expired
    /// verification too: attribution can only add denials, so a stale
    /// nationality claim errs on the closed side. Codes that do not parse are
    /// skipped; import refuses them, so this only matters for documents that
    /// bypassed validation.
    pub fn attributed_countries(&self, attributes: &PrincipalAttributes) -> Vec<CountryCode> {
        let Some(verified_claims) = attributes.verified_claims.as_ref() else {
            return Vec::new();
        };
        let claims = &verified_claims.claims;
        let parse_all = |codes: &[String]| -> Vec<CountryCode> {
            codes
                .iter()
                .filter_map(|code| CountryCode::parse(code).ok())
                .collect()
        };
        let most_recent = claims
            .most_recent_nationality
            .as_deref()
            .and_then(|code| CountryCode::parse(code).ok());
        let mut countries = match self.country_attribution {
            CountryAttribution::MostRecent => match most_recent {
                Some(country) => vec![country],
                None => parse_all(&claims.nationalities),
            },
            CountryAttribution::AllCurrent => {
                let mut current = parse_all(&claims.nationalities);
                current.extend(most_recent);
                current
            }
            CountryAttribution::AllCurrentAndFormer => {
                let mut all = parse_all(&claims.nationalities);
                all.extend(parse_all(&claims.former_nationalities));
                all.extend(most_recent);
                all
            }
        };
        countries.sort();
        countries.dedup();
        countries
    }

    /// Everything policy needs to know about a principal under this profile
    /// at `at`.
    pub fn evaluate(&self, attributes: &PrincipalAttributes, at: Timestamp) -> ProfileFacts {
        let verified = self.is_verified_at(attributes, at);
        let verified_claims = attributes.verified_claims.as_ref();
        ProfileFacts {
            verified,
            us_person: verified && self.basis_counts(attributes),
            assurance_level: if verified {
                verified_claims.and_then(|claims| assurance_of(&claims.verification))
            } else {
                None
            },
            attributed_countries: self.attributed_countries(attributes),
            residence_country: verified_claims
                .and_then(|claims| claims.claims.residence_country.as_deref())
                .and_then(|code| CountryCode::parse(code).ok()),
        }
    }
}

fn assurance_of(verification: &Verification) -> Option<AssuranceLevel> {
    verification
        .assurance_level
        .as_deref()
        .and_then(|level| level.parse().ok())
}

/// When a verification counts: from `verified_at` (inclusive, unbounded when
/// absent) to `expires_at` (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerificationWindow {
    pub verified_at: Option<Timestamp>,
    pub expires_at: Timestamp,
}

impl VerificationWindow {
    pub fn contains(&self, at: Timestamp) -> bool {
        self.verified_at.is_none_or(|start| start <= at) && at < self.expires_at
    }
}

/// A profile's verdict on one principal at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileFacts {
    /// Verified claims present with a trust framework, assurance at or above
    /// the profile's minimum, and the decision time inside the window.
    pub verified: bool,
    /// Verified, and the verified basis is one the profile counts.
    pub us_person: bool,
    /// The assurance of a current verification; `None` when not verified.
    pub assurance_level: Option<AssuranceLevel>,
    pub attributed_countries: Vec<CountryCode>,
    /// The verified residence country.
    pub residence_country: Option<CountryCode>,
}

/// The built-in profiles plus the operator's custom ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileRegistry {
    profiles: BTreeMap<String, DefinitionProfile>,
}

impl Default for ProfileRegistry {
    fn default() -> Self {
        let profiles = [
            DefinitionProfile::ear(),
            DefinitionProfile::citizens_only(),
            DefinitionProfile::itar(),
        ]
        .into_iter()
        .map(|profile| (profile.name.clone(), profile))
        .collect();
        Self { profiles }
    }
}

impl ProfileRegistry {
    /// The built-in profiles plus `custom`, keyed by profile name.
    pub fn with_custom<'a>(
        custom: impl IntoIterator<Item = (&'a str, &'a CustomProfileConfig)>,
    ) -> Result<Self, ProfileError> {
        let mut registry = Self::default();
        for (name, config) in custom {
            let profile = DefinitionProfile::custom(name, config)?;
            registry.profiles.insert(profile.name.clone(), profile);
        }
        Ok(registry)
    }

    pub fn get(&self, name: &str) -> Result<&DefinitionProfile, ProfileError> {
        self.profiles
            .get(name)
            .ok_or_else(|| ProfileError::UnknownProfile(name.to_owned()))
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.profiles.keys().map(String::as_str)
    }
}

/// Why a principal's verified claims contradict each other, if they do.
/// Such claims count as unverified (fail closed): the issuer made a mistake
/// or the document was altered, and neither should grant access.
///
/// A `citizen` basis whose listed `nationalities` lack `US` is the one
/// contradiction recognised: a US citizen is a US national. An empty list is
/// missing information, not a contradiction.
pub fn claims_contradiction(
    claims: &portcullis_domain::VerifiedIdentityClaims,
) -> Option<&'static str> {
    let lists_us = || {
        claims
            .nationalities
            .iter()
            .any(|code| CountryCode::parse(code).is_ok_and(|c| c.as_str() == "US"))
    };
    (claims.us_person_basis == Some(UsPersonBasis::Citizen)
        && !claims.nationalities.is_empty()
        && !lists_us())
    .then_some("`us_person_basis` is `citizen` but `nationalities` does not list `US`")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn principal(
        verification: serde_json::Value,
        claims: serde_json::Value,
    ) -> PrincipalAttributes {
        serde_json::from_value(json!({
            "id": "p", "verified_claims": {"verification": verification, "claims": claims}}))
        .unwrap()
    }

    fn current() -> serde_json::Value {
        json!({"trust_framework": "nist_800_63A", "assurance_level": "ial2",
               "time": "2026-01-01T00:00:00Z", "expires_at": "2027-01-01T00:00:00Z"})
    }

    fn codes(countries: &[CountryCode]) -> Vec<&str> {
        countries.iter().map(CountryCode::as_str).collect()
    }

    #[test]
    fn us_person_table() {
        let now = at("2026-06-01T00:00:00Z");
        let cases: Vec<(&str, PrincipalAttributes, [bool; 3])> = vec![
            (
                "citizen",
                principal(current(), json!({"us_person_basis": "citizen"})),
                [true, true, true],
            ),
            (
                "lawful permanent resident",
                principal(
                    current(),
                    json!({"us_person_basis": "lawful_permanent_resident"}),
                ),
                [true, false, true],
            ),
            (
                "protected individual",
                principal(
                    current(),
                    json!({"us_person_basis": "protected_individual"}),
                ),
                [true, false, true],
            ),
            (
                "no basis",
                principal(
                    current(),
                    json!({"us_person_basis": "none", "nationalities": ["FR"]}),
                ),
                [false, false, false],
            ),
            (
                "stateless",
                principal(current(), json!({"nationalities": []})),
                [false, false, false],
            ),
            (
                "expired",
                principal(
                    json!({"trust_framework": "nist_800_63A", "assurance_level": "ial2",
                           "time": "2025-01-01T00:00:00Z", "expires_at": "2026-01-01T00:00:00Z"}),
                    json!({"us_person_basis": "citizen"}),
                ),
                [false, false, false],
            ),
            (
                "no expiry",
                principal(
                    json!({"trust_framework": "nist_800_63A", "assurance_level": "ial2"}),
                    json!({"us_person_basis": "citizen"}),
                ),
                [false, false, false],
            ),
            (
                "verified in the future",
                principal(
                    json!({"trust_framework": "nist_800_63A", "assurance_level": "ial2",
                           "time": "2026-07-01T00:00:00Z", "expires_at": "2027-07-01T00:00:00Z"}),
                    json!({"us_person_basis": "citizen"}),
                ),
                [false, false, false],
            ),
            (
                "citizen whose nationalities lack US (contradiction)",
                principal(
                    current(),
                    json!({"us_person_basis": "citizen", "nationalities": ["FR"]}),
                ),
                [false, false, false],
            ),
            (
                "citizen listing USA in alpha-3",
                principal(
                    current(),
                    json!({"us_person_basis": "citizen", "nationalities": ["FRA", "USA"]}),
                ),
                [true, true, true],
            ),
            (
                "assurance too low",
                principal(
                    json!({"trust_framework": "nist_800_63A", "assurance_level": "ial1",
                           "expires_at": "2027-01-01T00:00:00Z"}),
                    json!({"us_person_basis": "citizen"}),
                ),
                [false, false, false],
            ),
            (
                "no assurance level",
                principal(
                    json!({"trust_framework": "nist_800_63A", "expires_at": "2027-01-01T00:00:00Z"}),
                    json!({"us_person_basis": "citizen"}),
                ),
                [false, false, false],
            ),
            (
                "self-asserted only",
                serde_json::from_value(json!({"id": "p", "us_person_basis": "citizen",
                                              "nationalities": ["US"]}))
                .unwrap(),
                [false, false, false],
            ),
        ];
        let profiles = [
            DefinitionProfile::ear(),
            DefinitionProfile::citizens_only(),
            DefinitionProfile::itar(),
        ];
        for (label, attributes, expected) in cases {
            for (profile, expected_us_person) in profiles.iter().zip(expected) {
                assert_eq!(
                    profile.evaluate(&attributes, now).us_person,
                    expected_us_person,
                    "{label} under {}",
                    profile.name()
                );
            }
        }
    }

    #[test]
    fn attribution_table() {
        let claims = json!({"nationalities": ["FR", "CN"], "former_nationalities": ["IR"],
                            "us_person_basis": "none"});
        let with_most_recent = json!({"nationalities": ["FR", "CN"], "former_nationalities": ["IR"],
                                      "most_recent_nationality": "CN"});
        let cases: Vec<(DefinitionProfile, serde_json::Value, Vec<&str>)> = vec![
            // Ambiguous "most recent" attributes every current nationality.
            (DefinitionProfile::ear(), claims.clone(), vec!["CN", "FR"]),
            (
                DefinitionProfile::ear(),
                with_most_recent.clone(),
                vec!["CN"],
            ),
            (
                DefinitionProfile::citizens_only(),
                with_most_recent.clone(),
                vec!["CN"],
            ),
            (
                DefinitionProfile::itar(),
                claims.clone(),
                vec!["CN", "FR", "IR"],
            ),
            (
                DefinitionProfile::itar(),
                with_most_recent,
                vec!["CN", "FR", "IR"],
            ),
            (
                DefinitionProfile::ear(),
                json!({"nationalities": []}),
                vec![],
            ),
        ];
        for (profile, claims, expected) in cases {
            let attributes = principal(current(), claims.clone());
            assert_eq!(
                codes(&profile.attributed_countries(&attributes)),
                expected,
                "{} {claims}",
                profile.name()
            );
        }
    }

    #[test]
    fn window_boundaries_are_inclusive_then_exclusive() {
        let attributes = principal(current(), json!({"us_person_basis": "citizen"}));
        let profile = DefinitionProfile::ear();
        assert!(profile.is_verified_us_person_at(&attributes, at("2026-01-01T00:00:00Z")));
        assert!(!profile.is_verified_us_person_at(&attributes, at("2025-12-31T23:59:59Z")));
        assert!(!profile.is_verified_us_person_at(&attributes, at("2027-01-01T00:00:00Z")));
    }

    #[test]
    fn custom_profiles_from_config() {
        let config: CustomProfileConfig = serde_json::from_value(json!({
            "us_person_bases": ["citizen", "lawful_permanent_resident"],
            "country_attribution": "all_current"
        }))
        .unwrap();
        assert_eq!(config.minimum_assurance, AssuranceLevel::Ial2);
        let registry = ProfileRegistry::with_custom([("counsel_2026", &config)]).unwrap();
        let profile = registry.get("counsel_2026").unwrap();
        let lpr = principal(
            current(),
            json!({"us_person_basis": "lawful_permanent_resident"}),
        );
        let refugee = principal(
            current(),
            json!({"us_person_basis": "protected_individual"}),
        );
        let now = at("2026-06-01T00:00:00Z");
        assert!(profile.is_verified_us_person_at(&lpr, now));
        assert!(!profile.is_verified_us_person_at(&refugee, now));

        let errors = [
            (
                DefinitionProfile::custom("ear", &config),
                ProfileError::BuiltInName("ear".into()),
            ),
            (
                DefinitionProfile::custom("Bad Name", &config),
                ProfileError::BadName("Bad Name".into()),
            ),
        ];
        for (got, expected) in errors {
            assert_eq!(got.unwrap_err(), expected);
        }
        let none_counts = CustomProfileConfig {
            us_person_bases: vec![UsPersonBasis::None],
            ..config
        };
        assert!(matches!(
            DefinitionProfile::custom("loose", &none_counts),
            Err(ProfileError::NoneCountsAsUsPerson(_))
        ));
        assert!(matches!(
            registry.get("nope"),
            Err(ProfileError::UnknownProfile(_))
        ));
    }
}
