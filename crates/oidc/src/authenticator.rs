//! Verifying a bearer token and turning its claims into principal attributes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use portcullis_domain::{Clock, PrincipalAttributes, Screening, VerifiedClaims};
use serde_json::{Map, Value};

use crate::config::{
    ClaimMapping, IssuerConfig, JwksSource, OidcConfig, OidcConfigError, SigningAlgorithm,
    is_acceptable_jwks_url,
};
use crate::jwks::{IssuerKeys, RefreshOutcome, parse_jwks};

/// The longest token accepted. Real ID and access tokens are a few kilobytes;
/// the cap bounds the work an unauthenticated request can cause.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Registered JWT and OpenID Connect protocol claims. They describe the token,
/// not the principal, so they are not copied into `unverified`.
const PROTOCOL_CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "azp",
    "auth_time",
    "nonce",
    "at_hash",
    "c_hash",
    "acr",
    "amr",
    "sid",
    "scope",
    "client_id",
];

/// The fields of the attribute document itself; see the invariant in
/// [`map_claims`].
const ATTRIBUTE_FIELDS: &[&str] = &[
    "id",
    "organization",
    "employee",
    "active",
    "screening",
    "verified_claims",
];

/// Why a token was not accepted.
///
/// The caller answers every rejection with the same bare 401, so nothing here
/// reaches a client. [`TokenRejection::reason`] is for logs: it names the
/// check that failed and never includes the token or anything taken from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    #[error("token is not a well-formed JWT")]
    Malformed,
    #[error("token is longer than the size limit")]
    TooLarge,
    #[error("token uses an algorithm that is not allowed")]
    DisallowedAlgorithm,
    #[error("token uses a critical header extension that is not supported")]
    UnsupportedCriticalHeader,
    #[error("token issuer is not configured")]
    UnknownIssuer,
    #[error("no issuer key matches the token's key id")]
    UnknownKey,
    #[error("the issuer key's type does not match the token's algorithm")]
    KeyAlgorithmMismatch,
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token has no numeric expiry")]
    MissingExpiry,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token audience is not accepted")]
    WrongAudience,
    #[error("token has no principal id claim")]
    MissingPrincipalId,
}

impl TokenRejection {
    /// A fixed description of the failed check, safe to log.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenRejection::Malformed => "malformed token",
            TokenRejection::TooLarge => "token too large",
            TokenRejection::DisallowedAlgorithm => "algorithm not allowed",
            TokenRejection::UnsupportedCriticalHeader => "unsupported critical header",
            TokenRejection::UnknownIssuer => "unknown issuer",
            TokenRejection::UnknownKey => "unknown key id",
            TokenRejection::KeyAlgorithmMismatch => "key type does not match algorithm",
            TokenRejection::BadSignature => "bad signature",
            TokenRejection::MissingExpiry => "missing expiry",
            TokenRejection::Expired => "expired",
            TokenRejection::NotYetValid => "not yet valid",
            TokenRejection::WrongAudience => "wrong audience",
            TokenRejection::MissingPrincipalId => "missing principal id",
        }
    }
}

/// A verified token: who it names, the attribute document its claims map
/// to, and until when it may be used.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthenticatedToken {
    /// The configured issuer that signed it.
    pub issuer: String,
    /// The principal id, after the issuer's configured prefix.
    pub principal_id: String,
    pub attributes: PrincipalAttributes,
    pub expires_at: Timestamp,
}

#[derive(Debug)]
struct Issuer {
    config: IssuerConfig,
    keys: IssuerKeys,
}

/// Verifies bearer tokens from the configured issuers. Share it behind an
/// `Arc`; it is safe to use from many tasks at once.
#[derive(Debug)]
pub struct OidcAuthenticator {
    issuers: Vec<Issuer>,
    clock: Arc<dyn Clock>,
    http: reqwest::Client,
}

/// True when `token` has the shape of a compact JWS (three base64url parts
/// separated by dots), so the caller can tell a JWT from an API key before
/// choosing how to authenticate it.
pub fn looks_like_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3
        && parts[..2].iter().all(|part| !part.is_empty())
        && parts.iter().all(|part| {
            part.bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
        })
}

