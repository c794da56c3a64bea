//! Behaviour on the small committed fixtures; needs no shared data.

// Helpers outside `#[test]` functions fail loudly on broken fixtures too.
#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use crate::common;

use std::collections::BTreeMap;

use common::{fixture, small_list};
use portcullis_domain::{
    PrincipalAttributes, Screening, ScreeningStatus, Verification, VerifiedClaims,
    VerifiedIdentityClaims,
};
use portcullis_screening::{
    DEFAULT_POTENTIAL_MATCH_THRESHOLD, ImportError, ImportWarning, ListFile, Screener,
    ScreeningConfig, ScreeningConfigError, ScreeningListBuilder,
};

fn screener() -> Screener {
    Screener::new(small_list(), ScreeningConfig::default()).unwrap()
}

#[test]
fn imports_valid_rows_and_reports_every_malformed_row_by_line() {
    let list = small_list();
    let entry_ids: Vec<&str> = list
        .entries()
        .iter()
        .map(|entry| entry.entry_id.as_str())
        .collect();
    assert_eq!(
        entry_ids[..7],
        [
            "sdn:36", "sdn:173", "sdn:2674", "sdn:7001", "sdn:7002", "sdn:7003", "sdn:7007"
        ]
    );
    assert_eq!(list.entries().len(), 7 + 4);

    let warning = |file: &str, line: u64, reason: &str| ImportWarning {
        file: file.to_owned(),
        line,
        reason: reason.to_owned(),
    };
    let expected = vec![
        warning("sdn_small.csv", 7, "expected 12 columns, found 3"),
        warning("sdn_small.csv", 8, "entity number `x7005` is not a number"),
        warning("sdn_small.csv", 9, "the name is empty"),
        warning(
            "sdn_small.csv",
            10,
            "entity number `7002` appears more than once",
        ),
        warning(
            "alt_small.csv",
            4,
            "alias refers to entity number `9999`, which is not in the list",
        ),
        warning("alt_small.csv", 5, "the alias is empty"),
        warning("alt_small.csv", 6, "expected 5 columns, found 3"),
        warning("csl_small.csv", 6, "the name is empty"),
        warning("csl_small.csv", 7, "expected 9 columns, found 11"),
    ];
    assert_eq!(list.import_warnings(), expected.as_slice());
}

#[test]
fn aliases_are_joined_to_their_entry() {
    let list = small_list();
    let aliases = |entry_id: &str| -> Vec<String> {
        list.entries()
            .iter()
            .find(|entry| entry.entry_id == entry_id)
            .unwrap()
            .aliases
            .clone()
    };
    assert_eq!(aliases("sdn:36"), ["AERO-CARIBBEAN"]);
    assert_eq!(aliases("sdn:7002"), ["EL CHAPO"]);
    // The repeated row of the same party adds its spelling as an alias.
    assert_eq!(
        aliases("csl:17519"),
        ["LIM, Ryong Nam", "RIM Ryongnam", "RIM, Ryong-nam"]
    );
    assert_eq!(
        aliases(
            &list
                .entries()
                .iter()
                .find(|entry| entry.primary_name == "Hebei Semiconductor Research Institute")
                .unwrap()
                .entry_id
        ),
        ["HSRI", "CETC Research Institute 13"]
    );
}

#[test]
fn sdn_entries_without_a_type_are_entities() {
    let list = small_list();
    let entry_type = |entry_id: &str| {
        list.entries()
            .iter()
            .find(|entry| entry.entry_id == entry_id)
            .unwrap()
            .entry_type
            .clone()
    };
    assert_eq!(entry_type("sdn:36").as_deref(), Some("entity"));
    assert_eq!(entry_type("sdn:7001").as_deref(), Some("individual"));
}

#[test]
fn list_version_names_each_source_with_content_hash_and_row_count() {
    let list = small_list();
    let version = list.list_version();
    let parts: Vec<&str> = version.split('+').collect();
    assert_eq!(parts.len(), 3, "{version}");
    for (part, (label, rows)) in parts
        .iter()
        .zip([("ofac_sdn", 7), ("ofac_alt", 3), ("csl", 4)])
    {
        let (name, rest) = part.split_once('@').unwrap();
        let (hash, count) = rest.split_once('/').unwrap();
        assert_eq!(name, label);
        assert_eq!(hash.len(), 12);
        assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(count.parse::<usize>().unwrap(), rows);
    }
}

