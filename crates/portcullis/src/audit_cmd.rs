//! `portcullis audit verify | export | prove | check-proof | search |
//! public-key`: reading, proving and verifying the tamper-evident audit log
//! straight from the store, or offline from an export or a proof file.

use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use jiff::Timestamp;
use portcullis_audit::{AuditQuery, Decision, InclusionProof, NoteVerifier, VerifyError};
use portcullis_gateway::audit::default_paths;

use crate::local_store::{self, LocalStore};

#[derive(Debug, Subcommand)]
pub enum AuditVerb {
    /// Verify every log in the store (or one export) against the public key.
    /// Exits 0 when everything verifies, 1 naming the first bad entry index.
    Verify(VerifyArgs),
    /// Write one log's entries in a time window as JSON lines with the
    /// checkpoints that vouch for them.
    Export(ExportArgs),
    /// Print the inclusion proof of one entry against the latest signed
    /// checkpoint.
    Prove(ProveArgs),
    /// Check an inclusion proof file offline with the public key.
    CheckProof(CheckProofArgs),
    /// Find entries by principal, model, order, decision and time (JSON lines).
    Search(SearchArgs),
    /// Print the verifier (public) key of the data directory's logs.
    PublicKey(DataArgs),
}

#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// The data directory (default `./portcullis-data`).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// A TOML config (`store.url`, `audit.*` key and witness paths).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Which public key checks signatures. Without either flag, the verifier
/// key file the server wrote (config `audit.verifier_key_file`, default
/// `DIR/audit-verifier.key`).
#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// A file holding the verifier key string.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// The verifier key string itself, `name+keyid+base64`.
    #[arg(long, conflicts_with = "key")]
    pub key_string: Option<String>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Verify this export file instead of the store.
    #[arg(long)]
    pub export: Option<PathBuf>,
    /// A witness file or directory of checkpoint copies to hold the store
    /// to (default: the configured witness directory when it exists).
    #[arg(long)]
    pub witness: Option<PathBuf>,
    #[command(flatten)]
    pub key: KeyArgs,
    /// Print one JSON report per log instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub data: DataArgs,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Entries at or after this time (RFC 3339).
    #[arg(long)]
    pub since: Timestamp,
    /// Entries strictly before this time (RFC 3339).
    #[arg(long)]
    pub until: Option<Timestamp>,
    /// The log to export; needed only when the store holds several.
    #[arg(long)]
    pub origin: Option<String>,
    /// Write here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataArgs,
}

#[derive(Debug, Args)]
pub struct ProveArgs {
    /// The entry's position in its log.
    #[arg(long)]
    pub index: u64,
    /// The log; needed only when the store holds several.
    #[arg(long)]
    pub origin: Option<String>,
    #[command(flatten)]
    pub key: KeyArgs,
    #[command(flatten)]
    pub data: DataArgs,
}

#[derive(Debug, Args)]
pub struct CheckProofArgs {
    /// The proof JSON written by `audit prove` (`-` for standard input).
    pub file: PathBuf,
    #[command(flatten)]
    pub key: KeyArgs,
    #[command(flatten)]
    pub data: DataArgs,
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    #[arg(long)]
    pub principal: Option<String>,
    #[arg(long)]
    pub model: Option<String>,
    /// Requests decided by this order, or admin actions on it.
    #[arg(long)]
    pub order: Option<String>,
    /// `allow` or `deny`.
    #[arg(long)]
    pub decision: Option<String>,
    #[arg(long)]
    pub since: Option<Timestamp>,
    #[arg(long)]
    pub until: Option<Timestamp>,
    #[arg(long)]
    pub limit: Option<u64>,
    #[arg(long)]
    pub origin: Option<String>,
    #[command(flatten)]
    pub data: DataArgs,
}

pub async fn run(verb: AuditVerb) -> anyhow::Result<ExitCode> {
    match verb {
        AuditVerb::Verify(args) => verify(args).await,
        AuditVerb::Export(args) => export(args).await,
        AuditVerb::Prove(args) => prove(args).await,
        AuditVerb::CheckProof(args) => check_proof(args),
        AuditVerb::Search(args) => search(args).await,
        AuditVerb::PublicKey(args) => public_key(args),
    }
}

