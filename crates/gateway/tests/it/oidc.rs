//! OIDC bearer tokens on the data plane: a valid token authenticates the
//! principal its claims describe and goes through the same policy as an API
//! key; every bad token gets the same 401 with nothing an attacker can use.

#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use crate::harness;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use harness::{TestGateway, model};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use portcullis_domain::{Provider, ReleaseState};
use portcullis_gateway::Config;
use portcullis_oidc::{IssuerConfig, JwksSource, OidcConfig};
use serde_json::{Value, json};

const ISSUER: &str = "https://id.example.test";
const AUDIENCE: &str = "portcullis";

fn signing_key() -> EncodingKey {
    let pem = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../oidc/tests/fixtures/ed25519.pem"),
    )
    .unwrap();
    EncodingKey::from_ed_pem(&pem).unwrap()
}

fn jwks() -> String {
    let mut jwk = Jwk::from_encoding_key(&signing_key(), Algorithm::EdDSA).unwrap();
    jwk.common.key_id = Some("ed-1".into());
    serde_json::to_string(&JwkSet { keys: vec![jwk] }).unwrap()
}

fn sign(claims: &Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("ed-1".into());
    jsonwebtoken::encode(&header, claims, &signing_key()).unwrap()
}

fn claims(sub: &str, nationalities: &[&str], basis: &str) -> Value {
    let now = jiff::Timestamp::now();
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": sub,
        "iat": now.as_second() - 10, "nbf": now.as_second() - 10, "exp": now.as_second() + 600,
        "org": "acme",
        "verified_claims": {
            "verification": {"trust_framework": "nist_800_63A", "assurance_level": "ial2",
                "time": (now - jiff::SignedDuration::from_hours(24)).to_string(),
                "expires_at": (now + jiff::SignedDuration::from_hours(24 * 300)).to_string()},
            "claims": {"nationalities": nationalities, "us_person_basis": basis, "residence_country": "US"}
        }
    })
}

async fn start() -> TestGateway {
    let mut config = Config::default();
    config.location.default_country = Some("US".into());
    let mut issuer = IssuerConfig::new(ISSUER, vec![AUDIENCE.into()], JwksSource::Static(jwks()));
    issuer.claim_mapping.organization_claim = Some("org".into());
    issuer.claim_mapping.screening_claim = Some("screening".into());
    config.oidc = Some(OidcConfig {
        issuers: vec![issuer],
    });
    let mut restricted = model(
        "restricted",
        Provider::Mock,
        None,
        "restricted",
        ReleaseState::Released,
    );
    restricted.tags = vec!["us_persons_only".into()];
    TestGateway::start(config, vec![restricted]).await
}

async fn call(gateway: &TestGateway, token: &str, model: &str) -> (u16, Value) {
    let response = gateway
        .http
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(token)
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn tokens_decide_like_keys_and_bad_tokens_learn_nothing() {
    let gateway = start().await;
    let mut screened = claims("ana", &["US"], "citizen");
    screened["screening"] = json!("clear");
    let citizen = sign(&screened);
    let mut foreign_claims = claims("femi", &["NG"], "none");
    foreign_claims["screening"] = json!("clear");
    let foreign = sign(&foreign_claims);
    let mut self_asserted = claims("sam", &["US"], "citizen");
    self_asserted["screening"] = json!("clear");
    let nationalities = self_asserted["verified_claims"]["claims"]["nationalities"].clone();
    self_asserted
        .as_object_mut()
        .unwrap()
        .remove("verified_claims");
    self_asserted["nationalities"] = nationalities;
    let self_asserted = sign(&self_asserted);

    let expired = {
        let mut c = claims("ana", &["US"], "citizen");
        c["exp"] = json!(jiff::Timestamp::now().as_second() - 3600);
        sign(&c)
    };
    let wrong_audience = {
        let mut c = claims("ana", &["US"], "citizen");
        c["aud"] = json!("someone-else");
        sign(&c)
    };
    let wrong_issuer = {
        let mut c = claims("ana", &["US"], "citizen");
        c["iss"] = json!("https://evil.example");
        sign(&c)
    };
    let alg_none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(screened.to_string())
    );
    let tampered = {
        let mut parts: Vec<String> = citizen.split('.').map(str::to_owned).collect();
        let mut payload = screened.clone();
        payload["sub"] = json!("admin");
        parts[1] = URL_SAFE_NO_PAD.encode(payload.to_string());
        parts.join(".")
    };

    let cases: Vec<(&str, &str, &str, u16)> = vec![
        ("verified citizen, released model", &citizen, "haiku", 200),
        (
            "verified citizen, us_persons_only",
            &citizen,
            "restricted",
            200,
        ),
        ("foreign national, released model", &foreign, "haiku", 200),
        (
            "foreign national, us_persons_only",
            &foreign,
            "restricted",
            451,
        ),
        (
            "self-asserted only, us_persons_only",
            &self_asserted,
            "restricted",
            451,
        ),
        (
            "internal model outside the operator",
            &citizen,
            "mythos",
            403,
        ),
        ("expired", &expired, "haiku", 401),
        ("wrong audience", &wrong_audience, "haiku", 401),
        ("wrong issuer", &wrong_issuer, "haiku", 401),
        ("alg none", &alg_none, "haiku", 401),
        ("tampered payload", &tampered, "haiku", 401),
    ];
    let mut unauthenticated_bodies = Vec::new();
    for (name, token, model, expected) in cases {
        let (status, body) = call(&gateway, token, model).await;
        assert_eq!(status, expected, "{name}: {body}");
        if status == 401 {
            unauthenticated_bodies.push(body["error"]["message"].clone());
        }
    }
    // Every refusal reads the same, whatever was wrong with the token.
    unauthenticated_bodies.dedup();
    assert_eq!(
        unauthenticated_bodies.len(),
        1,
        "{unauthenticated_bodies:?}"
    );

    // The models list follows the token's principal too.
    let listed: Value = gateway
        .http
        .get(gateway.url("/v1/models"))
        .bearer_auth(&foreign)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"haiku") && !names.contains(&"restricted"),
        "{names:?}"
    );
}
