//! The per-request facts a decision depends on besides the principal and the
//! model: where the request comes from, when it is decided, and the client
//! address.

use std::net::IpAddr;
use std::sync::LazyLock;

use cedar_policy::{Context, RestrictedExpression};
use cedar_policy_core::ast::{Name, RestrictedExpr};
use jiff::Timestamp;

use crate::country::{CountryCode, CountryCodeError, SubdivisionCode};

/// Why a request location was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    #[error("request country: {0}")]
    Country(CountryCodeError),
    #[error("request subdivision: {0}")]
    Subdivision(CountryCodeError),
    #[error("request subdivision `{subdivision}` is not in request country `{country}`")]
    Mismatch {
        country: String,
        subdivision: String,
    },
}

/// The context of one request, already validated.
///
/// An absent country means the location is unknown. No default country is
/// ever applied here: a deployment that wants one (the demo's
/// `location.default_country`) fills it in before building the context, and
/// `policy eval` never does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    country: Option<CountryCode>,
    subdivision: Option<SubdivisionCode>,
    decision_time: Timestamp,
    client_ip: Option<IpAddr>,
}

impl RequestContext {
    /// A context with an unknown location and no client address.
    pub fn at(decision_time: Timestamp) -> Self {
        Self {
            country: None,
            subdivision: None,
            decision_time,
            client_ip: None,
        }
    }

    /// Sets the location from the codes a trusted edge reported. The country
    /// may be alpha-2 or alpha-3; the subdivision is ISO 3166-2. A
    /// subdivision without a country implies its country. A subdivision that
    /// contradicts the country is refused rather than guessed at.
    pub fn with_location(
        mut self,
        country: Option<&str>,
        subdivision: Option<&str>,
    ) -> Result<Self, LocationError> {
        let country = country
            .map(CountryCode::parse)
            .transpose()
            .map_err(LocationError::Country)?;
        let subdivision = subdivision
            .map(SubdivisionCode::parse)
            .transpose()
            .map_err(LocationError::Subdivision)?;
        if let (Some(country), Some(subdivision)) = (country, &subdivision)
            && subdivision.country() != country
        {
            return Err(LocationError::Mismatch {
                country: country.to_string(),
                subdivision: subdivision.to_string(),
            });
        }
        self.country = country.or_else(|| subdivision.as_ref().map(SubdivisionCode::country));
        self.subdivision = subdivision;
        Ok(self)
    }

    /// Sets an already validated location.
    pub fn with_known_location(
        mut self,
        country: CountryCode,
        subdivision: Option<SubdivisionCode>,
    ) -> Self {
        self.country = Some(country);
        self.subdivision = subdivision;
        self
    }

    pub fn with_client_ip(mut self, client_ip: IpAddr) -> Self {
        self.client_ip = Some(client_ip);
        self
    }

    pub fn with_decision_time(mut self, decision_time: Timestamp) -> Self {
        self.decision_time = decision_time;
        self
    }

    pub fn country(&self) -> Option<CountryCode> {
        self.country
    }

    pub fn subdivision(&self) -> Option<&SubdivisionCode> {
        self.subdivision.as_ref()
    }

    pub fn decision_time(&self) -> Timestamp {
        self.decision_time
    }

    pub fn client_ip(&self) -> Option<IpAddr> {
        self.client_ip
    }

    pub fn location_known(&self) -> bool {
        self.country.is_some()
    }

    /// The Cedar context record, in the schema's `RequestContext` shape,
    /// holding the attributes `needed` by the policies that will see it.
    ///
    /// An attribute no policy reads cannot change a decision, and building
    /// the extension values (`time`, `client_ip`) is the costly part of a
    /// context, so they are only built for policy sets that read them.
    pub(crate) fn to_cedar(&self, needed: ContextNeeds) -> Result<Context, String> {
        if needed == ContextNeeds::NONE {
            return Ok(Context::empty());
        }
        let mut pairs: Vec<(String, RestrictedExpression)> = Vec::with_capacity(5);
        if needed.location_known {
            pairs.push((
                "location_known".to_owned(),
                RestrictedExpression::new_bool(self.location_known()),
            ));
        }
        if needed.country
            && let Some(country) = self.country
        {
            pairs.push((
                "country".to_owned(),
                RestrictedExpression::new_string(country.as_str().to_owned()),
            ));
        }
        if needed.subdivision
            && let Some(subdivision) = &self.subdivision
        {
            pairs.push((
                "subdivision".to_owned(),
                RestrictedExpression::new_string(subdivision.as_str().to_owned()),
            ));
        }
        if needed.time {
            pairs.push((
                "time".to_owned(),
                extension_call(&DATETIME_CONSTRUCTOR, cedar_datetime(self.decision_time))?,
            ));
        }
        if needed.client_ip
            && let Some(client_ip) = self.client_ip
        {
            pairs.push((
                "client_ip".to_owned(),
                extension_call(&IP_CONSTRUCTOR, client_ip.to_string())?,
            ));
        }
        Context::from_pairs(pairs).map_err(|error| error.to_string())
    }
}

/// Which context attributes a set of policies reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ContextNeeds {
    pub(crate) country: bool,
    pub(crate) subdivision: bool,
    pub(crate) location_known: bool,
    pub(crate) time: bool,
    pub(crate) client_ip: bool,
}

impl ContextNeeds {
    pub(crate) const NONE: Self = Self {
        country: false,
        subdivision: false,
        location_known: false,
        time: false,
        client_ip: false,
    };

