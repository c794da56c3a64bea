//! Offline-verifiable report bundles.
//!
//! `portcullis report KIND ID --bundle DIR` writes, from the admin API's
//! `/admin/v1/reports/{kind}/{id}/bundle`:
//!
//! - `report.json`: the report, exact bytes;
//! - `report.sig`: a note signed by the audit log's key over those bytes;
//! - `report.md`: the same report rendered for people;
//! - `verifier.key`: the public key the signatures check against;
//! - `proofs/*.json`: one inclusion proof per cited audit entry, each with
//!   its signed checkpoint.
//!
//! `portcullis verify-bundle DIR [--key FILE]` checks all of it with no
//! access to the store: the report's signature, that `report.md` is the
//! rendering of `report.json`, every proof against its signed checkpoint,
//! and that every citation in the report is one of the proven entries (same
//! leaf hash, root and time). A reader who received the key another way
//! passes it with `--key`: a bundle signed by any other key fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use portcullis_audit::{InclusionProof, NoteVerifier, verify_inclusion_proof};
use portcullis_gateway::governance::report::citations_in;
use serde_json::Value;

use crate::client::AdminClient;
use crate::report_cmd::render_markdown;

const REPORT_JSON: &str = "report.json";
const REPORT_SIG: &str = "report.sig";
const REPORT_MD: &str = "report.md";
const VERIFIER_KEY: &str = "verifier.key";
const PROOFS: &str = "proofs";

