//! The command-line synopsis: `portcullis <noun> <verb> [ARGS] [--server URL]
//! [--token T]`, options accepted after positionals.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::client::{AdminClient, Body};

#[derive(Debug, Parser)]
#[command(
    name = "portcullis",
    version,
    about = "A compliance gateway for frontier AI models"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// How the CLI reaches the admin API. Without `--server`/`--token`, the
/// demo's `demo-keys.json` in the data directory is read.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// The admin listener's root URL, e.g. `http://127.0.0.1:8081`.
    #[arg(long, global = true, env = "PORTCULLIS_SERVER")]
    pub server: Option<String>,
    /// An admin token.
    #[arg(long, global = true, env = "PORTCULLIS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The data directory holding `demo-keys.json`.
    #[arg(long, global = true)]
    pub data: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve(ServeArgs),
    /// Serve the deterministic mock upstream on its own port.
    Mock(MockArgs),
    /// Manage models.
    Models {
        #[command(subcommand)]
        verb: ResourceVerb,
        #[command(flatten)]
        connection: Connection,
    },
    /// Manage principals and their verified attributes.
    Principals {
        #[command(subcommand)]
        verb: ResourceVerb,
        #[command(flatten)]
        connection: Connection,
    },
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        verb: KeyVerb,
        #[command(flatten)]
        connection: Connection,
    },
    /// Two-person requests: list, show, approve, reject.
    Approvals {
        #[command(subcommand)]
        verb: ApprovalVerb,
        #[command(flatten)]
        connection: Connection,
    },
    /// Admins: list, create (under the two-person rule a pending approval;
    /// the token goes to the approver).
    Admins {
        #[command(subcommand)]
        verb: AdminVerb,
        #[command(flatten)]
        connection: Connection,
    },
    /// Legal orders: apply, preview, lift, list, show (with the receipt).
    Orders {
        #[command(subcommand)]
        verb: crate::orders_cmd::OrderVerb,
        #[command(flatten)]
        connection: Connection,
    },
    /// Offline policy tools over a data directory: eval, who-can, diff.
    Policy {
        #[command(subcommand)]
        verb: crate::policy_cmd::PolicyVerb,
    },
    /// The audit log: verify, export, prove, check-proof, search, public-key.
    Audit {
        #[command(subcommand)]
        verb: crate::audit_cmd::AuditVerb,
    },
    /// Denied-party screening: import a list, clear a match.
    Screening {
        #[command(subcommand)]
        verb: crate::screening_cmd::ScreeningVerb,
    },
    /// Classify JSON lines from stdin with the safeguards (the `classify` contract).
    Classify(crate::safeguards_cmd::ClassifyArgs),
    /// Measure the safeguards on labelled datasets: recall, false refusals, latency.
    Eval(crate::safeguards_cmd::EvalArgs),
    /// Reported safeguard bypasses: add, list, show, replay.
    Findings {
        #[command(subcommand)]
        verb: crate::safeguards_cmd::FindingsVerb,
        #[command(flatten)]
        connection: Connection,
    },
    /// Safeguard model tools: train.
    Safeguards {
        #[command(subcommand)]
        verb: crate::safeguards_cmd::SafeguardsVerb,
    },
    /// Transparency records: order, review, finding or model, as Markdown or JSON.
    Report {
        #[command(subcommand)]
        verb: crate::report_cmd::ReportVerb,
        #[command(flatten)]
        connection: Connection,
    },
    /// Check a report bundle offline: its signature, its rendering and
    /// every inclusion proof, with no access to the store.
    VerifyBundle {
        /// The directory `report … --bundle DIR` wrote.
        dir: PathBuf,
        /// The verifier key to trust, received from the operator another
        /// way; without it, the bundle's own `verifier.key`.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
    },
    /// Send a raw request to the admin API, e.g. `portcullis admin get /admin/v1/models`.
    Admin {
        /// get, post, put or delete.
        method: String,
        /// A path under the admin listener, e.g. `/admin/v1/models`.
        path: String,
        /// A JSON body, or `@FILE`, or `@-` for standard input.
        #[arg(long)]
        body: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Seed the demo story and write `DIR/demo-keys.json`.
    #[arg(long)]
    pub demo: bool,
    /// A TOML configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The data directory (default `./portcullis-data`).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The data-plane listen address (default `127.0.0.1:8080`).
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// The admin listen address (default `127.0.0.1:8081`).
    #[arg(long)]
    pub admin_listen: Option<std::net::SocketAddr>,
    /// A stage-2 model directory (`model.safetensors`, `tokenizer.json`,
    /// `config.json`, and for a fine-tuned classifier `head.bin` and
    /// `stage2.json`) in place of the built-in one; overrides
    /// `safeguards.embedding_model_dir` and `PORTCULLIS_EMBEDDING_MODEL_DIR`.
    #[arg(long, value_name = "DIR")]
    pub embedding_model: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct MockArgs {
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub listen: std::net::SocketAddr,
    /// Pause between streamed chunks.
    #[arg(long, default_value_t = 5)]
    pub token_interval_ms: u64,
}

#[derive(Debug, Subcommand)]
pub enum ResourceVerb {
    /// List them all.
    List,
    /// Show one.
    Get { id: String },
    /// Create from a JSON file (`-` for standard input).
    Create { file: PathBuf },
    /// Replace from a JSON file (`-` for standard input).
    Update { id: String, file: PathBuf },
    /// Delete one.
    Delete { id: String },
}

#[derive(Debug, Subcommand)]
pub enum KeyVerb {
    /// List keys (never their secrets).
    List {
        #[arg(long)]
        principal: Option<String>,
    },
    /// Show one key.
    Get { id: String },
    /// Create a key; its secret is printed once.
    Create {
        #[arg(long)]
        principal: String,
        #[arg(long)]
        name: String,
        /// RFC 3339 expiry time.
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// Revoke a key, effective immediately.
    Revoke { id: String },
    /// Delete a key.
    Delete { id: String },
}

#[derive(Debug, Subcommand)]
pub enum ApprovalVerb {
    /// List two-person requests, optionally by status (`pending`,
    /// `approved`, `rejected`).
    List {
        #[arg(long)]
        status: Option<String>,
    },
    /// Show one request.
    Show { id: String },
    /// Approve it as a second admin: the change is carried out now. The
    /// requester's own approval is refused.
    Approve {
        id: String,
        /// Why, kept with the decision in the audit log.
        #[arg(long)]
        note: Option<String>,
    },
    /// Turn it down.
    Reject {
        id: String,
        /// Why, kept with the decision in the audit log.
        #[arg(long)]
        note: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminVerb {
    /// List admins (never their tokens).
    List,
    /// Create an admin; its token is printed once (to the approver, under
    /// the two-person rule).
    Create {
        id: String,
        /// `admin`, `approver` or `compliance_officer` (read-only).
        #[arg(long)]
        role: String,
        #[arg(long)]
        display_name: Option<String>,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => crate::serve::run(args).await,
        Command::Mock(args) => crate::serve::run_mock(args).await,
        Command::Models { verb, connection } => resource(&connection, "models", verb).await,
        Command::Principals { verb, connection } => resource(&connection, "principals", verb).await,
        Command::Keys { verb, connection } => keys(&connection, verb).await,
        Command::Approvals { verb, connection } => approvals(&connection, verb).await,
        Command::Admins { verb, connection } => admins(&connection, verb).await,
        Command::Orders { verb, connection } => crate::orders_cmd::run(&connection, verb).await,
        Command::Policy { verb } => crate::policy_cmd::run(verb).await,
        Command::Audit { verb } => crate::audit_cmd::run(verb).await,
        Command::Screening { verb } => crate::screening_cmd::run(verb).await,
        Command::Classify(args) => crate::safeguards_cmd::classify(args),
        Command::Eval(args) => crate::safeguards_cmd::eval(args),
        Command::Findings { verb, connection } => {
            crate::safeguards_cmd::findings(&connection, verb).await
        }
        Command::Safeguards { verb } => crate::safeguards_cmd::run_safeguards(verb),
        Command::Report { verb, connection } => crate::report_cmd::run(&connection, verb).await,
        Command::VerifyBundle { dir, key } => crate::bundle_cmd::verify(&dir, key.as_deref()),
        Command::Admin {
            method,
            path,
            body,
            connection,
        } => {
            let client = AdminClient::connect(&connection)?;
            let body = body.map(|b| Body::from_arg(&b)).transpose()?;
            client.print(&method, &path, body).await
        }
    }
}

async fn resource(
    connection: &Connection,
    noun: &str,
    verb: ResourceVerb,
) -> anyhow::Result<ExitCode> {
    let client = AdminClient::connect(connection)?;
    let base = format!("/admin/v1/{noun}");
    match verb {
        ResourceVerb::List => client.print("get", &base, None).await,
        ResourceVerb::Get { id } => client.print("get", &format!("{base}/{id}"), None).await,
        ResourceVerb::Create { file } => {
            client
                .print("post", &base, Some(Body::from_file(&file)?))
                .await
        }
        ResourceVerb::Update { id, file } => {
            client
                .print(
                    "put",
                    &format!("{base}/{id}"),
                    Some(Body::from_file(&file)?),
                )
                .await
        }
        ResourceVerb::Delete { id } => client.print("delete", &format!("{base}/{id}"), None).await,
    }
}

async fn approvals(connection: &Connection, verb: ApprovalVerb) -> anyhow::Result<ExitCode> {
    let client = AdminClient::connect(connection)?;
    match verb {
        ApprovalVerb::List { status } => {
            let path = match status {
                Some(status) => format!("/admin/v1/approvals?status={status}"),
                None => "/admin/v1/approvals".to_owned(),
            };
            client.print("get", &path, None).await
        }
        ApprovalVerb::Show { id } => {
            client
                .print("get", &format!("/admin/v1/approvals/{id}"), None)
                .await
        }
        ApprovalVerb::Approve { id, note } => {
            client
                .print(
                    "post",
                    &format!("/admin/v1/approvals/{id}/approve"),
                    Some(Body::Json(serde_json::json!({"note": note}))),
                )
                .await
        }
        ApprovalVerb::Reject { id, note } => {
            client
                .print(
                    "post",
                    &format!("/admin/v1/approvals/{id}/reject"),
                    Some(Body::Json(serde_json::json!({"note": note}))),
                )
                .await
        }
    }
}

async fn admins(connection: &Connection, verb: AdminVerb) -> anyhow::Result<ExitCode> {
    let client = AdminClient::connect(connection)?;
    match verb {
        AdminVerb::List => client.print("get", "/admin/v1/admins", None).await,
        AdminVerb::Create {
            id,
            role,
            display_name,
        } => {
            client
                .print(
                    "post",
                    "/admin/v1/admins",
                    Some(Body::Json(serde_json::json!({
                        "id": id, "role": role, "display_name": display_name
                    }))),
                )
                .await
        }
    }
}

async fn keys(connection: &Connection, verb: KeyVerb) -> anyhow::Result<ExitCode> {
    let client = AdminClient::connect(connection)?;
    match verb {
        KeyVerb::List { principal } => {
            let path = match principal {
                Some(p) => format!("/admin/v1/keys?principal={p}"),
                None => "/admin/v1/keys".to_owned(),
            };
            client.print("get", &path, None).await
        }
        KeyVerb::Get { id } => {
            client
                .print("get", &format!("/admin/v1/keys/{id}"), None)
                .await
        }
        KeyVerb::Create {
            principal,
            name,
            expires_at,
        } => {
            let body = serde_json::json!({"principal_id": principal, "name": name, "expires_at": expires_at});
            client
                .print("post", "/admin/v1/keys", Some(Body::Json(body)))
                .await
        }
        KeyVerb::Revoke { id } => {
            client
                .print("post", &format!("/admin/v1/keys/{id}/revoke"), None)
                .await
        }
        KeyVerb::Delete { id } => {
            client
                .print("delete", &format!("/admin/v1/keys/{id}"), None)
                .await
        }
    }
}
