//! The committed fuzz inputs, replayed on stable through the same functions
//! the nightly fuzz targets call (`fuzz/src/lib.rs`): the hand-written seeds
//! (`fuzz/seeds/TARGET/*`) and what the fuzzer found (`fuzz/corpus/TARGET/*`,
//! minimised), so every such input stays a regression test. Timed runs: `scripts/fuzz TARGET [SECONDS]`.

use std::path::{Path, PathBuf};

#[path = "../../../../fuzz/src/lib.rs"]
mod harness;

/// The files of `fuzz/KIND/TARGET`, sorted; none when the directory is
/// missing (a target whose fuzzer has found nothing yet has no corpus).
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz")
        .join(kind)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_committed_fuzz_input_is_handled_without_a_panic() {
    type Harness = fn(&[u8]);
    let targets: [(&str, Harness); 6] = [
        ("requests", harness::requests),
        ("sse", harness::sse),
        ("jwt", harness::jwt),
        ("policy_config", harness::policy_config),
        ("screening_csv", harness::screening_csv),
        ("audit_proofs", harness::audit_proofs),
    ];
    for (target, run) in targets {
        let seeds = inputs("seeds", target);
        assert!(seeds.len() >= 3, "{target}: only {} seeds", seeds.len());
        for file in seeds.into_iter().chain(inputs("corpus", target)) {
            // A running fuzzer may merge its corpus while this reads it.
            let Ok(data) = std::fs::read(&file) else {
                continue;
            };
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{target}: {} panicked", file.display());
        }
    }
}

/// The audit seeds are signed with the harness's fixed key, so the fuzzer
/// starts past the signature check, inside the Merkle and proof code. They
/// are generated here (Ed25519 signatures are deterministic) and must match
/// what is committed; `PORTCULLIS_UPDATE_FUZZ_SEEDS=1` rewrites them.
#[test]
fn the_audit_seeds_are_valid_proofs_under_the_harness_key() {
    use portcullis_audit::{Checkpoint, InclusionProof, NoteSigner, canonical, merkle};
    let signer = NoteSigner::from_seed("portcullis", [7; 32]).unwrap();
    let entries: Vec<serde_json::Value> = (0..3)
        .map(|index| {
            serde_json::json!({"index": index, "kind": "admin_action", "time": "2026-11-20T22:21:00Z",
                "actor": "admin", "action": "apply", "target_kind": "order", "target_id": "ord_1",
                "payload": {"n": index}})
        })
        .collect();
    let leaves: Vec<merkle::Hash> = entries
        .iter()
        .map(|entry| {
            merkle::leaf_hash(
                canonical::canonical_json_of_value(entry)
                    .unwrap()
                    .as_bytes(),
            )
        })
        .collect();
    let root = merkle::tree_root(&leaves);
    let checkpoint = Checkpoint {
        origin: "portcullis/local".into(),
        tree_size: 3,
        root_hash: root,
    }
    .sign(&signer)
    .unwrap();
    let proof = InclusionProof {
        origin: "portcullis/local".into(),
        index: 1,
        tree_size: 3,
        entry: entries[1].clone(),
        leaf_hash: hex::encode(leaves[1]),
        audit_path: merkle::inclusion_proof(1, &leaves)
            .unwrap()
            .iter()
            .map(hex::encode)
            .collect(),
        root_hash: hex::encode(root),
        checkpoint: checkpoint.clone(),
    };
    portcullis_audit::verify_inclusion_proof(&proof, &signer.verifier()).unwrap();
    let report_note = portcullis_audit::report_note::sign_report(&signer, b"{}\n").unwrap();
    let seeds = [
        (
            "inclusion_proof.json",
            format!("{}\n", serde_json::to_string_pretty(&proof).unwrap()),
        ),
        ("checkpoint.note", checkpoint),
        ("report.sig", report_note),
    ];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/audit_proofs");
    let update = std::env::var("PORTCULLIS_UPDATE_FUZZ_SEEDS").is_ok_and(|value| value == "1");
    for (name, fresh) in seeds {
        let path = dir.join(name);
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &fresh).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(
            committed, fresh,
            "fuzz/seeds/audit_proofs/{name} is out of date; regenerate it with PORTCULLIS_UPDATE_FUZZ_SEEDS=1"
        );
    }
}
