//! JSON Web Key Sets: parsing into verification keys, and the per-issuer
//! cache that fetches, refreshes and rate-limits.

use std::sync::{Arc, RwLock};

use jiff::{SignedDuration, Timestamp};
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};

use crate::config::{JwksSource, SigningAlgorithm};

/// The largest JWKS document accepted from an issuer. Real key sets are a few
/// kilobytes; the cap bounds memory if an endpoint misbehaves.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// The kind of public key, which fixes the one algorithm it may verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyFamily {
    Rsa,
    EcP256,
    Ed25519,
}

impl KeyFamily {
    /// The only algorithm a key of this family verifies. Matching the token's
    /// algorithm against the key, not just against a list, is what defeats
    /// algorithm confusion.
    pub(crate) fn algorithm(self) -> SigningAlgorithm {
        match self {
            KeyFamily::Rsa => SigningAlgorithm::Rs256,
            KeyFamily::EcP256 => SigningAlgorithm::Es256,
            KeyFamily::Ed25519 => SigningAlgorithm::EdDsa,
        }
    }
}

/// One public key usable for verifying signatures.
#[derive(Clone)]
pub(crate) struct VerificationKey {
    pub(crate) key_id: Option<String>,
    pub(crate) family: KeyFamily,
    pub(crate) decoding_key: DecodingKey,
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("VerificationKey")
            .field("key_id", &self.key_id)
            .field("family", &self.family)
            .finish_non_exhaustive()
    }
}

/// The usable keys of one JWKS document.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeySet {
    pub(crate) keys: Vec<VerificationKey>,
    /// Keys present in the document but not usable here (encryption keys,
    /// symmetric keys, other curves or algorithms).
    pub(crate) skipped_key_count: usize,
}

impl KeySet {
    /// The key a token names, or for a token without `kid` the only key of
    /// the set, if there is exactly one.
    pub(crate) fn find(&self, key_id: Option<&str>) -> Option<&VerificationKey> {
        match key_id {
            Some(key_id) => self
                .keys
                .iter()
                .find(|key| key.key_id.as_deref() == Some(key_id)),
            None if self.keys.len() == 1 => self.keys.first(),
            None => None,
        }
    }
}

/// Parse a JWKS document. Unusable keys are counted and skipped so that one
/// exotic key does not disable an issuer; a document that is not a JWKS at
/// all is an error.
pub(crate) fn parse_jwks(document: &[u8]) -> Result<KeySet, String> {
    let value: serde_json::Value =
        serde_json::from_slice(document).map_err(|error| format!("not JSON: {error}"))?;
    let Some(raw_keys) = value.get("keys").and_then(serde_json::Value::as_array) else {
        return Err("no `keys` array".to_owned());
    };
    let mut key_set = KeySet::default();
    for raw_key in raw_keys {
        match serde_json::from_value::<Jwk>(raw_key.clone())
            .ok()
            .and_then(|jwk| verification_key(&jwk))
        {
            Some(key) => key_set.keys.push(key),
            None => key_set.skipped_key_count += 1,
        }
    }
    Ok(key_set)
}

fn verification_key(jwk: &Jwk) -> Option<VerificationKey> {
    if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
        return None;
    }
    // INVARIANT: symmetric ("oct") keys never become verification keys, so
    // no published secret can make an HMAC token verify.
    let family = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => KeyFamily::Rsa,
        AlgorithmParameters::EllipticCurve(parameters)
            if parameters.curve == EllipticCurve::P256 =>
        {
            KeyFamily::EcP256
        }
        AlgorithmParameters::OctetKeyPair(parameters)
            if parameters.curve == EllipticCurve::Ed25519 =>
        {
            KeyFamily::Ed25519
        }
        _ => return None,
    };
    // A key that declares an algorithm is only used for that algorithm, and
    // only if it is the one its family verifies.
    if let Some(declared) = &jwk.common.key_algorithm {
        let declared_matches_family = matches!(
            (declared, family),
            (KeyAlgorithm::RS256, KeyFamily::Rsa)
                | (KeyAlgorithm::ES256, KeyFamily::EcP256)
                | (KeyAlgorithm::EdDSA, KeyFamily::Ed25519)
        );
        if !declared_matches_family {
            return None;
        }
    }
    let decoding_key = DecodingKey::from_jwk(jwk).ok()?;
    Some(VerificationKey {
        key_id: jwk.common.key_id.clone(),
        family,
        decoding_key,
    })
}

/// Why keys could not be fetched; logged, never shown to clients.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    #[error("request to the JWKS endpoint failed")]
    Request(#[source] reqwest::Error),
    #[error("JWKS endpoint answered with status {0}")]
    Status(reqwest::StatusCode),
    #[error("JWKS document exceeds {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    #[error("JWKS document is unusable: {0}")]
    Invalid(String),
}

