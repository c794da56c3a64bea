//! `portcullis report order ID | review ID | finding ID | model NAME
//! [--format markdown|json] [--out FILE]`: transparency records fetched from
//! the admin API (`GET /admin/v1/reports/{kind}/{id}`) and rendered as
//! Markdown here. Every fact carries its audit citation, so a reader can run
//! `portcullis audit prove --index N --origin O` on any line.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use serde_json::Value;

use crate::cli::Connection;
use crate::client::AdminClient;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Markdown,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum ReportVerb {
    /// An order: the document, the preview at issue time, enforcement per
    /// replica, requests cut, admitted after enforcement, and the lift.
    Order(ReportArgs),
    /// A pre-release review: party, scope, dates, evidence, conditions, decision.
    Review(ReportArgs),
    /// A finding: its steps through triage and the replay evidence.
    Finding(ReportArgs),
    /// A model: its card, transitions, reviews, orders and current restrictions.
    Model(ReportArgs),
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The order, review or finding id, or the model name.
    pub id: String,
    #[arg(long, value_enum, default_value = "markdown")]
    pub format: ReportFormat,
    /// Write the report here instead of standard output.
    #[arg(long, conflicts_with = "bundle")]
    pub out: Option<PathBuf>,
    /// Write an offline-verifiable bundle into DIR: the report (JSON and
    /// Markdown), its signature, the verifier key and one inclusion proof
    /// per cited fact; check it with `portcullis verify-bundle DIR`.
    #[arg(long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
}

pub async fn run(connection: &Connection, verb: ReportVerb) -> anyhow::Result<ExitCode> {
    let (kind, args) = match verb {
        ReportVerb::Order(args) => ("order", args),
        ReportVerb::Review(args) => ("review", args),
        ReportVerb::Finding(args) => ("finding", args),
        ReportVerb::Model(args) => ("model", args),
    };
    let client = AdminClient::connect(connection)?;
    if let Some(dir) = &args.bundle {
        return crate::bundle_cmd::write(&client, kind, &args.id, dir).await;
    }
    let (status, report) = client
        .send(
            "get",
            &format!("/admin/v1/reports/{kind}/{}", args.id),
            None,
        )
        .await?;
    if !(200..300).contains(&status) {
        eprintln!("error: the admin API answered {status}");
        eprintln!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
        return Ok(ExitCode::FAILURE);
    }
    let text = match args.format {
        ReportFormat::Json => format!("{}\n", serde_json::to_string_pretty(&report)?),
        ReportFormat::Markdown => render_markdown(&report),
    };
    match &args.out {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("cannot write `{}`", path.display()))?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// "1 employee", "2 employees": a count with the noun in the right number.
fn counted(value: &Value, one: &str, many: &str) -> String {
    match value.as_u64() {
        Some(1) => format!("1 {one}"),
        Some(n) => format!("{n} {many}"),
        None => format!("{} {many}", text(value)),
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "—".to_owned(),
        other => other.to_string(),
    }
}

/// Escapes a table cell.
fn cell(value: &str) -> String {
    value.replace('|', "\\|").replace('\n', " ")
}

fn citation(audit: &Value) -> String {
    if audit.is_null() {
        return "not audited".to_owned();
    }
    format!(
        "`{}` #{} (checkpoint {})",
        text(&audit["origin"]),
        text(&audit["index"]),
        text(&audit["checkpoint"]["tree_size"])
    )
}

/// Renders a report as Markdown: a summary for its kind, the facts with
/// their citations, and the checkpoints they are proven against.
pub fn render_markdown(report: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {}\n", text(&report["title"]));
    let _ = writeln!(
        out,
        "Generated at {} by `{}` on replica `{}`. Every fact below cites the audit log entry that records it (origin and index) and the signed checkpoint that covers it; check any of them with `portcullis audit prove --index N --origin ORIGIN`.\n",
        text(&report["generated_at"]),
        text(&report["generated_by"]),
        text(&report["replica"])
    );
    match report["report"].as_str() {
        Some("order") => order_section(&mut out, report),
        Some("review") => review_section(&mut out, report),
        Some("finding") => finding_section(&mut out, report),
        Some("model") => model_section(&mut out, report),
        _ => {}
    }
    let _ = writeln!(out, "## Facts and their audit entries\n");
    let _ = writeln!(out, "| # | Time | Actor | Fact | Audit entry | Leaf hash |");
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for (number, fact) in report["facts"].as_array().into_iter().flatten().enumerate() {
        let _ = writeln!(
            out,
            "| {} | {} | `{}` | {} | {} | `{}` |",
            number + 1,
            text(&fact["time"]),
            cell(&text(&fact["actor"])),
            cell(&text(&fact["statement"])),
            citation(&fact["audit"]),
            text(&fact["audit"]["leaf_hash"])
        );
    }
    let _ = writeln!(out, "\n## Checkpoints\n");
    let _ = writeln!(out, "| Origin | Tree size | Root hash |");
    let _ = writeln!(out, "|---|---|---|");
    for checkpoint in report["checkpoints"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "| `{}` | {} | `{}` |",
            text(&checkpoint["origin"]),
            text(&checkpoint["tree_size"]),
            text(&checkpoint["root_hash"])
        );
    }
    out
}

