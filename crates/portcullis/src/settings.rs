//! Reading the configuration: a TOML file, then `PORTCULLIS__SECTION__KEY`
//! environment overrides, then command-line flags, validated once.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use portcullis_gateway::Config;

/// Prefix of environment overrides: `PORTCULLIS__SERVER__LISTEN=0.0.0.0:8080`
/// sets `server.listen`.
pub const ENV_PREFIX: &str = "PORTCULLIS__";

pub fn load(
    file: Option<&Path>,
    env: impl Iterator<Item = (String, String)>,
) -> anyhow::Result<Config> {
    let mut document: toml::Table = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file `{}`", path.display()))?;
            text.parse()
                .with_context(|| format!("config file `{}` is not valid TOML", path.display()))?
        }
        None => toml::Table::new(),
    };
    for (name, value) in env {
        let Some(path) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let keys: Vec<String> = path.split("__").map(|k| k.to_ascii_lowercase()).collect();
        set_path(&mut document, &keys, parse_scalar(&value))
            .with_context(|| format!("environment override `{name}`"))?;
    }
    let config: Config = toml::Value::Table(document)
        .try_into()
        .context("invalid configuration")?;
    Ok(config)
}

/// A TOML scalar if the text parses as one (number, bool, array), else a string.
fn parse_scalar(text: &str) -> toml::Value {
    format!("v = {text}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut table| table.remove("v"))
        .unwrap_or_else(|| toml::Value::String(text.to_owned()))
}

fn set_path(table: &mut toml::Table, keys: &[String], value: toml::Value) -> anyhow::Result<()> {
    match keys {
        [] => bail!("empty key"),
        [last] => {
            table.insert(last.clone(), value);
            Ok(())
        }
        [first, rest @ ..] => {
            let entry = table
                .entry(first.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(inner) => set_path(inner, rest, value),
                _ => bail!("`{first}` is not a section"),
            }
        }
    }
}

/// The data directory: flag, then config, then `./portcullis-data`.
pub fn data_dir(flag: Option<&Path>, config: &Config) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| config.store.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from("portcullis-data"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_win_and_are_typed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[server]\nlisten = \"127.0.0.1:1\"\nmax_body_bytes = 2048\n",
        )
        .unwrap();
        let env = vec![
            (
                "PORTCULLIS__SERVER__LISTEN".to_owned(),
                "127.0.0.1:9999".to_owned(),
            ),
            (
                "PORTCULLIS__MOCK__TOKEN_INTERVAL_MS".to_owned(),
                "0".to_owned(),
            ),
            ("UNRELATED".to_owned(), "x".to_owned()),
        ];
        let config = load(Some(&file), env.into_iter()).unwrap();
        assert_eq!(config.server.listen.port(), 9999);
        assert_eq!(config.server.max_body_bytes, 2048);
        assert_eq!(config.mock.token_interval_ms, 0);
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[server]\nlisten = 5\n").unwrap();
        let error = format!("{:#}", load(Some(&file), std::iter::empty()).unwrap_err());
        assert!(error.contains("listen"), "{error}");
        std::fs::write(&file, "[[models]]\nname = \"x\"\n").unwrap();
        let error = format!("{:#}", load(Some(&file), std::iter::empty()).unwrap_err());
        assert!(error.contains("provider"), "{error}");
    }
}
