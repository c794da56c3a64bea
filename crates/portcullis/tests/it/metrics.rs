//! `/metrics` as a Prometheus scraper reads it: every metric the gateway
//! exports is described with a `# HELP` line, and label values come from
//! bounded sets whatever clients send.

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

/// Ten thousand requests naming random models add one label value,
/// `other`, not ten thousand series.
#[tokio::test]
async fn random_model_names_do_not_grow_the_label_set() {
    use futures_util::StreamExt as _;
    let server = DemoServer::start(None);
    let http = reqwest::Client::new();
    let url = format!(
        "http://{}/v1/chat/completions",
        server.keys["listen"].as_str().unwrap()
    );
    let key = server.keys["keys"]["alice"].as_str().unwrap().to_owned();
    let statuses: Vec<u16> = futures_util::stream::iter(0..10_000u32)
        .map(|i| {
            let (http, url, key) = (http.clone(), url.clone(), key.clone());
            async move {
                let model = if i % 1000 == 0 {
                    "haiku".to_owned()
                } else {
                    format!("invented-{i}-{:x}", i.wrapping_mul(2_654_435_761))
                };
                http.post(url)
                    .bearer_auth(key)
                    .json(&serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert_eq!(
        statuses.iter().filter(|&&s| s == 200).count(),
        10,
        "{:?}",
        &statuses[..20]
    );
    let text = http
        .get(format!("{}/metrics", server.admin_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let models: std::collections::BTreeSet<&str> = text
        .lines()
        .filter(|line| line.starts_with("portcullis_requests_total{"))
        .filter_map(|line| line.split("model=\"").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert_eq!(
        models,
        ["haiku", "other"].into_iter().collect(),
        "model label values: {models:?}"
    );
    let series = text
        .lines()
        .filter(|line| line.starts_with("portcullis_requests_total{"))
        .count();
    assert!(series <= 8, "{series} series:\n{text}");
    assert!(
        text.lines()
            .any(|line| line.starts_with("portcullis_requests_total{")
                && line.contains("model=\"haiku\"")
                && line.contains("decision=\"allow\"")),
        "{text}"
    );
}