#[test]
fn list_version_changes_when_any_byte_changes() {
    let sdn = fixture("sdn_small.csv");
    let mut edited = sdn.contents.clone();
    let position = edited.iter().position(|&b| b == b'A').unwrap();
    edited[position] = b'E';
    let version_of = |file: &ListFile| {
        let mut builder = ScreeningListBuilder::new();
        builder.add_ofac_sdn(file, None).unwrap();
        builder.build().list_version().to_owned()
    };
    assert_ne!(
        version_of(&sdn),
        version_of(&ListFile::new("sdn_small.csv", edited))
    );
    assert_eq!(version_of(&sdn), version_of(&sdn.clone()));
}

#[test]
fn consolidated_list_without_a_name_column_is_rejected() {
    let file = ListFile::new("bad.csv", "source,alt_names\nDPL,X\n");
    let mut builder = ScreeningListBuilder::new();
    let error = builder.add_consolidated_screening_list(&file).unwrap_err();
    assert!(matches!(
        error,
        ImportError::MissingColumn { column: "name", .. }
    ));
    assert_eq!(
        error.to_string(),
        "list file `bad.csv` has no `name` column in its header"
    );
}

#[test]
fn unreadable_file_is_an_error_naming_the_path() {
    let error = ListFile::read(std::path::Path::new("does-not-exist/sdn.csv")).unwrap_err();
    assert_eq!(
        error.to_string(),
        "cannot read list file `does-not-exist/sdn.csv`"
    );
}

#[test]
fn duplicate_entries_across_files_are_reported() {
    let sdn = fixture("sdn_small.csv");
    let mut builder = ScreeningListBuilder::new();
    builder.add_ofac_sdn(&sdn, None).unwrap();
    builder.add_ofac_sdn(&sdn, None).unwrap();
    let list = builder.build();
    assert_eq!(list.entries().len(), 7);
    let repeated: Vec<&ImportWarning> = list
        .import_warnings()
        .iter()
        .filter(|warning| warning.reason.contains("already imported"))
        .collect();
    assert_eq!(repeated.len(), 7);
    assert_eq!(repeated[0].line, 1);
}

/// One row per screening case: what kind of variant it is, the name
/// screened, and the primary name of the entry expected (`None` for clear).
#[test]
fn screens_names_in_every_variant() {
    let cases: &[(&str, &str, Option<&str>)] = &[
        (
            "exact",
            "AEROCARIBBEAN AIRLINES",
            Some("AEROCARIBBEAN AIRLINES"),
        ),
        ("alias", "Aero-Caribbean", Some("AEROCARIBBEAN AIRLINES")),
        ("alias", "El Chapo", Some("GUZMAN LOERA, Joaquin")),
        (
            "reordered",
            "Vladimir Vladimirovich Putin",
            Some("PUTIN, Vladimir Vladimirovich"),
        ),
        (
            "reordered",
            "Putin Vladimir",
            Some("PUTIN, Vladimir Vladimirovich"),
        ),
        (
            "omitted patronymic",
            "Vladimir Putin",
            Some("PUTIN, Vladimir Vladimirovich"),
        ),
        (
            "misspelt",
            "Joaquin Guzman Loeara",
            Some("GUZMAN LOERA, Joaquin"),
        ),
        (
            "misspelt",
            "Vladimir Puttin",
            Some("PUTIN, Vladimir Vladimirovich"),
        ),
        (
            "legal suffix",
            "Anglo Caribbean Company Limited",
            Some("ANGLO-CARIBBEAN CO., LTD."),
        ),
        (
            "diacritics",
            "Muller Ludenscheidt Handels",
            Some("MÜLLER-LÜDENSCHEIDT HANDELS GMBH"),
        ),
        (
            "cyrillic",
            "Владимир Путин",
            Some("PUTIN, Vladimir Vladimirovich"),
        ),
        ("arabic", "أحمد محمد حسن", Some("HASSAN, Ahmed Mohamed")),
        (
            "word break",
            "Khalid Yusuf Abdulrahman",
            Some("ABDUL RAHMAN, Khalid Yusuf"),
        ),
        ("csl reordered", "Ryong Nam Rim", Some("RIM, Ryong Nam")),
        (
            "csl alias",
            "CETC Research Institute 13",
            Some("Hebei Semiconductor Research Institute"),
        ),
        (
            "csl boilerplate removed",
            "Sinobright Import and Export",
            Some("Sinobright Import and Export Company"),
        ),
        ("ordinary", "Maria Fernanda Lopez", None),
        ("ordinary", "Sunrise Dental Clinic LLC", None),
        ("shared surname only", "Peter Putin", None),
        ("shared given name only", "Vladimir Nabokov", None),
    ];
    let screener = screener();
    for (label, name, expected_entry_name) in cases {
        let result = screener.screen_name(name);
        assert_eq!(result.list_version, screener.list().list_version());
        assert_eq!(result.threshold, DEFAULT_POTENTIAL_MATCH_THRESHOLD);
        let Some(expected_entry_name) = expected_entry_name else {
            assert_eq!(
                result.status,
                ScreeningStatus::Clear,
                "{label}: `{name}` {result:?}"
            );
            continue;
        };
        assert_eq!(
            result.status,
            ScreeningStatus::PotentialMatch,
            "{label}: `{name}` {result:?}"
        );
        let found = result.closest_match.as_ref().unwrap();
        assert_eq!(found.entry_name, *expected_entry_name, "{label}: `{name}`");
        assert!(found.score >= DEFAULT_POTENTIAL_MATCH_THRESHOLD);
    }
}

