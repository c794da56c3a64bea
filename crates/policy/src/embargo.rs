//! Embargoed destinations as versioned data.
//!
//! The default pack lives in `data/embargo.json` with its `as_of` date and
//! citations. Listed destinations that are not blocked by default (Russia and
//! Belarus under 15 CFR 746.8) stay in the data so that the operator's choice
//! to add them is visible next to the reason they are not blocked.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::country::{CountryCode, CountryCodeError, SubdivisionCode};

const DEFAULT_EMBARGO_PACK: &str = include_str!("../data/embargo.json");

/// Why an embargo pack or the operator's additions were refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EmbargoError {
    #[error("embargo data is not valid JSON: {0}")]
    Json(String),
    #[error("embargo data `{field}`: {source}")]
    Code {
        field: String,
        #[source]
        source: CountryCodeError,
    },
    #[error("embargo data entry `{code}` cites unknown source `{source_id}`")]
    UnknownSource { code: String, source_id: String },
}

/// One citation an embargo entry rests on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbargoSource {
    pub id: String,
    pub citation: String,
}

/// A listed destination: a country (ISO 3166-1) or a region (ISO 3166-2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbargoEntry {
    pub code: String,
    #[serde(default)]
    pub name: Option<String>,
    /// Whether requests from this destination are refused by default.
    pub blocked: bool,
    /// The `id` of an entry in the pack's `sources`.
    pub source: String,
    #[serde(default)]
    pub remark: Option<String>,
}

/// The embargo data file as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbargoPack {
    pub version: String,
    pub as_of: String,
    #[serde(default)]
    pub note: Option<String>,
    pub sources: Vec<EmbargoSource>,
    pub countries: Vec<EmbargoEntry>,
    pub subdivisions: Vec<EmbargoEntry>,
}

/// The operator's additions to the default pack, from config. Additions only:
/// relaxing the default pack is a change to the data file, reviewed like code.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbargoConfig {
    /// ISO 3166-1 codes (alpha-2 or alpha-3) to block, e.g. `["RU", "BY"]`.
    #[serde(default)]
    pub add_countries: Vec<String>,
    /// ISO 3166-2 codes to block, e.g. `["UA-23"]`.
    #[serde(default)]
    pub add_subdivisions: Vec<String>,
}

/// The destinations that are blocked, after validation, with the version of
/// the data they came from (recorded with decisions and tool output).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbargoList {
    pack_version: String,
    as_of: String,
    countries: BTreeSet<CountryCode>,
    subdivisions: BTreeSet<SubdivisionCode>,
}

impl EmbargoPack {
    /// The pack compiled into this crate.
    pub fn default_pack() -> Result<Self, EmbargoError> {
        Self::from_json(DEFAULT_EMBARGO_PACK)
    }

    pub fn from_json(text: &str) -> Result<Self, EmbargoError> {
        serde_json::from_str(text).map_err(|error| EmbargoError::Json(error.to_string()))
    }
}

impl EmbargoList {
    /// Validates every code in the pack and the operator's additions and
    /// keeps the blocked ones.
    pub fn new(pack: &EmbargoPack, config: &EmbargoConfig) -> Result<Self, EmbargoError> {
        let mut countries = BTreeSet::new();
        let mut subdivisions = BTreeSet::new();
        for (index, entry) in pack.countries.iter().enumerate() {
            check_source(pack, entry)?;
            let code = CountryCode::parse(&entry.code).map_err(|source| EmbargoError::Code {
                field: format!("countries[{index}].code"),
                source,
            })?;
            if entry.blocked {
                countries.insert(code);
            }
        }
        for (index, entry) in pack.subdivisions.iter().enumerate() {
            check_source(pack, entry)?;
            let code =
                SubdivisionCode::parse(&entry.code).map_err(|source| EmbargoError::Code {
                    field: format!("subdivisions[{index}].code"),
                    source,
                })?;
            if entry.blocked {
                subdivisions.insert(code);
            }
        }
        for (index, text) in config.add_countries.iter().enumerate() {
            let code = CountryCode::parse(text).map_err(|source| EmbargoError::Code {
                field: format!("add_countries[{index}]"),
                source,
            })?;
            countries.insert(code);
        }
        for (index, text) in config.add_subdivisions.iter().enumerate() {
            let code = SubdivisionCode::parse(text).map_err(|source| EmbargoError::Code {
                field: format!("add_subdivisions[{index}]"),
                source,
            })?;
            subdivisions.insert(code);
        }
        Ok(Self {
            pack_version: pack.version.clone(),
            as_of: pack.as_of.clone(),
            countries,
            subdivisions,
        })
    }

