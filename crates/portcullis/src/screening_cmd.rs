//! `portcullis screening import | clear`: importing a denied-party list into
//! the store and screening every principal against it, and clearing a
//! principal's match through the audited admin API.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use portcullis_domain::{Clock as _, ScreeningStatus};
use portcullis_gateway::screening::{ROLE_ALT, ROLE_CSL, ROLE_SDN, build_list, screening_update};
use portcullis_screening::ListFile;

use crate::cli::Connection;
use crate::client::{AdminClient, Body};
use crate::local_store;

#[derive(Debug, Subcommand)]
pub enum ScreeningVerb {
    /// Import an OFAC SDN list (with its alt.csv aliases) or a Consolidated
    /// Screening List CSV, then screen every principal against it.
    Import(ImportArgs),
    /// Clear a principal's potential or confirmed match (an audited admin
    /// action through the admin API).
    Clear {
        /// The principal id.
        id: String,
        /// Why the match is not this principal, for the audit record.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        connection: Connection,
    },
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// OFAC `sdn.csv`.
    #[arg(long, required_unless_present = "csl", conflicts_with = "csl")]
    pub sdn: Option<PathBuf>,
    /// OFAC `alt.csv`, the aliases of `--sdn` entries.
    #[arg(long, requires = "sdn")]
    pub alt: Option<PathBuf>,
    /// A Consolidated Screening List CSV (with header).
    #[arg(long)]
    pub csl: Option<PathBuf>,
    /// The data directory (default `./portcullis-data`).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// A TOML config (for `store.url`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Who is importing, recorded with the list (default: `$USER`).
    #[arg(long)]
    pub actor: Option<String>,
}

pub async fn run(verb: ScreeningVerb) -> anyhow::Result<ExitCode> {
    match verb {
        ScreeningVerb::Import(args) => import(args).await,
        ScreeningVerb::Clear {
            id,
            reason,
            connection,
        } => {
            let client = AdminClient::connect(&connection)?;
            client
                .print(
                    "post",
                    &format!("/admin/v1/principals/{id}/screening/clear"),
                    Some(Body::Json(serde_json::json!({"reason": reason}))),
                )
                .await
        }
    }
}

fn read(role: &'static str, path: &Path) -> anyhow::Result<(&'static str, ListFile)> {
    Ok((
        role,
        ListFile::read(path).with_context(|| format!("cannot import `{}`", path.display()))?,
    ))
}

async fn import(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let mut files = Vec::new();
    match (&args.sdn, &args.csl) {
        (Some(sdn), None) => {
            files.push(read(ROLE_SDN, sdn)?);
            if let Some(alt) = &args.alt {
                files.push(read(ROLE_ALT, alt)?);
            }
        }
        (None, Some(csl)) => files.push(read(ROLE_CSL, csl)?),
        _ => bail!("give either --sdn [--alt] or --csl"),
    }
    let actor = args
        .actor
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "cli".to_owned());
    let now = portcullis_domain::SystemClock.now();
    let built = build_list(files, &actor, now)?;
    // Skipped rows are reported one by one: an import never drops a row
    // silently.
    for warning in &built.warnings {
        eprintln!("warning: {warning}");
    }
    let local = local_store::open(args.data.as_deref(), args.config.as_deref()).await?;
    local
        .store
        .save_screening_list(&built.record)
        .await
        .context("cannot store the list")?;

    let contents = local.store.load().await?;
    let attributes: Vec<_> = contents
        .principals
        .iter()
        .map(|p| p.attributes.clone())
        .collect();
    let results = built.screener.screen_principals(&attributes);
    let mut updates = Vec::new();
    let mut potential_matches = Vec::new();
    let mut unscreened = 0usize;
    for (principal, result) in attributes.iter().zip(&results) {
        match result.status {
            ScreeningStatus::Unscreened => unscreened += 1,
            ScreeningStatus::PotentialMatch => potential_matches.push((
                principal.id.clone(),
                result.entry().unwrap_or_default(),
                result.score().unwrap_or(0.0),
            )),
            _ => {}
        }
        if let Some(update) = screening_update(&principal.screening, result) {
            updates.push((principal.id.clone(), update));
        }
    }
    let (_, updated) = local
        .store
        .set_principal_screenings(&updates, now)
        .await
        .context("cannot record screening results")?;
    local.store.close().await;

    let report = serde_json::json!({
        "list_version": built.record.list_version,
        "source_format": built.record.source_format,
        "entries": built.record.entry_count,
        "skipped_rows": built.record.skipped_rows,
        "principals_screened": results.len() - unscreened,
        "principals_without_name_claims": unscreened,
        "principals_updated": updated.len(),
        "potential_matches": potential_matches
            .iter()
            .map(|(id, entry, score)| serde_json::json!({"principal": id, "entry": entry, "score": score}))
            .collect::<Vec<_>>(),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(ExitCode::SUCCESS)
}
