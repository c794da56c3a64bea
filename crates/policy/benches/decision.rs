//! Full decision for one request: snapshot lookup (principal and model by
//! name), context build (location parsing and the Cedar context), Cedar
//! evaluation and the conclusion (statuses, orders). 10,000 principals and
//! 50 policies: the 10 of the default pack plus 40 generated ones in the
//! shapes operators write (per-principal, per-organization, per-model and
//! per-family scopes, country, tag and time conditions).
//!
//! Criterion reports a mean; the p50/p99 loop at the end times 200,000
//! individual decisions and prints percentiles.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use cpu_time::ThreadTime;
use criterion::{Criterion, criterion_group, criterion_main};
use jiff::{SignedDuration, Timestamp};
use portcullis_domain::{
    Clock, Model, ModelDraft, PrincipalAttributes, Provider, ReleaseState, SystemClock,
};
use portcullis_policy::{
    Action, EmbargoList, EngineInputs, Order, PolicyEngine, PolicySchema, PolicySource,
    PrincipalRef, ProfileRegistry, RequestContext, compile,
};

const PRINCIPALS: usize = 10_000;
const NATIONALITIES: [&str; 8] = ["US", "CN", "FR", "IN", "NG", "DE", "BR", "JP"];
const BASES: [&str; 4] = [
    "citizen",
    "lawful_permanent_resident",
    "protected_individual",
    "none",
];
const ORGANIZATIONS: usize = 40;

fn now() -> Timestamp {
    SystemClock.now()
}

fn models() -> Vec<Model> {
    let mut drafts = vec![
        (
            "mythos",
            ReleaseState::Internal,
            "frontier",
            vec!["fail_closed"],
            None,
        ),
        (
            "fable",
            ReleaseState::Released,
            "frontier",
            vec!["fail_closed"],
            Some("cyber"),
        ),
        ("haiku", ReleaseState::Released, "haiku", vec![], None),
        (
            "sentinel",
            ReleaseState::Released,
            "sentinel",
            vec!["us_persons_only"],
            None,
        ),
    ];
    let extra: Vec<String> = (0..16).map(|index| format!("model-{index}")).collect();
    for (index, name) in extra.iter().enumerate() {
        let state = if index.is_multiple_of(4) {
            ReleaseState::UnderReview
        } else {
            ReleaseState::Released
        };
        drafts.push((name.as_str(), state, "haiku", vec![], None));
    }
    drafts
        .into_iter()
        .filter_map(|(name, state, family, tags, safeguard_profile)| {
            ModelDraft {
                name: name.to_owned(),
                provider: Provider::Mock,
                base_url: None,
                upstream_model: None,
                state,
                family: Some(family.to_owned()),
                tags: tags.into_iter().map(str::to_owned).collect(),
                safeguard_profile: safeguard_profile.map(str::to_owned),
                api_key: None,
                api_key_env: None,
                forward_mock_headers: false,
            }
            .validate()
            .ok()
        })
        .collect()
}

fn principal(index: usize) -> Option<PrincipalAttributes> {
    // Verified 30 days ago, expiring in a year, as in the demo.
    let verified_at = now()
        .checked_sub(SignedDuration::from_hours(30 * 24))
        .ok()?;
    let expires_at = now()
        .checked_add(SignedDuration::from_hours(365 * 24))
        .ok()?;
    let organization = if index.is_multiple_of(50) {
        "lab".to_owned()
    } else {
        format!("org-{}", index % ORGANIZATIONS)
    };
    let first = NATIONALITIES[index % NATIONALITIES.len()];
    let second = NATIONALITIES[(index / 7) % NATIONALITIES.len()];
    let screening = if index.is_multiple_of(97) {
        "potential_match"
    } else {
        "clear"
    };
    serde_json::from_value(serde_json::json!({
        "id": format!("user-{index}"),
        "organization": organization,
        "employee": index.is_multiple_of(50),
        "screening": screening,
        "verified_claims": {
            "verification": {"trust_framework": "nist_800_63A", "assurance_level": "ial2",
                             "time": verified_at, "expires_at": expires_at},
            "claims": {"nationalities": [first, second], "us_person_basis": BASES[index % BASES.len()],
                       "residence_country": "US"}}}))
    .ok()
}