impl OidcAuthenticator {
    /// Validate the configuration and parse static key sets. Keys behind URLs
    /// are fetched on first use, or earlier with
    /// [`OidcAuthenticator::refresh_stale_keys`].
    pub fn new(config: OidcConfig, clock: Arc<dyn Clock>) -> Result<Self, OidcConfigError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|error| OidcConfigError::HttpClient {
                reason: error.to_string(),
            })?;
        let mut issuers: Vec<Issuer> = Vec::new();
        for issuer_config in config.issuers {
            let issuer = issuer_config.issuer.clone();
            if issuer.trim().is_empty() {
                return Err(OidcConfigError::EmptyIssuer);
            }
            if issuers.iter().any(|known| known.config.issuer == issuer) {
                return Err(OidcConfigError::DuplicateIssuer { issuer });
            }
            if issuer_config.audiences.is_empty() {
                return Err(OidcConfigError::NoAudience { issuer });
            }
            if issuer_config.algorithms.is_empty() {
                return Err(OidcConfigError::NoAlgorithm { issuer });
            }
            if issuer_config.claim_mapping.principal_id_claim.is_empty() {
                return Err(OidcConfigError::EmptyPrincipalIdClaim { issuer });
            }
            let initial_keys = match &issuer_config.jwks {
                JwksSource::Url(url) => {
                    if !is_acceptable_jwks_url(url) {
                        return Err(OidcConfigError::InsecureJwksUrl {
                            issuer,
                            url: url.clone(),
                        });
                    }
                    None
                }
                JwksSource::Static(document) => {
                    let key_set = parse_jwks(document.as_bytes()).map_err(|reason| {
                        OidcConfigError::InvalidStaticJwks {
                            issuer: issuer.clone(),
                            reason,
                        }
                    })?;
                    if key_set.keys.is_empty() {
                        return Err(OidcConfigError::InvalidStaticJwks {
                            issuer,
                            reason: "it holds no usable key".to_owned(),
                        });
                    }
                    Some(key_set)
                }
            };
            let keys = IssuerKeys::new(
                issuer_config.jwks.clone(),
                initial_keys,
                issuer_config.jwks_min_fetch_interval_seconds,
                issuer_config.jwks_refresh_interval_seconds,
            );
            issuers.push(Issuer {
                config: issuer_config,
                keys,
            });
        }
        Ok(OidcAuthenticator {
            issuers,
            clock,
            http,
        })
    }

    /// Fetch the keys of every URL issuer whose keys are older than its
    /// refresh interval (or were never fetched), within its fetch rate limit.
    /// Call it at start-up and periodically, so withdrawn keys stop working.
    pub async fn refresh_stale_keys(&self) {
        for issuer in &self.issuers {
            issuer
                .keys
                .refresh(&self.http, self.clock.now(), true)
                .await;
        }
    }

    /// Run [`OidcAuthenticator::refresh_stale_keys`] every `check_every`
    /// until the returned task is aborted. Started once, beside the server,
    /// never per request.
    // Owns the refresh task: the returned handle (or the token) ends it.
    #[allow(clippy::disallowed_methods)]
    pub fn spawn_periodic_refresh(
        self: Arc<Self>,
        check_every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(check_every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                self.refresh_stale_keys().await;
            }
        })
    }

    /// Verify a bearer token and map its claims to principal attributes.
    ///
    /// Checks, in order: size and shape; the header algorithm (asymmetric
    /// only, and allowed for the issuer); no unsupported `crit` header; the
    /// issuer; the key (fetching the issuer's keys again, rate-limited, when
    /// the key id is unknown); that the key's type verifies that algorithm;
    /// the signature; `exp`, `nbf` (with leeway) and `aud`. Keys named by the
    /// token itself (`jku`, `jwk`, `x5u`) are never used.
    pub async fn authenticate(&self, token: &str) -> Result<AuthenticatedToken, TokenRejection> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenRejection::TooLarge);
        }
        if !looks_like_jwt(token) {
            return Err(TokenRejection::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(header_part), Some(payload_part)) = (parts.next(), parts.next()) else {
            return Err(TokenRejection::Malformed);
        };
        let header = decode_json_object(header_part)?;
        let algorithm = header
            .get("alg")
            .and_then(Value::as_str)
            .and_then(SigningAlgorithm::from_header_name)
            .ok_or(TokenRejection::DisallowedAlgorithm)?;
        if header.contains_key("crit") {
            return Err(TokenRejection::UnsupportedCriticalHeader);
        }
        let key_id = match header.get("kid") {
            None => None,
            Some(Value::String(key_id)) => Some(key_id.as_str()),
            Some(_) => return Err(TokenRejection::Malformed),
        };

        // The payload is read before the signature is checked only to pick
        // the issuer whose keys must verify it; nothing else is trusted yet.
        let unverified_claims = decode_json_object(payload_part)?;
        let claimed_issuer = unverified_claims
            .get("iss")
            .and_then(Value::as_str)
            .ok_or(TokenRejection::UnknownIssuer)?;
        let issuer = self
            .issuers
            .iter()
            .find(|issuer| issuer.config.issuer == claimed_issuer)
            .ok_or(TokenRejection::UnknownIssuer)?;
        if !issuer.config.algorithms.contains(&algorithm) {
            return Err(TokenRejection::DisallowedAlgorithm);
        }

        let mut key_set = issuer.keys.key_set();
        if key_set.find(key_id).is_none() {
            let outcome = issuer
                .keys
                .refresh(&self.http, self.clock.now(), false)
                .await;
            if outcome == RefreshOutcome::Fetched {
                key_set = issuer.keys.key_set();
            }
        }
        let key = key_set.find(key_id).ok_or(TokenRejection::UnknownKey)?;
        if key.family.algorithm() != algorithm {
            return Err(TokenRejection::KeyAlgorithmMismatch);
        }

        let claims = verify_signature(token, &key.decoding_key, algorithm)?;
        validate_claims(&claims, &issuer.config, self.clock.now())?;
        let expires_at = numeric_date(&claims, "exp")
            .and_then(|seconds| Timestamp::from_second(seconds).ok())
            .ok_or(TokenRejection::MissingExpiry)?;
        let attributes = map_claims(claims, &issuer.config.claim_mapping)?;
        Ok(AuthenticatedToken {
            issuer: issuer.config.issuer.clone(),
            principal_id: attributes.id.clone(),
            attributes,
            expires_at,
        })
    }
}

