//! Imported denied-party lists and the screening status they give
//! principals.
//!
//! The store keeps each list's files verbatim so that the screening crate can
//! rebuild the identical list (same version string, same entries) in any
//! process; it knows nothing about list formats itself.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use jiff::Timestamp;
use portcullis_domain::{PrincipalAttributes, Screening, StoreVersion};
use sqlx::Row;

use crate::{Store, StoreError, bump_version, encode, from_millis, millis};

/// One file of an imported list, as it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScreeningListFile {
    /// What the file is to the importer, e.g. `sdn`, `alt` or `csl`.
    pub role: String,
    /// The name the file was imported under, shown in import warnings.
    pub file_name: String,
    pub contents: Vec<u8>,
}

/// An imported denied-party list and its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredScreeningList {
    /// The version string every screening result against this list records.
    pub list_version: String,
    /// `ofac_sdn` or `csl`.
    pub source_format: String,
    pub imported_at: Timestamp,
    /// The admin or operator who imported it.
    pub imported_by: String,
    pub entry_count: u64,
    /// Rows the importer skipped (each reported by line at import).
    pub skipped_rows: u64,
    /// The files in the order they were given to the importer.
    pub files: Vec<ScreeningListFile>,
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Store {
    /// Stores an imported list and makes it the list in force. Importing the
    /// same files again keeps the stored files and moves the list back in
    /// force with the new import time.
    pub async fn save_screening_list(
        &self,
        list: &StoredScreeningList,
    ) -> Result<StoreVersion, StoreError> {
        let mut tx = self.begin_write().await?;
        // Bumping first takes SQLite's write lock before anything is read, so
        // a concurrent writer waits instead of failing the transaction.
        let version = bump_version(&mut tx).await?;
        sqlx::query(
            "INSERT INTO screening_lists (list_version, source_format, imported_at, imported_by, entry_count, skipped_rows) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (list_version) DO UPDATE SET imported_at = excluded.imported_at, imported_by = excluded.imported_by",
        )
        .bind(&list.list_version)
        .bind(&list.source_format)
        .bind(millis(list.imported_at))
        .bind(&list.imported_by)
        .bind(to_i64(list.entry_count))
        .bind(to_i64(list.skipped_rows))
        .execute(&mut *tx)
        .await?;
        for (position, file) in list.files.iter().enumerate() {
            sqlx::query(
                "INSERT INTO screening_list_files (list_version, position, file_role, file_name, contents_base64) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (list_version, position) DO NOTHING",
            )
            .bind(&list.list_version)
            .bind(position as i64)
            .bind(&file.role)
            .bind(&file.file_name)
            .bind(BASE64.encode(&file.contents))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(self.published(version))
    }

    /// The list in force: the most recently imported one, with its files.
    pub async fn current_screening_list(&self) -> Result<Option<StoredScreeningList>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let Some(row) = sqlx::query(
            "SELECT list_version, source_format, imported_at, imported_by, entry_count, skipped_rows \
             FROM screening_lists ORDER BY imported_at DESC, list_version LIMIT 1",
        )
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(None);
        };
        let list_version: String = row.try_get(0)?;
        let files = sqlx::query(
            "SELECT file_role, file_name, contents_base64 FROM screening_list_files \
             WHERE list_version = $1 ORDER BY position",
        )
        .bind(&list_version)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|file| {
            let encoded: String = file.try_get(2)?;
            let contents =
                BASE64
                    .decode(encoded.as_bytes())
                    .map_err(|error| StoreError::Corrupt {
                        what: "screening list",
                        id: list_version.clone(),
                        detail: error.to_string(),
                    })?;
            Ok(ScreeningListFile {
                role: file.try_get(0)?,
                file_name: file.try_get(1)?,
                contents,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
        tx.commit().await?;
        let entry_count: i64 = row.try_get(4)?;
        let skipped_rows: i64 = row.try_get(5)?;
        Ok(Some(StoredScreeningList {
            list_version,
            source_format: row.try_get(1)?,
            imported_at: from_millis(row.try_get(2)?),
            imported_by: row.try_get(3)?,
            entry_count: u64::try_from(entry_count).unwrap_or(0),
            skipped_rows: u64::try_from(skipped_rows).unwrap_or(0),
            files,
        }))
    }

    /// Sets the `screening` attribute of several principals in one
    /// transaction and one version bump, leaving every other attribute as it
    /// is stored at that moment (a concurrent edit of a principal's other
    /// attributes is never overwritten). Principals that no longer exist are
    /// skipped; the ids that were updated are returned.
    pub async fn set_principal_screenings(
        &self,
        updates: &[(String, Screening)],
        now: Timestamp,
    ) -> Result<(StoreVersion, Vec<String>), StoreError> {
        let mut tx = self.begin_write().await?;
        let version = bump_version(&mut tx).await?;
        let mut updated = Vec::with_capacity(updates.len());
        for (id, screening) in updates {
            let Some(row) = sqlx::query("SELECT attributes FROM principals WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
            else {
                continue;
            };
            let document: String = row.try_get(0)?;
            let mut attributes: PrincipalAttributes =
                serde_json::from_str(&document).map_err(|error| StoreError::Corrupt {
                    what: "principal",
                    id: id.clone(),
                    detail: error.to_string(),
                })?;
            attributes.screening = screening.clone();
            sqlx::query("UPDATE principals SET attributes = $1, updated_at = $2 WHERE id = $3")
                .bind(encode("principal", &attributes)?)
                .bind(millis(now))
                .bind(id)
                .execute(&mut *tx)
                .await?;
            updated.push(id.clone());
        }
        tx.commit().await?;
        Ok((self.published(version), updated))
    }
}