/// The configured verifier key file, witness directory, from `--data` and
/// `--config` without opening the store.
fn key_paths(data: &DataArgs) -> anyhow::Result<(PathBuf, PathBuf)> {
    let config = crate::settings::load(data.config.as_deref(), std::env::vars())?;
    let data_dir = crate::settings::data_dir(data.data.as_deref(), &config);
    let (_, verifier_file, witness_dir) = default_paths(&config.audit, &data_dir);
    Ok((verifier_file, witness_dir))
}

fn read_verifier(path: &Path) -> anyhow::Result<NoteVerifier> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the verifier key `{}`", path.display()))?;
    text.trim()
        .parse()
        .with_context(|| format!("`{}` does not hold a verifier key", path.display()))
}

fn verifier(key: &KeyArgs, data: &DataArgs) -> anyhow::Result<NoteVerifier> {
    if let Some(text) = &key.key_string {
        return text
            .trim()
            .parse()
            .context("--key-string is not a verifier key");
    }
    match &key.key {
        Some(path) => read_verifier(path),
        None => read_verifier(&key_paths(data)?.0),
    }
}

async fn open(data: &DataArgs) -> anyhow::Result<LocalStore> {
    local_store::open(data.data.as_deref(), data.config.as_deref()).await
}

/// The log to act on: the one named, or the only one in the store.
async fn single_origin(local: &LocalStore, origin: Option<String>) -> anyhow::Result<String> {
    let origins = portcullis_audit::list_origins(local.store.pool()).await?;
    match origin {
        Some(origin) if origins.contains(&origin) => Ok(origin),
        Some(origin) => bail!("the store holds no audit log `{origin}`"),
        None => match origins.as_slice() {
            [only] => Ok(only.clone()),
            [] => bail!("the store holds no audit log yet"),
            several => bail!(
                "the store holds several audit logs; pick one with --origin: {}",
                several.join(", ")
            ),
        },
    }
}

async fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let verifier = verifier(&args.key, &args.data)?;
    let mut out = std::io::stdout().lock();
    if let Some(path) = &args.export {
        let file = std::fs::File::open(path)
            .with_context(|| format!("cannot read export `{}`", path.display()))?;
        return match portcullis_audit::verify_export(BufReader::new(file), &verifier) {
            Ok(report) => {
                print_report(&mut out, &report, args.json)?;
                Ok(ExitCode::SUCCESS)
            }
            Err(VerifyError::Failed(failure)) => {
                print_failure(&mut out, &path.display().to_string(), &failure, args.json)?;
                Ok(ExitCode::FAILURE)
            }
            Err(VerifyError::Audit(error)) => Err(error).context("cannot read the export"),
        };
    }
    let witness = match &args.witness {
        Some(path) => Some(path.clone()),
        None => Some(key_paths(&args.data)?.1).filter(|dir| dir.is_dir()),
    };
    let local = open(&args.data).await?;
    let origins = portcullis_audit::list_origins(local.store.pool()).await?;
    if origins.is_empty() {
        eprintln!("the store holds no audit log yet; nothing to verify");
    }
    let mut failed = false;
    for origin in &origins {
        match portcullis_audit::verify_store(
            local.store.pool(),
            origin,
            &verifier,
            witness.as_deref(),
        )
        .await
        {
            Ok(report) => print_report(&mut out, &report, args.json)?,
            Err(VerifyError::Failed(failure)) => {
                failed = true;
                print_failure(&mut out, origin, &failure, args.json)?;
            }
            Err(VerifyError::Audit(error)) => {
                return Err(error).with_context(|| format!("cannot read audit log `{origin}`"));
            }
        }
    }
    local.store.close().await;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn print_report(
    out: &mut impl Write,
    report: &portcullis_audit::VerifyReport,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        let mut value = serde_json::to_value(report)?;
        value["verified"] = true.into();
        writeln!(out, "{value}")?;
    } else {
        writeln!(
            out,
            "ok {}: {} entries, {} signed checkpoints, signed size {}, {} witnessed, {} newer than the last checkpoint",
            report.origin,
            report.entries,
            report.checkpoints,
            report.signed_size,
            report.witness_checkpoints,
            report.unsigned_entries
        )?;
    }
    Ok(())
}

fn print_failure(
    out: &mut impl Write,
    origin: &str,
    failure: &portcullis_audit::VerifyFailure,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        let value = serde_json::json!({
            "origin": origin, "verified": false, "index": failure.index,
            "line": failure.line, "reason": failure.reason.to_string(),
        });
        writeln!(out, "{value}")?;
    } else {
        writeln!(out, "FAILED {origin}: {failure}")?;
    }
    Ok(())
}

async fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let local = open(&args.data).await?;
    let origin = single_origin(&local, args.origin).await?;
    let summary = match &args.out {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("cannot create `{}`", path.display()))?;
            let mut writer = std::io::BufWriter::new(file);
            portcullis_audit::export(
                local.store.pool(),
                &origin,
                Some(args.since),
                args.until,
                &mut writer,
            )
            .await?
        }
        None => {
            let mut writer = std::io::BufWriter::new(std::io::stdout().lock());
            portcullis_audit::export(
                local.store.pool(),
                &origin,
                Some(args.since),
                args.until,
                &mut writer,
            )
            .await?
        }
    };
    local.store.close().await;
    eprintln!(
        "exported {origin}: {} entries, {} leaf hashes, {} checkpoints (indexes {}..{})",
        summary.entries, summary.leaves, summary.checkpoints, summary.base_size, summary.end_size
    );
    Ok(ExitCode::SUCCESS)
}

async fn prove(args: ProveArgs) -> anyhow::Result<ExitCode> {
    let verifier = verifier(&args.key, &args.data)?;
    let local = open(&args.data).await?;
    let origin = single_origin(&local, args.origin).await?;
    // The proof is made against the newest checkpoint that verifies, so a
    // log that fails verification yields no proof at all.
    let report =
        match portcullis_audit::verify_store(local.store.pool(), &origin, &verifier, None).await {
            Ok(report) => report,
            Err(VerifyError::Failed(failure)) => {
                eprintln!("error: no proof from a log that fails verification: {failure}");
                return Ok(ExitCode::FAILURE);
            }
            Err(VerifyError::Audit(error)) => return Err(error.into()),
        };
    if args.index >= report.signed_size {
        bail!(
            "entry {} of `{origin}` is not yet covered by a signed checkpoint (signed size {}); checkpoints follow within seconds",
            args.index,
            report.signed_size
        );
    }
    let proof = portcullis_audit::prove_inclusion(
        local.store.pool(),
        &origin,
        args.index,
        report.signed_size,
    )
    .await?;
    local.store.close().await;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &proof)?;
    writeln!(out)?;
    Ok(ExitCode::SUCCESS)
}

fn check_proof(args: CheckProofArgs) -> anyhow::Result<ExitCode> {
    let verifier = verifier(&args.key, &args.data)?;
    let text = if args.file == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("cannot read standard input")?
    } else {
        std::fs::read_to_string(&args.file)
            .with_context(|| format!("cannot read `{}`", args.file.display()))?
    };
    let proof: InclusionProof =
        serde_json::from_str(&text).context("the file is not an inclusion proof")?;
    match portcullis_audit::verify_inclusion_proof(&proof, &verifier) {
        Ok(()) => {
            println!(
                "ok: entry {} of {} is in the signed tree of size {}",
                proof.index, proof.origin, proof.tree_size
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            println!("FAILED: {error}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Parses the `decision` filter shared by the CLI and the admin API.
pub fn parse_decision(text: &str) -> anyhow::Result<Decision> {
    match text {
        "allow" => Ok(Decision::Allow),
        "deny" => Ok(Decision::Deny),
        other => bail!("decision `{other}` must be `allow` or `deny`"),
    }
}

async fn search(args: SearchArgs) -> anyhow::Result<ExitCode> {
    let query = AuditQuery {
        origin: args.origin,
        principal_id: args.principal,
        model: args.model,
        order_id: args.order,
        decision: args.decision.as_deref().map(parse_decision).transpose()?,
        since: args.since,
        until: args.until,
        limit: args.limit,
        ..AuditQuery::default()
    };
    let local = open(&args.data).await?;
    let found = portcullis_audit::search(local.store.pool(), &query).await?;
    local.store.close().await;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for entry in &found {
        serde_json::to_writer(&mut out, entry)?;
        writeln!(out)?;
    }
    out.flush()?;
    eprintln!("{} entries", found.len());
    Ok(ExitCode::SUCCESS)
}

fn public_key(args: DataArgs) -> anyhow::Result<ExitCode> {
    let (verifier_file, _) = key_paths(&args)?;
    println!("{}", read_verifier(&verifier_file)?);
    Ok(ExitCode::SUCCESS)
}