async fn fetch_jwks(http: &reqwest::Client, url: &str) -> Result<KeySet, FetchError> {
    let mut response = http.get(url).send().await.map_err(FetchError::Request)?;
    if !response.status().is_success() {
        return Err(FetchError::Status(response.status()));
    }
    if response
        .content_length()
        .is_some_and(|length| length > MAX_JWKS_BYTES as u64)
    {
        return Err(FetchError::TooLarge);
    }
    let mut document = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(FetchError::Request)? {
        if document.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(FetchError::TooLarge);
        }
        document.extend_from_slice(&chunk);
    }
    parse_jwks(&document).map_err(FetchError::Invalid)
}

/// The cached keys of one issuer.
#[derive(Debug)]
pub(crate) struct IssuerKeys {
    source: JwksSource,
    current: RwLock<CachedKeys>,
    /// Held while fetching, so that concurrent requests for an unknown key
    /// wait for one fetch instead of each starting their own. It records
    /// when the last fetch was attempted.
    fetch_gate: tokio::sync::Mutex<Option<Timestamp>>,
    min_fetch_interval: SignedDuration,
    refresh_interval: SignedDuration,
}

#[derive(Debug, Clone, Default)]
struct CachedKeys {
    key_set: Arc<KeySet>,
    fetched_at: Option<Timestamp>,
}

/// Why a fetch did not happen or did not succeed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RefreshOutcome {
    Fetched,
    NotNeeded,
    RateLimited,
    Failed,
}

impl IssuerKeys {
    pub(crate) fn new(
        source: JwksSource,
        initial: Option<KeySet>,
        min_fetch_interval_seconds: u64,
        refresh_interval_seconds: u64,
    ) -> Self {
        let seconds =
            |value: u64| SignedDuration::from_secs(i64::try_from(value).unwrap_or(i64::MAX));
        IssuerKeys {
            source,
            current: RwLock::new(CachedKeys {
                key_set: Arc::new(initial.unwrap_or_default()),
                fetched_at: None,
            }),
            fetch_gate: tokio::sync::Mutex::new(None),
            min_fetch_interval: seconds(min_fetch_interval_seconds),
            refresh_interval: seconds(refresh_interval_seconds),
        }
    }

    pub(crate) fn key_set(&self) -> Arc<KeySet> {
        self.read_current().key_set
    }

    fn read_current(&self) -> CachedKeys {
        // A poisoned lock only means a writer panicked between two plain
        // assignments; the value is still a complete key set.
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Fetch the key set again if it comes from a URL, unless one was fetched
    /// or attempted less than the minimum fetch interval ago.
    pub(crate) async fn refresh(
        &self,
        http: &reqwest::Client,
        now: Timestamp,
        only_if_stale: bool,
    ) -> RefreshOutcome {
        let JwksSource::Url(url) = &self.source else {
            return RefreshOutcome::NotNeeded;
        };
        let mut last_attempt = self.fetch_gate.lock().await;
        if only_if_stale {
            let fetched_at = self.read_current().fetched_at;
            if fetched_at.is_some_and(|fetched_at| now < fetched_at + self.refresh_interval) {
                return RefreshOutcome::NotNeeded;
            }
        }
        if last_attempt.is_some_and(|attempted_at| now < attempted_at + self.min_fetch_interval) {
            return RefreshOutcome::RateLimited;
        }
        *last_attempt = Some(now);
        match fetch_jwks(http, url).await {
            Ok(key_set) => {
                tracing::info!(
                    jwks_url = %url,
                    usable_keys = key_set.keys.len(),
                    skipped_keys = key_set.skipped_key_count,
                    "fetched issuer keys"
                );
                let mut current = self
                    .current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                *current = CachedKeys {
                    key_set: Arc::new(key_set),
                    fetched_at: Some(now),
                };
                RefreshOutcome::Fetched
            }
            Err(error) => {
                // The previous keys stay in force: an unreachable issuer must
                // not lock out holders of tokens signed with known keys.
                tracing::warn!(jwks_url = %url, error = %error, "fetching issuer keys failed");
                RefreshOutcome::Failed
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_keys_are_skipped_not_fatal() {
        let document = serde_json::json!({"keys": [
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "EC", "kid": "p384", "crv": "P-384",
             "x": "AAAA", "y": "AAAA"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "ps256", "alg": "PS256", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "ok", "alg": "RS256", "n": "AQAB", "e": "AQAB"},
            {"kty": "OKP", "kid": "ed", "crv": "Ed25519",
             "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"not": "a key"}
        ]});
        let key_set = parse_jwks(document.to_string().as_bytes()).unwrap();
        let key_ids: Vec<Option<&str>> = key_set
            .keys
            .iter()
            .map(|key| key.key_id.as_deref())
            .collect();
        assert_eq!(key_ids, [Some("ok"), Some("ed")]);
        assert_eq!(key_set.skipped_key_count, 5);
    }

    #[test]
    fn documents_that_are_not_key_sets_are_errors() {
        for document in ["", "[]", "{\"keys\": 3}", "{}"] {
            assert!(parse_jwks(document.as_bytes()).is_err(), "`{document}`");
        }
    }

    #[test]
    fn a_token_without_key_id_uses_the_only_key() {
        let document = serde_json::json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
        ]});
        let key_set = parse_jwks(document.to_string().as_bytes()).unwrap();
        assert!(key_set.find(None).is_some());
        assert!(key_set.find(Some("other")).is_none());
    }
}
