//! Opening the store of a data directory (or the configured database) for
//! the offline compliance commands, which read it directly rather than
//! through the admin API and may run while a server is using it.

use std::path::Path;

use anyhow::{Context, bail};
use portcullis_gateway::Config;
use portcullis_store::Store;

use crate::settings;

/// A store opened for a command, with the configuration it was found by.
pub struct LocalStore {
    pub config: Config,
    /// Whether `--config FILE` was given, so stored settings must yield.
    pub config_given: bool,
    pub store: Store,
}

/// Opens the store named by `--config` (`store.url`) or else the data
/// directory (`--data`, then config, then `./portcullis-data`). A data
/// directory without a store is an error rather than a new empty store, so
/// a mistyped path cannot make every check pass against nothing.
pub async fn open(data: Option<&Path>, config_file: Option<&Path>) -> anyhow::Result<LocalStore> {
    let config = settings::load(config_file, std::env::vars())?;
    let data_dir = settings::data_dir(data, &config);
    let store = match &config.store.url {
        Some(url) => Store::open(url).await,
        None => {
            let database = data_dir.join("portcullis.db");
            if !database.is_file() {
                bail!(
                    "no store at `{}`: pass --data DIR of a data directory a server has used",
                    database.display()
                );
            }
            Store::open_data_dir(&data_dir).await
        }
    }
    .context("cannot open the store")?;
    Ok(LocalStore {
        config,
        config_given: config_file.is_some(),
        store,
    })
}
