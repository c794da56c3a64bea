//! Orders through real sockets: applying one through the admin API denies
//! new requests for affected pairs with 451, stops affected streams and
//! waiting requests already in flight, leaves everyone else untouched, and
//! leaves an enforcement receipt whose "admitted after enforcement" is 0.

#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use crate::harness;

use std::time::Duration;

use futures_util::StreamExt;
use harness::{ADMIN_TOKEN, TestGateway, model, sse_events};
use portcullis_domain::{Provider, ReleaseState};
use portcullis_gateway::Config;
use serde_json::{Value, json};

fn verified(id: &str, nationalities: &[&str], basis: &str) -> Value {
    let now = jiff::Timestamp::now();
    json!({
        "id": id, "organization": "acme", "employee": false, "screening": "clear",
        "verified_claims": {
            "verification": {"trust_framework": "nist_800_63A", "assurance_level": "ial2",
                "time": (now - jiff::SignedDuration::from_hours(24 * 30)).to_string(),
                "expires_at": (now + jiff::SignedDuration::from_hours(24 * 365)).to_string()},
            "claims": {"nationalities": nationalities, "us_person_basis": basis, "residence_country": "US"}}
    })
}

struct World {
    gateway: TestGateway,
    /// US citizen.
    us_key: String,
    /// French national.
    fr_key: String,
}

