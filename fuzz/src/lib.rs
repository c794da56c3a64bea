//! What each fuzz target feeds its input to. Every function takes any
//! bytes and must return without panicking, hanging or growing without
//! bound: errors are the expected outcome for nearly every input.
//!
//! The fuzz targets (`fuzz_targets/*.rs`, nightly, libFuzzer) call these;
//! the workspace test `crates/portcullis/tests/it/fuzz_corpora.rs` includes
//! this file and replays the committed seeds and corpora (`seeds/TARGET/*`,
//! `corpus/TARGET/*`) through the same functions on stable.

use std::sync::{Arc, OnceLock};

use portcullis_gateway::sse::{SseEvent, SseSplitter};
use portcullis_gateway::translate::{
    AnthropicToOpenAiStream, OpenAiToAnthropicStream, anthropic_request_to_openai,
    openai_request_to_anthropic,
};
use serde_json::Value;

/// OpenAI and Anthropic request bodies: parsing, translation both ways, and
/// the safeguards' reading of every field.
pub fn requests(data: &[u8]) {
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let _ = openai_request_to_anthropic(&body, "upstream-model");
    let _ = anthropic_request_to_openai(&body, "upstream-model");
    let _ = portcullis_gateway::guard::exchange_from_body(&body);
}

/// The SSE parser, fed in chunks whose sizes come from the input's first
/// byte, and both stream translators fed the events it yields.
pub fn sse(data: &[u8]) {
    let Some((&size, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(size % 61) + 1;
    let mut splitter = SseSplitter::new();
    let mut events: Vec<SseEvent> = Vec::new();
    for piece in rest.chunks(chunk) {
        if splitter.push(piece).is_err() {
            return;
        }
        while let Some(event) = splitter.next_event() {
            events.push(event);
        }
    }
    events.extend(splitter.finish());
    let mut to_anthropic = OpenAiToAnthropicStream::new("alias", "msg_fuzz");
    let mut to_openai = AnthropicToOpenAiStream::new("alias", "chatcmpl-fuzz", 0, true);
    for event in &events {
        let _ = to_anthropic.on_event(event);
        let _ = to_openai.on_event(event);
    }
    let _ = to_anthropic.finish();
    let _ = to_openai.finish();
}

/// The RFC 8037 example Ed25519 public key: tokens are parsed and refused
/// up to the signature check, which no fuzzer input passes.
const STATIC_JWKS: &str = r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "fuzz", "alg": "EdDSA", "use": "sig", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;

fn authenticator() -> Option<&'static (tokio::runtime::Runtime, portcullis_oidc::OidcAuthenticator)>
{
    static AUTHENTICATOR: OnceLock<
        Option<(tokio::runtime::Runtime, portcullis_oidc::OidcAuthenticator)>,
    > = OnceLock::new();
    AUTHENTICATOR
        .get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            let config = portcullis_oidc::OidcConfig {
                issuers: vec![portcullis_oidc::IssuerConfig {
                    issuer: "https://id.example.com".into(),
                    audiences: vec!["portcullis".into()],
                    jwks: portcullis_oidc::JwksSource::Static(STATIC_JWKS.into()),
                    algorithms: vec![
                        portcullis_oidc::SigningAlgorithm::Rs256,
                        portcullis_oidc::SigningAlgorithm::Es256,
                        portcullis_oidc::SigningAlgorithm::EdDsa,
                    ],
                    leeway_seconds: 60,
                    jwks_refresh_interval_seconds: 3600,
                    jwks_min_fetch_interval_seconds: 60,
                    claim_mapping: portcullis_oidc::ClaimMapping::default(),
                }],
            };
            let clock: Arc<dyn portcullis_domain::Clock> = Arc::new(portcullis_domain::SystemClock);
            let authenticator = portcullis_oidc::OidcAuthenticator::new(config, clock).ok()?;
            Some((runtime, authenticator))
        })
        .as_ref()
}

/// Bearer tokens: the JWT shape test, header and claims decoding, key
/// selection and the signature check.
pub fn jwt(data: &[u8]) {
    let token = String::from_utf8_lossy(data);
    let _ = portcullis_oidc::looks_like_jwt(&token);
    if let Some((runtime, authenticator)) = authenticator() {
        let _ = runtime.block_on(authenticator.authenticate(&token));
    }
}

/// Cedar policy sources compiled against the schema in strict mode, and the
/// configuration file's TOML with its validation.
pub fn policy_config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(schema) = portcullis_policy::PolicySchema::portcullis() {
        let schema = Arc::new(schema);
        let sources = [
            portcullis_policy::PolicySource::new("default", portcullis_policy::DEFAULT_POLICY_TEXT),
            portcullis_policy::PolicySource::new("fuzz", text.as_ref()),
        ];
        let _ = portcullis_policy::compile(&sources, &schema);
    }
    if let Ok(config) = toml::from_str::<portcullis_gateway::Config>(&text) {
        let _ = config.validate();
    }
}

/// Denied-party list files: OFAC SDN (with the same bytes as its alias
/// file) and the Consolidated Screening List, then a match against them.
pub fn screening_csv(data: &[u8]) {
    let file = portcullis_screening::ListFile::new("fuzz.csv", data.to_vec());
    let mut builder = portcullis_screening::ScreeningListBuilder::new();
    let _ = builder.add_ofac_sdn(&file, Some(&file));
    let _ = builder.add_consolidated_screening_list(&file);
    let list = builder.build();
    let query = portcullis_screening::ComparableName::new(portcullis_screening::normalize_name(
        "Ivan Petrov",
    ));
    let _ = list.best_match(&query, 0.8);
}

fn verifier() -> Option<&'static portcullis_audit::NoteVerifier> {
    static VERIFIER: OnceLock<Option<portcullis_audit::NoteVerifier>> = OnceLock::new();
    VERIFIER
        .get_or_init(|| {
            portcullis_audit::NoteSigner::from_seed("portcullis", [7; 32])
                .ok()
                .map(|signer| signer.verifier())
        })
        .as_ref()
}

/// What an auditor feeds the verifier: inclusion proofs, signed notes and
/// checkpoints, report notes and audit exports.
pub fn audit_proofs(data: &[u8]) {
    let Some(verifier) = verifier() else {
        return;
    };
    if let Ok(proof) = serde_json::from_slice::<portcullis_audit::InclusionProof>(data) {
        let _ = portcullis_audit::verify_inclusion_proof(&proof, verifier);
    }
    if let Ok(proof) = serde_json::from_slice::<portcullis_audit::ConsistencyProof>(data) {
        let _ = portcullis_audit::verify_consistency_proof(&proof, verifier);
    }
    let text = String::from_utf8_lossy(data);
    let _ = verifier.verify_note(&text);
    let _ = portcullis_audit::Checkpoint::from_note_text(&text);
    let _ = portcullis_audit::report_note::verify_report(&text, verifier, b"{}\n");
    let _ = portcullis_audit::verify_export(data, verifier);
}
