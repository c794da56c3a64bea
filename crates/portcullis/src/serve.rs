//! `portcullis serve` and `portcullis mock`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use portcullis_domain::{Clock, SystemClock};
use portcullis_gateway::config::LogFormat;
use portcullis_gateway::server::{ServeOptions, serve};
use portcullis_gateway::{Config, Gateway};
use portcullis_store::{Admin, AdminRole, Store};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cli::{MockArgs, ServeArgs};
use crate::{demo, settings};

fn init_logging(config: &Config) {
    // sqlx logs every statement at `debug`, so the store's polling would
    // bury a debug log; its lines need `RUST_LOG=sqlx=debug`. Slow and
    // failing statements still come through at `warn`.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{},sqlx=warn", config.log.level))
    });
    // Colour only for a person at a terminal: a log file or a collector
    // must not receive ANSI escape codes. NO_COLOR (no-color.org) turns it
    // off at a terminal too.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match config.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

fn install_metrics() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    let buckets = [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
        .ok()?
        .install_recorder()
        .ok()?;
    portcullis_gateway::telemetry::describe_metrics();
    Some(handle)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

// The process: it owns every long-lived task and joins or aborts each at
// shutdown.
#[allow(clippy::disallowed_methods)]
pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = settings::load(args.config.as_deref(), std::env::vars())?;
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    if let Some(admin_listen) = args.admin_listen {
        config.server.admin_listen = admin_listen;
    }
    // The demo is run by one person, so the two-person rule is off there
    // unless the config switches it on explicitly.
    if args.demo && config.governance.two_person_rule.is_none() {
        config.governance.two_person_rule = Some(false);
    }
    if let Some(directory) = args.embedding_model {
        config.safeguards.embedding_model_dir = Some(directory);
    }
    if args.demo && config.location.default_country.is_none() {
        config.location.default_country = Some("US".into());
    }
    config.validate().context("invalid configuration")?;
    init_logging(&config);
    let data_dir = settings::data_dir(args.data.as_deref(), &config);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data directory `{}`", data_dir.display()))?;
    let store = match &config.store.url {
        Some(url) => Store::open(url).await,
        None => Store::open_data_dir(&data_dir).await,
    }
    .context("cannot open the store")?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let now = clock.now();

    // Offline tools (`policy eval --data DIR`) decide under the same profile
    // and policy settings as this server.
    store
        .set_meta(
            crate::policy_cmd::POLICY_CONFIG_META,
            &serde_json::to_string(&config.policy).context("cannot encode the policy settings")?,
        )
        .await
        .context("cannot record the policy settings")?;
    let demo_secrets = if args.demo {
        Some(
            demo::seed(&store, now, &portcullis_gateway::replica_id(&config))
                .await
                .context("cannot seed the demo")?,
        )
    } else {
        ensure_first_admin(&store, &data_dir, now).await?;
        None
    };
    for draft in &config.models {
        let model = draft.clone().validate().context("config model")?;
        store
            .upsert_model(&model, now)
            .await
            .context("cannot store config model")?;
    }

    if config.store.data_dir.is_none() {
        config.store.data_dir = Some(data_dir.clone());
    }
    let gateway = Gateway::new(config.clone(), store.clone(), clock, install_metrics()).await?;
    // Models not declared through the admin API get a transition record
    // naming where their state came from.
    let config_models: Vec<String> = config.models.iter().map(|m| m.name.clone()).collect();
    portcullis_gateway::governance::record_declared_models(&gateway, &config_models, "config")
        .await
        .map_err(|error| anyhow::anyhow!("cannot record config models: {}", error.message))?;
    if args.demo {
        let demo_models: Vec<String> = gateway
            .snapshot
            .load()
            .models_in_order()
            .map(|m| m.name.clone())
            .filter(|name| !config_models.contains(name))
            .collect();
        portcullis_gateway::governance::record_declared_models(&gateway, &demo_models, "demo")
            .await
            .map_err(|error| anyhow::anyhow!("cannot record demo models: {}", error.message))?;
    }
    let data_listener = TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let admin_listener = TcpListener::bind(config.server.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.admin_listen))?;
    let listen = data_listener.local_addr()?;
    let admin_listen = admin_listener.local_addr()?;
    if let Some(secrets) = &demo_secrets {
        demo::write_demo_keys(&data_dir, secrets, listen, admin_listen)?;
    }
    tracing::info!(%listen, %admin_listen, demo = args.demo, data_dir = %data_dir.display(), "portcullis is serving");

    let shutdown = CancellationToken::new();
    // The grace period bounds the whole shutdown: three quarters drain the
    // listeners and streams, the rest commits the audit log's last entries
    // and closes the store, so a failing store cannot hold the process.
    let shutdown_grace = config.server.shutdown_grace();
    let options = ServeOptions {
        header_read_timeout: config.server.header_read_timeout(),
        drain_deadline: shutdown_grace * 3 / 4,
    };
    let watcher = tokio::spawn(
        gateway
            .clone()
            .watch_store(config.replica.poll_interval(), shutdown.clone()),
    );
    let order_clock = tokio::spawn(
        gateway
            .clone()
            .run_order_clock(Duration::from_millis(100), shutdown.clone()),
    );
    let data_plane = tokio::spawn(serve(
        data_listener,
        portcullis_gateway::data_router(gateway.clone()),
        options.clone(),
        shutdown.clone(),
        gateway.stream_cut.clone(),
    ));
    let admin_plane = tokio::spawn(serve(
        admin_listener,
        portcullis_gateway::admin_router(gateway.clone()),
        options,
        shutdown.clone(),
        gateway.stream_cut.clone(),
    ));
    shutdown_signal().await;
    let shutdown_deadline = tokio::time::Instant::now() + shutdown_grace;
    tracing::info!("shutting down: draining streams");
    gateway.set_ready(false);
    shutdown.cancel();
    if tokio::time::timeout_at(shutdown_deadline, async {
        tokio::join!(data_plane, admin_plane, watcher, order_clock)
    })
    .await
    .is_err()
    {
        tracing::error!("the listeners and background tasks did not stop within the grace period");
    }
    if let Some(audit) = &gateway.audit {
        match tokio::time::timeout_at(shutdown_deadline, audit.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                let status = audit.status();
                tracing::error!(
                    %error,
                    uncommitted_entries = status.retained_entries,
                    "cannot flush the audit log at shutdown"
                );
            }
            Err(_) => {
                let status = audit.status();
                tracing::error!(
                    uncommitted_entries = status.retained_entries,
                    last_error = status.last_error.as_deref().unwrap_or("none"),
                    "the audit log could not be flushed within the grace period"
                );
            }
        }
    }
    if tokio::time::timeout_at(shutdown_deadline, store.close())
        .await
        .is_err()
    {
        tracing::error!("the store did not close within the grace period");
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Outside the demo, the first start creates an admin whose token is
/// written once to `DIR/admin-token` (mode 0600).
async fn ensure_first_admin(
    store: &Store,
    data_dir: &std::path::Path,
    now: jiff::Timestamp,
) -> anyhow::Result<()> {
    let contents = store.load().await?;
    if !contents.admins.is_empty() {
        return Ok(());
    }
    let token = demo::new_admin_token()?;
    store
        .insert_admin(&Admin {
            id: "root".into(),
            display_name: "First administrator".into(),
            role: AdminRole::Admin,
            token_sha256: portcullis_domain::hash_api_key(&token),
            created_at: now,
            disabled_at: None,
        })
        .await?;
    let path = data_dir.join("admin-token");
    std::fs::write(&path, format!("{token}\n"))
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    demo::restrict_permissions(&path);
    tracing::warn!(path = %path.display(), "created the first admin `root`; its token is in this file");
    Ok(())
}

// Owns the mock server task and ends it at shutdown.
#[allow(clippy::disallowed_methods)]
pub async fn run_mock(args: MockArgs) -> anyhow::Result<ExitCode> {
    let config = Config::default();
    init_logging(&config);
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let router = portcullis_gateway::mock::router(portcullis_gateway::mock::MockServer {
        default_token_interval: Duration::from_millis(args.token_interval_ms),
    });
    tracing::info!(listen = %listener.local_addr()?, "mock upstream is serving");
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve(
        listener,
        router,
        ServeOptions {
            header_read_timeout: Duration::from_secs(10),
            drain_deadline: Duration::from_secs(1),
        },
        shutdown.clone(),
        CancellationToken::new(),
    ));
    shutdown_signal().await;
    shutdown.cancel();
    let _ = server.await;
    Ok(ExitCode::SUCCESS)
}
