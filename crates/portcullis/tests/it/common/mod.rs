//! A demo server started from the built binary on ephemeral ports, and a
//! runner for the binary's offline commands.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// A `portcullis serve --demo` process; stopped (SIGTERM, so it flushes the
/// audit log) when dropped or by [`DemoServer::stop`].
pub struct DemoServer {
    pub dir: tempfile::TempDir,
    data_dir: PathBuf,
    child: Option<Child>,
    pub keys: serde_json::Value,
}

impl DemoServer {
    pub fn start(config: Option<&str>) -> Self {
        Self::start_with(config, None, &[])
    }

    /// Starts the demo on `data_dir` (a fresh temporary directory when
    /// `None`) with extra environment variables.
    pub fn start_with(config: Option<&str>, data_dir: Option<&Path>, env: &[(&str, &str)]) -> Self {
        Self::start_logging(config, data_dir, env, Stdio::inherit())
    }

    /// [`Self::start_with`], with the server's log (stderr) sent to
    /// `stderr`; `RUST_LOG` in `env` overrides the default `warn`.
    pub fn start_logging(
        config: Option<&str>,
        data_dir: Option<&Path>,
        env: &[(&str, &str)],
        stderr: Stdio,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = data_dir.map_or_else(|| dir.path().to_owned(), Path::to_owned);
        let mut command = Command::new(BIN);
        command.env("RUST_LOG", "warn");
        command.envs(env.iter().copied());
        // An empty `RUST_LOG` in `env` means none: the config's level decides.
        if env
            .iter()
            .any(|(name, value)| *name == "RUST_LOG" && value.is_empty())
        {
            command.env_remove("RUST_LOG");
        }
        command
            .args([
                "serve",
                "--demo",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .arg("--data")
            .arg(&data_dir)
            .stdout(Stdio::null())
            .stderr(stderr);
        if let Some(text) = config {
            let file = dir.path().join("config.toml");
            std::fs::write(&file, text).unwrap();
            command.arg("--config").arg(file);
        }
        let child = command.spawn().unwrap();
        let keys_file = data_dir.join("demo-keys.json");
        let started = Instant::now();
        let mut server = DemoServer {
            dir,
            data_dir,
            child: Some(child),
            keys: serde_json::Value::Null,
        };
        while !keys_file.exists() {
            if let Some(status) = server.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("the demo server exited early: {status}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the demo server did not write demo-keys.json"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server.keys = serde_json::from_str(&std::fs::read_to_string(&keys_file).unwrap()).unwrap();
        server
    }

    pub fn data(&self) -> &Path {
        &self.data_dir
    }

    /// The server's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends SIGTERM and returns how long the process took to exit, or
    /// `None` if it was still running after `limit` (it is then killed).
    pub fn terminate_within(&mut self, limit: Duration) -> Option<Duration> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let started = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(started.elapsed())
    }

    pub fn admin_url(&self) -> String {
        format!("http://{}", self.keys["admin_listen"].as_str().unwrap())
    }

    pub fn listen_url(&self) -> String {
        format!("http://{}", self.keys["listen"].as_str().unwrap())
    }

    /// Stops the server with SIGTERM and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let started = Instant::now();
            while child.try_wait().unwrap().is_none() {
                if started.elapsed() > Duration::from_secs(30) {
                    let _ = child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for DemoServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs the binary with these arguments and returns its output.
pub fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

pub fn run_with_data(args: &[&str], data: &Path) -> Output {
    let mut all: Vec<&str> = args.to_vec();
    let data = data.to_str().unwrap();
    all.extend(["--data", data]);
    run(&all)
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The request ids of every `request_decision` entry in DIR's audit log,
/// read through `portcullis audit search`.
pub fn stored_decision_request_ids(data: &Path) -> std::collections::HashSet<String> {
    let output = run_with_data(&["audit", "search"], data);
    assert!(output.status.success(), "{}", stderr(&output));
    stdout(&output)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|entry| {
            let entry = entry.get("entry").unwrap_or(&entry).clone();
            (entry["kind"] == "request_decision")
                .then(|| entry["request_id"].as_str().map(str::to_owned))
                .flatten()
        })
        .collect()
}