    pub(crate) const ALL: Self = Self {
        country: true,
        subdivision: true,
        location_known: true,
        time: true,
        client_ip: true,
    };

    /// Marks one attribute as read. A name the schema does not declare
    /// cannot pass strict validation, so it is ignored.
    pub(crate) fn read(&mut self, attribute: &str) {
        match attribute {
            "country" => self.country = true,
            "subdivision" => self.subdivision = true,
            "location_known" => self.location_known = true,
            "time" => self.time = true,
            "client_ip" => self.client_ip = true,
            _ => {}
        }
    }

    pub(crate) fn union(self, other: Self) -> Self {
        Self {
            country: self.country || other.country,
            subdivision: self.subdivision || other.subdivision,
            location_known: self.location_known || other.location_known,
            time: self.time || other.time,
            client_ip: self.client_ip || other.client_ip,
        }
    }
}

// `RestrictedExpression::new_datetime` and `new_ip` parse the constructor's
// name with the full Cedar parser on every call, which costs about 5 us per
// value, a quarter of the whole decision budget. The names are parsed once
// here instead and the call is built from the parsed name; the result is the
// same expression (see the test below).
static DATETIME_CONSTRUCTOR: LazyLock<Option<Name>> =
    LazyLock::new(|| Name::parse_unqualified_name("datetime").ok());
static IP_CONSTRUCTOR: LazyLock<Option<Name>> =
    LazyLock::new(|| Name::parse_unqualified_name("ip").ok());

fn extension_call(
    constructor: &Option<Name>,
    argument: String,
) -> Result<RestrictedExpression, String> {
    let name = constructor
        .clone()
        .ok_or_else(|| "cedar extension constructor name does not parse".to_owned())?;
    Ok(RestrictedExpression::from(
        RestrictedExpr::call_extension_fn(name, [RestrictedExpr::val(argument)]),
    ))
}

/// Formats an instant the way Cedar's `datetime` constructor accepts it:
/// UTC with millisecond precision, e.g. `2026-11-20T22:21:00.000Z`.
pub(crate) fn cedar_datetime(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-11-20T22:21:00.123456Z".parse().unwrap()
    }

    #[test]
    fn location_table() {
        type Location = (Option<&'static str>, Option<&'static str>);
        type LocationCase = (
            Option<&'static str>,
            Option<&'static str>,
            Result<Location, &'static str>,
        );
        let cases: &[LocationCase] = &[
            (None, None, Ok((None, None))),
            (Some("US"), None, Ok((Some("US"), None))),
            (Some("usa"), Some("us-ca"), Ok((Some("US"), Some("US-CA")))),
            (None, Some("UA-43"), Ok((Some("UA"), Some("UA-43")))),
            (
                Some("XX"),
                None,
                Err("request country: unknown country code `XX`"),
            ),
            (
                Some("US"),
                Some("UA-43"),
                Err("request subdivision `UA-43` is not in request country `US`"),
            ),
            (
                Some("UA"),
                Some("crimea"),
                Err(
                    "request subdivision: subdivision code `crimea` must have the form `CC-XXX` (ISO 3166-2)",
                ),
            ),
        ];
        for (country, subdivision, expected) in cases {
            let got = RequestContext::at(now())
                .with_location(*country, *subdivision)
                .map(|context| {
                    (
                        context.country().map(|c| c.to_string()),
                        context.subdivision().map(ToString::to_string),
                    )
                })
                .map_err(|error| error.to_string());
            let expected = expected
                .map(|(c, s)| (c.map(str::to_owned), s.map(str::to_owned)))
                .map_err(str::to_owned);
            assert_eq!(got, expected, "{country:?} {subdivision:?}");
        }
    }

    #[test]
    fn datetime_has_millisecond_precision_in_utc() {
        assert_eq!(cedar_datetime(now()), "2026-11-20T22:21:00.123Z");
    }

    #[test]
    fn prebuilt_constructor_names_give_the_same_values_as_the_public_constructors() {
        let fast = Context::from_pairs([
            (
                "time".to_owned(),
                extension_call(&DATETIME_CONSTRUCTOR, "2026-11-20T22:21:00.123Z".into()).unwrap(),
            ),
            (
                "client_ip".to_owned(),
                extension_call(&IP_CONSTRUCTOR, "192.0.2.1".into()).unwrap(),
            ),
        ])
        .unwrap();
        let reference = Context::from_pairs([
            (
                "time".to_owned(),
                RestrictedExpression::new_datetime("2026-11-20T22:21:00.123Z"),
            ),
            (
                "client_ip".to_owned(),
                RestrictedExpression::new_ip("192.0.2.1"),
            ),
        ])
        .unwrap();
        assert_eq!(fast, reference);
    }

    #[test]
    fn cedar_context_builds_with_and_without_optional_fields() {
        let bare = RequestContext::at(now());
        assert!(bare.to_cedar(ContextNeeds::ALL).is_ok());
        let full = RequestContext::at(now())
            .with_location(Some("UA"), Some("UA-43"))
            .unwrap()
            .with_client_ip("2001:db8::1".parse().unwrap());
        assert!(full.to_cedar(ContextNeeds::ALL).is_ok());
        let some = ContextNeeds {
            country: true,
            ..ContextNeeds::NONE
        };
        let only_country = full.to_cedar(some).unwrap();
        let keys: Vec<String> = only_country.into_iter().map(|(key, _)| key).collect();
        assert_eq!(keys, ["country"]);
    }
}