fn decode_json_object(part: &str) -> Result<Map<String, Value>, TokenRejection> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenRejection::Malformed)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(TokenRejection::Malformed),
    }
}

fn verify_signature(
    token: &str,
    decoding_key: &jsonwebtoken::DecodingKey,
    algorithm: SigningAlgorithm,
) -> Result<Map<String, Value>, TokenRejection> {
    // jsonwebtoken checks the signature and that the header algorithm is the
    // one given here; time and audience checks are done by the caller with
    // the injected clock, so they are switched off here.
    let mut validation = jsonwebtoken::Validation::new(algorithm.as_jsonwebtoken());
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    jsonwebtoken::decode::<Map<String, Value>>(token, decoding_key, &validation)
        .map(|data| data.claims)
        .map_err(|error| match error.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => {
                TokenRejection::KeyAlgorithmMismatch
            }
            jsonwebtoken::errors::ErrorKind::Base64(_)
            | jsonwebtoken::errors::ErrorKind::Json(_)
            | jsonwebtoken::errors::ErrorKind::Utf8(_)
            | jsonwebtoken::errors::ErrorKind::InvalidToken => TokenRejection::Malformed,
            _ => TokenRejection::BadSignature,
        })
}

/// A NumericDate claim as whole seconds; fractional seconds are truncated.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Option<i64> {
    let value = claims.get(name)?;
    value.as_i64().or_else(|| {
        value
            .as_f64()
            .filter(|seconds| seconds.is_finite() && seconds.abs() < 1e15)
            .map(|seconds| seconds.trunc() as i64)
    })
}

