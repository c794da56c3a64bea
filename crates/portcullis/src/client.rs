//! A thin client of the admin API, used by every CLI noun.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::cli::Connection;

/// The parts of `demo-keys.json` the CLI needs.
#[derive(Debug, Deserialize)]
struct DemoKeys {
    admin_token: String,
    admin_listen: String,
}

pub enum Body {
    Json(serde_json::Value),
}

impl Body {
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = if path == Path::new("-") {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read standard input")?;
            text
        } else {
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read `{}`", path.display()))?
        };
        let value = serde_json::from_str(&text)
            .with_context(|| format!("`{}` is not valid JSON", path.display()))?;
        Ok(Body::Json(value))
    }

    pub fn from_arg(arg: &str) -> anyhow::Result<Self> {
        match arg.strip_prefix('@') {
            Some(file) => Self::from_file(&PathBuf::from(file)),
            None => Ok(Body::Json(
                serde_json::from_str(arg).context("--body is not valid JSON")?,
            )),
        }
    }
}

pub struct AdminClient {
    server: String,
    token: String,
    http: reqwest::Client,
}

impl AdminClient {
    pub fn connect(connection: &Connection) -> anyhow::Result<Self> {
        let (server, token) = match (&connection.server, &connection.token) {
            (Some(server), Some(token)) => (server.clone(), token.clone()),
            (server, token) => {
                let dir = connection
                    .data
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("portcullis-data"));
                let file = dir.join("demo-keys.json");
                let text = std::fs::read_to_string(&file).with_context(|| {
                    format!(
                        "no --server/--token given and cannot read `{}`",
                        file.display()
                    )
                })?;
                let demo: DemoKeys = serde_json::from_str(&text)
                    .with_context(|| format!("`{}` is malformed", file.display()))?;
                (
                    server
                        .clone()
                        .unwrap_or_else(|| format!("http://{}", demo.admin_listen)),
                    token.clone().unwrap_or(demo.admin_token),
                )
            }
        };
        let http = reqwest::Client::builder()
            .build()
            .context("cannot build HTTP client")?;
        Ok(Self {
            server: server.trim_end_matches('/').to_owned(),
            token,
            http,
        })
    }

    /// Sends a request and returns the status and parsed JSON body.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Body>,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let method = match method.to_ascii_lowercase().as_str() {
            "get" => reqwest::Method::GET,
            "post" => reqwest::Method::POST,
            "put" => reqwest::Method::PUT,
            "patch" => reqwest::Method::PATCH,
            "delete" => reqwest::Method::DELETE,
            other => bail!("unknown method `{other}`"),
        };
        let url = format!("{}{}", self.server, path);
        let mut request = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(Body::Json(value)) = body {
            request = request.json(&value);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the admin API at `{}`", self.server))?;
        let status = response.status().as_u16();
        let text = response.text().await.context("cannot read the answer")?;
        let value = if text.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
        };
        Ok((status, value))
    }

    /// Sends a request, prints the JSON answer on stdout (errors on stderr),
    /// and maps the status to an exit code.
    pub async fn print(
        &self,
        method: &str,
        path: &str,
        body: Option<Body>,
    ) -> anyhow::Result<ExitCode> {
        let (status, value) = self.send(method, path, body).await?;
        let text = serde_json::to_string_pretty(&value).unwrap_or_default();
        if (200..300).contains(&status) {
            if !value.is_null() {
                println!("{text}");
            }
            Ok(ExitCode::SUCCESS)
        } else {
            eprintln!("error: the admin API answered {status}");
            eprintln!("{text}");
            Ok(ExitCode::FAILURE)
        }
    }
}
