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
    child: Option<Child>,
    pub keys: serde_json::Value,
}

impl DemoServer {
    pub fn start(config: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new(BIN);
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
            .arg(dir.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(text) = config {
            let file = dir.path().join("config.toml");
            std::fs::write(&file, text).unwrap();
            command.arg("--config").arg(file);
        }
        let child = command.spawn().unwrap();
        let keys_file = dir.path().join("demo-keys.json");
        let started = Instant::now();
        let mut server = DemoServer {
            dir,
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
        self.dir.path()
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