#[test]
fn threshold_decides_between_clear_and_potential_match() {
    let name = "Vladimir Puttin";
    let score = screener().screen_name(name).score().unwrap();
    assert!(score < 1.0);
    for (threshold, expected) in [
        (score, ScreeningStatus::PotentialMatch),
        (score - 0.01, ScreeningStatus::PotentialMatch),
        ((score + 0.01).min(1.0), ScreeningStatus::Clear),
    ] {
        let screener = Screener::new(
            small_list(),
            ScreeningConfig {
                potential_match_threshold: threshold,
            },
        )
        .unwrap();
        assert_eq!(
            screener.screen_name(name).status,
            expected,
            "threshold {threshold}"
        );
    }
}

#[test]
fn invalid_thresholds_are_rejected() {
    for threshold in [0.0, -0.5, 1.01, f64::NAN] {
        let error = Screener::new(
            small_list(),
            ScreeningConfig {
                potential_match_threshold: threshold,
            },
        )
        .unwrap_err();
        assert!(matches!(
            error,
            ScreeningConfigError::ThresholdOutOfRange { .. }
        ));
    }
    assert_eq!(
        ScreeningConfig {
            potential_match_threshold: 2.0
        }
        .validate()
        .unwrap_err()
        .to_string(),
        "potential match threshold `2` must be greater than 0 and at most 1"
    );
}

#[test]
fn results_convert_to_the_principal_screening_attribute() {
    let screener = screener();
    let list_version = screener.list().list_version().to_owned();

    let matched = screener.screen_name("Vladimir Putin");
    let Screening::Detailed {
        status,
        list_version: recorded_version,
        entry,
        score,
    } = matched.to_screening()
    else {
        panic!("expected the detailed form");
    };
    assert_eq!(status, ScreeningStatus::PotentialMatch);
    assert_eq!(recorded_version.as_deref(), Some(list_version.as_str()));
    assert_eq!(
        entry.as_deref(),
        Some("sdn:7001 PUTIN, Vladimir Vladimirovich")
    );
    assert!(score.unwrap() >= DEFAULT_POTENTIAL_MATCH_THRESHOLD);

    let clear = screener.screen_name("Maria Fernanda Lopez").to_screening();
    assert!(matches!(
        clear,
        Screening::Detailed {
            status: ScreeningStatus::Clear,
            entry: None,
            ..
        }
    ));
    let json = serde_json::to_value(&clear).unwrap();
    assert_eq!(json["status"], "clear");
    assert_eq!(json["list_version"], list_version.as_str());

    assert_eq!(
        screener.screen_names(&[]).to_screening(),
        Screening::Status(ScreeningStatus::Unscreened)
    );
}

