//! Token verification with keys from committed PEM fixtures: every check a
//! token must pass, the claim mapping, and key rotation served by a local
//! JWKS endpoint.

// Helpers outside `#[test]` functions fail loudly on broken fixtures too.
#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use portcullis_domain::{ManualClock, ScreeningStatus, UsPersonBasis};
use portcullis_oidc::{
    ClaimMapping, IssuerConfig, JwksSource, OidcAuthenticator, OidcConfig, OidcConfigError,
    SigningAlgorithm, TokenRejection, looks_like_jwt,
};
use serde_json::{Value, json};

const ISSUER: &str = "https://id.example.test";
const AUDIENCE: &str = "portcullis";

fn now() -> Timestamp {
    "2026-06-01T00:00:00Z".parse().unwrap()
}

fn fixture_bytes(file_name: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(file_name),
    )
    .unwrap()
}

/// A signing key from the fixtures with the key id it is published under.
struct SigningKey {
    key_id: &'static str,
    algorithm: Algorithm,
    encoding_key: EncodingKey,
}

impl SigningKey {
    fn load(key_id: &'static str, file_name: &str, algorithm: Algorithm) -> Self {
        let pem = fixture_bytes(file_name);
        let encoding_key = match algorithm {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
            Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
            other => panic!("no fixture for {other:?}"),
        }
        .unwrap();
        SigningKey {
            key_id,
            algorithm,
            encoding_key,
        }
    }

    fn public_jwk(&self) -> Jwk {
        let mut jwk = Jwk::from_encoding_key(&self.encoding_key, self.algorithm).unwrap();
        jwk.common.key_id = Some(self.key_id.to_owned());
        jwk
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.key_id.to_owned());
        jsonwebtoken::encode(&header, claims, &self.encoding_key).unwrap()
    }
}

fn rsa_a() -> SigningKey {
    SigningKey::load("rsa-a", "rsa_a.pem", Algorithm::RS256)
}
fn rsa_b() -> SigningKey {
    SigningKey::load("rsa-b", "rsa_b.pem", Algorithm::RS256)
}
fn ec() -> SigningKey {
    SigningKey::load("ec-1", "ec_p256.pem", Algorithm::ES256)
}
fn ed() -> SigningKey {
    SigningKey::load("ed-1", "ed25519.pem", Algorithm::EdDSA)
}

fn jwks_document(keys: &[&SigningKey]) -> String {
    serde_json::to_string(&JwkSet {
        keys: keys.iter().map(|key| key.public_jwk()).collect(),
    })
    .unwrap()
}

fn valid_claims() -> Value {
    let now = now().as_second();
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-42",
        "iat": now - 10,
        "nbf": now - 10,
        "exp": now + 3600,
    })
}

fn with(mut claims: Value, changes: Value) -> Value {
    for (name, value) in changes.as_object().unwrap() {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(name);
        } else {
            claims[name] = value.clone();
        }
    }
    claims
}

fn issuer_config(jwks: JwksSource) -> IssuerConfig {
    IssuerConfig::new(ISSUER, vec![AUDIENCE.to_owned()], jwks)
}

fn static_authenticator(clock: &ManualClock) -> OidcAuthenticator {
    let document = jwks_document(&[&rsa_a(), &ec(), &ed()]);
    OidcAuthenticator::new(
        OidcConfig {
            issuers: vec![issuer_config(JwksSource::Static(document))],
        },
        Arc::new(clock.clone()),
    )
    .unwrap()
}

/// Build a token from raw header and payload JSON and a raw signature, for
/// shapes no honest signer produces.
fn raw_token(header: &Value, payload: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

fn replace_payload(token: &str, payload: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        parts[2]
    )
}

