//! The decision suite: every hard case from the product requirement, run
//! through one `check(case, expected)` helper against the default policy
//! pack and the demo story.

// Helpers outside `#[test]` functions unwrap too: in a test, a failed
// unwrap is a failed test with its message, which is what we want.
#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::panic)]

use crate::common;

use std::collections::HashMap;
use std::sync::OnceLock;

use jiff::Timestamp;
use portcullis_policy::{Action, PolicyEngine, PrincipalRef, RequestContext};

#[derive(Debug, Clone, Copy)]
struct Case {
    label: &'static str,
    principal: &'static str,
    model: &'static str,
    profile: &'static str,
    country: Option<&'static str>,
    subdivision: Option<&'static str>,
    /// Whether the BIS order (frontier suspended for foreign persons under
    /// `ear`) is in the snapshot.
    with_order: bool,
    time: Option<&'static str>,
}

const BASE: Case = Case {
    label: "",
    principal: "alice",
    model: "haiku",
    profile: "ear",
    country: Some("US"),
    subdivision: None,
    with_order: false,
    time: None,
};

/// After the BIS order's `received_at` (2026-11-20T22:21:00Z).
const AFTER_ORDER: Option<&str> = Some("2026-11-21T09:00:00Z");

fn engines() -> &'static HashMap<(&'static str, bool), PolicyEngine> {
    static ENGINES: OnceLock<HashMap<(&'static str, bool), PolicyEngine>> = OnceLock::new();
    ENGINES.get_or_init(|| {
        let mut engines = HashMap::new();
        for profile in ["ear", "citizens_only", "itar"] {
            engines.insert((profile, false), common::engine(profile, vec![]));
            engines.insert(
                (profile, true),
                common::engine(profile, vec![common::bis_order()]),
            );
        }
        engines
    })
}

/// Decides `case` twice, once for the principal by id (the precomputed
/// snapshot path) and once from its attribute document (the path for JWT
/// principals and `policy eval` cases), and checks both against `expected`.
fn check(case: Case, expected: (u16, &[&str])) {
    let engine = &engines()[&(case.profile, case.with_order)];
    let time: Timestamp = case
        .time
        .map_or_else(common::demo_now, |text| text.parse().unwrap());
    let context = RequestContext::at(time)
        .with_location(case.country, case.subdivision)
        .unwrap();
    let attributes = common::principal(case.principal);
    let by_id = engine
        .decide(
            PrincipalRef::Id(case.principal),
            case.model,
            Action::Invoke,
            &context,
        )
        .unwrap();
    let by_document = engine
        .decide(
            PrincipalRef::Attributes(&attributes),
            case.model,
            Action::Invoke,
            &context,
        )
        .unwrap();
    let (status, reasons) = expected;
    let got = (by_id.status, by_id.reasons.clone());
    assert_eq!(
        got,
        (
            status,
            reasons.iter().map(|r| (*r).to_owned()).collect::<Vec<_>>()
        ),
        "{}: {case:?}",
        case.label
    );
    assert_eq!(
        by_id, by_document,
        "{}: id and document paths disagree",
        case.label
    );
    assert_eq!(by_id.allowed, status == 200, "{}", case.label);
    assert_eq!(by_id.profile, case.profile, "{}", case.label);

    // A denial names rule ids and never the principal's attributes.
    if let Some(message) = by_id.denial_message(case.model) {
        for reason in &by_id.reasons {
            assert!(message.contains(&format!("`{reason}`")), "{message}");
        }
        let claims = attributes
            .verified_claims
            .as_ref()
            .map(|verified| {
                let mut codes = verified.claims.nationalities.clone();
                codes.extend(verified.claims.former_nationalities.clone());
                codes.extend(verified.claims.residence_country.clone());
                codes
            })
            .unwrap_or_default();
        for code in claims {
            assert!(!message.contains(&code), "{message} leaks `{code}`");
        }
        assert!(
            !message.contains(case.principal),
            "{message} names the principal"
        );
    }
}

#[test]
fn demo_story_before_any_order() {
    let allow_released: (u16, &[&str]) = (200, &["released_model_access"]);
    check(
        Case {
            label: "alice haiku",
            ..BASE
        },
        allow_released,
    );
    check(
        Case {
            label: "alice fable",
            model: "fable",
            ..BASE
        },
        allow_released,
    );
    check(
        Case {
            label: "internal model, outside the operator",
            model: "mythos",
            ..BASE
        },
        (403, &["internal_model_outside_operator"]),
    );
    check(
        Case {
            label: "internal model, emeka",
            principal: "emeka",
            model: "mythos",
            ..BASE
        },
        (403, &["internal_model_outside_operator"]),
    );
    check(
        Case {
            label: "internal model, foreign employee",
            principal: "bruno",
            model: "mythos",
            ..BASE
        },
        (200, &["internal_model_operator_access"]),
    );
    for profile in ["ear", "citizens_only", "itar"] {
        check(
            Case {
                label: "foreign employee on fable",
                principal: "bruno",
                model: "fable",
                profile,
                ..BASE
            },
            allow_released,
        );
        check(
            Case {
                label: "foreign employee on mythos",
                principal: "bruno",
                model: "mythos",
                profile,
                ..BASE
            },
            (200, &["internal_model_operator_access"]),
        );
    }
}

#[test]
fn dual_nationals_under_each_profile() {
    let us_only = (451, &["us_persons_only"][..]);
    let allow: (u16, &[&str]) = (200, &["released_model_access"]);
    // chen: US and CN citizen. A dual US citizen is a US person everywhere.
    for profile in ["ear", "citizens_only", "itar"] {
        check(
            Case {
                label: "US+CN dual citizen",
                principal: "chen",
                model: "sentinel",
                profile,
                ..BASE
            },
            allow,
        );
        check(
            Case {
                label: "US+CN dual citizen",
                principal: "chen",
                model: "fable",
                profile,
                ..BASE
            },
            allow,
        );
    }
    // farid: FR and IR national, most recent FR, not a US person. The EAR
    // and citizens_only attribute the most recent citizenship only; ITAR
    // attributes every one, including the embargoed one.
    check(
        Case {
            label: "FR+IR under ear",
            principal: "farid",
            profile: "ear",
            ..BASE
        },
        allow,
    );
    check(
        Case {
            label: "FR+IR under citizens_only",
            principal: "farid",
            profile: "citizens_only",
            ..BASE
        },
        allow,
    );
    check(
        Case {
            label: "FR+IR under itar",
            principal: "farid",
            profile: "itar",
            ..BASE
        },
        (451, &["embargoed_attributed_country"]),
    );
    check(
        Case {
            label: "FR+IR foreign on sentinel",
            principal: "farid",
            model: "sentinel",
            ..BASE
        },
        us_only,
    );
    // gita: DE national, formerly IR, lawful permanent resident.
    check(
        Case {
            label: "LPR formerly IR under ear",
            principal: "gita",
            model: "sentinel",
            profile: "ear",
            ..BASE
        },
        allow,
    );
    check(
        Case {
            label: "LPR formerly IR under citizens_only",
            principal: "gita",
            model: "sentinel",
            profile: "citizens_only",
            ..BASE
        },
        us_only,
    );
    check(
        Case {
            label: "LPR formerly IR under itar",
            principal: "gita",
            model: "sentinel",
            profile: "itar",
            ..BASE
        },
        allow,
    );
    check(
        Case {
            label: "LPR formerly IR under itar, haiku",
            principal: "gita",
            profile: "itar",
            ..BASE
        },
        allow,
    );
}

#[test]
fn lpr_protected_individual_and_stateless() {
    let allow: (u16, &[&str]) = (200, &["released_model_access"]);
    let us_only = (451, &["us_persons_only"][..]);
    // dara: lawful permanent resident, IN.
    check(
        Case {
            label: "LPR under ear",
            principal: "dara",
            model: "sentinel",
            profile: "ear",
            ..BASE
        },
        allow,
    );
    check(
        Case {
            label: "LPR under citizens_only",
            principal: "dara",
            model: "sentinel",
            profile: "citizens_only",
            ..BASE
        },
        us_only,
    );
    check(
        Case {
            label: "LPR under itar",
            principal: "dara",
            model: "sentinel",
            profile: "itar",
            ..BASE
        },
        allow,
    );
    // hana: protected individual (refugee), national of SY.
    check(
        Case {
            label: "protected individual under ear",
            principal: "hana",
            model: "sentinel",
            profile: "ear",
            ..BASE
        },
        allow,
    );
    check(
        Case {
            label: "protected individual under itar",
            principal: "hana",
            model: "sentinel",
            profile: "itar",
            ..BASE
        },
        allow,
    );
    check(
        Case {
            label: "protected individual under citizens_only",
            principal: "hana",
            model: "sentinel",
            profile: "citizens_only",
            ..BASE
        },
        (451, &["embargoed_attributed_country", "us_persons_only"]),
    );
    check(
        Case {
            label: "protected individual under citizens_only, haiku",
            principal: "hana",
            profile: "citizens_only",
            ..BASE
        },
        (451, &["embargoed_attributed_country"]),
    );
    // ivan: stateless, no US-person basis.
    check(
        Case {
            label: "stateless haiku",
            principal: "ivan",
            ..BASE
        },
        allow,
    );
    check(
        Case {
            label: "stateless fable",
            principal: "ivan",
            model: "fable",
            ..BASE
        },
        allow,
    );
    check(
        Case {
            label: "stateless sentinel",
            principal: "ivan",
            model: "sentinel",
            ..BASE
        },
        us_only,
    );
}

#[test]
fn verification_that_does_not_count() {
    let allow: (u16, &[&str]) = (200, &["released_model_access"]);
    let us_only = (451, &["us_persons_only"][..]);
    for profile in ["ear", "citizens_only", "itar"] {
        check(
            Case {
                label: "expired verification",
                principal: "jules",
                model: "sentinel",
                profile,
                ..BASE
            },
            us_only,
        );
        check(
            Case {
                label: "self-asserted only",
                principal: "kim",
                model: "sentinel",
                profile,
                ..BASE
            },
            us_only,
        );
        check(
            Case {
                label: "assurance ial1",
                principal: "pia",
                model: "sentinel",
                profile,
                ..BASE
            },
            us_only,
        );
        check(
            Case {
                label: "no expiry",
                principal: "quinn",
                model: "sentinel",
                profile,
                ..BASE
            },
            us_only,
        );
    }
    check(
        Case {
            label: "expired verification, haiku",
            principal: "jules",
            ..BASE
        },
        allow,
    );
    check(
        Case {
            label: "self-asserted only, fable",
            principal: "kim",
            model: "fable",
            ..BASE
        },
        allow,
    );
    check(
        Case {
            label: "operator employee without expiry, mythos",
            principal: "quinn",
            model: "mythos",
            ..BASE
        },
        (200, &["internal_model_operator_access"]),
    );
    // jules was verified from 2025-06-01 to 2026-06-01: inside that window
    // the same document counts.
    check(
        Case {
            label: "before expiry",
            principal: "jules",
            model: "sentinel",
            time: Some("2026-05-31T23:59:59Z"),
            ..BASE
        },
        allow,
    );
}

#[test]
fn missing_attributes() {
    // lee has nothing but an id: unscreened, no organization, no claims.
    check(
        Case {
            label: "missing attributes, haiku",
            principal: "lee",
            ..BASE
        },
        (200, &["released_model_access"]),
    );
    check(
        Case {
            label: "missing attributes, fable",
            principal: "lee",
            model: "fable",
            ..BASE
        },
        (451, &["unscreened_restricted_model"]),
    );
    check(
        Case {
            label: "missing attributes, mythos",
            principal: "lee",
            model: "mythos",
            ..BASE
        },
        (
            451,
            &[
                "unscreened_restricted_model",
                "internal_model_outside_operator",
            ],
        ),
    );
    check(
        Case {
            label: "missing attributes, sentinel",
            principal: "lee",
            model: "sentinel",
            ..BASE
        },
        (451, &["us_persons_only"]),
    );
    check(
        Case {
            label: "inactive principal",
            principal: "nadia",
            ..BASE
        },
        (403, &["no_permit"]),
    );
}

#[test]
fn locations() {
    let allow: (u16, &[&str]) = (200, &["released_model_access"]);
    let embargoed = (451, &["embargoed_location"][..]);
    for country in ["IR", "CU", "KP", "SY", "CUB", "irn"] {
        check(
            Case {
                label: "embargoed country",
                country: Some(country),
                ..BASE
            },
            embargoed,
        );
    }
    check(
        Case {
            label: "embargoed country, US person on fable",
            model: "fable",
            country: Some("IR"),
            ..BASE
        },
        embargoed,
    );
    for subdivision in ["UA-43", "UA-40", "UA-14", "UA-09"] {
        check(
            Case {
                label: "covered region",
                country: Some("UA"),
                subdivision: Some(subdivision),
                ..BASE
            },
            embargoed,
        );
    }
    check(
        Case {
            label: "Crimea without a country",
            country: None,
            subdivision: Some("UA-43"),
            ..BASE
        },
        embargoed,
    );
    check(
        Case {
            label: "Lviv",
            country: Some("UA"),
            subdivision: Some("UA-46"),
            ..BASE
        },
        allow,
    );
    check(
        Case {
            label: "Ukraine, no subdivision",
            country: Some("UA"),
            ..BASE
        },
        allow,
    );
    check(
        Case {
            label: "Russia is not blocked by default",
            country: Some("RU"),
            ..BASE
        },
        allow,
    );
    check(
        Case {
            label: "unknown location, restricted model",
            model: "fable",
            country: None,
            ..BASE
        },
        (451, &["restricted_model_unknown_location"]),
    );
    check(
        Case {
            label: "unknown location, ordinary model",
            country: None,
            ..BASE
        },
        allow,
    );
    check(
        Case {
            label: "verified residence in an embargoed country",
            principal: "omar",
            country: Some("TR"),
            ..BASE
        },
        (451, &["embargoed_residence"]),
    );
}

#[test]
fn denied_party_screening() {
    check(
        Case {
            label: "potential match, haiku",
            principal: "mallory",
            ..BASE
        },
        (451, &["denied_party"]),
    );
    check(
        Case {
            label: "potential match, mythos",
            principal: "mallory",
            model: "mythos",
            ..BASE
        },
        (451, &["denied_party", "internal_model_outside_operator"]),
    );
}

#[test]
fn release_states_other_than_released_and_internal_are_closed() {
    for principal in ["alice", "bruno"] {
        check(
            Case {
                label: "under review",
                principal,
                model: "preview",
                ..BASE
            },
            (403, &["no_permit"]),
        );
    }
}

#[test]
fn orders_in_force() {
    let allow: (u16, &[&str]) = (200, &["released_model_access"]);
    let order = (451, &["BIS-2026-0521"][..]);
    let after = Case {
        with_order: true,
        time: AFTER_ORDER,
        ..BASE
    };
    check(
        Case {
            label: "order: foreign employee, mythos",
            principal: "bruno",
            model: "mythos",
            ..after
        },
        order,
    );
    check(
        Case {
            label: "order: foreign employee, fable",
            principal: "bruno",
            model: "fable",
            ..after
        },
        order,
    );
    check(
        Case {
            label: "order: foreign employee, haiku",
            principal: "bruno",
            ..after
        },
        allow,
    );
    check(
        Case {
            label: "order: US citizen, fable",
            model: "fable",
            ..after
        },
        allow,
    );
    check(
        Case {
            label: "order: dual citizen, fable",
            principal: "chen",
            model: "fable",
            ..after
        },
        allow,
    );
    check(
        Case {
            label: "order: LPR under ear, fable",
            principal: "dara",
            model: "fable",
            ..after
        },
        allow,
    );
    check(
        Case {
            label: "order names ear whatever the active profile",
            principal: "dara",
            model: "fable",
            profile: "citizens_only",
            ..after
        },
        allow,
    );
    check(
        Case {
            label: "order: foreign national, fable",
            principal: "emeka",
            model: "fable",
            ..after
        },
        order,
    );
    check(
        Case {
            label: "order: self-asserted, fable",
            principal: "kim",
            model: "fable",
            ..after
        },
        order,
    );
    check(
        Case {
            label: "order: expired, fable",
            principal: "jules",
            model: "fable",
            ..after
        },
        order,
    );
    check(
        Case {
            label: "order and policy both deny",
            principal: "emeka",
            model: "mythos",
            ..after
        },
        (451, &["BIS-2026-0521", "internal_model_outside_operator"]),
    );
    check(
        Case {
            label: "before the order takes effect",
            principal: "bruno",
            model: "mythos",
            with_order: true,
            ..BASE
        },
        (200, &["internal_model_operator_access"]),
    );
}

#[test]
fn model_listing_shows_only_what_may_be_invoked() {
    let engine = &engines()[&("ear", false)];
    let context = RequestContext::at(common::demo_now())
        .with_location(Some("US"), None)
        .unwrap();
    let cases: &[(&str, &[&str])] = &[
        ("alice", &["fable", "haiku", "sentinel"]),
        ("bruno", &["fable", "haiku", "mythos"]),
        ("emeka", &["fable", "haiku"]),
        ("lee", &["haiku"]),
        ("mallory", &[]),
    ];
    for (principal, expected) in cases {
        let listed: Vec<&str> = engine
            .allowed_models(PrincipalRef::Id(principal), &context)
            .unwrap()
            .into_iter()
            .map(|model| model.name.as_str())
            .collect();
        assert_eq!(&listed, expected, "{principal}");
        let from_document: Vec<&str> = engine
            .allowed_models(
                PrincipalRef::Attributes(&common::principal(principal)),
                &context,
            )
            .unwrap()
            .into_iter()
            .map(|model| model.name.as_str())
            .collect();
        assert_eq!(&from_document, expected, "{principal} from its document");
    }
}

#[test]
fn unknown_names_are_errors_not_allows() {
    let engine = &engines()[&("ear", false)];
    let context = RequestContext::at(common::demo_now());
    let unknown_model = engine.decide(PrincipalRef::Id("alice"), "gpt-9", Action::Invoke, &context);
    assert_eq!(
        unknown_model.unwrap_err().to_string(),
        "unknown model `gpt-9`"
    );
    let unknown_principal =
        engine.decide(PrincipalRef::Id("zed"), "haiku", Action::Invoke, &context);
    assert_eq!(
        unknown_principal.unwrap_err().to_string(),
        "unknown principal `zed`"
    );
    let mut bad = common::principal("alice");
    if let Some(verified) = bad.verified_claims.as_mut() {
        verified.claims.nationalities = vec!["XX".into()];
    }
    let invalid = engine.decide(
        PrincipalRef::Attributes(&bad),
        "haiku",
        Action::Invoke,
        &context,
    );
    assert_eq!(
        invalid.unwrap_err().to_string(),
        "invalid principal attribute `verified_claims.claims.nationalities[0]`: unknown country code `XX`"
    );
}