fn order_section(out: &mut String, report: &Value) {
    let order = &report["order"];
    let _ = writeln!(out, "## The order\n");
    for (label, key) in [
        ("Reference", "reference"),
        ("Issuer", "issuer"),
        ("Received at", "received_at"),
        ("Effective at", "effective_at"),
        (
            "Effective time in the document (none: on commit)",
            "effective_at_requested",
        ),
        ("Effect", "effect"),
        ("Models", "models"),
        ("Principals", "principals"),
        ("Reason", "reason"),
        ("Document SHA-256", "document_sha256"),
        ("Applied by", "applied_by"),
        ("Committed at", "committed_at"),
        ("Committed as store version", "committed_version"),
    ] {
        let _ = writeln!(out, "- {label}: {}", text(&order[key]));
    }
    let _ = writeln!(out, "- Audit entry: {}\n", citation(&order["audit"]));

    let preview = &report["preview_at_issue"];
    let _ = writeln!(out, "## Preview at issue time\n");
    if preview.is_null() {
        let _ = writeln!(out, "No preview was stored with this order.\n");
    } else {
        let _ = writeln!(
            out,
            "Computed at {} against snapshot version {}: {} in scope, {} losing access, {} in scope, {} in flight to cut, {} in the previous 24 hours.\n",
            text(&preview["computed_at"]),
            text(&preview["snapshot_version"]),
            counted(&preview["principals_in_scope"], "principal", "principals"),
            text(&preview["principals_losing_access"]),
            counted(&preview["employees_in_scope"], "employee", "employees"),
            counted(&preview["active_requests_to_cut"], "request", "requests"),
            counted(&preview["requests_last_24h"], "request", "requests")
        );
        let _ = writeln!(
            out,
            "| Principal | Employee | Models in scope | Loses access to |"
        );
        let _ = writeln!(out, "|---|---|---|---|");
        for principal in preview["principals"].as_array().into_iter().flatten() {
            let list = |v: &Value| {
                v.as_array()
                    .map(|a| {
                        a.iter()
                            .map(|m| format!("`{}`", text(m)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default()
            };
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} |",
                text(&principal["id"]),
                text(&principal["employee"]),
                list(&principal["models"]),
                list(&principal["loses_access_to"])
            );
        }
        let _ = writeln!(out);
    }

    let _ = writeln!(out, "## Enforcement\n");
    let _ = writeln!(
        out,
        "| Replica | Applied at | Snapshot version | Commit to applied (ms) | Requests cut | Admitted after enforcement | Audit entry |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for replica in report["enforcement"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} | {} |",
            text(&replica["replica"]),
            text(&replica["applied_at"]),
            text(&replica["applied_version"]),
            text(&replica["commit_to_applied_ms"]),
            text(&replica["requests_cut"]),
            text(&replica["admitted_after_enforcement"]),
            citation(&replica["audit"])
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Time to enforce (commit to the last replica applying it): {} ms\n",
        text(&report["time_to_enforce_ms"])
    );
    let _ = writeln!(
        out,
        "Requests cut in flight: {}",
        text(&report["requests_cut"])
    );
    let cuts = report["cut_requests"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !cuts.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "| Request | Principal | Model | Replica | Cut at | Events relayed | Ended with | Audit entry |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
        for cut in &cuts {
            let _ = writeln!(
                out,
                "| `{}` | `{}` | `{}` | `{}` | {} | {} | {} | {} |",
                text(&cut["request_id"]),
                text(&cut["principal_id"]),
                text(&cut["model"]),
                text(&cut["replica"]),
                text(&cut["cut_at"]),
                text(&cut["events_relayed"]),
                text(&cut["ended_with_status"]),
                citation(&cut["audit"])
            );
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "Requests refused under the order: {}",
        text(&report["requests_refused"])
    );
    // The literal line a reader (and the example's test) looks for.
    let _ = writeln!(
        out,
        "Admitted after enforcement: {}\n",
        text(&report["admitted_after_enforcement"])
    );
    let checkpoints: Vec<String> = report["enforcement"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            format!(
                "`{}` up to tree size {} (root `{}`)",
                text(&r["log_checkpoint"]["origin"]),
                text(&r["log_checkpoint"]["tree_size"]),
                text(&r["log_checkpoint"]["root_hash"])
            )
        })
        .collect();
    if !checkpoints.is_empty() {
        let _ = writeln!(
            out,
            "\"Admitted after enforcement\" counts the allowed requests for an affected (principal, model) pair that each replica's log records after that replica applied the order, over {}.\n",
            checkpoints.join("; ")
        );
    }

    let _ = writeln!(out, "## Lift\n");
    let lift = &report["lift"];
    if lift.is_null() {
        let _ = writeln!(out, "The order has not been lifted; it is in force.\n");
    } else {
        let _ = writeln!(out, "- Lifted at: {}", text(&lift["lifted_at"]));
        let _ = writeln!(out, "- Lifted by: `{}`", text(&lift["lifted_by"]));
        let _ = writeln!(out, "- Reason: {}", text(&lift["reason"]));
        if !lift["approval"].is_null() {
            let _ = writeln!(
                out,
                "- Two-person rule: requested by `{}` at {}, approved by `{}` at {} (approval `{}`)",
                text(&lift["approval"]["requested_by"]),
                text(&lift["approval"]["requested_at"]),
                text(&lift["approval"]["decided_by"]),
                text(&lift["approval"]["decided_at"]),
                text(&lift["approval"]["id"])
            );
        }
        let _ = writeln!(out, "- Audit entry: {}\n", citation(&lift["audit"]));
    }
}

fn review_section(out: &mut String, report: &Value) {
    let review = &report["review"];
    let _ = writeln!(out, "## The review\n");
    for (label, key) in [
        ("Model", "model"),
        ("Model version", "model_version"),
        ("Reviewing party", "reviewing_party"),
        ("Party kind", "party_kind"),
        ("Programme", "programme"),
        ("Scope", "scope"),
        ("Requested at", "requested_at"),
        ("Access granted at", "access_granted_at"),
        ("Concluded at", "concluded_at"),
        ("Decision", "decision"),
        ("Rationale", "rationale"),
    ] {
        let _ = writeln!(out, "- {label}: {}", text(&review[key]));
    }
    let _ = writeln!(out, "\n### Conditions\n");
    for condition in review["conditions"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "- `{}` — enforced at {}",
            text(&condition["condition"]),
            text(&condition["enforced_at"])
        );
    }
    evidence_table(out, &report["evidence"]);
}

fn evidence_table(out: &mut String, evidence: &Value) {
    let _ = writeln!(out, "\n### Evidence\n");
    let _ = writeln!(
        out,
        "| Artifact | Name | Kind | Media type | Bytes | SHA-256 |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for artifact in evidence.as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | `{}` |",
            text(&artifact["id"]),
            cell(&text(&artifact["name"])),
            text(&artifact["kind"]),
            text(&artifact["media_type"]),
            text(&artifact["size_bytes"]),
            text(&artifact["sha256"])
        );
    }
    let _ = writeln!(out);
}