#[tokio::test]
async fn accepts_and_rejects_tokens() {
    let clock = ManualClock::new(now());
    let authenticator = static_authenticator(&clock);
    let now = now().as_second();
    let (rsa_a, ec, ed) = (rsa_a(), ec(), ed());
    let unlisted = SigningKey::load("rsa-a", "rsa_unlisted.pem", Algorithm::RS256);

    // HS256 signed with the RSA public key as the HMAC secret: the classic
    // algorithm-confusion forgery against verifiers that take the algorithm
    // from the token.
    let mut hmac_header = Header::new(Algorithm::HS256);
    hmac_header.kid = Some("rsa-a".to_owned());
    let hmac_with_public_key = jsonwebtoken::encode(
        &hmac_header,
        &valid_claims(),
        &EncodingKey::from_secret(&fixture_bytes("rsa_a.pub.pem")),
    )
    .unwrap();
    // An EC-signed token that names the RSA key.
    let mut mismatched_header = Header::new(Algorithm::ES256);
    mismatched_header.kid = Some("rsa-a".to_owned());
    let es256_naming_rsa_key =
        jsonwebtoken::encode(&mismatched_header, &valid_claims(), &ec.encoding_key).unwrap();
    let unknown_key = SigningKey::load("rotated-out", "rsa_a.pem", Algorithm::RS256);

    let cases: Vec<(&str, String, Result<&str, TokenRejection>)> = vec![
        ("valid RS256", rsa_a.sign(&valid_claims()), Ok("user-42")),
        ("valid ES256", ec.sign(&valid_claims()), Ok("user-42")),
        ("valid EdDSA", ed.sign(&valid_claims()), Ok("user-42")),
        (
            "audience in a list",
            rsa_a.sign(&with(valid_claims(), json!({"aud": ["other", AUDIENCE]}))),
            Ok("user-42"),
        ),
        (
            "expired within leeway",
            rsa_a.sign(&with(valid_claims(), json!({"exp": now - 30}))),
            Ok("user-42"),
        ),
        (
            "expired",
            rsa_a.sign(&with(valid_claims(), json!({"exp": now - 61}))),
            Err(TokenRejection::Expired),
        ),
        (
            "no expiry",
            rsa_a.sign(&with(valid_claims(), json!({"exp": null}))),
            Err(TokenRejection::MissingExpiry),
        ),
        (
            "not yet valid within leeway",
            rsa_a.sign(&with(valid_claims(), json!({"nbf": now + 30}))),
            Ok("user-42"),
        ),
        (
            "not yet valid",
            rsa_a.sign(&with(valid_claims(), json!({"nbf": now + 120}))),
            Err(TokenRejection::NotYetValid),
        ),
        (
            "wrong issuer",
            rsa_a.sign(&with(
                valid_claims(),
                json!({"iss": "https://evil.example"}),
            )),
            Err(TokenRejection::UnknownIssuer),
        ),
        (
            "no issuer",
            rsa_a.sign(&with(valid_claims(), json!({"iss": null}))),
            Err(TokenRejection::UnknownIssuer),
        ),
        (
            "wrong audience",
            rsa_a.sign(&with(valid_claims(), json!({"aud": "someone-else"}))),
            Err(TokenRejection::WrongAudience),
        ),
        (
            "no audience",
            rsa_a.sign(&with(valid_claims(), json!({"aud": null}))),
            Err(TokenRejection::WrongAudience),
        ),
        (
            "alg none",
            raw_token(&json!({"alg": "none", "typ": "JWT"}), &valid_claims(), b""),
            Err(TokenRejection::DisallowedAlgorithm),
        ),
        (
            "HS256 signed with the public key",
            hmac_with_public_key,
            Err(TokenRejection::DisallowedAlgorithm),
        ),
        (
            "ES256 token naming an RSA key",
            es256_naming_rsa_key,
            Err(TokenRejection::KeyAlgorithmMismatch),
        ),
        (
            "tampered payload",
            replace_payload(
                &rsa_a.sign(&valid_claims()),
                &with(valid_claims(), json!({"sub": "admin"})),
            ),
            Err(TokenRejection::BadSignature),
        ),
        (
            "signed by an unlisted key under a listed key id",
            unlisted.sign(&valid_claims()),
            Err(TokenRejection::BadSignature),
        ),
        (
            "unknown key id",
            unknown_key.sign(&valid_claims()),
            Err(TokenRejection::UnknownKey),
        ),
        (
            "critical header extension",
            raw_token(
                &json!({"alg": "RS256", "kid": "rsa-a", "crit": ["exp"]}),
                &valid_claims(),
                b"x",
            ),
            Err(TokenRejection::UnsupportedCriticalHeader),
        ),
        (
            "no principal id",
            rsa_a.sign(&with(valid_claims(), json!({"sub": null}))),
            Err(TokenRejection::MissingPrincipalId),
        ),
        (
            "not a JWT",
            "sk-portcullis-abc".to_owned(),
            Err(TokenRejection::Malformed),
        ),
        (
            "two parts",
            "abc.def".to_owned(),
            Err(TokenRejection::Malformed),
        ),
        (
            "header not JSON",
            format!("{}.e30.sig", URL_SAFE_NO_PAD.encode("not json")),
            Err(TokenRejection::Malformed),
        ),
        (
            "oversized",
            format!("{}.e30.sig", "a".repeat(20_000)),
            Err(TokenRejection::TooLarge),
        ),
    ];
    for (label, token, expected) in cases {
        let outcome = authenticator.authenticate(&token).await;
        match (&outcome, expected) {
            (Ok(authenticated), Ok(principal_id)) => {
                assert_eq!(authenticated.principal_id, principal_id, "{label}");
                assert_eq!(authenticated.issuer, ISSUER, "{label}");
            }
            (Err(rejection), Err(expected_rejection)) => {
                assert_eq!(*rejection, expected_rejection, "{label}");
                // What is logged never repeats any part of the token.
                let logged = format!("{rejection} {rejection:?} {}", rejection.reason());
                for part in token.split('.').filter(|part| part.len() > 8) {
                    assert!(!logged.contains(part), "{label}: `{logged}`");
                }
            }
            _ => panic!("{label}: expected {expected:?}, got {outcome:?}"),
        }
    }
}