/// 40 operator policies in the usual shapes.
fn generated_policies() -> String {
    let mut text = String::new();
    for index in 0..10 {
        text.push_str(&format!(
            "@id(\"suspend_user_{index}\")\n@status(\"ordinary\")\nforbid (principal == Portcullis::Principal::\"user-{}\", action, resource in Portcullis::ModelFamily::\"frontier\");\n",
            index * 997
        ));
    }
    for index in 0..10 {
        text.push_str(&format!(
            "@id(\"org_preview_{index}\")\n@status(\"ordinary\")\npermit (principal in Portcullis::Organization::\"org-{index}\", action == Portcullis::Action::\"invoke\", resource == Portcullis::Model::\"model-{}\")\nwhen {{ principal.active && principal.employee && resource.state == \"under_review\" }};\n",
            index * 4 % 16
        ));
    }
    for index in 0..10 {
        let country = NATIONALITIES[index % NATIONALITIES.len()];
        text.push_str(&format!(
            "@id(\"model_{index}_region_lock\")\n@status(\"legal\")\nforbid (principal, action, resource == Portcullis::Model::\"model-{index}\")\nwhen {{ context has country && context.country == \"{country}\" && !principal.us_person }};\n"
        ));
    }
    for index in 0..10 {
        text.push_str(&format!(
            "@id(\"tag_{index}_window\")\n@status(\"ordinary\")\nforbid (principal, action, resource)\nwhen {{ resource.tags.contains(\"window-{index}\") && context.time < datetime(\"2026-0{}-01T00:00:00Z\") && principal.assurance_level < 3 }};\n",
            index % 9 + 1
        ));
    }
    text
}

fn engine() -> Option<PolicyEngine> {
    let schema = Arc::new(PolicySchema::portcullis().ok()?);
    let sources = [
        PolicySource::default_pack(),
        PolicySource::new("generated.cedar", generated_policies()),
    ];
    let policies = match compile(&sources, &schema) {
        Ok(policies) => policies,
        Err(error) => {
            eprintln!("{error}");
            return None;
        }
    };
    assert_eq!(policies.len(), 50);
    let order: Order = serde_json::from_value(serde_json::json!({
        "reference": "BIS-2026-0521", "issuer": "US Department of Commerce",
        "received_at": "2026-11-20T17:21:00-05:00", "effective_at": null,
        "effect": "suspend", "models": ["family:frontier"],
        "principals": {"foreign_persons_under": "ear"}}))
    .ok()?;
    PolicyEngine::build(EngineInputs {
        policies,
        models: models(),
        principals: (0..PRINCIPALS).filter_map(principal).collect(),
        orders: vec![order],
        operator_organization: "lab".into(),
        active_profile: "ear".into(),
        profiles: ProfileRegistry::default(),
        embargo: EmbargoList::default_list().ok()?,
        built_at: now(),
    })
    .ok()
}

/// One request as the gateway makes it: the principal id from the key, the
/// model name from the body, the country from the edge header, the client
/// address from the socket, the time from the clock.
fn decide_one(engine: &PolicyEngine, ids: &[String], model_names: &[&str], counter: usize) -> bool {
    let principal = &ids[counter % ids.len()];
    let model = model_names[counter % model_names.len()];
    let client_ip = IpAddr::V4(Ipv4Addr::from(
        u32::try_from(counter % (1 << 24)).unwrap_or(0) | 0x0a00_0000,
    ));
    let context = match RequestContext::at(now()).with_location(Some("US"), None) {
        Ok(context) => context.with_client_ip(client_ip),
        Err(_) => return false,
    };
    engine
        .decide(PrincipalRef::Id(principal), model, Action::Invoke, &context)
        .map(|decision| decision.allowed)
        .unwrap_or(false)
}