    /// The default pack with no operator additions.
    pub fn default_list() -> Result<Self, EmbargoError> {
        Self::new(&EmbargoPack::default_pack()?, &EmbargoConfig::default())
    }

    pub fn pack_version(&self) -> &str {
        &self.pack_version
    }

    pub fn as_of(&self) -> &str {
        &self.as_of
    }

    pub fn blocked_countries(&self) -> impl Iterator<Item = &CountryCode> {
        self.countries.iter()
    }

    pub fn blocked_subdivisions(&self) -> impl Iterator<Item = &SubdivisionCode> {
        self.subdivisions.iter()
    }

    pub fn is_country_blocked(&self, country: CountryCode) -> bool {
        self.countries.contains(&country)
    }

    pub fn is_subdivision_blocked(&self, subdivision: &SubdivisionCode) -> bool {
        self.subdivisions.contains(subdivision)
    }
}

fn check_source(pack: &EmbargoPack, entry: &EmbargoEntry) -> Result<(), EmbargoError> {
    if pack.sources.iter().any(|source| source.id == entry.source) {
        Ok(())
    } else {
        Err(EmbargoError::UnknownSource {
            code: entry.code.clone(),
            source_id: entry.source.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes<T: ToString>(items: impl Iterator<Item = T>) -> Vec<String> {
        items.map(|item| item.to_string()).collect()
    }

    #[test]
    fn default_pack_blocks_the_documented_destinations_only() {
        let list = EmbargoList::default_list().unwrap();
        assert_eq!(codes(list.blocked_countries()), ["CU", "IR", "KP", "SY"]);
        assert_eq!(
            codes(list.blocked_subdivisions()),
            ["UA-09", "UA-14", "UA-40", "UA-43"]
        );
        let pack = EmbargoPack::default_pack().unwrap();
        assert_eq!(pack.as_of, "2026-06");
        let listed_not_blocked: Vec<&str> = pack
            .countries
            .iter()
            .filter(|entry| !entry.blocked)
            .map(|entry| entry.code.as_str())
            .collect();
        assert_eq!(listed_not_blocked, ["RU", "BY"]);
    }

    #[test]
    fn operator_additions_are_normalised_and_validated() {
        let pack = EmbargoPack::default_pack().unwrap();
        let config = EmbargoConfig {
            add_countries: vec!["RUS".into(), "by".into()],
            add_subdivisions: vec!["ua-23".into()],
        };
        let list = EmbargoList::new(&pack, &config).unwrap();
        assert!(list.is_country_blocked(CountryCode::parse("RU").unwrap()));
        assert!(list.is_country_blocked(CountryCode::parse("BY").unwrap()));
        assert!(list.is_subdivision_blocked(&SubdivisionCode::parse("UA-23").unwrap()));

        let bad = EmbargoConfig {
            add_countries: vec!["ZZ".into()],
            add_subdivisions: vec![],
        };
        let error = EmbargoList::new(&pack, &bad).unwrap_err();
        assert_eq!(
            error.to_string(),
            "embargo data `add_countries[0]`: unknown country code `ZZ`"
        );
    }

    #[test]
    fn entries_must_cite_a_declared_source() {
        let mut pack = EmbargoPack::default_pack().unwrap();
        pack.countries[0].source = "nowhere".into();
        assert!(matches!(
            EmbargoList::new(&pack, &EmbargoConfig::default()),
            Err(EmbargoError::UnknownSource { .. })
        ));
    }
}