#[tokio::test]
async fn issuer_settings_restrict_algorithms_and_audiences() {
    let clock = ManualClock::new(now());
    let mut config = issuer_config(JwksSource::Static(jwks_document(&[&rsa_a(), &ed()])));
    config.algorithms = vec![SigningAlgorithm::EdDsa];
    config.audiences = vec!["a".to_owned(), "b".to_owned()];
    let authenticator = OidcAuthenticator::new(
        OidcConfig {
            issuers: vec![config],
        },
        Arc::new(clock),
    )
    .unwrap();
    let claims = with(valid_claims(), json!({"aud": "b"}));
    assert!(
        authenticator
            .authenticate(&ed().sign(&claims))
            .await
            .is_ok()
    );
    assert_eq!(
        authenticator.authenticate(&rsa_a().sign(&claims)).await,
        Err(TokenRejection::DisallowedAlgorithm)
    );
}

#[tokio::test]
async fn claims_map_to_principal_attributes() {
    let clock = ManualClock::new(now());
    let mut config = issuer_config(JwksSource::Static(jwks_document(&[&rsa_a()])));
    config.claim_mapping = ClaimMapping {
        principal_id_claim: "preferred_username".to_owned(),
        principal_id_prefix: "idp:".to_owned(),
        organization_claim: Some("org".to_owned()),
        employee_claim: Some("is_employee".to_owned()),
        screening_claim: Some("screening_result".to_owned()),
        ..ClaimMapping::default()
    };
    let authenticator = OidcAuthenticator::new(
        OidcConfig {
            issuers: vec![config],
        },
        Arc::new(clock),
    )
    .unwrap();
    let verified_claims = json!({
        "verification": {"trust_framework": "nist_800_63A", "assurance_level": "ial2",
                         "time": "2026-01-10T00:00:00Z", "expires_at": "2027-01-10T00:00:00Z"},
        "claims": {"nationalities": ["US", "CN"], "us_person_basis": "citizen",
                   "residence_country": "US", "given_name": "Ada", "family_name": "Lovelace"}
    });
    let cases = [
        ("object", verified_claims.clone(), true),
        (
            "array",
            json!([{"not": "verified claims"}, verified_claims.clone()]),
            true,
        ),
        ("malformed", json!({"claims": "nope"}), false),
    ];
    for (label, verified_claims_value, expect_verified) in cases {
        let claims = with(
            valid_claims(),
            json!({
                "preferred_username": "ada",
                "org": "lab",
                "is_employee": true,
                "screening_result": {"status": "clear", "list_version": "v1"},
                "verified_claims": verified_claims_value,
                "nationalities": ["FR"],
                "organization": "self-asserted-org",
                "active": false,
            }),
        );
        let authenticated = authenticator
            .authenticate(&rsa_a().sign(&claims))
            .await
            .unwrap();
        let attributes = authenticated.attributes;
        assert_eq!(attributes.id, "idp:ada", "{label}");
        assert_eq!(authenticated.principal_id, "idp:ada");
        assert_eq!(attributes.organization.as_deref(), Some("lab"), "{label}");
        assert!(attributes.employee, "{label}");
        assert!(attributes.active, "{label}");
        assert_eq!(attributes.screening.status(), ScreeningStatus::Clear);
        assert_eq!(
            authenticated.expires_at.as_second(),
            now().as_second() + 3600
        );
        // Self-asserted claims are kept apart, under names that cannot be
        // mistaken for attribute fields.
        assert_eq!(attributes.unverified["nationalities"], json!(["FR"]));
        assert_eq!(
            attributes.unverified["claim_organization"],
            json!("self-asserted-org")
        );
        assert_eq!(attributes.unverified["claim_active"], json!(false));
        for protocol_claim in ["iss", "aud", "exp", "nbf", "iat", "sub"] {
            assert!(
                !attributes.unverified.contains_key(protocol_claim),
                "{label}: {protocol_claim}"
            );
        }
        let round_tripped: portcullis_domain::PrincipalAttributes =
            serde_json::from_value(serde_json::to_value(&attributes).unwrap()).unwrap();
        assert_eq!(round_tripped, attributes, "{label}");

        if expect_verified {
            let verified = attributes.verified_claims.unwrap();
            assert_eq!(verified.claims.nationalities, ["US", "CN"]);
            assert_eq!(
                verified.claims.us_person_basis,
                Some(UsPersonBasis::Citizen)
            );
            assert_eq!(verified.claims.family_name.as_deref(), Some("Lovelace"));
        } else {
            assert_eq!(attributes.verified_claims, None, "{label}");
            assert!(
                attributes
                    .unverified
                    .contains_key("unparsed_verified_claims")
            );
        }
    }
}

