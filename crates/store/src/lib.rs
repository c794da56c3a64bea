//! The control-plane store: models, principals, API keys, admins and policy
//! sources, persisted through sqlx on SQLite (the embedded default, one file
//! `DIR/portcullis.db` in WAL mode) or PostgreSQL, with one set of portable
//! SQL for both.
//!
//! Every write runs in a transaction that bumps the store version, and the new
//! version is published on a `watch` channel after commit so the gateway can
//! rebuild its snapshot. On PostgreSQL the same transaction also sends
//! `NOTIFY` with the version, so replicas in other processes hear of it
//! through a [`StoreListener`]. This crate is the only one (apart from the audit
//! log, which owns its `audit_*` tables) that contains SQL. The request path
//! never calls it: it reads the snapshot built from [`StoreContents`].

mod findings;
mod governance;
mod listen;
mod orders;
mod rows;
mod screening;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use jiff::Timestamp;
use portcullis_domain::{ApiKey, Model, ModelDraft, Principal, PrincipalAttributes, StoreVersion};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Connection, Executor, Row};
use tokio::sync::watch;

pub use findings::{FindingStatus, NewFinding, StoredFinding};
pub use governance::{
    Approval, ApprovalStatus, AuditRef, ConcludedReview, EvidenceArtifact, FindingEvent,
    ModelTransition, Review, ReviewConclusion, ReviewCondition,
};
pub use listen::{NOTIFY_CHANNEL, StoreEvent, StoreListener};
pub use orders::{NewOrder, OrderApplication, OrderLift, ReplicaStatus, StoredOrder};
pub use rows::{Admin, AdminRole, PolicySource};
pub use screening::{ScreeningListFile, StoredScreeningList};

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store url `{0}` is not a sqlite: or postgres: url")]
    UnsupportedUrl(String),
    #[error("cannot create data directory `{path}`: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("stored {what} `{id}` is corrupt: {detail}")]
    Corrupt {
        what: &'static str,
        id: String,
        detail: String,
    },
    #[error("{what} `{id}` already exists")]
    AlreadyExists { what: &'static str, id: String },
    #[error("{what} `{id}` not found")]
    NotFound { what: &'static str, id: String },
    #[error("{what} `{id}` changed meanwhile: {detail}")]
    Conflict {
        what: &'static str,
        id: String,
        detail: String,
    },
    #[error("cannot encode {what}: {detail}")]
    Encode { what: &'static str, detail: String },
    #[error("change notifications need a postgres: store; poll the version instead")]
    NotificationsUnsupported,
}

impl StoreError {
    /// Whether the error means the store cannot take the operation now (as
    /// opposed to a request that is wrong), so callers answer 503 with
    /// `Retry-After` rather than 400 or 500.
    ///
    /// Every database failure that is not a constraint the request broke
    /// counts: a full disk (`SQLITE_FULL`), a read-only or unwritable file,
    /// an I/O error, a lock held too long, a lost connection or an exhausted
    /// pool all pass once the storage recovers.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Database(error) => database_error_is_unavailable(error),
            _ => false,
        }
    }
}

/// Whether a database error is a storage fault rather than a rejected write.
pub fn database_error_is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(database) => !matches!(
            database.kind(),
            sqlx::error::ErrorKind::UniqueViolation
                | sqlx::error::ErrorKind::ForeignKeyViolation
                | sqlx::error::ErrorKind::NotNullViolation
                | sqlx::error::ErrorKind::CheckViolation
        ),
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed
        | sqlx::Error::InvalidSavePointStatement => true,
        _ => false,
    }
}

/// Everything the request path needs, read in one consistent transaction.
#[derive(Debug, Clone)]
pub struct StoreContents {
    pub version: StoreVersion,
    pub models: Vec<Model>,
    pub principals: Vec<Principal>,
    pub keys: Vec<ApiKey>,
    pub admins: Vec<Admin>,
    pub policies: Vec<PolicySource>,
    pub meta: Vec<(String, String)>,
    /// Every order, lifted ones included; the engine is given those not lifted.
    pub orders: Vec<StoredOrder>,
}

/// A handle on the store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    url: String,
    version_sender: watch::Sender<StoreVersion>,
}

pub(crate) fn millis(ts: Timestamp) -> i64 {
    ts.as_millisecond()
}

