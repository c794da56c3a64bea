//! How `serve` sets up stage 2 on a machine with no model files and no
//! Python: the demo runs the fine-tuned classifier built into the binary
//! (no download, no install step), a configured directory that is not
//! usable stops the server, naming it, and stage 1 alone is an explicit
//! opt-in that the log announces.

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::BIN;

/// A machine without the model files: no environment hint, no `.venv` in
/// the working directory, and a `python3` on PATH that fails, so no lookup
/// of base weights can succeed and nothing can be installed.
fn bare_machine(root: &Path) -> Command {
    use std::os::unix::fs::PermissionsExt;
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let python = bin.join("python3");
    std::fs::write(&python, "#!/bin/sh\necho 'no python here' >&2\nexit 1\n").unwrap();
    std::fs::set_permissions(&python, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut command = Command::new(BIN);
    command
        .current_dir(root)
        .env_remove("PORTCULLIS_EMBEDDING_MODEL_DIR")
        .env_remove("PORTCULLIS_PYTHON")
        .env("PATH", &bin)
        .env(
            "PORTCULLIS_EMBEDDING_VENV",
            root.join("cache/embedding-venv"),
        )
        .env("RUST_LOG", "warn")
        .args([
            "serve",
            "--demo",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .arg("--data")
        .arg(root.join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// Runs the server until it exits or writes `demo-keys.json` (it started);
/// returns whether it started and what it logged.
fn run(mut command: Command, data: &Path) -> (bool, String) {
    let mut child = command.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let started = loop {
        if data.join("demo-keys.json").exists() {
            break true;
        }
        if child.try_wait().unwrap().is_some() {
            break false;
        }
        assert!(
            Instant::now() < deadline,
            "the server neither started nor exited"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    if started {
        let _ = child.kill();
    }
    let _ = child.wait();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (started, stderr)
}

#[test]
fn the_demo_runs_the_built_in_stage_2_and_a_broken_directory_stops_the_server() {
    struct Case {
        label: &'static str,
        args: &'static [&'static str],
        env: &'static [(&'static str, &'static str)],
        should_start: bool,
        expected: &'static [&'static str],
        unexpected: &'static [&'static str],
    }
    let cases = [
        Case {
            label: "nothing installed: the built-in stage 2 runs",
            args: &[],
            env: &[],
            should_start: true,
            expected: &[],
            unexpected: &["STAGE 1 ALONE", "pip", "install"],
        },
        Case {
            label: "a configured directory that is not usable stops the server",
            args: &["--embedding-model", "/nonexistent/minilm"],
            env: &[],
            should_start: false,
            expected: &["/nonexistent/minilm", "lacks", "allow_stage1_only = true"],
            unexpected: &[],
        },
        Case {
            label: "the environment's directory is authoritative too",
            args: &[],
            env: &[("PORTCULLIS_EMBEDDING_MODEL_DIR", "/nonexistent/from-env")],
            should_start: false,
            expected: &["/nonexistent/from-env"],
            unexpected: &[],
        },
        Case {
            label: "stage 1 alone, opted into, starts and says so",
            args: &["--embedding-model", "/nonexistent/minilm"],
            env: &[("PORTCULLIS__SAFEGUARDS__ALLOW_STAGE1_ONLY", "true")],
            should_start: true,
            expected: &["SAFEGUARDS RUN ON STAGE 1 ALONE"],
            unexpected: &[],
        },
    ];
    for Case {
        label,
        args,
        env,
        should_start,
        expected,
        unexpected,
    } in cases
    {
        let root = tempfile::tempdir().unwrap();
        let mut command = bare_machine(root.path());
        command.args(args).envs(env.iter().copied());
        let (started, stderr) = run(command, &root.path().join("data"));
        assert_eq!(started, should_start, "{label}: {stderr}");
        for needle in expected {
            assert!(
                stderr.contains(needle),
                "{label}: no {needle:?} in {stderr}"
            );
        }
        for needle in unexpected {
            assert!(!stderr.contains(needle), "{label}: {needle:?} in {stderr}");
        }
        if !should_start {
            assert!(!root.path().join("data/demo-keys.json").exists(), "{label}");
        }
    }
}