fn finding_section(out: &mut String, report: &Value) {
    let finding = &report["finding"];
    let _ = writeln!(out, "## The finding\n");
    for (label, key) in [
        ("Model", "model"),
        ("Reporter", "reporter"),
        ("Severity", "severity"),
        ("Status", "status"),
        ("Reported at", "created_at"),
        ("Notes", "notes"),
    ] {
        let _ = writeln!(out, "- {label}: {}", text(&finding[key]));
    }
    let _ = writeln!(out, "\n### Steps\n");
    for event in report["events"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "- {}: `{}` → `{}` by `{}`: {}",
            text(&event["created_at"]),
            text(&event["from_status"]),
            text(&event["to_status"]),
            text(&event["actor"]),
            text(&event["note"])
        );
    }
    evidence_table(out, &report["evidence"]);
}

fn model_section(out: &mut String, report: &Value) {
    let model = &report["model"];
    let _ = writeln!(out, "## Model card\n");
    for (label, key) in [
        ("Name", "name"),
        ("State", "state"),
        ("Family", "family"),
        ("Provider", "provider"),
        ("Upstream model", "upstream_model"),
        ("Safeguard profile", "safeguard_profile"),
        ("Tags", "tags"),
    ] {
        let _ = writeln!(out, "- {label}: {}", text(&model[key]));
    }
    let _ = writeln!(out, "\n### Current restrictions\n");
    for restriction in report["current_restrictions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let _ = writeln!(out, "- {}", text(restriction));
    }
    let _ = writeln!(out, "\n### Reviews\n");
    for review in report["reviews"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "- `{}` by {} ({}): decision {}, concluded {}",
            text(&review["id"]),
            text(&review["reviewing_party"]),
            text(&review["party_kind"]),
            text(&review["decision"]),
            text(&review["concluded_at"])
        );
    }
    let _ = writeln!(out, "\n### Orders\n");
    for order in report["orders"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "- `{}` ({}): effect `{}`, {}; in force: {}",
            text(&order["reference"]),
            text(&order["id"]),
            text(&order["effect"]),
            text(&order["scope"]),
            text(&order["in_force"])
        );
    }
    let _ = writeln!(out, "\n### Safeguard evidence\n");
    for artifact in report["safeguard_evidence"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let _ = writeln!(
            out,
            "- {} (sha256 `{}`): {}",
            text(&artifact["name"]),
            text(&artifact["sha256"]),
            text(&artifact["content"])
        );
    }
    let _ = writeln!(out);
}