pub(crate) fn from_millis(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

impl Store {
    /// Opens (creating if needed) the embedded store `DIR/portcullis.db`.
    pub async fn open_data_dir(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
            path: dir.display().to_string(),
            source,
        })?;
        let file = dir.join("portcullis.db");
        Self::open(&format!("sqlite://{}?mode=rwc", file.display())).await
    }

    /// Opens a store by URL (`sqlite://FILE?mode=rwc` or `postgres://…`) and
    /// applies pending migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        };
        let options = AnyConnectOptions::from_str(url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 4,
                Backend::Postgres => 8,
            })
            .acquire_timeout(Duration::from_secs(5))
            // INVARIANT: a pooled connection is never handed out inside a
            // transaction. A COMMIT that fails (a full disk, an unwritable
            // file) leaves sqlx's transaction depth above zero; reused, such
            // a connection turns every later `begin` into a SAVEPOINT of a
            // transaction that never commits, so writes would look committed
            // while nothing reached the file. Such connections are closed on
            // release and, should one slip through, refused on acquire.
            .after_release(|conn, _meta| {
                let reusable = !conn.is_in_transaction();
                Box::pin(async move { Ok(reusable) })
            })
            .before_acquire(|conn, _meta| {
                let reusable = !conn.is_in_transaction();
                Box::pin(async move { Ok(reusable) })
            })
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers (CLI commands on the same data dir)
                        // run beside the server; NORMAL sync is durable across
                        // process crashes, and the busy timeout rides out the
                        // short write locks of the group-commit writer.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        let version = current_version(&pool).await?;
        let (version_sender, _) = watch::channel(version);
        Ok(Self {
            pool,
            backend,
            url: url.to_owned(),
            version_sender,
        })
    }

    /// Begins a write transaction. On SQLite it takes the write lock at
    /// once (`BEGIN IMMEDIATE`), so a transaction that reads before it
    /// writes waits for the lock (busy timeout) instead of failing with
    /// "database is locked" when it tries to upgrade while another writer,
    /// such as the audit log's group commit, holds it.
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The connection URL, for opening side connections (e.g. LISTEN).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The pool, for crates that own their own tables (the audit log).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Receives the new version after every committed write made through this
    /// handle (or its clones).
    pub fn subscribe(&self) -> watch::Receiver<StoreVersion> {
        self.version_sender.subscribe()
    }

    pub async fn version(&self) -> Result<StoreVersion, StoreError> {
        current_version(&self.pool).await
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) fn published(&self, version: StoreVersion) -> StoreVersion {
        self.version_sender.send_replace(version);
        version
    }

    /// Reads everything the request path needs in one transaction, so the
    /// snapshot is consistent with the version it records.
    pub async fn load(&self) -> Result<StoreContents, StoreError> {
        let mut tx = self.pool.begin().await?;
        let version: i64 = sqlx::query("SELECT version FROM store_version WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        let models = sqlx::query("SELECT name, definition FROM models ORDER BY name")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(rows::model_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let principals = sqlx::query(
            "SELECT id, display_name, attributes, created_at FROM principals ORDER BY id",
        )
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(rows::principal_from_row)
        .collect::<Result<Vec<_>, _>>()?;
        let keys = sqlx::query(rows::KEY_COLUMNS_QUERY)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(rows::key_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let admins = sqlx::query(rows::ADMIN_COLUMNS_QUERY)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(rows::admin_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let policies = sqlx::query("SELECT id, source, updated_at FROM policies ORDER BY id")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(rows::policy_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let meta = sqlx::query("SELECT meta_key, meta_value FROM meta ORDER BY meta_key")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let orders = orders::load_orders(&mut tx).await?;
        tx.commit().await?;
        Ok(StoreContents {
            version,
            models,
            principals,
            keys,
            admins,
            policies,
            meta,
            orders,
        })
    }

    // ---- models -------------------------------------------------------

    /// Inserts a model, failing if the name is taken.
    pub async fn insert_model(
        &self,
        model: &Model,
        now: Timestamp,
    ) -> Result<StoreVersion, StoreError> {
        let definition = encode("model", &ModelDraft::from(model))?;
        let mut tx = self.begin_write().await?;
        let result = sqlx::query(
            "INSERT INTO models (name, definition, created_at, updated_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&model.name)
        .bind(definition)
        .bind(millis(now))
        .bind(millis(now))
        .execute(&mut *tx)
        .await;
        if let Err(error) = result {
            return Err(conflict_or(error, "model", &model.name));
        }
        let version = bump_version(&mut tx).await?;
        tx.commit().await?;
        Ok(self.published(version))
    }

    /// Inserts or replaces a model by name.
    pub async fn upsert_model(
        &self,
        model: &Model,
        now: Timestamp,
    ) -> Result<StoreVersion, StoreError> {
        let definition = encode("model", &ModelDraft::from(model))?;
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO models (name, definition, created_at, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET definition = excluded.definition, updated_at = excluded.updated_at",
        )
        .bind(&model.name)
        .bind(definition)
        .bind(millis(now))
        .bind(millis(now))
        .execute(&mut *tx)
        .await?;
        let version = bump_version(&mut tx).await?;
        tx.commit().await?;
        Ok(self.published(version))
    }

    /// Replaces an existing model; `NotFound` if it does not exist.
    pub async fn update_model(
        &self,
        model: &Model,
        now: Timestamp,
    ) -> Result<StoreVersion, StoreError> {
        let mut tx = self.begin_write().await?;
        replace_model_definition(&mut tx, model, now).await?;
        let version = bump_version(&mut tx).await?;
        tx.commit().await?;
        Ok(self.published(version))
    }

    pub async fn delete_model(&self, name: &str) -> Result<StoreVersion, StoreError> {
        self.delete_by("DELETE FROM models WHERE name = $1", "model", name)
            .await
    }

    pub async fn get_model(&self, name: &str) -> Result<Option<Model>, StoreError> {
        sqlx::query("SELECT name, definition FROM models WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(rows::model_from_row)
            .transpose()
    }

    // ---- principals ---------------------------------------------------

    pub async fn insert_principal(
        &self,
        display_name: &str,
        attributes: &PrincipalAttributes,
        now: Timestamp,
    ) -> Result<StoreVersion, StoreError> {
        let document = encode("principal", attributes)?;
        let mut tx = self.begin_write().await?;
        let result = sqlx::query(
            "INSERT INTO principals (id, display_name, attributes, created_at, updated_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&attributes.id)
        .bind(display_name)
        .bind(document)
        .bind(millis(now))
        .bind(millis(now))
        .execute(&mut *tx)
        .await;
        if let Err(error) = result {
            return Err(conflict_or(error, "principal", &attributes.id));
        }
        let version = bump_version(&mut tx).await?;
        tx.commit().await?;
        Ok(self.published(version))
    }

    pub async fn upsert_principal(
        &self,
        display_name: &str,
        attributes: &PrincipalAttributes,
        now: Timestamp,
    ) -> Result<StoreVersion, StoreError> {
        let document = encode("principal", attributes)?;
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO principals (id, display_name, attributes, created_at, updated_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (id) DO UPDATE SET display_name = excluded.display_name, attributes = excluded.attributes, updated_at = excluded.updated_at",
        )
        .bind(&attributes.id)
        .bind(display_name)
        .bind(document)
        .bind(millis(now))
        .bind(millis(now))
        .execute(&mut *tx)
        .await?;
        let version = bump_version(&mut tx).await?;
        tx.commit().await?;
        Ok(self.published(version))
    }

    pub async fn update_principal(
        &self,
        display_name: &str,
        attributes: &PrincipalAttributes,
        now: Timestamp,
    ) -> Result<StoreVersion, StoreError> {
        let document = encode("principal", attributes)?;
        let mut tx = self.begin_write().await?;
        let changed = sqlx::query(
            "UPDATE principals SET display_name = $1, attributes = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(display_name)
        .bind(document)
        .bind(millis(now))
        .bind(&attributes.id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Err(StoreError::NotFound {
                what: "principal",
                id: attributes.id.clone(),
            });
        }
        let version = bump_version(&mut tx).await?;
        tx.commit().await?;
        Ok(self.published(version))
    }

    /// Deletes a principal and, by cascade, its keys.
    pub async fn delete_principal(&self, id: &str) -> Result<StoreVersion, StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM api_keys WHERE principal_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let changed = sqlx::query("DELETE FROM principals WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if changed == 0 {
            return Err(StoreError::NotFound {
                what: "principal",
                id: id.to_owned(),
            });
        }
        let version = bump_version(&mut tx).await?;
        tx.commit().await?;
        Ok(self.published(version))
    }

    pub async fn get_principal(&self, id: &str) -> Result<Option<Principal>, StoreError> {
        sqlx::query("SELECT id, display_name, attributes, created_at FROM principals WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(rows::principal_from_row)
            .transpose()
    }

    // ---- keys ---------------------------------------------------------

    pub async fn insert_key(&self, key: &ApiKey) -> Result<StoreVersion, StoreError> {
        let mut tx = self.begin_write().await?;
        let exists = sqlx::query("SELECT 1 FROM principals WHERE id = $1")
            .bind(&key.principal_id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound {
                what: "principal",
                id: key.principal_id.clone(),
            });
        }
        let result = sqlx::query(
            "INSERT INTO api_keys (id, principal_id, name, display_prefix, secret_sha256, created_at, expires_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&key.id)
        .bind(&key.principal_id)
        .bind(&key.name)
        .bind(&key.display_prefix)
        .bind(&key.secret_sha256)
        .bind(millis(key.created_at))
        .bind(key.expires_at.map(millis))
        .bind(key.revoked_at.map(millis))
        .execute(&mut *tx)
        .await;
        if let Err(error) = result {
            return Err(conflict_or(error, "key", &key.id));
        }
        let version = bump_version(&mut tx).await?;
        tx.commit().await?;
        Ok(self.published(version))
    }

    /// Marks a key revoked. Revoking twice keeps the first revocation time.
    pub async fn revoke_key(&self, id: &str, now: Timestamp) -> Result<StoreVersion, StoreError> {
        let mut tx = self.begin_write().await?;
        let changed =
            sqlx::query("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2")
                .bind(millis(now))
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if changed == 0 {
            return Err(StoreError::NotFound {
                what: "key",
                id: id.to_owned(),
            });
        }
        let version = bump_version(&mut tx).await?;
        tx.commit().await?;
        Ok(self.published(version))
    }

    pub async fn delete_key(&self, id: &str) -> Result<StoreVersion, StoreError> {
        self.delete_by("DELETE FROM api_keys WHERE id = $1", "key", id)
            .await
    }

    pub async fn get_key(&self, id: &str) -> Result<Option<ApiKey>, StoreError> {
        sqlx::query(&format!("{} WHERE id = $1", rows::KEY_COLUMNS_SELECT))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(rows::key_from_row)
            .transpose()
    }

    /// Revokes every key with this name for this principal (used by the demo
    /// to rotate its keys on each start).
    pub async fn revoke_keys_named(
        &self,
        principal_id: &str,
        name: &str,
        now: Timestamp,
    ) -> Result<StoreVersion, StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE api_keys SET revoked_at = $1 WHERE principal_id = $2 AND name = $3 AND revoked_at IS NULL",
        )
        .bind(millis(now))
        .bind(principal_id)
        .bind(name)
        .execute(&mut *tx)
        .await?;
        let version = bump_version(&mut tx).await?;
        tx.commit().await?;
        Ok(self.published(version))
    }

    // ---- admins -------------------------------------------------------

    pub async fn insert_admin(&self, admin: &Admin) -> Result<StoreVersion, StoreError> {
        let mut tx = self.begin_write().await?;
        let result = sqlx::query(
            "INSERT INTO admins (id, display_name, role, token_sha256, created_at, disabled_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&admin.id)
        .bind(&admin.display_name)
        .bind(admin.role.as_str())
        .bind(&admin.token_sha256)
        .bind(millis(admin.created_at))
        .bind(admin.disabled_at.map(millis))
        .execute(&mut *tx)
        .await;
        if let Err(error) = result {
            return Err(conflict_or(error, "admin", &admin.id));
        }
        let version = bump_version(&mut tx).await?;
        tx.commit().await?;
        Ok(self.published(version))
    }

    /// Replaces an admin's token hash (the demo rotates its token each start).
    pub async fn set_admin_token(
        &self,
        id: &str,
        token_sha256: &str,
    ) -> Result<StoreVersion, StoreError> {
        let mut tx = self.begin_write().await?;
        let changed = sqlx::query("UPDATE admins SET token_sha256 = $1 WHERE id = $2")
            .bind(token_sha256)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if changed == 0 {
            return Err(StoreError::NotFound {
                what: "admin",
                id: id.to_owned(),
            });
        }
        let version = bump_version(&mut tx).await?;
        tx.commit().await?;
        Ok(self.published(version))
    }

    // ---- policies -----------------------------------------------------

    pub async fn upsert_policy(
        &self,
        id: &str,
        source: &str,
        now: Timestamp,
    ) -> Result<StoreVersion, StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO policies (id, source, created_at, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO UPDATE SET source = excluded.source, updated_at = excluded.updated_at",
        )
        .bind(id)
        .bind(source)
        .bind(millis(now))
        .bind(millis(now))
        .execute(&mut *tx)
        .await?;
        let version = bump_version(&mut tx).await?;
        tx.commit().await?;
        Ok(self.published(version))
    }

    pub async fn delete_policy(&self, id: &str) -> Result<StoreVersion, StoreError> {
        self.delete_by("DELETE FROM policies WHERE id = $1", "policy", id)
            .await
    }

    // ---- meta ---------------------------------------------------------

    pub async fn set_meta(&self, key: &str, value: &str) -> Result<StoreVersion, StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO meta (meta_key, meta_value) VALUES ($1, $2) \
             ON CONFLICT (meta_key) DO UPDATE SET meta_value = excluded.meta_value",
        )
        .bind(key)
        .bind(value)
        .execute(&mut *tx)
        .await?;
        let version = bump_version(&mut tx).await?;
        tx.commit().await?;
        Ok(self.published(version))
    }

    pub async fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query("SELECT meta_value FROM meta WHERE meta_key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?
                .map(|row| row.try_get(0))
                .transpose()?,
        )
    }

    async fn delete_by(
        &self,
        sql: &str,
        what: &'static str,
        id: &str,
    ) -> Result<StoreVersion, StoreError> {
        let mut tx = self.begin_write().await?;
        let changed = sqlx::query(sql)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if changed == 0 {
            return Err(StoreError::NotFound {
                what,
                id: id.to_owned(),
            });
        }
        let version = bump_version(&mut tx).await?;
        tx.commit().await?;
        Ok(self.published(version))
    }
}

async fn current_version(pool: &AnyPool) -> Result<StoreVersion, StoreError> {
    Ok(
        sqlx::query("SELECT version FROM store_version WHERE id = 1")
            .fetch_one(pool)
            .await?
            .try_get(0)?,
    )
}

/// Bumps the store version inside a write transaction and returns the new
/// version. On PostgreSQL it also queues a notification carrying only that
/// version on [`NOTIFY_CHANNEL`]: PostgreSQL delivers it when, and only if,
/// the transaction commits, so a listener never hears of a rolled-back write.
/// Replaces an existing model's definition inside `tx`; `NotFound` if it
/// does not exist. The caller bumps the version.
pub(crate) async fn replace_model_definition(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    model: &Model,
    at: Timestamp,
) -> Result<(), StoreError> {
    let definition = encode("model", &ModelDraft::from(model))?;
    let changed = sqlx::query("UPDATE models SET definition = $1, updated_at = $2 WHERE name = $3")
        .bind(definition)
        .bind(millis(at))
        .bind(&model.name)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    if changed == 0 {
        return Err(StoreError::NotFound {
            what: "model",
            id: model.name.clone(),
        });
    }
    Ok(())
}

pub(crate) async fn bump_version(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
) -> Result<StoreVersion, StoreError> {
    let version: StoreVersion = sqlx::query(
        "UPDATE store_version SET version = version + 1 WHERE id = 1 RETURNING version",
    )
    .fetch_one(&mut **tx)
    .await?
    .try_get(0)?;
    if tx.backend_name() == <sqlx::Postgres as sqlx::Database>::NAME {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(NOTIFY_CHANNEL)
            .bind(version.to_string())
            .execute(&mut **tx)
            .await?;
    }
    Ok(version)
}

pub(crate) fn encode<T: serde::Serialize>(
    what: &'static str,
    value: &T,
) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|error| StoreError::Encode {
        what,
        detail: error.to_string(),
    })
}

pub(crate) fn conflict_or(error: sqlx::Error, what: &'static str, id: &str) -> StoreError {
    if let sqlx::Error::Database(db) = &error
        && db.is_unique_violation()
    {
        return StoreError::AlreadyExists {
            what,
            id: id.to_owned(),
        };
    }
    StoreError::Database(error)
}
