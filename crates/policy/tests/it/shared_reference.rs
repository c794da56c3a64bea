//! Cross-checks the crate's embargo data against the dated reference notes
//! in the shared data directory, when it is present.

// Helpers outside `#[test]` functions unwrap too: in a test, a failed
// unwrap is a failed test with its message, which is what we want.
#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::panic)]

use crate::common;

use std::collections::BTreeSet;

use portcullis_policy::{EmbargoList, EmbargoPack};

#[test]
fn default_embargo_pack_matches_the_reference_notes() {
    let Some(dir) = common::shared_data_or_skip() else {
        return;
    };
    let path = dir.join("export-control").join("destinations.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let reference: serde_json::Value = serde_json::from_str(&text).unwrap();
    let strings = |value: &serde_json::Value| -> BTreeSet<String> {
        value
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item.as_str().unwrap().to_owned())
            .collect()
    };
    let mut expected_countries = strings(&reference["country_groups"]["E:1"]["countries"]);
    expected_countries.extend(strings(&reference["country_groups"]["E:2"]["countries"]));
    let expected_subdivisions: BTreeSet<String> = reference["regions_746_6"]["subdivisions"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let not_blocked = strings(&reference["restricted_746_8"]["countries"]);
    assert_eq!(reference["restricted_746_8"]["default_blocked"], false);

    let list = EmbargoList::default_list().unwrap();
    let blocked_countries: BTreeSet<String> =
        list.blocked_countries().map(ToString::to_string).collect();
    let blocked_subdivisions: BTreeSet<String> = list
        .blocked_subdivisions()
        .map(ToString::to_string)
        .collect();
    assert_eq!(blocked_countries, expected_countries);
    assert_eq!(blocked_subdivisions, expected_subdivisions);

    let pack = EmbargoPack::default_pack().unwrap();
    assert_eq!(pack.as_of, reference["as_of"].as_str().unwrap());
    let listed_unblocked: BTreeSet<String> = pack
        .countries
        .iter()
        .filter(|entry| !entry.blocked)
        .map(|entry| entry.code.clone())
        .collect();
    assert_eq!(listed_unblocked, not_blocked);
}