#[test]
fn invalid_configurations_are_rejected() {
    let clock = Arc::new(ManualClock::new(now()));
    let valid = || issuer_config(JwksSource::Static(jwks_document(&[&rsa_a()])));
    let hmac_only = json!({"keys": [{"kty": "oct", "kid": "k", "k": "c2VjcmV0"}]}).to_string();
    let cases: Vec<(&str, Vec<IssuerConfig>, OidcConfigError)> = vec![
        (
            "empty issuer",
            vec![IssuerConfig {
                issuer: " ".to_owned(),
                ..valid()
            }],
            OidcConfigError::EmptyIssuer,
        ),
        (
            "duplicate issuer",
            vec![valid(), valid()],
            OidcConfigError::DuplicateIssuer {
                issuer: ISSUER.to_owned(),
            },
        ),
        (
            "no audience",
            vec![IssuerConfig {
                audiences: vec![],
                ..valid()
            }],
            OidcConfigError::NoAudience {
                issuer: ISSUER.to_owned(),
            },
        ),
        (
            "no algorithm",
            vec![IssuerConfig {
                algorithms: vec![],
                ..valid()
            }],
            OidcConfigError::NoAlgorithm {
                issuer: ISSUER.to_owned(),
            },
        ),
        (
            "plain http to a remote host",
            vec![issuer_config(JwksSource::Url(
                "http://id.example.test/jwks".to_owned(),
            ))],
            OidcConfigError::InsecureJwksUrl {
                issuer: ISSUER.to_owned(),
                url: "http://id.example.test/jwks".to_owned(),
            },
        ),
        (
            "static JWKS with only a symmetric key",
            vec![issuer_config(JwksSource::Static(hmac_only))],
            OidcConfigError::InvalidStaticJwks {
                issuer: ISSUER.to_owned(),
                reason: "it holds no usable key".to_owned(),
            },
        ),
    ];
    for (label, issuers, expected) in cases {
        let error = OidcAuthenticator::new(OidcConfig { issuers }, clock.clone()).unwrap_err();
        assert_eq!(error, expected, "{label}");
    }
}

#[test]
fn tells_jwts_from_api_keys() {
    let cases = [
        (rsa_a().sign(&valid_claims()), true),
        ("eyJhbGciOiJub25lIn0.e30.".to_owned(), true),
        ("pcs_live_abcdef0123456789".to_owned(), false),
        ("a.b".to_owned(), false),
        ("a.b.c.d".to_owned(), false),
        ("a+b.c/d.e".to_owned(), false),
        (String::new(), false),
    ];
    for (token, expected) in cases {
        assert_eq!(looks_like_jwt(&token), expected, "`{token}`");
    }
}