async fn admin(
    world: &TestGateway,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let response = world
        .http
        .request(method, world.admin_url(path))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn start() -> World {
    start_with(|_| {}).await
}

async fn start_with(adjust: impl FnOnce(&mut Config)) -> World {
    let mut config = Config::default();
    adjust(&mut config);
    config.location.default_country = Some("US".into());
    let mut frontier = model(
        "frontier",
        Provider::Mock,
        None,
        "frontier",
        ReleaseState::Released,
    );
    frontier.family = Some("frontier".into());
    frontier.tags = vec!["fail_closed".into()];
    let mut waits = model(
        "waits",
        Provider::Mock,
        None,
        "hang",
        ReleaseState::Released,
    );
    waits.family = Some("frontier".into());
    let gateway = TestGateway::start(config, vec![frontier, waits]).await;
    let mut keys = Vec::new();
    for (id, nationalities, basis) in [
        ("usa", &["US"][..], "citizen"),
        ("fra", &["FR"][..], "none"),
    ] {
        let (status, body) = admin(
            &gateway,
            reqwest::Method::POST,
            "/admin/v1/principals",
            verified(id, nationalities, basis),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        let (status, body) = admin(
            &gateway,
            reqwest::Method::POST,
            "/admin/v1/keys",
            json!({"principal_id": id, "name": "test"}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        keys.push(body["secret"].as_str().unwrap().to_owned());
    }
    let fr_key = keys.pop().unwrap();
    let us_key = keys.pop().unwrap();
    World {
        gateway,
        us_key,
        fr_key,
    }
}

fn order(models: Value, principals: Value) -> Value {
    json!({"reference": "BIS-2026-0521", "issuer": "US Department of Commerce",
        "received_at": "2026-11-20T17:21:00-05:00", "effective_at": null,
        "effect": "suspend", "models": models, "principals": principals, "reason": "test order"})
}

async fn chat(world: &World, key: &str, model: &str) -> reqwest::Response {
    world
        .gateway
        .http
        .post(world.gateway.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
}

async fn start_stream(world: &World, key: &str, anthropic: bool, tokens: u32) -> reqwest::Response {
    let (path, body) = if anthropic {
        (
            "/v1/messages",
            json!({"model": "frontier", "max_tokens": tokens, "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        )
    } else {
        (
            "/v1/chat/completions",
            json!({"model": "frontier", "max_tokens": tokens, "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        )
    };
    let response = world
        .gateway
        .http
        .post(world.gateway.url(path))
        .bearer_auth(key)
        .header("x-mock-token-interval-ms", "20")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response
}

/// Reads a stream to its end, returning the body once at least one chunk
/// had arrived before `after_first` was signalled.
async fn read_all(response: reqwest::Response) -> String {
    let mut body = String::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        body.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    body
}

#[tokio::test]
async fn an_order_stops_affected_streams_and_leaves_others_running() {
    for anthropic in [false, true] {
        let world = start().await;
        let foreign = start_stream(&world, &world.fr_key, anthropic, 200).await;
        let citizen = start_stream(&world, &world.us_key, anthropic, 40).await;
        // Let both streams deliver something before the order arrives.
        let mut foreign_chunks = foreign.bytes_stream();
        let first = foreign_chunks.next().await.unwrap().unwrap();
        assert!(!first.is_empty());

        let (status, applied) = admin(
            &world.gateway,
            reqwest::Method::POST,
            "/admin/v1/orders",
            order(
                json!(["family:frontier"]),
                json!({"foreign_persons_under": "ear"}),
            ),
        )
        .await;
        assert_eq!(status, 201, "{applied}");
        let order_id = applied["id"].as_str().unwrap().to_owned();

        let mut rest = String::new();
        while let Some(chunk) = foreign_chunks.next().await {
            rest.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        }
        let events = sse_events(&rest);
        let error_at = events
            .iter()
            .position(|(event, data)| {
                data.contains("legal_restriction")
                    && (anthropic == (event.as_deref() == Some("error")))
            })
            .unwrap_or_else(|| panic!("no terminal legal_restriction event in {rest}"));
        assert!(events[error_at].1.contains("BIS-2026-0521"), "{rest}");
        // Nothing but the stream terminator follows the error.
        for (event, data) in &events[error_at + 1..] {
            assert!(
                data == "[DONE]" || event.as_deref() == Some("message_stop"),
                "chunk after the cut: {data}"
            );
        }
        assert!(
            events.len() < 150,
            "the foreign stream was not cut: {} events",
            events.len()
        );

        let citizen_body = read_all(citizen).await;
        assert!(
            !citizen_body.contains("legal_restriction"),
            "{citizen_body}"
        );
        let done = if anthropic { "message_stop" } else { "[DONE]" };
        assert!(
            citizen_body.contains(done),
            "the citizen's stream did not finish: {citizen_body}"
        );

        // New requests: 451 for the affected pair, untouched otherwise.
        let denied = chat(&world, &world.fr_key, "frontier").await;
        assert_eq!(denied.status(), 451);
        let body: Value = denied.json().await.unwrap();
        assert_eq!(body["error"]["code"], "legal_restriction");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("BIS-2026-0521")
        );
        assert_eq!(chat(&world, &world.us_key, "frontier").await.status(), 200);
        assert_eq!(chat(&world, &world.fr_key, "haiku").await.status(), 200);

        let (status, shown) = admin(
            &world.gateway,
            reqwest::Method::GET,
            &format!("/admin/v1/orders/{order_id}"),
            Value::Null,
        )
        .await;
        assert_eq!(status, 200);
        let receipt = &shown["receipt"];
        assert_eq!(receipt["admitted_after_enforcement"], 0, "{receipt}");
        assert_eq!(receipt["requests_cut"], 1, "{receipt}");
        assert_eq!(receipt["replicas"][0]["replica"], "local");
        world
            .gateway
            .gateway
            .audit
            .as_ref()
            .unwrap()
            .flush()
            .await
            .unwrap();
        let (_, shown) = admin(
            &world.gateway,
            reqwest::Method::GET,
            &format!("/admin/v1/orders/{order_id}"),
            Value::Null,
        )
        .await;
        assert_eq!(
            shown["receipt"]["requests_denied"], 1,
            "{}",
            shown["receipt"]
        );
        // The cut stream is named: its outcome entry says `cut` and which
        // order did it, so a search by order finds the request itself.
        let (status, found) = admin(
            &world.gateway,
            reqwest::Method::GET,
            &format!("/admin/v1/audit?order={order_id}"),
            Value::Null,
        )
        .await;
        assert_eq!(status, 200, "{found}");
        let cut: Vec<&Value> = found["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item.get("entry").unwrap_or(item))
            .filter(|entry| entry["kind"] == "request_outcome" && entry["outcome"] == "cut")
            .collect();
        assert_eq!(cut.len(), 1, "{found}");
        assert_eq!(cut[0]["principal_id"], "fra", "{found}");
        assert_eq!(cut[0]["order_ids"], json!([order_id]), "{found}");
        // And it has its own enforcement record, `request_cut`, linked to
        // the admission by the request id; the receipt lists it.
        let records: Vec<&Value> = found["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item.get("entry").unwrap_or(item))
            .filter(|entry| entry["action"] == "request_cut")
            .collect();
        assert_eq!(records.len(), 1, "{found}");
        assert_eq!(records[0]["target_id"], json!(order_id), "{found}");
        assert_eq!(records[0]["payload"]["request_id"], cut[0]["request_id"]);
        assert_eq!(records[0]["payload"]["principal_id"], "fra");
        let listed = shown["receipt"]["cut_requests"].as_array().unwrap();
        assert_eq!(listed.len(), 1, "{}", shown["receipt"]);
        assert_eq!(listed[0]["request_id"], cut[0]["request_id"]);
    }
}

#[tokio::test]
async fn a_request_waiting_on_the_upstream_gets_451_when_an_order_lands() {
    let world = start().await;
    let waiting = {
        let http = world.gateway.http.clone();
        let url = world.gateway.url("/v1/chat/completions");
        let key = world.fr_key.clone();
        tokio::spawn(async move {
            http.post(url)
                .bearer_auth(key)
                .json(&json!({"model": "waits", "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .unwrap()
        })
    };
    // Wait until the request is registered as in flight.
    for _ in 0..200 {
        if world.gateway.gateway.inflight.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(world.gateway.gateway.inflight.len(), 1);
    let (status, body) = admin(
        &world.gateway,
        reqwest::Method::POST,
        "/admin/v1/orders",
        order(json!(["waits"]), json!({"ids": ["fra"]})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let response = waiting.await.unwrap();
    assert_eq!(response.status(), 451);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("BIS-2026-0521")
    );
}

#[tokio::test]
async fn lifting_restores_access_and_is_recorded_once() {
    // One admin lifts directly here; the two-person rule has its own tests.
    let world = start_with(|config| config.governance.two_person_rule = Some(false)).await;
    let (_, applied) = admin(
        &world.gateway,
        reqwest::Method::POST,
        "/admin/v1/orders",
        order(json!(["frontier"]), json!("all")),
    )
    .await;
    let id = applied["id"].as_str().unwrap();
    assert_eq!(chat(&world, &world.us_key, "frontier").await.status(), 451);
    let lift_path = format!("/admin/v1/orders/{id}/lift");
    let (status, lifted) = admin(
        &world.gateway,
        reqwest::Method::POST,
        &lift_path,
        json!({"reason": "rescinded"}),
    )
    .await;
    assert_eq!(status, 200, "{lifted}");
    assert_eq!(lifted["state"], "lifted");
    assert_eq!(chat(&world, &world.us_key, "frontier").await.status(), 200);
    let (status, again) = admin(&world.gateway, reqwest::Method::POST, &lift_path, json!({})).await;
    assert_eq!(status, 409, "{again}");
    let (status, _) = admin(
        &world.gateway,
        reqwest::Method::POST,
        "/admin/v1/orders/ord_nope/lift",
        json!({}),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn bad_orders_are_refused_with_the_reason() {
    let world = start().await;
    let past = (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(3)).to_string();
    let mut past_order = order(json!(["frontier"]), json!("all"));
    past_order["effective_at"] = json!(past);
    let mut nobody = order(
        json!(["frontier"]),
        json!({"attributes": {"organization": "nobody-inc"}}),
    );
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "no models",
            order(json!([]), json!("all")),
            "must not be empty",
        ),
        (
            "unknown model",
            order(json!(["gpt-9"]), json!("all")),
            "matches no model",
        ),
        (
            "unknown family",
            order(json!(["family:nope"]), json!("all")),
            "matches no model",
        ),
        (
            "unknown profile",
            order(
                json!(["frontier"]),
                json!({"foreign_persons_under": "gdpr"}),
            ),
            "unknown definition profile",
        ),
        (
            "past effective_at",
            past_order.clone(),
            "further in the past",
        ),
        (
            "matches nobody",
            nobody.clone(),
            "matches no (principal, model) pair",
        ),
        (
            "empty ids",
            order(json!(["frontier"]), json!({"ids": []})),
            "is empty",
        ),
        (
            "unknown principal",
            order(json!(["frontier"]), json!({"ids": ["zed"]})),
            "unknown principal",
        ),
        (
            "restrict without profile",
            {
                let mut o = order(json!(["frontier"]), json!("all"));
                o["effect"] = json!("restrict");
                o
            },
            "safeguard_profile",
        ),
        ("not json", json!("just text"), "invalid order document"),
    ];
    for (name, body, expected) in cases {
        for path in ["/admin/v1/orders", "/admin/v1/orders/preview"] {
            let (status, answer) =
                admin(&world.gateway, reqwest::Method::POST, path, body.clone()).await;
            assert_eq!(status, 400, "{name} on {path}: {answer}");
            let message = answer["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains(expected), "{name}: {message}");
        }
    }
    // Forcing accepts what is merely surprising, never what is malformed.
    nobody["force"] = json!(true);
    let (status, answer) = admin(
        &world.gateway,
        reqwest::Method::POST,
        "/admin/v1/orders",
        nobody,
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    past_order["force"] = json!(true);
    let (status, answer) = admin(
        &world.gateway,
        reqwest::Method::POST,
        "/admin/v1/orders",
        past_order,
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    let (_, list) = admin(
        &world.gateway,
        reqwest::Method::GET,
        "/admin/v1/orders",
        Value::Null,
    )
    .await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn preview_lists_who_loses_access_and_what_would_be_cut() {
    let world = start().await;
    let stream = start_stream(&world, &world.fr_key, false, 100).await;
    let (status, preview) = admin(
        &world.gateway,
        reqwest::Method::POST,
        "/admin/v1/orders/preview",
        order(
            json!(["family:frontier"]),
            json!({"foreign_persons_under": "ear"}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{preview}");
    let ids: Vec<&str> = preview["principals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    // `alice` in the harness has no verified claims: not a verified US
    // person, so she is in scope (fail closed); `usa` is not.
    assert!(ids.contains(&"fra") && !ids.contains(&"usa"), "{preview}");
    assert_eq!(preview["active_requests_to_cut"], 1, "{preview}");
    // A preview changes nothing.
    let (_, list) = admin(
        &world.gateway,
        reqwest::Method::GET,
        "/admin/v1/orders",
        Value::Null,
    )
    .await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0);
    drop(stream);
}

#[tokio::test]
async fn an_order_effective_later_takes_hold_when_its_time_comes() {
    let world = start().await;
    let clock_stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(
        world
            .gateway
            .gateway
            .clone()
            .run_order_clock(Duration::from_millis(20), clock_stop.clone()),
    );
    let effective = jiff::Timestamp::now() + jiff::SignedDuration::from_millis(700);
    let mut future = order(json!(["frontier"]), json!({"ids": ["fra"]}));
    future["effective_at"] = json!(effective.to_string());
    let stream = start_stream(&world, &world.fr_key, false, 400).await;
    let (status, applied) = admin(
        &world.gateway,
        reqwest::Method::POST,
        "/admin/v1/orders",
        future,
    )
    .await;
    assert_eq!(status, 201, "{applied}");
    let body = read_all(stream).await;
    assert!(body.contains("legal_restriction"), "{body}");
    assert_eq!(chat(&world, &world.fr_key, "frontier").await.status(), 451);
    let (_, shown) = admin(
        &world.gateway,
        reqwest::Method::GET,
        &format!("/admin/v1/orders/{}", applied["id"].as_str().unwrap()),
        Value::Null,
    )
    .await;
    let applied_at: jiff::Timestamp = shown["receipt"]["replicas"][0]["applied_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // The store keeps milliseconds.
    assert!(
        applied_at.as_millisecond() >= effective.as_millisecond(),
        "applied at {applied_at} before {effective}"
    );
    clock_stop.cancel();
}
