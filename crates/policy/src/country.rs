//! ISO 3166-1 country codes and ISO 3166-2 subdivision codes.
//!
//! The code list is data (`data/iso3166-1.tsv`), compiled into the binary so
//! that validation never depends on the filesystem at run time.

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

const ISO_3166_1_TABLE: &str = include_str!("../data/iso3166-1.tsv");

/// Why a country or subdivision code was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CountryCodeError {
    #[error("unknown country code `{0}`")]
    UnknownCountry(String),
    #[error("subdivision code `{0}` must have the form `CC-XXX` (ISO 3166-2)")]
    MalformedSubdivision(String),
    #[error("unknown country code `{country}` in subdivision code `{subdivision}`")]
    UnknownSubdivisionCountry {
        country: String,
        subdivision: String,
    },
}

/// A known ISO 3166-1 alpha-2 country code, always upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    /// Parses an alpha-2 or alpha-3 code, in any letter case, and normalises
    /// it to alpha-2. Codes that ISO 3166-1 does not assign are refused.
    pub fn parse(text: &str) -> Result<Self, CountryCodeError> {
        let upper = text.trim().to_ascii_uppercase();
        let table = &*COUNTRY_TABLE;
        let found = match upper.len() {
            2 => table.by_alpha2.get(upper.as_str()).copied(),
            3 => table.by_alpha3.get(upper.as_str()).copied(),
            _ => None,
        };
        found.ok_or_else(|| CountryCodeError::UnknownCountry(text.to_owned()))
    }

    /// The alpha-2 code, e.g. `US`.
    pub fn as_str(&self) -> &str {
        // INVARIANT: both bytes are ASCII upper-case letters, checked when the
        // table was loaded, so this conversion cannot fail.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }

    /// The alpha-3 code, e.g. `USA`.
    pub fn alpha3(&self) -> &'static str {
        COUNTRY_TABLE
            .alpha3_by_alpha2
            .get(self)
            .copied()
            .unwrap_or("???")
    }

    /// The ISO short name, e.g. `Ukraine`.
    pub fn name(&self) -> &'static str {
        COUNTRY_TABLE
            .name_by_alpha2
            .get(self)
            .copied()
            .unwrap_or("")
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// An ISO 3166-2 subdivision code such as `UA-43`, whose country part is a
/// known ISO 3166-1 code. The part after the dash is checked for form only
/// (one to three letters or digits), because subdivision lists change more
/// often than this crate is released.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubdivisionCode {
    code: String,
    country: CountryCode,
}

impl SubdivisionCode {
    /// Parses `CC-XXX`. The country part may be alpha-2 or alpha-3 and is
    /// normalised to alpha-2; the whole code is upper-cased.
    pub fn parse(text: &str) -> Result<Self, CountryCodeError> {
        let trimmed = text.trim();
        let Some((country_part, local_part)) = trimmed.split_once('-') else {
            return Err(CountryCodeError::MalformedSubdivision(text.to_owned()));
        };
        let local_ok = (1..=3).contains(&local_part.len())
            && local_part.chars().all(|c| c.is_ascii_alphanumeric());
        if !local_ok || !(2..=3).contains(&country_part.len()) {
            return Err(CountryCodeError::MalformedSubdivision(text.to_owned()));
        }
        let country = CountryCode::parse(country_part).map_err(|_| {
            CountryCodeError::UnknownSubdivisionCountry {
                country: country_part.to_owned(),
                subdivision: text.to_owned(),
            }
        })?;
        Ok(Self {
            code: format!("{}-{}", country.as_str(), local_part.to_ascii_uppercase()),
            country,
        })
    }

    /// The normalised code, e.g. `UA-43`.
    pub fn as_str(&self) -> &str {
        &self.code
    }

    /// The country the subdivision belongs to.
    pub fn country(&self) -> CountryCode {
        self.country
    }
}

impl fmt::Display for SubdivisionCode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.code)
    }
}

/// Every ISO 3166-1 country, in alpha-2 order.
pub fn all_countries() -> impl Iterator<Item = CountryCode> {
    COUNTRY_TABLE.ordered.iter().copied()
}

struct CountryTable {
    by_alpha2: HashMap<&'static str, CountryCode>,
    by_alpha3: HashMap<&'static str, CountryCode>,
    alpha3_by_alpha2: HashMap<CountryCode, &'static str>,
    name_by_alpha2: HashMap<CountryCode, &'static str>,
    ordered: Vec<CountryCode>,
}

// A malformed line in the compiled-in table is skipped rather than panicking;
// the unit tests below check that every line loads, so a bad edit to the data
// file fails the build's tests instead of silently shrinking the table.
static COUNTRY_TABLE: LazyLock<CountryTable> = LazyLock::new(|| load_table(ISO_3166_1_TABLE));