fn benches(criterion: &mut Criterion) {
    let Some(engine) = engine() else {
        eprintln!("cannot build the benchmark engine");
        return;
    };
    let ids: Vec<String> = (0..PRINCIPALS)
        .map(|index| format!("user-{index}"))
        .collect();
    let model_names = ["fable", "haiku", "mythos", "sentinel", "model-3", "model-4"];
    let mut counter = 0usize;
    criterion.bench_function("decision/full_10k_principals_50_policies", |bencher| {
        bencher.iter(|| {
            counter = counter.wrapping_add(7919);
            black_box(decide_one(&engine, &ids, &model_names, counter))
        })
    });

    let documents: Vec<PrincipalAttributes> = (0..64).filter_map(principal).collect();
    let context = RequestContext::at(now()).with_location(Some("US"), None);
    if let Ok(context) = context {
        let mut index = 0usize;
        criterion.bench_function("decision/attribute_document_path", |bencher| {
            bencher.iter(|| {
                index = index.wrapping_add(1);
                let document = &documents[index % documents.len()];
                black_box(engine.decide(
                    PrincipalRef::Attributes(document),
                    "fable",
                    Action::Invoke,
                    &context,
                ))
            })
        });
    }

    percentile_loop(&engine, &ids, &model_names);
}

/// Times individual decisions and prints p50, p90, p99 and p99.9, twice:
/// wall-clock time, and the thread's CPU time. On a shared machine the wall
/// clock includes time the thread spent preempted; the CPU-time figures are
/// the cost of the decision itself on one core. The CPU clock's own reading
/// cost is measured first and subtracted. Warms up first so that the
/// measured part sees steady-state caches.
fn percentile_loop(engine: &PolicyEngine, ids: &[String], model_names: &[&str]) {
    const WARM_UP: usize = 20_000;
    const SAMPLES: usize = 200_000;
    let clock_overhead_nanos = {
        let mut readings: Vec<u64> = (0..10_000)
            .map(|_| {
                let started = ThreadTime::now();
                nanos(started.elapsed())
            })
            .collect();
        readings.sort_unstable();
        readings[readings.len() / 2]
    };
    let mut counter = 0usize;
    for _ in 0..WARM_UP {
        counter = counter.wrapping_add(7919);
        black_box(decide_one(engine, ids, model_names, counter));
    }
    let mut wall: Vec<u64> = Vec::with_capacity(SAMPLES);
    let mut cpu: Vec<u64> = Vec::with_capacity(SAMPLES);
    let mut allowed = 0usize;
    for _ in 0..SAMPLES {
        counter = counter.wrapping_add(7919);
        let started_cpu = ThreadTime::now();
        let started_wall = Instant::now();
        let decision = black_box(decide_one(engine, ids, model_names, counter));
        wall.push(nanos(started_wall.elapsed()));
        cpu.push(nanos(started_cpu.elapsed()).saturating_sub(clock_overhead_nanos));
        allowed += usize::from(decision);
    }
    println!(
        "full decision, {PRINCIPALS} principals, 50 policies, {SAMPLES} timed decisions ({allowed} allowed)"
    );
    println!("  wall clock: {}", percentiles(&mut wall));
    println!(
        "  thread CPU: {} (clock overhead {clock_overhead_nanos} ns subtracted)",
        percentiles(&mut cpu)
    );
}

fn nanos(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn percentiles(samples: &mut [u64]) -> String {
    samples.sort_unstable();
    let at = |p: f64| {
        let index = ((samples.len() as f64 * p) as usize).min(samples.len().saturating_sub(1));
        samples.get(index).copied().unwrap_or(0) as f64 / 1000.0
    };
    format!(
        "p50 {:.2} us, p90 {:.2} us, p99 {:.2} us, p99.9 {:.2} us, max {:.2} us",
        at(0.50),
        at(0.90),
        at(0.99),
        at(0.999),
        at(1.0)
    )
}

criterion_group!(decision, benches);
criterion_main!(decision);
