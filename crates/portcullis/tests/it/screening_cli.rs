//! `portcullis screening import | clear` end to end: a small committed SDN
//! list, the demo's principals, first-sight screening through the admin API
//! and an audited clearance.
#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use crate::common;

use common::{DemoServer, fixture, run_with_data, stderr, stdout};
use serde_json::Value;

#[test]
fn import_screens_everyone_and_new_principals_are_screened_on_first_sight() {
    let mut server = DemoServer::start(None);
    let sdn = fixture("sdn.csv");
    let output = run_with_data(
        &["screening", "import", "--sdn", sdn.to_str().unwrap()],
        server.data(),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    // The malformed row is reported with its line, never dropped silently.
    assert!(stderr(&output).contains("sdn.csv:3"), "{}", stderr(&output));
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(report["entries"], 2);
    assert_eq!(report["skipped_rows"], 1);
    assert_eq!(report["principals_screened"], 5);
    let matched: Vec<&str> = report["potential_matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["principal"].as_str().unwrap())
        .collect();
    assert_eq!(matched, ["chen"], "{report}");

    // A new unscreened principal with verified name claims is screened on
    // first sight.
    let document = serde_json::json!({
        "id": "ivan", "organization": "acme",
        "verified_claims": {
            "verification": {"trust_framework": "nist_800_63A", "assurance_level": "ial2",
                             "time": "2025-01-01T00:00:00Z", "expires_at": "2035-01-01T00:00:00Z"},
            "claims": {"nationalities": ["CU"], "us_person_basis": "none", "name": "Ivan Moreno"}}
    });
    let file = server.data().join("ivan.json");
    std::fs::write(&file, document.to_string()).unwrap();
    let output = run_with_data(
        &["principals", "create", file.to_str().unwrap()],
        server.data(),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let created: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let screening = &created["attributes"]["screening"];
    assert_eq!(screening["status"], "potential_match", "{created}");
    assert_eq!(screening["list_version"], report["list_version"]);
    assert!(screening["entry"].as_str().unwrap().starts_with("sdn:7 "));

    // Clearing is an audited admin action, and the clearance names the
    // entry it cleared.
    let output = run_with_data(
        &[
            "screening",
            "clear",
            "ivan",
            "--reason",
            "different date of birth",
        ],
        server.data(),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let cleared: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(cleared["screening"]["status"], "clear");
    assert_eq!(cleared["screening"]["entry"], screening["entry"]);
    server.stop();
    let output = run_with_data(&["audit", "search"], server.data());
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("different date of birth"),
        "{}",
        stdout(&output)
    );
}
