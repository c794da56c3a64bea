//! `portcullis policy eval | who-can | diff`: the policy engine run offline
//! against what a data directory holds (policies, orders in force, models,
//! principals, the operator's organization and the definition profile the
//! server started with).

use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use jiff::Timestamp;
use portcullis_domain::Clock as _;
use portcullis_gateway::config::PolicyConfig;
use portcullis_gateway::policy::PolicyBase;
use portcullis_policy::{PolicyEngine, RequestContext};

use crate::local_store::{self, LocalStore};

/// Meta key under which `serve` records its `[policy]` section as JSON, so
/// offline commands decide under the same profile and settings.
pub const POLICY_CONFIG_META: &str = "policy_config";

/// The exit code for a proposed policy set that does not compile.
const INVALID_POLICY_EXIT: u8 = 2;

#[derive(Debug, Subcommand)]
pub enum PolicyVerb {
    /// Decide JSON-lines cases offline: one `{"id","principal","model","context"}`
    /// per line in, one `{"id","decision","status","reasons"}` per line out.
    Eval(EvalArgs),
    /// List the principals allowed and denied a model, with the deciding rules.
    WhoCan(WhoCanArgs),
    /// Show which (principal, model) decisions a proposed policy set changes.
    Diff(DiffArgs),
}

/// Where the evaluated data comes from.
#[derive(Debug, Clone, Args)]
pub struct PolicySource {
    /// The data directory (default `./portcullis-data`).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// A TOML config whose `[policy]` section replaces the one the server
    /// recorded (and whose `store.url` names a PostgreSQL store).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The cases file, one JSON object per line (`-` for standard input).
    #[arg(long)]
    pub cases: PathBuf,
    #[command(flatten)]
    pub source: PolicySource,
}

/// The location a report is computed for. Without `--country` the location
/// is unknown, which `fail_closed` models deny.
#[derive(Debug, Clone, Args)]
pub struct LocationArgs {
    /// ISO 3166-1 country of the hypothetical request.
    #[arg(long)]
    pub country: Option<String>,
    /// ISO 3166-2 subdivision of the hypothetical request, e.g. `UA-43`.
    #[arg(long)]
    pub subdivision: Option<String>,
    /// Decision time (RFC 3339); defaults to now.
    #[arg(long)]
    pub time: Option<Timestamp>,
}

#[derive(Debug, Args)]
pub struct WhoCanArgs {
    #[arg(long)]
    pub model: String,
    #[command(flatten)]
    pub location: LocationArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub source: PolicySource,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// A directory of `.cedar` files: the proposed complete policy set.
    #[arg(long)]
    pub proposed: PathBuf,
    #[command(flatten)]
    pub location: LocationArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub source: PolicySource,
}

pub async fn run(verb: PolicyVerb) -> anyhow::Result<ExitCode> {
    match verb {
        PolicyVerb::Eval(args) => eval(args).await,
        PolicyVerb::WhoCan(args) => who_can(args).await,
        PolicyVerb::Diff(args) => diff(args).await,
    }
}

/// The `[policy]` section in force: `--config` if given, else what the
/// server recorded at start, else the defaults (profile `ear`).
pub async fn policy_config(local: &LocalStore) -> anyhow::Result<PolicyConfig> {
    if local.config_given {
        return Ok(local.config.policy.clone());
    }
    match local.store.get_meta(POLICY_CONFIG_META).await? {
        Some(json) => serde_json::from_str(&json)
            .with_context(|| format!("the stored `{POLICY_CONFIG_META}` is not a policy section")),
        None => Ok(PolicyConfig::default()),
    }
}

/// Builds the engine the server would build from this store, through the
/// gateway's own assembly so the two cannot drift apart.
async fn engine_for(source: &PolicySource, now: Timestamp) -> anyhow::Result<PolicyEngine> {
    let local = local_store::open(source.data.as_deref(), source.config.as_deref()).await?;
    let mut config = local.config.clone();
    config.policy = policy_config(&local).await?;
    let base = PolicyBase::from_config(&config).context("invalid policy settings")?;
    let contents = local.store.load().await.context("cannot read the store")?;
    let engine = base
        .engine(&contents, now)
        .context("cannot build the policy engine from the store")?;
    local.store.close().await;
    for rejected in engine.rejected_principals() {
        eprintln!(
            "warning: principal `{}` has invalid attributes and is left out: {}",
            rejected.principal_id, rejected.error
        );
    }
    Ok(engine)
}

