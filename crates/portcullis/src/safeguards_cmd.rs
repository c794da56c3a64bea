//! The safeguard commands: `classify` (the JSONL contract), `eval` (recall
//! and false refusals with Wilson intervals), `findings` (reported bypasses:
//! add, list, show, replay) and `safeguards train`.
//!
//! Machine-readable output (`classify`, anything with `--json`) goes to
//! stdout alone; warnings and the progress bar go to stderr.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use portcullis_gateway::guard::{CYBER_PROFILE, FindingDocument, Safeguards};
use portcullis_safeguards::dataset::{LoadOptions, Split, load_dataset};
use portcullis_safeguards::findings::{
    Finding, FindingPrompt, ReplayReport, Severity, load_findings_dir, replay_findings,
};
use portcullis_safeguards::{MiniLmEmbedder, SafeguardProfile};
use serde::Serialize;
use serde_json::json;

use crate::cli::Connection;
use crate::client::{AdminClient, Body};
use crate::settings;

/// Where the classifier and its profiles come from.
#[derive(Debug, Clone, Args)]
pub struct SafeguardSource {
    /// The safeguard profile: `cyber`, or one defined under
    /// `[safeguards.profiles]` in `--config`.
    #[arg(long, default_value = CYBER_PROFILE)]
    pub profile: String,
    /// A stage-2 model directory in place of the built-in fine-tuned
    /// classifier: a fine-tuned one (with `stage2.json` and `head.bin`) or
    /// all-MiniLM-L6-v2 base weights. Without it,
    /// `PORTCULLIS_EMBEDDING_MODEL_DIR` is read; when neither names one, the
    /// built-in classifier runs. If the named one cannot be loaded, stage 1
    /// runs alone and a warning says so.
    #[arg(long)]
    pub embedding_model: Option<PathBuf>,
    /// A gateway config file whose `[safeguards]` section is used.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ClassifyArgs {
    #[command(flatten)]
    pub source: SafeguardSource,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// JSONL datasets: rows of `{"id", "text"|"messages", "label", ...}`.
    #[arg(long, required = true, num_args = 1..)]
    pub dataset: Vec<PathBuf>,
    #[command(flatten)]
    pub source: SafeguardSource,
    /// Which rows to score: `all`, or the fixed hash-based `dev` (20%) or
    /// `train` (80%) split the committed model was trained with. Only `dev`
    /// measures rows the model never saw.
    #[arg(long, default_value = "all", value_parser = ["all", "dev", "train"])]
    pub split: String,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum FindingsVerb {
    /// Record a reported bypass through the admin API.
    Add {
        /// One attempt's prompt; repeat for several. Use `--file` for
        /// multi-turn exchanges.
        #[arg(long = "prompt")]
        prompts: Vec<String>,
        /// A JSON finding document (`-` for standard input); flags override
        /// its fields.
        #[arg(long)]
        file: Option<PathBuf>,
        #[arg(long)]
        reporter: Option<String>,
        /// low, medium, high or critical.
        #[arg(long)]
        severity: Option<String>,
        #[arg(long)]
        notes: Option<String>,
        /// The model the bypass was reported against.
        #[arg(long)]
        model: Option<String>,
        /// The finding id; assigned by the server when left out.
        #[arg(long)]
        id: Option<String>,
    },
    /// List every finding.
    List,
    /// Show one finding.
    Show { id: String },
    /// Replay findings against the current safeguards and report which
    /// still get through. Exits 1 if any finding bypasses a guarded model.
    Replay {
        /// Models to replay against (comma-separated), e.g.
        /// `fable,mythos`; a model without a profile shows the unguarded
        /// baseline. Defaults to every model with a safeguard profile, or
        /// to the `cyber` profile when no store is read.
        #[arg(long, value_delimiter = ',')]
        against: Vec<String>,
        /// Replay the `*.json` finding files of this directory instead of
        /// the stored findings.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The all-MiniLM-L6-v2 directory for stage 2.
        #[arg(long)]
        embedding_model: Option<PathBuf>,
        /// A gateway config file whose `[safeguards]` section is used.
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SafeguardsVerb {
    /// Train stage 1 and the stage-2 head from the shared corpus, with the
    /// fixed seeds and the hash-based 80/20 per-source split, and write the
    /// model files (`stage1.bin`, `stage2_head.bin`, `manifest.json`,
    /// training report) to `--out`.
    Train {
        /// The shared `safeguards/` corpus folder (or the data folder
        /// holding it).
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// The all-MiniLM-L6-v2 directory for the stage-2 head.
        #[arg(long)]
        embedding_model: Option<PathBuf>,
        /// Train stage 1 only; the written head is marked untrained.
        #[arg(long)]
        no_stage2: bool,
        /// Skip the leave-one-source-out and leave-one-wrapper-family-out
        /// studies, which retrain the model once per held-out group.
        #[arg(long)]
        no_studies: bool,
    },
}

/// Loads the cascade and profiles as the gateway would, for offline use.
/// Without the embedding model, stage 1 runs alone with a warning.
fn load_safeguards(
    config_file: Option<&Path>,
    embedding_model: Option<&Path>,
) -> anyhow::Result<Safeguards> {
    let config = settings::load(config_file, std::env::vars())?;
    let mut safeguards_config = config.safeguards;
    if let Some(directory) = embedding_model {
        safeguards_config.embedding_model_dir = Some(directory.to_path_buf());
    }
    let safeguards =
        Safeguards::from_config(&safeguards_config).context("cannot set up the safeguards")?;
    if let Some(reason) = safeguards.stage2_missing_reason() {
        eprintln!(
            "warning: stage 2 is not loaded, so uncertain texts are decided by stage 1 alone: {reason}"
        );
    }
    Ok(safeguards)
}

fn profile<'a>(safeguards: &'a Safeguards, name: &str) -> anyhow::Result<&'a SafeguardProfile> {
    safeguards.profile(name).with_context(|| {
        format!(
            "unknown safeguard profile `{name}`; known: {}",
            safeguards.profile_names().join(", ")
        )
    })
}

/// `portcullis classify`: JSONL on stdin, one verdict line per input line.
pub fn classify(args: ClassifyArgs) -> anyhow::Result<ExitCode> {
    let source = args.source;
    let safeguards = load_safeguards(source.config.as_deref(), source.embedding_model.as_deref())?;
    let profile = profile(&safeguards, &source.profile)?;
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    portcullis_safeguards::jsonl::classify_jsonl(
        stdin.lock(),
        std::io::BufWriter::new(stdout.lock()),
        safeguards.safeguard(),
        profile,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `portcullis eval`: classifies every labelled row and reports.
pub fn eval(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let source = args.source;
    let safeguards = load_safeguards(source.config.as_deref(), source.embedding_model.as_deref())?;
    let profile = profile(&safeguards, &source.profile)?;
    let mut rows = Vec::new();
    for path in &args.dataset {
        rows.extend(load_dataset(path, LoadOptions::default())?);
    }
    let wanted = match args.split.as_str() {
        "dev" => Some(Split::Dev),
        "train" => Some(Split::Train),
        _ => None,
    };
    if let Some(wanted) = wanted {
        rows.retain(|row| row.split() == wanted);
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(rows.len() as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} classifying {pos}/{len} rows [{bar:40}] {per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    let report = portcullis_safeguards::eval::evaluate(
        &rows,
        safeguards.safeguard(),
        profile,
        &mut |done, _total| {
            // Redrawing on every row would cost more than classifying it.
            if done % 64 == 0 {
                bar.set_position(done as u64);
            }
        },
    );
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_table());
        println!("by category:");
        print!("{}", report.category_table());
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn findings(connection: &Connection, verb: FindingsVerb) -> anyhow::Result<ExitCode> {
    match verb {
        FindingsVerb::Add {
            prompts,
            file,
            reporter,
            severity,
            notes,
            model,
            id,
        } => {
            let mut document = match &file {
                Some(path) => match Body::from_file(path)? {
                    Body::Json(value) => value,
                },
                None => json!({}),
            };
            let Some(object) = document.as_object_mut() else {
                bail!("the finding document must be a JSON object");
            };
            if !prompts.is_empty() {
                object.insert("prompts".into(), json!(prompts));
            }
            for (field, value) in [
                ("reporter", reporter),
                ("severity", severity),
                ("notes", notes),
                ("model", model),
                ("id", id),
            ] {
                if let Some(value) = value {
                    object.insert(field.into(), json!(value));
                }
            }
            // Checked here too, so a mistake is reported before any request.
            let parsed: FindingDocument = serde_json::from_value(document.clone()).context(
                "the finding is incomplete: it needs `prompts`, `reporter` and `severity`",
            )?;
            if let Err(reason) = parsed.validate() {
                bail!("the finding is invalid: {reason}");
            }
            let client = AdminClient::connect(connection)?;
            client
                .print("post", "/admin/v1/findings", Some(Body::Json(document)))
                .await
        }
        FindingsVerb::List => {
            AdminClient::connect(connection)?
                .print("get", "/admin/v1/findings", None)
                .await
        }
        FindingsVerb::Show { id } => {
            AdminClient::connect(connection)?
                .print("get", &format!("/admin/v1/findings/{id}"), None)
                .await
        }
        FindingsVerb::Replay {
            against,
            dir,
            embedding_model,
            config,
            json,
        } => {
            replay(
                connection.data.as_deref(),
                dir.as_deref(),
                &against,
                config.as_deref(),
                embedding_model.as_deref(),
                json,
            )
            .await
        }
    }
}

/// One replay target: a model (with or without a profile) or a profile.
#[derive(Debug, Serialize)]
struct ReplayTarget {
    /// The model name, or `profile:NAME` when replayed against a profile.
    target: String,
    profile: Option<String>,
    /// False for a model without safeguards: every prompt reaches it.
    guarded: bool,
    /// Ids of findings that still get through, most severe first.
    still_bypassing: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    report: Option<ReplayReport>,
}

#[derive(Debug, Serialize)]
struct ReplaySummary {
    findings: usize,
    targets: Vec<ReplayTarget>,
    /// True when a finding still bypasses a guarded target.
    bypassed: bool,
}

/// Converts a stored finding into the record the replay reads.
fn finding_from_store(stored: portcullis_store::StoredFinding) -> anyhow::Result<Finding> {
    let prompts: Vec<FindingPrompt> = serde_json::from_value(stored.prompts)
        .with_context(|| format!("stored finding `{}` has unreadable prompts", stored.id))?;
    let severity: Severity = serde_json::from_value(json!(stored.severity))
        .with_context(|| format!("stored finding `{}` has an unknown severity", stored.id))?;
    Ok(Finding {
        id: stored.id,
        prompts,
        reporter: stored.reporter,
        severity,
        notes: stored.notes,
    })
}

async fn replay(
    data: Option<&Path>,
    dir: Option<&Path>,
    against: &[String],
    config_file: Option<&Path>,
    embedding_model: Option<&Path>,
    json_output: bool,
) -> anyhow::Result<ExitCode> {
    // The store is read for stored findings, and to look up named models.
    let needs_store = dir.is_none() || !against.is_empty() || data.is_some();
    let local = if needs_store {
        Some(crate::local_store::open(data, config_file).await?)
    } else {
        None
    };
    let findings = match dir {
        Some(dir) => load_findings_dir(dir)?,
        None => {
            let local = local.as_ref().context("no store to read findings from")?;
            local
                .store
                .list_findings()
                .await?
                .into_iter()
                .map(finding_from_store)
                .collect::<anyhow::Result<Vec<_>>>()?
        }
    };
    let models: BTreeMap<String, Option<String>> = match &local {
        Some(local) => local
            .store
            .load()
            .await?
            .models
            .into_iter()
            .map(|model| (model.name, model.safeguard_profile))
            .collect(),
        None => BTreeMap::new(),
    };
    if let Some(local) = &local {
        local.store.close().await;
    }
    let mut targets: Vec<(String, Option<String>)> = Vec::new();
    if against.is_empty() {
        targets.extend(
            models
                .iter()
                .filter_map(|(name, profile)| Some((name.clone(), Some(profile.clone()?)))),
        );
        if targets.is_empty() {
            targets.push((
                format!("profile:{CYBER_PROFILE}"),
                Some(CYBER_PROFILE.to_owned()),
            ));
        }
    } else {
        for name in against {
            if let Some(profile) = name.strip_prefix("profile:") {
                targets.push((name.clone(), Some(profile.to_owned())));
                continue;
            }
            let profile = models.get(name).with_context(|| {
                format!("model `{name}` does not exist in the store; use `profile:NAME` to replay against a profile")
            })?;
            targets.push((name.clone(), profile.clone()));
        }
    }
    let safeguards = load_safeguards(config_file, embedding_model)?;
    let mut summary = ReplaySummary {
        findings: findings.len(),
        targets: Vec::new(),
        bypassed: false,
    };
    for (target, profile_name) in targets {
        match profile_name {
            Some(profile_name) => {
                let profile = profile(&safeguards, &profile_name)?;
                let report = replay_findings(&findings, safeguards.safeguard(), profile);
                summary.bypassed |= !report.still_bypassing.is_empty();
                summary.targets.push(ReplayTarget {
                    target,
                    profile: Some(profile_name),
                    guarded: true,
                    still_bypassing: report.still_bypassing.clone(),
                    report: Some(report),
                });
            }
            None => summary.targets.push(ReplayTarget {
                target,
                profile: None,
                guarded: false,
                still_bypassing: findings.iter().map(|finding| finding.id.clone()).collect(),
                report: None,
            }),
        }
    }
    if json_output {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_replay(&summary, &findings)?;
    }
    Ok(if summary.bypassed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn print_replay(summary: &ReplaySummary, findings: &[Finding]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{} findings replayed", summary.findings)?;
    for target in &summary.targets {
        match &target.report {
            None => writeln!(
                out,
                "{}: no safeguard profile: all {} findings reach the model unguarded",
                target.target, summary.findings
            )?,
            Some(report) => {
                writeln!(
                    out,
                    "{} (profile `{}`): {} stopped, {} still bypassing",
                    target.target,
                    report.profile,
                    report.findings.len() - report.still_bypassing.len(),
                    report.still_bypassing.len()
                )?;
                for replay in &report.findings {
                    let reporter = findings
                        .iter()
                        .find(|finding| finding.id == replay.finding_id)
                        .map_or("", |finding| finding.reporter.as_str());
                    let scores: Vec<String> = replay
                        .prompts
                        .iter()
                        .map(|prompt| format!("{} {:.3}", prompt.verdict, prompt.score))
                        .collect();
                    writeln!(
                        out,
                        "  {:<8} {:<44} {:<9} {} [{}]",
                        if replay.stopped { "stopped" } else { "BYPASS" },
                        replay.finding_id,
                        format!("{:?}", replay.severity).to_lowercase(),
                        reporter,
                        scores.join(", ")
                    )?;
                }
            }
        }
    }
    Ok(())
}

/// `portcullis safeguards train`.
pub fn run_safeguards(verb: SafeguardsVerb) -> anyhow::Result<ExitCode> {
    match verb {
        SafeguardsVerb::Train {
            data_dir,
            out,
            embedding_model,
            no_stage2,
            no_studies,
        } => {
            let corpus_dir = if data_dir.join("safeguards").is_dir() {
                data_dir.join("safeguards")
            } else {
                data_dir
            };
            if !corpus_dir.join("xstest.jsonl").is_file() {
                bail!(
                    "`{}` is not the safeguards corpus folder (it has no `xstest.jsonl`)",
                    corpus_dir.display()
                );
            }
            let mut config = portcullis_safeguards::train::TrainConfig::new(corpus_dir);
            config.generalisation_studies = !no_studies;
            if !no_stage2 {
                let embedder = MiniLmEmbedder::locate_and_load(embedding_model.as_deref())
                    .context("the stage-2 head needs the embedding model; pass --no-stage2 to train stage 1 alone")?;
                config.embedder = Some(Arc::new(embedder));
            }
            let outcome = portcullis_safeguards::train::train(&config, &mut |line| {
                eprintln!("{line}");
            })?;
            portcullis_safeguards::train::write_model_dir(&outcome, &out)?;
            let report = &outcome.report;
            println!("== dev corpus\n{}", report.dev_corpus.to_table());
            println!("== dev generated\n{}", report.dev_generated.to_table());
            println!(
                "== dev wrapped (attack success = 100% - recall)\n{}",
                report.dev_wrapped.to_table()
            );
            for study in &report.leave_one_source_out {
                println!(
                    "leave-one-source-out {:<40} recall {:?} false refusals {:?}",
                    study.held_out,
                    study.report.recall.map(|p| p.rate),
                    study.report.false_refusal.map(|p| p.rate)
                );
            }
            for study in &report.leave_one_wrapper_family_out {
                println!(
                    "leave-one-wrapper-family-out {:<20} recall {:?} false refusals {:?}",
                    study.held_out,
                    study.report.recall.map(|p| p.rate),
                    study.report.false_refusal.map(|p| p.rate)
                );
            }
            println!("model written to `{}`", out.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}