fn load_table(text: &'static str) -> CountryTable {
    let mut table = CountryTable {
        by_alpha2: HashMap::new(),
        by_alpha3: HashMap::new(),
        alpha3_by_alpha2: HashMap::new(),
        name_by_alpha2: HashMap::new(),
        ordered: Vec::new(),
    };
    for (alpha2, alpha3, name) in table_rows(text).flatten() {
        let bytes = alpha2.as_bytes();
        let code = CountryCode([bytes[0], bytes[1]]);
        table.by_alpha2.insert(alpha2, code);
        table.by_alpha3.insert(alpha3, code);
        table.alpha3_by_alpha2.insert(code, alpha3);
        table.name_by_alpha2.insert(code, name);
        table.ordered.push(code);
    }
    table.ordered.sort();
    table
}

/// Splits the data file into rows; a row that is not three tab-separated
/// fields with upper-case alpha-2 and alpha-3 codes yields its line number.
fn table_rows(
    text: &'static str,
) -> impl Iterator<Item = Result<(&'static str, &'static str, &'static str), usize>> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty() && !line.starts_with('#'))
        .map(|(index, line)| {
            let mut fields = line.split('\t');
            match (fields.next(), fields.next(), fields.next(), fields.next()) {
                (Some(alpha2), Some(alpha3), Some(name), None)
                    if is_upper_code(alpha2, 2) && is_upper_code(alpha3, 3) =>
                {
                    Ok((alpha2, alpha3, name))
                }
                _ => Err(index + 1),
            }
        })
}

fn is_upper_code(text: &str, length: usize) -> bool {
    text.len() == length && text.bytes().all(|b| b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_of_the_data_file_loads() {
        let bad_lines: Vec<usize> = table_rows(ISO_3166_1_TABLE)
            .filter_map(Result::err)
            .collect();
        assert_eq!(bad_lines, Vec::<usize>::new());
        // ISO 3166-1 assigns 249 codes.
        assert_eq!(all_countries().count(), 249);
        assert_eq!(COUNTRY_TABLE.by_alpha3.len(), 249);
    }

    #[test]
    fn country_code_table() {
        let cases: &[(&str, Result<&str, CountryCodeError>)] = &[
            ("US", Ok("US")),
            ("us", Ok("US")),
            ("USA", Ok("US")),
            ("chn", Ok("CN")),
            ("PRK", Ok("KP")),
            (" FR ", Ok("FR")),
            ("UKR", Ok("UA")),
            ("XX", Err(CountryCodeError::UnknownCountry("XX".into()))),
            ("XXX", Err(CountryCodeError::UnknownCountry("XXX".into()))),
            ("", Err(CountryCodeError::UnknownCountry(String::new()))),
            ("U", Err(CountryCodeError::UnknownCountry("U".into()))),
            ("USAA", Err(CountryCodeError::UnknownCountry("USAA".into()))),
            // `UK` is reserved, not assigned: the United Kingdom is `GB`.
            ("UK", Err(CountryCodeError::UnknownCountry("UK".into()))),
        ];
        for (input, expected) in cases {
            let got = CountryCode::parse(input);
            assert_eq!(
                got.as_ref().map(CountryCode::as_str).map_err(Clone::clone),
                expected.clone(),
                "{input:?}"
            );
        }
    }

    #[test]
    fn error_message_names_the_code_in_backticks() {
        let error = CountryCode::parse("XX").unwrap_err();
        assert_eq!(error.to_string(), "unknown country code `XX`");
    }

    #[test]
    fn alpha3_and_name_round_trip() {
        let ukraine = CountryCode::parse("UA").unwrap();
        assert_eq!(ukraine.alpha3(), "UKR");
        assert_eq!(ukraine.name(), "Ukraine");
        for country in all_countries() {
            assert_eq!(CountryCode::parse(country.alpha3()), Ok(country));
        }
    }

    #[test]
    fn subdivision_code_table() {
        let cases: &[(&str, Result<&str, CountryCodeError>)] = &[
            ("UA-43", Ok("UA-43")),
            ("ua-43", Ok("UA-43")),
            ("UKR-43", Ok("UA-43")),
            ("US-CA", Ok("US-CA")),
            ("GB-ENG", Ok("GB-ENG")),
            ("FR-75C", Ok("FR-75C")),
            (
                "UA43",
                Err(CountryCodeError::MalformedSubdivision("UA43".into())),
            ),
            (
                "UA-",
                Err(CountryCodeError::MalformedSubdivision("UA-".into())),
            ),
            (
                "UA-4321",
                Err(CountryCodeError::MalformedSubdivision("UA-4321".into())),
            ),
            (
                "UA-4 3",
                Err(CountryCodeError::MalformedSubdivision("UA-4 3".into())),
            ),
            (
                "XX-43",
                Err(CountryCodeError::UnknownSubdivisionCountry {
                    country: "XX".into(),
                    subdivision: "XX-43".into(),
                }),
            ),
        ];
        for (input, expected) in cases {
            let got = SubdivisionCode::parse(input);
            assert_eq!(
                got.as_ref()
                    .map(SubdivisionCode::as_str)
                    .map_err(Clone::clone),
                expected.clone(),
                "{input:?}"
            );
        }
        assert_eq!(
            SubdivisionCode::parse("UA-43").unwrap().country().as_str(),
            "UA"
        );
    }
}