fn principal(claims: VerifiedIdentityClaims, unverified_name: Option<&str>) -> PrincipalAttributes {
    let mut unverified = BTreeMap::new();
    if let Some(name) = unverified_name {
        unverified.insert("name".to_owned(), serde_json::json!(name));
    }
    PrincipalAttributes {
        id: "p1".to_owned(),
        organization: None,
        employee: false,
        active: true,
        screening: Screening::default(),
        verified_claims: Some(VerifiedClaims {
            verification: Verification {
                trust_framework: "nist_800_63A".to_owned(),
                assurance_level: Some("ial2".to_owned()),
                time: None,
                expires_at: None,
            },
            claims,
        }),
        unverified,
    }
}

#[test]
fn principals_are_screened_by_verified_name_claims_only() {
    let screener = screener();
    let named = |name: &str| VerifiedIdentityClaims {
        name: Some(name.to_owned()),
        ..VerifiedIdentityClaims::default()
    };
    let given_and_family = |given: &str, family: &str| VerifiedIdentityClaims {
        given_name: Some(given.to_owned()),
        family_name: Some(family.to_owned()),
        ..VerifiedIdentityClaims::default()
    };
    let cases = [
        (
            "verified full name",
            principal(named("Vladimir Putin"), None),
            ScreeningStatus::PotentialMatch,
        ),
        (
            "verified given and family name",
            principal(given_and_family("Joaquin", "Guzman Loera"), None),
            ScreeningStatus::PotentialMatch,
        ),
        (
            "either verified name matching is enough",
            principal(
                VerifiedIdentityClaims {
                    name: Some("J. Smith".to_owned()),
                    ..given_and_family("Joaquin", "Guzman Loera")
                },
                None,
            ),
            ScreeningStatus::PotentialMatch,
        ),
        (
            "ordinary verified name",
            principal(named("Maria Fernanda Lopez"), None),
            ScreeningStatus::Clear,
        ),
        (
            "self-asserted name only",
            principal(VerifiedIdentityClaims::default(), Some("Vladimir Putin")),
            ScreeningStatus::Unscreened,
        ),
        (
            "blank verified name",
            principal(named("   "), None),
            ScreeningStatus::Unscreened,
        ),
    ];
    for (label, attributes, expected) in cases {
        assert_eq!(
            screener.screen_principal(&attributes).status,
            expected,
            "{label}"
        );
    }
    let mut no_verified_claims = principal(VerifiedIdentityClaims::default(), None);
    no_verified_claims.verified_claims = None;
    assert_eq!(
        screener.screen_principal(&no_verified_claims).status,
        ScreeningStatus::Unscreened
    );
}

#[test]
fn batch_screening_equals_screening_one_by_one() {
    let screener = screener();
    let parties: Vec<Vec<String>> = [
        vec!["Vladimir Putin"],
        vec!["Maria Fernanda Lopez", "Vladimir Puttin"],
        vec![],
        vec!["El Chapo"],
        vec!["Vladimir Nabokov"],
    ]
    .iter()
    .map(|names| names.iter().map(|name| (*name).to_owned()).collect())
    .collect();
    let batch = screener.screen_batch(&parties);
    for (names, batch_result) in parties.iter().zip(&batch) {
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        assert_eq!(
            &screener.screen_names(&name_refs),
            batch_result,
            "{names:?}"
        );
    }
    assert_eq!(batch[2].status, ScreeningStatus::Unscreened);
    assert_eq!(
        batch[1].closest_match.as_ref().unwrap().screened_name,
        "Vladimir Puttin"
    );
}

#[test]
fn ordinary_name_fixture_has_about_two_hundred_names() {
    let names = common::ordinary_names();
    assert!(names.len() >= 200, "{}", names.len());
    let distinct: std::collections::BTreeSet<&String> = names.iter().collect();
    assert_eq!(
        distinct.len(),
        names.len(),
        "duplicate names in the fixture"
    );
}