fn validate_claims(
    claims: &Map<String, Value>,
    issuer: &IssuerConfig,
    now: Timestamp,
) -> Result<(), TokenRejection> {
    if claims.get("iss").and_then(Value::as_str) != Some(issuer.issuer.as_str()) {
        return Err(TokenRejection::UnknownIssuer);
    }
    let now_seconds = now.as_second();
    let leeway = i64::try_from(issuer.leeway_seconds).unwrap_or(i64::MAX);
    let expires_at = numeric_date(claims, "exp").ok_or(TokenRejection::MissingExpiry)?;
    if now_seconds >= expires_at.saturating_add(leeway) {
        return Err(TokenRejection::Expired);
    }
    match claims.get("nbf") {
        None => {}
        Some(_) => {
            let not_before = numeric_date(claims, "nbf").ok_or(TokenRejection::Malformed)?;
            if now_seconds.saturating_add(leeway) < not_before {
                return Err(TokenRejection::NotYetValid);
            }
        }
    }
    let audience_accepted = match claims.get("aud") {
        Some(Value::String(audience)) => issuer.audiences.contains(audience),
        Some(Value::Array(audiences)) => audiences
            .iter()
            .filter_map(Value::as_str)
            .any(|audience| issuer.audiences.iter().any(|accepted| accepted == audience)),
        _ => false,
    };
    if !audience_accepted {
        return Err(TokenRejection::WrongAudience);
    }
    Ok(())
}

/// Map verified token claims to the principal-attribute document.
///
/// `verified_claims` may be one object or, per OpenID Connect for Identity
/// Assurance, an array of them; the first that has the expected shape is
/// used. A `verified_claims` value that does not parse verifies nothing: it
/// is kept in `unverified`, so restrictions fail closed.
pub fn map_claims(
    mut claims: Map<String, Value>,
    mapping: &ClaimMapping,
) -> Result<PrincipalAttributes, TokenRejection> {
    let principal_id = match claims.get(&mapping.principal_id_claim) {
        Some(Value::String(id)) if !id.trim().is_empty() => id.clone(),
        Some(Value::Number(id)) => id.to_string(),
        _ => return Err(TokenRejection::MissingPrincipalId),
    };
    let mut unverified: BTreeMap<String, Value> = BTreeMap::new();
    let verified_claims = match claims.remove(&mapping.verified_claims_claim) {
        None => None,
        Some(raw) => {
            let parsed = match &raw {
                Value::Array(candidates) => candidates.iter().find_map(|candidate| {
                    serde_json::from_value::<VerifiedClaims>(candidate.clone()).ok()
                }),
                object => serde_json::from_value::<VerifiedClaims>(object.clone()).ok(),
            };
            if parsed.is_none() {
                unverified.insert("unparsed_verified_claims".to_owned(), raw);
            }
            parsed
        }
    };
    let mut take = |claim_name: &Option<String>| {
        claim_name
            .as_ref()
            .and_then(|claim_name| claims.remove(claim_name))
    };
    let organization = take(&mapping.organization_claim)
        .and_then(|value| value.as_str().map(str::to_owned))
        .filter(|organization| !organization.is_empty());
    let employee = take(&mapping.employee_claim)
        .and_then(|value| value.as_bool())
        .unwrap_or(false);
    let screening = take(&mapping.screening_claim)
        .and_then(|value| serde_json::from_value::<Screening>(value).ok())
        .unwrap_or_default();
    claims.remove(&mapping.principal_id_claim);
    for (name, value) in claims {
        if PROTOCOL_CLAIMS.contains(&name.as_str()) {
            continue;
        }
        // INVARIANT: an unverified claim never shares a name with an
        // attribute field. `unverified` is flattened into the attribute
        // document, so a top-level `organization` claim kept under its own
        // name would become the principal's organization after one round
        // trip through JSON.
        let name = if ATTRIBUTE_FIELDS.contains(&name.as_str()) {
            format!("claim_{name}")
        } else {
            name
        };
        unverified.insert(name, value);
    }
    Ok(PrincipalAttributes {
        id: format!("{}{principal_id}", mapping.principal_id_prefix),
        organization,
        employee,
        active: true,
        screening,
        verified_claims,
        unverified,
    })
}
