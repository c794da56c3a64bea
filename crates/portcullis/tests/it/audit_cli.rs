//! `portcullis audit …` against the log a demo server wrote, and against a
//! copy of it with one entry edited behind the triggers' back.
#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use crate::common;

use common::{DemoServer, run, run_with_data, stderr, stdout};
use sqlx::Connection;

fn chat(server: &DemoServer, key: &str, model: &str) -> u16 {
    let body = serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        reqwest::Client::new()
            .post(format!("{}/v1/chat/completions", server.listen_url()))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    })
}

#[test]
fn verify_passes_on_the_written_log_and_names_an_edited_entry() {
    let mut server = DemoServer::start(None);
    let alice = server.keys["keys"]["alice"].as_str().unwrap().to_owned();
    assert_eq!(chat(&server, &alice, "haiku"), 200);
    assert_eq!(chat(&server, &alice, "mythos"), 403);
    server.stop();

    let output = run_with_data(&["audit", "verify"], server.data());
    assert!(
        output.status.success(),
        "{}\n{}",
        stdout(&output),
        stderr(&output)
    );
    assert!(
        stdout(&output).starts_with("ok portcullis/local"),
        "{}",
        stdout(&output)
    );

    let output = run_with_data(
        &[
            "audit",
            "search",
            "--principal",
            "alice",
            "--decision",
            "deny",
        ],
        server.data(),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let found: Vec<serde_json::Value> = stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    let denied_index = found[0]["index"].as_u64().unwrap();

    // A proof of that entry checks offline with the public key alone.
    let output = run_with_data(
        &["audit", "prove", "--index", &denied_index.to_string()],
        server.data(),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let proof_file = server.data().join("proof.json");
    std::fs::write(&proof_file, &output.stdout).unwrap();
    let key = stdout(&run_with_data(&["audit", "public-key"], server.data()));
    let output = run(&[
        "audit",
        "check-proof",
        proof_file.to_str().unwrap(),
        "--key-string",
        key.trim(),
    ]);
    assert!(output.status.success(), "{}", stdout(&output));

    // Tamper with a copy: drop the append-only trigger and edit the entry.
    let copy = tempfile::tempdir().unwrap();
    for name in ["portcullis.db", "audit-verifier.key"] {
        std::fs::copy(server.data().join(name), copy.path().join(name)).unwrap();
    }
    let database = copy.path().join("portcullis.db");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut connection =
            sqlx::SqliteConnection::connect(&format!("sqlite://{}", database.display())).await.unwrap();
        sqlx::query("DROP TRIGGER audit_entries_no_update").execute(&mut connection).await.unwrap();
        let changed = sqlx::query(
            "UPDATE audit_entries SET entry = replace(entry, '\"decision\":\"deny\"', '\"decision\":\"allow\"') WHERE idx = $1",
        )
        .bind(denied_index as i64)
        .execute(&mut connection)
        .await
        .unwrap()
        .rows_affected();
        assert_eq!(changed, 1);
        connection.close().await.unwrap();
    });
    let output = run_with_data(&["audit", "verify"], copy.path());
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(
        stdout(&output).contains(&format!("entry {denied_index}")),
        "{}",
        stdout(&output)
    );
}
