//! `portcullis orders apply|lift|list|show|preview`: a thin client of the
//! admin API's `/admin/v1/orders`. `show` renders the enforcement receipt as
//! a timeline for people; `--json` prints the API's answer as is.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::cli::Connection;
use crate::client::{AdminClient, Body};

#[derive(Debug, Subcommand)]
pub enum OrderVerb {
    /// Applies the order document in FILE and prints the created order.
    Apply {
        file: PathBuf,
        /// Apply even if the scope matches nobody or `effective_at` is
        /// further in the past than the tolerance.
        #[arg(long)]
        force: bool,
        /// The letter or order as received (PDF, scan, e-mail): its SHA-256
        /// is recorded in the order as `document_sha256`, linking the
        /// enforcement record to the exact document.
        #[arg(long, value_name = "LETTER")]
        document: Option<PathBuf>,
    },
    /// Reports what applying the order in FILE would change, changing nothing.
    Preview {
        file: PathBuf,
    },
    /// Lifts an order; the lift is its own audited record.
    Lift {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    List,
    /// Prints an order and its enforcement receipt.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(connection: &Connection, verb: OrderVerb) -> anyhow::Result<ExitCode> {
    let client = AdminClient::connect(connection)?;
    match verb {
        OrderVerb::Apply {
            file,
            force,
            document,
        } => {
            let mut body = with_force(Body::from_file(&file)?, force)?;
            if let Some(letter) = document {
                body = with_document_hash(body, &letter)?;
            }
            client.print("post", "/admin/v1/orders", Some(body)).await
        }
        OrderVerb::Preview { file } => {
            client
                .print(
                    "post",
                    "/admin/v1/orders/preview",
                    Some(Body::from_file(&file)?),
                )
                .await
        }
        OrderVerb::Lift { id, reason } => {
            client
                .print(
                    "post",
                    &format!("/admin/v1/orders/{id}/lift"),
                    Some(Body::Json(json!({"reason": reason}))),
                )
                .await
        }
        OrderVerb::List => client.print("get", "/admin/v1/orders", None).await,
        OrderVerb::Show { id, json: true } => {
            client
                .print("get", &format!("/admin/v1/orders/{id}"), None)
                .await
        }
        OrderVerb::Show { id, json: false } => {
            let (status, value) = client
                .send("get", &format!("/admin/v1/orders/{id}"), None)
                .await?;
            if !(200..300).contains(&status) {
                eprintln!("error: the admin API answered {status}");
                eprintln!("{}", serde_json::to_string_pretty(&value)?);
                return Ok(ExitCode::FAILURE);
            }
            print!("{}", render_receipt(&value));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn with_force(body: Body, force: bool) -> anyhow::Result<Body> {
    match body {
        Body::Json(mut value) if force => {
            if let Some(object) = value.as_object_mut() {
                object.insert("force".into(), Value::Bool(true));
            }
            Ok(Body::Json(value))
        }
        other => Ok(other),
    }
}

/// Records the letter's SHA-256 in the order document. A document that
/// already names a different hash is refused: one of the two is not the
/// letter the operator means.
fn with_document_hash(body: Body, letter: &Path) -> anyhow::Result<Body> {
    let bytes = std::fs::read(letter)
        .with_context(|| format!("cannot read the document {}", letter.display()))?;
    let hash = hex::encode(Sha256::digest(&bytes));
    let Body::Json(mut value) = body;
    let Some(object) = value.as_object_mut() else {
        anyhow::bail!("the order document must be a JSON object");
    };
    match object.get("document_sha256").and_then(Value::as_str) {
        Some(given) if !given.eq_ignore_ascii_case(&hash) => anyhow::bail!(
            "the order document names document_sha256 {given}, but {} hashes to {hash}",
            letter.display()
        ),
        _ => {
            object.insert("document_sha256".into(), Value::String(hash));
        }
    }
    Ok(Body::Json(value))
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The receipt as a timeline a compliance officer can read.
pub fn render_receipt(order: &Value) -> String {
    let receipt = &order["receipt"];
    let document = &order["document"];
    let mut out = String::new();
    out.push_str(&format!(
        "Order {} ({})\n",
        text(&order["id"]),
        text(&order["reference"])
    ));
    out.push_str(&format!("  Issuer:      {}\n", text(&document["issuer"])));
    out.push_str(&format!("  Effect:      {}\n", text(&document["effect"])));
    out.push_str(&format!("  Models:      {}\n", text(&document["models"])));
    out.push_str(&format!(
        "  Principals:  {}\n",
        text(&document["principals"])
    ));
    out.push_str(&format!("  State:       {}\n", text(&order["state"])));
    out.push_str("Timeline\n");
    out.push_str(&format!(
        "  Received:    {}\n",
        text(&receipt["received_at"])
    ));
    out.push_str(&format!(
        "  Committed:   {} (store version {})\n",
        text(&receipt["committed_at"]),
        text(&receipt["committed_version"])
    ));
    out.push_str(&format!(
        "  Effective:   {}\n",
        text(&receipt["effective_at"])
    ));
    if let Some(replicas) = receipt["replicas"].as_array() {
        for replica in replicas {
            out.push_str(&format!(
                "  Applied:     {} on replica {} (+{} ms after commit; {} requests cut; admitted after: {})\n",
                text(&replica["applied_at"]),
                text(&replica["replica"]),
                text(&replica["commit_to_applied_ms"]),
                text(&replica["requests_cut"]),
                text(&replica["admitted_after_enforcement"]),
            ));
        }
        if replicas.is_empty() {
            out.push_str("  Applied:     not yet applied by any replica\n");
        }
    }
    if !receipt["lifted_at"].is_null() {
        out.push_str(&format!("  Lifted:      {}\n", text(&receipt["lifted_at"])));
    }
    out.push_str("Enforcement\n");
    out.push_str(&format!(
        "  Requests cut in flight: {}\n",
        text(&receipt["requests_cut"])
    ));
    out.push_str(&format!(
        "  Requests denied:        {}\n",
        text(&receipt["requests_denied"])
    ));
    out.push_str(&format!(
        "Admitted after enforcement: {}\n",
        text(&receipt["admitted_after_enforcement"])
    ));
    out
}