/// Fetches the bundle of report `kind`/`id` and writes it into `dir`.
pub async fn write(
    client: &AdminClient,
    kind: &str,
    id: &str,
    dir: &Path,
) -> anyhow::Result<ExitCode> {
    let (status, bundle) = client
        .send(
            "get",
            &format!("/admin/v1/reports/{kind}/{id}/bundle"),
            None,
        )
        .await?;
    if !(200..300).contains(&status) {
        eprintln!("error: the admin API answered {status}");
        eprintln!(
            "{}",
            serde_json::to_string_pretty(&bundle).unwrap_or_default()
        );
        return Ok(ExitCode::FAILURE);
    }
    let field = |name: &str| {
        bundle[name]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("the bundle has no `{name}`"))
    };
    let report_json = field("report_json")?;
    let report: Value =
        serde_json::from_str(&report_json).context("the bundle's report is not JSON")?;
    let proofs_dir = dir.join(PROOFS);
    std::fs::create_dir_all(&proofs_dir)
        .with_context(|| format!("cannot create `{}`", proofs_dir.display()))?;
    let write_file = |name: &Path, text: &str| {
        std::fs::write(name, text).with_context(|| format!("cannot write `{}`", name.display()))
    };
    write_file(&dir.join(REPORT_JSON), &report_json)?;
    write_file(&dir.join(REPORT_SIG), &field("report_note")?)?;
    write_file(&dir.join(REPORT_MD), &render_markdown(&report))?;
    write_file(
        &dir.join(VERIFIER_KEY),
        &format!("{}\n", field("verifier_key")?.trim()),
    )?;
    let proofs = bundle["proofs"].as_array().cloned().unwrap_or_default();
    for proof in &proofs {
        let proof: InclusionProof =
            serde_json::from_value(proof.clone()).context("the bundle holds a malformed proof")?;
        let name = format!(
            "{}-{}.json",
            proof
                .origin
                .replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
            proof.index
        );
        write_file(
            &proofs_dir.join(name),
            &format!("{}\n", serde_json::to_string_pretty(&proof)?),
        )?;
    }
    println!(
        "wrote {}: {REPORT_JSON}, {REPORT_SIG}, {REPORT_MD}, {VERIFIER_KEY} and {} proofs; check it with `portcullis verify-bundle {} --key FILE`",
        dir.display(),
        proofs.len(),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `portcullis verify-bundle DIR [--key FILE]`.
pub fn verify(dir: &Path, key: Option<&Path>) -> anyhow::Result<ExitCode> {
    match check(dir, key) {
        Ok(summary) => {
            println!("{summary}");
            Ok(ExitCode::SUCCESS)
        }
        Err(problems) => {
            for problem in problems {
                eprintln!("FAILED: {problem}");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|error| format!("cannot read `{}`: {error}", path.display()))
}

/// Every check; the problems found, or a summary of what was verified.
fn check(dir: &Path, key: Option<&Path>) -> Result<String, Vec<String>> {
    let key_path: PathBuf = key.map_or_else(|| dir.join(VERIFIER_KEY), Path::to_path_buf);
    let verifier: NoteVerifier = String::from_utf8_lossy(&read(&key_path).map_err(|e| vec![e])?)
        .trim()
        .parse()
        .map_err(|error| {
            vec![format!(
                "`{}` is not a verifier key: {error}",
                key_path.display()
            )]
        })?;
    let report_bytes = read(&dir.join(REPORT_JSON)).map_err(|e| vec![e])?;
    let note = String::from_utf8(read(&dir.join(REPORT_SIG)).map_err(|e| vec![e])?)
        .map_err(|_| vec![format!("{REPORT_SIG} is not text")])?;
    let mut problems = Vec::new();
    if let Err(error) =
        portcullis_audit::report_note::verify_report(&note, &verifier, &report_bytes)
    {
        problems.push(format!(
            "{REPORT_JSON} does not match its signature ({error})"
        ));
    }
    let report: Value = serde_json::from_slice(&report_bytes)
        .map_err(|error| vec![format!("{REPORT_JSON} is not JSON: {error}")])?;
    match read(&dir.join(REPORT_MD)) {
        Ok(markdown) if markdown == render_markdown(&report).as_bytes() => {}
        Ok(_) => problems.push(format!("{REPORT_MD} is not the rendering of {REPORT_JSON}")),
        Err(error) => problems.push(error),
    }

    // Every proof verifies against its signed checkpoint.
    let mut proven: BTreeMap<(String, u64, u64), InclusionProof> = BTreeMap::new();
    let proofs_dir = dir.join(PROOFS);
    let mut names: Vec<PathBuf> = std::fs::read_dir(&proofs_dir)
        .map_err(|error| vec![format!("cannot read `{}`: {error}", proofs_dir.display())])?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .collect();
    names.sort();
    for path in names {
        let name = path.display().to_string();
        let proof: InclusionProof = match read(&path)
            .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
        {
            Ok(proof) => proof,
            Err(error) => {
                problems.push(format!("{name}: not an inclusion proof ({error})"));
                continue;
            }
        };
        if let Err(error) = verify_inclusion_proof(&proof, &verifier) {
            problems.push(format!("{name}: {error}"));
            continue;
        }
        proven.insert((proof.origin.clone(), proof.index, proof.tree_size), proof);
    }

    // Every citation in the report is a proven entry.
    let citations = citations_in(&report);
    for (origin, index, tree_size) in &citations {
        if !proven.contains_key(&(origin.clone(), *index, *tree_size)) {
            problems.push(format!(
                "the report cites `{origin}` #{index} (checkpoint {tree_size}) but the bundle proves no such entry"
            ));
        }
    }
    let mut checked = 0usize;
    let mut pending = vec![&report];
    while let Some(value) = pending.pop() {
        match value {
            Value::Object(object) => {
                if let Some(problem) = citation_problem(object, &proven) {
                    problems.push(problem);
                }
                if let (Some(time), Some(audit)) = (object.get("time"), object.get("audit")) {
                    let key = (
                        audit["origin"].as_str().unwrap_or_default().to_owned(),
                        audit["index"].as_u64().unwrap_or(u64::MAX),
                        audit["checkpoint"]["tree_size"].as_u64().unwrap_or(0),
                    );
                    if let Some(proof) = proven.get(&key) {
                        checked += 1;
                        if proof.entry.get("time") != Some(time) {
                            problems.push(format!(
                                "a fact dated {time} cites `{}` #{}, whose entry is dated {}",
                                key.0,
                                key.1,
                                proof.entry.get("time").unwrap_or(&Value::Null)
                            ));
                        }
                    }
                }
                pending.extend(object.values());
            }
            Value::Array(values) => pending.extend(values),
            _ => {}
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut checkpoints: BTreeMap<&str, u64> = BTreeMap::new();
    for (origin, _, tree_size) in proven.keys() {
        let size = checkpoints.entry(origin).or_default();
        *size = (*size).max(*tree_size);
    }
    Ok(format!(
        "verified: {REPORT_JSON} is signed by `{}`; {REPORT_MD} renders it; {} citations ({checked} dated facts) are proven by {} inclusion proofs against signed checkpoints {}",
        verifier.name(),
        citations.len(),
        proven.len(),
        checkpoints
            .iter()
            .map(|(origin, size)| format!("`{origin}` @ {size}"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// A citation whose leaf hash or root disagrees with its proof.
fn citation_problem(
    object: &serde_json::Map<String, Value>,
    proven: &BTreeMap<(String, u64, u64), InclusionProof>,
) -> Option<String> {
    let origin = object.get("origin")?.as_str()?;
    let index = object.get("index")?.as_u64()?;
    let checkpoint = object.get("checkpoint")?;
    let tree_size = checkpoint.get("tree_size")?.as_u64()?;
    let proof = proven.get(&(origin.to_owned(), index, tree_size))?;
    if let Some(leaf) = object.get("leaf_hash").and_then(Value::as_str)
        && leaf != proof.leaf_hash
    {
        return Some(format!(
            "the report gives `{origin}` #{index} leaf hash {leaf}, the proof {}",
            proof.leaf_hash
        ));
    }
    if let Some(root) = checkpoint.get("root_hash").and_then(Value::as_str)
        && root != proof.root_hash
    {
        return Some(format!(
            "the report gives checkpoint {tree_size} of `{origin}` root {root}, the signed checkpoint {}",
            proof.root_hash
        ));
    }
    None
}