async fn eval(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let now = portcullis_domain::SystemClock.now();
    let engine = engine_for(&args.source, now).await?;
    let reader: Box<dyn std::io::BufRead> = if args.cases == Path::new("-") {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let file = std::fs::File::open(&args.cases)
            .with_context(|| format!("cannot read cases file `{}`", args.cases.display()))?;
        Box::new(BufReader::new(file))
    };
    let stdout = std::io::stdout().lock();
    let summary =
        portcullis_policy::run_eval(&engine, reader, std::io::LineWriter::new(stdout), now)?;
    for error in &summary.errors {
        eprintln!("error: {error}");
    }
    eprintln!(
        "evaluated {} case(s), {} could not be evaluated",
        summary.evaluated,
        summary.errors.len()
    );
    Ok(if summary.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn context_for(location: &LocationArgs, now: Timestamp) -> anyhow::Result<RequestContext> {
    RequestContext::at(location.time.unwrap_or(now))
        .with_location(location.country.as_deref(), location.subdivision.as_deref())
        .context("invalid location")
}

fn location_label(location: &LocationArgs) -> String {
    match (&location.country, &location.subdivision) {
        (None, None) => "unknown (pass --country to place the request)".to_owned(),
        (country, subdivision) => [country.as_deref(), subdivision.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" "),
    }
}

async fn who_can(args: WhoCanArgs) -> anyhow::Result<ExitCode> {
    let now = portcullis_domain::SystemClock.now();
    let engine = engine_for(&args.source, now).await?;
    let context = context_for(&args.location, now)?;
    let report = portcullis_policy::who_can(&engine, &args.model, &context)
        .with_context(|| format!("cannot decide for model `{}`", args.model))?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "model {}  profile {}  location {}",
        report.model,
        report.profile,
        location_label(&args.location)
    )?;
    let rows = report
        .allowed
        .iter()
        .map(|d| (d, "allow"))
        .chain(report.denied.iter().map(|d| (d, "deny")))
        .map(|(d, verdict)| {
            [
                d.principal.clone(),
                verdict.to_owned(),
                d.status.to_string(),
                d.reasons.join(", "),
            ]
        })
        .collect::<Vec<_>>();
    write_table(
        &mut out,
        &["PRINCIPAL", "DECISION", "STATUS", "REASONS"],
        &rows,
    )?;
    writeln!(
        out,
        "{} allowed, {} denied",
        report.allowed.len(),
        report.denied.len()
    )?;
    Ok(ExitCode::SUCCESS)
}

async fn diff(args: DiffArgs) -> anyhow::Result<ExitCode> {
    let now = portcullis_domain::SystemClock.now();
    let engine = engine_for(&args.source, now).await?;
    let context = context_for(&args.location, now)?;
    // Compile errors name the file, line and column; an unreadable
    // directory is an ordinary failure.
    let sources = portcullis_policy::load_policy_dir(&args.proposed).with_context(|| {
        format!(
            "cannot read proposed policies in `{}`",
            args.proposed.display()
        )
    })?;
    if sources.is_empty() {
        eprintln!(
            "error: `{}` holds no .cedar files; an empty set would deny everything",
            args.proposed.display()
        );
        return Ok(ExitCode::from(INVALID_POLICY_EXIT));
    }
    let schema = std::sync::Arc::new(portcullis_policy::PolicySchema::portcullis()?);
    let proposed = match portcullis_policy::compile(&sources, &schema) {
        Ok(proposed) => proposed,
        Err(error) => {
            eprintln!("error: the proposed policy set is invalid: {error}");
            return Ok(ExitCode::from(INVALID_POLICY_EXIT));
        }
    };
    let changes = portcullis_policy::diff_policies(&engine, proposed, &context)
        .context("cannot compare the policy sets")?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &changes)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "location {}", location_label(&args.location))?;
    if changes.is_empty() {
        writeln!(out, "no decision changes")?;
        return Ok(ExitCode::SUCCESS);
    }
    let summary = |allowed: bool, status: u16, reasons: &[String]| {
        let verdict = if allowed { "allow" } else { "deny" };
        if reasons.is_empty() {
            format!("{verdict} {status}")
        } else {
            format!("{verdict} {status} ({})", reasons.join(", "))
        }
    };
    let rows = changes
        .iter()
        .map(|change| {
            [
                change.principal.clone(),
                change.model.clone(),
                summary(
                    change.before.allowed,
                    change.before.status,
                    &change.before.reasons,
                ),
                summary(
                    change.after.allowed,
                    change.after.status,
                    &change.after.reasons,
                ),
            ]
        })
        .collect::<Vec<_>>();
    write_table(&mut out, &["PRINCIPAL", "MODEL", "NOW", "PROPOSED"], &rows)?;
    let access = changes.iter().filter(|c| c.access_changed).count();
    writeln!(
        out,
        "{} pair(s) change: {access} gain or lose access, {} change status or reasons only",
        changes.len(),
        changes.len() - access
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Writes rows under a header, each column padded to its widest cell.
pub fn write_table<const N: usize>(
    out: &mut impl Write,
    header: &[&str; N],
    rows: &[[String; N]],
) -> std::io::Result<()> {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (index, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if index + 1 == N {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(header.to_vec())?;
    for row in rows {
        line(row.iter().map(String::as_str).collect())?;
    }
    Ok(())
}
