//! `/metrics` as a Prometheus scraper reads it: every metric the gateway
//! exports is described with a `# HELP` line.

#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use crate::common;

use common::DemoServer;

#[tokio::test]
async fn every_exported_metric_has_a_help_line() {
    let server = DemoServer::start(None);
    let http = reqwest::Client::new();
    // One request, so the request counters exist.
    let status = http
        .post(format!(
            "http://{}/v1/chat/completions",
            server.keys["listen"].as_str().unwrap()
        ))
        .bearer_auth(server.keys["keys"]["alice"].as_str().unwrap())
        .json(
            &serde_json::json!({"model": "haiku", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    let text = http
        .get(format!("{}/metrics", server.admin_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let exported: std::collections::BTreeSet<&str> = text
        .lines()
        .filter(|line| line.starts_with("portcullis_"))
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(|name| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name)
        })
        .collect();
    assert!(exported.contains("portcullis_requests_total"), "{text}");
    for name in exported {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "`{name}` has no HELP line:\n{text}"
        );
    }
}
