//! "The 5:21 p.m. letter", end to end on the demo: the letter is received,
//! previewed and applied while `bruno` streams from `mythos`; the stream is
//! cut; the order is lifted under the two-person rule (the requester's own
//! approval refused, a second admin's accepted); and the order report is
//! generated. Every fact in the report is then proven against the audit log
//! with an inclusion proof.
//!
//! The test keeps `docs/examples/order-report.md` and `.json` true: it
//! compares them, with times, ids, hashes and numbers masked, against the
//! report it just generated, and fails if they differ. It writes them when
//! they are missing or when `PORTCULLIS_UPDATE_EXAMPLES=1`.

#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};

struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_portcullis")
}

fn cli(data: &Path, args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .arg("--data")
        .arg(data)
        .output()
        .unwrap()
}

fn json_out(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "command failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

async fn start_demo(data: &Path) -> (Server, Value) {
    let child = Command::new(binary())
        .args([
            "serve",
            "--demo",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .arg("--data")
        .arg(data)
        // The demo leaves the rule off; the letter's scenario turns it on.
        .env("PORTCULLIS__GOVERNANCE__TWO_PERSON_RULE", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server { child };
    let keys_file = data.join("demo-keys.json");
    for _ in 0..600 {
        if let Ok(text) = std::fs::read_to_string(&keys_file)
            && let Ok(keys) = serde_json::from_str::<Value>(&text)
        {
            return (server, keys);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the demo did not write demo-keys.json within 60 s");
}

/// Masks what changes from run to run: every run of letters and digits
/// that contains a digit (times, ids, hashes, counts, indexes) becomes `#`,
/// and `#` joined by time punctuation collapses into one.
fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.chars().any(|c| c.is_ascii_digit()) {
            out.push('#');
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    let mut collapsed = out;
    loop {
        let next = collapsed
            .replace("#-#", "#")
            .replace("#:#", "#")
            .replace("#.#", "#")
            .replace("#_#", "#")
            .replace("_#", "#");
        if next == collapsed {
            return collapsed;
        }
        collapsed = next;
    }
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples")
}

fn keep_example(name: &str, fresh: &str) {
    let path = examples_dir().join(name);
    let update = std::env::var("PORTCULLIS_UPDATE_EXAMPLES").is_ok_and(|v| v == "1");
    match std::fs::read_to_string(&path) {
        Ok(committed) if !update => {
            // Lines are compared as a set: entries written concurrently
            // (a stream's cut record and the replica's enforcement record)
            // may land in either order, and the scenario asserts the order
            // that matters itself.
            let sorted = |text: &str| {
                let mut lines: Vec<String> = normalise(text).lines().map(str::to_owned).collect();
                lines.sort();
                lines.join("\n")
            };
            let (committed, fresh_normalised) = (sorted(&committed), sorted(fresh));
            if committed != fresh_normalised {
                let first = committed
                    .lines()
                    .zip(fresh_normalised.lines())
                    .find(|(a, b)| a != b);
                panic!(
                    "docs/examples/{name} is out of date (first differing line: {first:?}); regenerate it with PORTCULLIS_UPDATE_EXAMPLES=1"
                );
            }
        }
        _ => {
            std::fs::create_dir_all(examples_dir()).unwrap();
            std::fs::write(&path, fresh).unwrap();
        }
    }
}

#[tokio::test]
async fn the_five_twenty_one_letter_produces_a_provable_order_report() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let (_server, keys) = start_demo(data).await;
    let admin_listen = keys["admin_listen"].as_str().unwrap().to_owned();
    let listen = keys["listen"].as_str().unwrap().to_owned();
    let bruno = keys["keys"]["bruno"].as_str().unwrap().to_owned();

    // The demo's second admin, carol, approves what the first one asks for.
    // Under the two-person rule the first admin cannot mint one alone.
    let refused = json_out(&cli(
        data,
        &[
            "admins",
            "create",
            "puppet",
            "--role",
            "approver",
            "--display-name",
            "A second admin of my own",
        ],
    ));
    assert_eq!(refused["status"], "pending_approval", "{refused}");
    assert!(refused.get("token").is_none(), "{refused}");
    let carol_token = keys["approver_token"].as_str().unwrap().to_owned();

    // bruno (a French national, employee) streams from mythos.
    let http = reqwest::Client::new();
    let stream = http
        .post(format!("http://{listen}/v1/chat/completions"))
        .bearer_auth(&bruno)
        .header("x-mock-token-interval-ms", "50")
        .json(&json!({"model": "mythos", "max_tokens": 400, "stream": true,
            "messages": [{"role": "user", "content": "Summarise the quarterly evaluation notes."}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut chunks = stream.bytes_stream();
    assert!(!chunks.next().await.unwrap().unwrap().is_empty());

    // 5:21 p.m.: the letter arrives. Preview it, then apply it.
    let letter = data.join("letter.json");
    std::fs::write(
        &letter,
        serde_json::to_string_pretty(&json!({
            "reference": "BIS-2026-0521", "issuer": "US Department of Commerce",
            "received_at": "2026-11-20T17:21:00-05:00", "effective_at": null,
            "effect": "suspend", "models": ["family:frontier"],
            "principals": {"foreign_persons_under": "ear"},
            "reason": "Suspend access by foreign persons to the frontier family pending review."
        }))
        .unwrap(),
    )
    .unwrap();
    let letter = letter.to_str().unwrap();
    let preview = json_out(&cli(data, &["orders", "preview", letter]));
    assert_eq!(preview["active_requests_to_cut"], 1, "{preview}");
    // The letter as received is hashed into the order.
    let scan = data.join("letter-5-21pm.pdf");
    let scan_bytes = b"%PDF-1.4\n% BIS-2026-0521, received 5:21 p.m.\n%%EOF\n";
    std::fs::write(&scan, scan_bytes).unwrap();
    let scan_sha256 = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(scan_bytes))
    };
    let applied = json_out(&cli(
        data,
        &[
            "orders",
            "apply",
            letter,
            "--document",
            scan.to_str().unwrap(),
        ],
    ));
    assert_eq!(
        applied["document"]["document_sha256"], scan_sha256,
        "{applied}"
    );
    let order_id = applied["id"].as_str().unwrap().to_owned();

    // The running stream ends with a legal-restriction error event.
    let mut rest = String::new();
    while let Some(chunk) = chunks.next().await {
        rest.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    assert!(rest.contains("legal_restriction"), "{rest}");
    // A new request is refused with 451 naming the order.
    let refused = http
        .post(format!("http://{listen}/v1/chat/completions"))
        .bearer_auth(&bruno)
        .json(&json!({"model": "mythos", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 451);

    // Lifting needs two people: the request waits, the requester's own
    // approval is refused, the second admin's goes through.
    let pending = json_out(&cli(
        data,
        &[
            "orders",
            "lift",
            &order_id,
            "--reason",
            "Commerce withdrew the letter after review.",
        ],
    ));
    assert_eq!(pending["status"], "pending_approval", "{pending}");
    let approval_id = pending["approval"]["id"].as_str().unwrap().to_owned();
    let pending_list = json_out(&cli(data, &["approvals", "list", "--status", "pending"]));
    assert!(
        pending_list.to_string().contains(&approval_id),
        "{pending_list}"
    );
    let own = cli(data, &["approvals", "approve", &approval_id]);
    assert!(!own.status.success());
    let own_error = String::from_utf8_lossy(&own.stderr);
    assert!(
        own_error.contains("403") && own_error.contains("same_person"),
        "{own_error}"
    );
    let approved = json_out(&cli(
        data,
        &[
            "approvals",
            "approve",
            &approval_id,
            "--note",
            "Checked the withdrawal letter.",
            "--server",
            &format!("http://{admin_listen}"),
            "--token",
            &carol_token,
        ],
    ));
    assert_eq!(approved["approval"]["status"], "approved", "{approved}");
    assert_eq!(approved["result"]["state"], "lifted", "{approved}");

    // The report, in both formats.
    let json_file = data.join("order-report.json");
    let markdown_file = data.join("order-report.md");
    for (format, file) in [("json", &json_file), ("markdown", &markdown_file)] {
        let output = cli(
            data,
            &[
                "report",
                "order",
                &order_id,
                "--format",
                format,
                "--out",
                file.to_str().unwrap(),
            ],
        );
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json_file).unwrap()).unwrap();
    let markdown = std::fs::read_to_string(&markdown_file).unwrap();
    assert!(
        markdown
            .lines()
            .any(|line| line == "Admitted after enforcement: 0"),
        "{markdown}"
    );
    assert_eq!(report["admitted_after_enforcement"], 0);
    assert_eq!(report["requests_cut"], 1, "{report}");
    // The cut request has its own enforcement record, cited like any fact.
    let cuts = report["cut_requests"].as_array().unwrap();
    assert_eq!(cuts.len(), 1, "{report}");
    assert_eq!(cuts[0]["principal_id"], "bruno");
    assert_eq!(cuts[0]["model"], "mythos");
    assert!(cuts[0]["events_relayed"].as_u64().unwrap() >= 1, "{cuts:?}");
    assert!(
        cuts[0]["audit"]["checkpoint"]["tree_size"].is_u64(),
        "{cuts:?}"
    );
    assert!(
        report["time_to_enforce_ms"].as_i64().unwrap() >= 0,
        "{report}"
    );
    assert!(report["requests_refused"].as_u64().unwrap() >= 1);
    assert_eq!(report["lift"]["approval"]["requested_by"], "admin");
    assert_eq!(report["lift"]["approval"]["decided_by"], "carol");
    // The letter was received days before it was committed and named no
    // effective time: it takes effect on commit, never before.
    let at =
        |key: &str| -> jiff::Timestamp { report["order"][key].as_str().unwrap().parse().unwrap() };
    assert!(
        at("effective_at") >= at("committed_at"),
        "{}",
        report["order"]
    );
    assert!(report["order"]["effective_at_requested"].is_null());
    assert_eq!(report["order"]["document_sha256"], scan_sha256);
    assert!(
        markdown.contains(&scan_sha256),
        "the report does not show the letter's hash: {markdown}"
    );

    // Every fact is proven against the audit log with the public key.
    let store = portcullis_store::Store::open_data_dir(data).await.unwrap();
    let verifier: portcullis_audit::NoteVerifier =
        std::fs::read_to_string(data.join("audit-verifier.key"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
    let facts = report["facts"].as_array().unwrap();
    let actions: Vec<String> = facts
        .iter()
        .map(|fact| fact["statement"].as_str().unwrap().to_owned())
        .collect();
    for expected in [
        "applied by `admin`",
        "began enforcing",
        "was cut on replica",
        "asked to lift",
        "`carol` approved lifting",
        "lifted by `carol`",
        "stopped enforcing",
        "refused with status 451",
    ] {
        assert!(
            actions.iter().any(|a| a.contains(expected)),
            "no fact says {expected:?}: {actions:#?}"
        );
    }
    // The approval comes before the lift it allowed, in the report and in
    // the audit log's own sequence.
    let position = |needle: &str| {
        facts
            .iter()
            .position(|fact| fact["statement"].as_str().unwrap().contains(needle))
            .unwrap()
    };
    let (approved_at, lifted_at) = (
        position("`carol` approved lifting"),
        position("lifted by `carol`"),
    );
    assert!(approved_at < lifted_at, "{actions:#?}");
    assert!(
        facts[approved_at]["audit"]["index"].as_u64() < facts[lifted_at]["audit"]["index"].as_u64(),
        "{actions:#?}"
    );
    for fact in facts {
        let audit = &fact["audit"];
        let origin = audit["origin"].as_str().unwrap();
        let index = audit["index"].as_u64().unwrap();
        let tree_size = audit["checkpoint"]["tree_size"].as_u64().unwrap();
        let proof = portcullis_audit::prove_inclusion(store.pool(), origin, index, tree_size)
            .await
            .unwrap();
        portcullis_audit::verify_inclusion_proof(&proof, &verifier)
            .unwrap_or_else(|error| panic!("fact {fact} does not verify: {error}"));
        assert_eq!(proof.leaf_hash, audit["leaf_hash"], "{fact}");
        assert_eq!(proof.root_hash, audit["checkpoint"]["root_hash"], "{fact}");
        assert_eq!(proof.entry["time"], fact["time"], "{fact}");
    }
    store.close().await;

    // The bundle, asked for by the order's reference, verifies offline with
    // the operator's key, and fails on any change or another key.
    let bundle = data.join("bundle");
    let written = cli(
        data,
        &[
            "report",
            "order",
            "BIS-2026-0521",
            "--bundle",
            bundle.to_str().unwrap(),
        ],
    );
    assert!(
        written.status.success(),
        "{}",
        String::from_utf8_lossy(&written.stderr)
    );
    let key_file = data.join("audit-verifier.key");
    let verify = |dir: &Path, key: &Path| {
        Command::new(binary())
            .args(["verify-bundle", dir.to_str().unwrap(), "--key"])
            .arg(key)
            .output()
            .unwrap()
    };
    let verified = verify(&bundle, &key_file);
    assert!(
        verified.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
    let summary = String::from_utf8_lossy(&verified.stdout);
    assert!(summary.contains("verified:"), "{summary}");
    let bundled: Value =
        serde_json::from_str(&std::fs::read_to_string(bundle.join("report.json")).unwrap())
            .unwrap();
    assert_eq!(bundled["subject"], order_id);

    let other_key = data.join("other-verifier.key");
    let name = verifier.name().to_owned();
    std::fs::write(
        &other_key,
        format!(
            "{}\n",
            portcullis_audit::NoteSigner::from_seed(&name, [9; 32])
                .unwrap()
                .verifier()
        ),
    )
    .unwrap();
    let first_proof = {
        let mut names: Vec<_> = std::fs::read_dir(bundle.join("proofs"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        names.sort();
        format!("proofs/{}", names[0].to_str().unwrap())
    };
    type Tamper = fn(&Path, &str);
    let cases: [(&str, Tamper, &str, bool); 5] = [
        (
            "a changed word in the Markdown",
            |dir, _| {
                let path = dir.join("report.md");
                let text = std::fs::read_to_string(&path).unwrap();
                std::fs::write(&path, text.replacen("bruno", "brunO", 1)).unwrap();
            },
            "is not the rendering",
            false,
        ),
        (
            "a changed count in the JSON",
            |dir, _| {
                let path = dir.join("report.json");
                let text = std::fs::read_to_string(&path).unwrap();
                std::fs::write(
                    &path,
                    text.replacen("\"requests_cut\": 1", "\"requests_cut\": 0", 1),
                )
                .unwrap();
            },
            "does not match its signature",
            false,
        ),
        (
            "a changed entry in a proof",
            |dir, proof| {
                let path = dir.join(proof);
                let text = std::fs::read_to_string(&path).unwrap();
                std::fs::write(
                    &path,
                    text.replacen("\"portcullis/local\"", "\"portcullis/other\"", 1),
                )
                .unwrap();
            },
            "proofs/",
            false,
        ),
        (
            "a missing proof",
            |dir, proof| std::fs::remove_file(dir.join(proof)).unwrap(),
            "proves no such entry",
            false,
        ),
        (
            "another key",
            |_, _| {},
            "does not match its signature",
            true,
        ),
    ];
    for (label, tamper, expected, use_other_key) in cases {
        let copy = data.join(format!("tampered-{}", label.replace(' ', "-")));
        std::fs::create_dir_all(copy.join("proofs")).unwrap();
        for name in ["report.json", "report.md", "report.sig", "verifier.key"] {
            std::fs::copy(bundle.join(name), copy.join(name)).unwrap();
        }
        for entry in std::fs::read_dir(bundle.join("proofs")).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), copy.join("proofs").join(entry.file_name())).unwrap();
        }
        tamper(&copy, &first_proof);
        let key = if use_other_key { &other_key } else { &key_file };
        let output = verify(&copy, key);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{label}: verified anyway");
        assert!(stderr.contains(expected), "{label}: {stderr}");
    }

    keep_example("order-report.md", &markdown);
    keep_example(
        "order-report.json",
        &std::fs::read_to_string(&json_file).unwrap(),
    );
}

#[test]
fn normalising_masks_times_ids_and_numbers_but_not_words() {
    let cases = [
        (
            "at 2026-11-27T01:02:03.456789Z by `admin`",
            "at # by `admin`",
        ),
        ("order `ord_20261127T010203Z_0a1b2c3d4e5f`", "order `ord#`"),
        (
            "Admitted after enforcement: 0",
            "Admitted after enforcement: #",
        ),
        ("Requests cut in flight", "Requests cut in flight"),
    ];
    for (input, expected) in cases {
        assert_eq!(normalise(input), expected, "{input}");
    }
}
