//! Issuer configuration, validated before any token is checked against it.

use serde::Deserialize;

/// Every issuer whose tokens are accepted.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    #[serde(default)]
    pub issuers: Vec<IssuerConfig>,
}

/// One trusted token issuer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The exact `iss` value of its tokens.
    pub issuer: String,
    /// Accepted `aud` values; a token must name at least one of them.
    pub audiences: Vec<String>,
    pub jwks: JwksSource,
    /// Accepted signing algorithms; a subset of RS256, ES256 and EdDSA.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<SigningAlgorithm>,
    /// Tolerance for clock skew when checking `exp` and `nbf`.
    #[serde(default = "default_leeway_seconds")]
    pub leeway_seconds: u64,
    /// How old fetched keys may get before they are fetched again, so that
    /// keys the issuer has withdrawn stop being accepted.
    #[serde(default = "default_jwks_refresh_interval_seconds")]
    pub jwks_refresh_interval_seconds: u64,
    /// The least time between two fetches of the key set. A token naming an
    /// unknown key triggers a fetch, and this keeps a flood of such tokens
    /// from turning into a flood of requests to the issuer.
    #[serde(default = "default_jwks_min_fetch_interval_seconds")]
    pub jwks_min_fetch_interval_seconds: u64,
    #[serde(default)]
    pub claim_mapping: ClaimMapping,
}

/// Where an issuer's public keys come from.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum JwksSource {
    /// Fetched over HTTPS (plain HTTP only for loopback addresses), cached,
    /// and fetched again on an unknown key id and periodically.
    Url(String),
    /// A JWKS JSON document given in configuration.
    Static(String),
}

/// The asymmetric algorithms a token may be signed with. Symmetric (HMAC)
/// algorithms and `none` have no variant, so no configuration can allow them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SigningAlgorithm {
    #[serde(rename = "RS256")]
    Rs256,
    #[serde(rename = "ES256")]
    Es256,
    #[serde(rename = "EdDSA")]
    EdDsa,
}

impl SigningAlgorithm {
    pub(crate) fn from_header_name(name: &str) -> Option<Self> {
        match name {
            "RS256" => Some(SigningAlgorithm::Rs256),
            "ES256" => Some(SigningAlgorithm::Es256),
            "EdDSA" => Some(SigningAlgorithm::EdDsa),
            _ => None,
        }
    }

    pub(crate) fn as_jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        match self {
            SigningAlgorithm::Rs256 => jsonwebtoken::Algorithm::RS256,
            SigningAlgorithm::Es256 => jsonwebtoken::Algorithm::ES256,
            SigningAlgorithm::EdDsa => jsonwebtoken::Algorithm::EdDSA,
        }
    }
}

/// How token claims become the principal-attribute document.
///
/// Only the claims named here, and the `verified_claims` object, are read as
/// attributes; every other non-protocol claim is kept in `unverified`, where
/// policy never looks.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClaimMapping {
    /// The claim holding the principal id.
    pub principal_id_claim: String,
    /// Prepended to the principal id, so that subjects of two issuers can
    /// never name the same principal.
    pub principal_id_prefix: String,
    /// The claim holding OpenID Connect for Identity Assurance
    /// `verified_claims`.
    pub verified_claims_claim: String,
    pub organization_claim: Option<String>,
    pub employee_claim: Option<String>,
    pub screening_claim: Option<String>,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        ClaimMapping {
            principal_id_claim: "sub".to_owned(),
            principal_id_prefix: String::new(),
            verified_claims_claim: "verified_claims".to_owned(),
            organization_claim: None,
            employee_claim: None,
            screening_claim: None,
        }
    }
}

fn default_algorithms() -> Vec<SigningAlgorithm> {
    vec![
        SigningAlgorithm::Rs256,
        SigningAlgorithm::Es256,
        SigningAlgorithm::EdDsa,
    ]
}

fn default_leeway_seconds() -> u64 {
    60
}

fn default_jwks_refresh_interval_seconds() -> u64 {
    600
}

fn default_jwks_min_fetch_interval_seconds() -> u64 {
    30
}

impl IssuerConfig {
    /// An issuer with the given keys and every setting at its default.
    pub fn new(issuer: impl Into<String>, audiences: Vec<String>, jwks: JwksSource) -> Self {
        IssuerConfig {
            issuer: issuer.into(),
            audiences,
            jwks,
            algorithms: default_algorithms(),
            leeway_seconds: default_leeway_seconds(),
            jwks_refresh_interval_seconds: default_jwks_refresh_interval_seconds(),
            jwks_min_fetch_interval_seconds: default_jwks_min_fetch_interval_seconds(),
            claim_mapping: ClaimMapping::default(),
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OidcConfigError {
    #[error("an issuer has an empty `issuer` value")]
    EmptyIssuer,
    #[error("issuer `{issuer}` is configured more than once")]
    DuplicateIssuer { issuer: String },
    #[error("issuer `{issuer}` accepts no audience")]
    NoAudience { issuer: String },
    #[error("issuer `{issuer}` allows no signing algorithm")]
    NoAlgorithm { issuer: String },
    #[error(
        "issuer `{issuer}` has JWKS URL `{url}`, which is neither https nor http on a loopback address"
    )]
    InsecureJwksUrl { issuer: String, url: String },
    #[error("issuer `{issuer}` has a static JWKS that cannot be used: {reason}")]
    InvalidStaticJwks { issuer: String, reason: String },
    #[error("issuer `{issuer}` maps the principal id from an empty claim name")]
    EmptyPrincipalIdClaim { issuer: String },
    #[error("the HTTP client for fetching keys cannot be built: {reason}")]
    HttpClient { reason: String },
}

/// Plain HTTP is acceptable only where no network sits between the gateway
/// and the key server.
pub(crate) fn is_acceptable_jwks_url(url: &str) -> bool {
    if url.starts_with("https://") {
        return true;
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = if let Some(bracketed) = authority.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    host == "localhost"
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|address| address.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_url_schemes() {
        let cases = [
            ("https://issuer.example/jwks", true),
            ("http://127.0.0.1:8080/jwks", true),
            ("http://127.8.9.10/jwks", true),
            ("http://localhost/jwks", true),
            ("http://[::1]:9000/jwks", true),
            ("http://issuer.example/jwks", false),
            ("http://127.0.0.1.evil.example/jwks", false),
            ("ftp://issuer.example/jwks", false),
            ("", false),
        ];
        for (url, expected) in cases {
            assert_eq!(is_acceptable_jwks_url(url), expected, "`{url}`");
        }
    }

    #[test]
    fn config_deserialises_with_defaults() {
        let config: OidcConfig = serde_json::from_value(serde_json::json!({
            "issuers": [{
                "issuer": "https://id.example",
                "audiences": ["portcullis"],
                "jwks": {"url": "https://id.example/jwks"},
                "claim_mapping": {"organization_claim": "org"}
            }]
        }))
        .unwrap();
        let issuer = &config.issuers[0];
        assert_eq!(issuer.algorithms, default_algorithms());
        assert_eq!(issuer.leeway_seconds, 60);
        assert_eq!(issuer.claim_mapping.principal_id_claim, "sub");
        assert_eq!(
            issuer.claim_mapping.organization_claim.as_deref(),
            Some("org")
        );
        let hmac: Result<SigningAlgorithm, _> = serde_json::from_value(serde_json::json!("HS256"));
        assert!(hmac.is_err());
    }
}