/// A JWKS endpoint on a loopback port that serves whatever document the test
/// sets, or a 500 when it holds none, and counts requests.
struct JwksServer {
    url: String,
    document: Arc<Mutex<Option<String>>>,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    async fn start(document: String) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let shared_document = Arc::new(Mutex::new(Some(document)));
        let requests = Arc::new(AtomicUsize::new(0));
        let (served_document, served_requests) = (shared_document.clone(), requests.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|window| window == b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(read) => request.extend_from_slice(&buffer[..read]),
                    }
                }
                served_requests.fetch_add(1, Ordering::SeqCst);
                let body = served_document.lock().unwrap().clone();
                let response = match body {
                    Some(body) => format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    ),
                    None => "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned(),
                };
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            }
        });
        JwksServer {
            url,
            document: shared_document,
            requests,
            task,
        }
    }

    fn serve(&self, document: Option<String>) {
        *self.document.lock().unwrap() = document;
    }

    fn request_count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn keys_rotate_through_the_jwks_endpoint() {
    let (rsa_a, rsa_b) = (rsa_a(), rsa_b());
    let server = JwksServer::start(jwks_document(&[&rsa_a])).await;
    let clock = ManualClock::new(now());
    let mut config = issuer_config(JwksSource::Url(server.url.clone()));
    config.jwks_min_fetch_interval_seconds = 10;
    config.jwks_refresh_interval_seconds = 600;
    let authenticator = OidcAuthenticator::new(
        OidcConfig {
            issuers: vec![config],
        },
        Arc::new(clock.clone()),
    )
    .unwrap();
    // Tokens keep their validity as the clock moves, so only keys matter.
    let long_lived = with(valid_claims(), json!({"exp": now().as_second() + 86_400}));

    // First use fetches the keys.
    assert!(
        authenticator
            .authenticate(&rsa_a.sign(&long_lived))
            .await
            .is_ok()
    );
    assert_eq!(server.request_count(), 1);
    assert!(
        authenticator
            .authenticate(&rsa_a.sign(&long_lived))
            .await
            .is_ok()
    );
    assert_eq!(
        server.request_count(),
        1,
        "known keys are served from the cache"
    );

    // The issuer adds a key. Within the minimum fetch interval the new key
    // id is not fetched for; after it, the unknown key id triggers a fetch.
    server.serve(Some(jwks_document(&[&rsa_a, &rsa_b])));
    assert_eq!(
        authenticator.authenticate(&rsa_b.sign(&long_lived)).await,
        Err(TokenRejection::UnknownKey)
    );
    assert_eq!(server.request_count(), 1);
    clock.advance_millis(11_000);
    assert!(
        authenticator
            .authenticate(&rsa_b.sign(&long_lived))
            .await
            .is_ok()
    );
    assert_eq!(server.request_count(), 2);

    // A flood of tokens naming unknown keys causes at most one fetch per
    // interval.
    clock.advance_millis(11_000);
    let bogus = SigningKey::load("bogus", "rsa_unlisted.pem", Algorithm::RS256);
    for _ in 0..20 {
        assert_eq!(
            authenticator.authenticate(&bogus.sign(&long_lived)).await,
            Err(TokenRejection::UnknownKey)
        );
    }
    assert_eq!(server.request_count(), 3);

    // The issuer withdraws the old key. Periodic refresh does nothing while
    // the keys are fresh, and drops the withdrawn key once they are stale.
    server.serve(Some(jwks_document(&[&rsa_b])));
    authenticator.refresh_stale_keys().await;
    assert_eq!(server.request_count(), 3);
    clock.advance_millis(601_000);
    authenticator.refresh_stale_keys().await;
    assert_eq!(server.request_count(), 4);
    assert_eq!(
        authenticator.authenticate(&rsa_a.sign(&long_lived)).await,
        Err(TokenRejection::UnknownKey)
    );
    assert!(
        authenticator
            .authenticate(&rsa_b.sign(&long_lived))
            .await
            .is_ok()
    );

    // An endpoint failure keeps the last good keys in force.
    server.serve(None);
    clock.advance_millis(601_000);
    authenticator.refresh_stale_keys().await;
    assert_eq!(server.request_count(), 5);
    assert!(
        authenticator
            .authenticate(&rsa_b.sign(&long_lived))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_rejects_tokens_as_unknown_key() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    drop(listener);
    let authenticator = OidcAuthenticator::new(
        OidcConfig {
            issuers: vec![issuer_config(JwksSource::Url(url))],
        },
        Arc::new(ManualClock::new(now())),
    )
    .unwrap();
    assert_eq!(
        authenticator
            .authenticate(&rsa_a().sign(&valid_claims()))
            .await,
        Err(TokenRejection::UnknownKey)
    );
}
