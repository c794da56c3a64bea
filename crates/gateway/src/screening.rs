//! Denied-party screening in the product: building a list from imported
//! files, rebuilding the stored list in force, and deciding what a new
//! screening result does to a principal's recorded status.
//!
//! Automated screening only ever raises or records a status; it never
//! overturns a human determination. A `confirmed_match` stays, and a
//! reviewer's clearance of one listed entry stays while that same entry is
//! the closest match.

use jiff::Timestamp;
use portcullis_domain::{PrincipalAttributes, Screening, ScreeningStatus};
use portcullis_screening::{
    ImportWarning, ListFile, Screener, ScreeningConfig, ScreeningListBuilder, ScreeningResult,
};
use portcullis_store::{ScreeningListFile, Store, StoreError, StoredScreeningList};

/// File roles as stored with an imported list.
pub const ROLE_SDN: &str = "sdn";
pub const ROLE_ALT: &str = "alt";
pub const ROLE_CSL: &str = "csl";

#[derive(Debug, thiserror::Error)]
pub enum ScreeningSetupError {
    #[error(transparent)]
    Import(#[from] portcullis_screening::ImportError),
    #[error(transparent)]
    Config(#[from] portcullis_screening::ScreeningConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored list `{list_version}` has a file with unknown role `{role}`")]
    UnknownRole { list_version: String, role: String },
    #[error(
        "stored list `{stored}` rebuilt as `{rebuilt}`: the importer changed, re-import the list"
    )]
    VersionDrift { stored: String, rebuilt: String },
}

/// A list built from files, with everything the import reports.
pub struct BuiltList {
    pub screener: Screener,
    pub record: StoredScreeningList,
    pub warnings: Vec<ImportWarning>,
}

/// Parses list files into a screener and the record the store keeps.
/// `files` are (role, file) pairs: one `sdn` with an optional `alt`, or one
/// or more `csl`.
pub fn build_list(
    files: Vec<(&'static str, ListFile)>,
    imported_by: &str,
    imported_at: Timestamp,
) -> Result<BuiltList, ScreeningSetupError> {
    let mut builder = ScreeningListBuilder::new();
    add_files(
        &mut builder,
        files.iter().map(|(role, file)| (*role, file)),
        "",
    )?;
    let list = builder.build();
    let source_format = if files.iter().any(|(role, _)| *role == ROLE_CSL) {
        "csl"
    } else {
        "ofac_sdn"
    };
    let warnings = list.import_warnings().to_vec();
    let record = StoredScreeningList {
        list_version: list.list_version().to_owned(),
        source_format: source_format.to_owned(),
        imported_at,
        imported_by: imported_by.to_owned(),
        entry_count: list.entries().len() as u64,
        skipped_rows: warnings.len() as u64,
        files: files
            .into_iter()
            .map(|(role, file)| ScreeningListFile {
                role: role.to_owned(),
                file_name: file.name,
                contents: file.contents,
            })
            .collect(),
    };
    Ok(BuiltList {
        screener: Screener::new(list, ScreeningConfig::default())?,
        record,
        warnings,
    })
}

fn add_files<'a>(
    builder: &mut ScreeningListBuilder,
    files: impl Iterator<Item = (&'a str, &'a ListFile)>,
    list_version: &str,
) -> Result<(), ScreeningSetupError> {
    let files: Vec<(&str, &ListFile)> = files.collect();
    let alt = files
        .iter()
        .find(|(role, _)| *role == ROLE_ALT)
        .map(|(_, file)| *file);
    for (role, file) in &files {
        match *role {
            ROLE_SDN => {
                builder.add_ofac_sdn(file, alt)?;
            }
            ROLE_CSL => {
                builder.add_consolidated_screening_list(file)?;
            }
            ROLE_ALT => {}
            other => {
                return Err(ScreeningSetupError::UnknownRole {
                    list_version: list_version.to_owned(),
                    role: other.to_owned(),
                });
            }
        }
    }
    Ok(())
}

/// Rebuilds the list in force from the store, or `None` when no list was
/// ever imported. The rebuilt list must carry the stored version, so every
/// result names the list it was really measured against.
pub async fn stored_screener(store: &Store) -> Result<Option<Screener>, ScreeningSetupError> {
    let Some(stored) = store.current_screening_list().await? else {
        return Ok(None);
    };
    let files: Vec<(String, ListFile)> = stored
        .files
        .iter()
        .map(|file| {
            (
                file.role.clone(),
                ListFile::new(file.file_name.clone(), file.contents.clone()),
            )
        })
        .collect();
    let mut builder = ScreeningListBuilder::new();
    add_files(
        &mut builder,
        files.iter().map(|(role, file)| (role.as_str(), file)),
        &stored.list_version,
    )?;
    let list = builder.build();
    if list.list_version() != stored.list_version {
        return Err(ScreeningSetupError::VersionDrift {
            stored: stored.list_version,
            rebuilt: list.list_version().to_owned(),
        });
    }
    Ok(Some(Screener::new(list, ScreeningConfig::default())?))
}

/// What a fresh result changes in a principal's recorded screening, or
/// `None` when the record stands: a principal without name claims stays as
/// it is, a `confirmed_match` is a human determination, and a reviewer's
/// clearance (a `clear` naming an entry) holds while that entry is still
/// the closest match.
pub fn screening_update(current: &Screening, result: &ScreeningResult) -> Option<Screening> {
    if result.status == ScreeningStatus::Unscreened {
        return None;
    }
    if current.status() == ScreeningStatus::ConfirmedMatch {
        return None;
    }
    if let Screening::Detailed {
        status: ScreeningStatus::Clear,
        entry: Some(cleared_entry),
        ..
    } = current
        && result.entry().as_deref() == Some(cleared_entry.as_str())
    {
        return None;
    }
    let fresh = result.to_screening();
    (fresh != *current).then_some(fresh)
}

/// Screens a principal about to be stored when it is `unscreened` and has
/// verified name claims, against the list in force (if one was imported).
/// Returns the result when it screened.
pub async fn screen_on_first_sight(
    store: &Store,
    attributes: &mut PrincipalAttributes,
) -> Result<Option<ScreeningResult>, ScreeningSetupError> {
    if attributes.screening.status() != ScreeningStatus::Unscreened
        || portcullis_screening::verified_names(attributes).is_empty()
    {
        return Ok(None);
    }
    let Some(screener) = stored_screener(store).await? else {
        return Ok(None);
    };
    let result = screener.screen_principal(attributes);
    if let Some(update) = screening_update(&attributes.screening, &result) {
        attributes.screening = update;
    }
    Ok(Some(result))
}

/// The recorded status after a reviewer clears a principal: `clear`, naming
/// the entry that was cleared so that re-screening against the same entry
/// does not flag the principal again.
pub fn cleared(current: &Screening) -> Screening {
    let (list_version, entry, score) = match current {
        Screening::Detailed {
            list_version,
            entry,
            score,
            ..
        } => (list_version.clone(), entry.clone(), *score),
        Screening::Status(_) => (None, None, None),
    };
    Screening::Detailed {
        status: ScreeningStatus::Clear,
        list_version,
        entry,
        score,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detailed(status: ScreeningStatus, entry: Option<&str>) -> Screening {
        Screening::Detailed {
            status,
            list_version: Some("v1".into()),
            entry: entry.map(str::to_owned),
            score: Some(0.95),
        }
    }

    fn screener() -> Screener {
        let sdn = ListFile::new(
            "sdn.csv",
            "7,\"MORENO, Ivan\",\"individual\",\"CUBA\",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- \n",
        );
        build_list(vec![(ROLE_SDN, sdn)], "test", Timestamp::UNIX_EPOCH)
            .unwrap()
            .screener
    }

    #[test]
    fn automated_results_never_overturn_a_human_determination() {
        let screener = screener();
        let hit = screener.screen_name("Ivan Moreno");
        assert_eq!(hit.status, ScreeningStatus::PotentialMatch);
        let hit_entry = hit.entry().unwrap();
        let miss = screener.screen_name("Alice Adams");
        assert_eq!(miss.status, ScreeningStatus::Clear);
        let cases = [
            // (recorded, result, expected new status or None to keep)
            (
                Screening::default(),
                &hit,
                Some(ScreeningStatus::PotentialMatch),
            ),
            (Screening::default(), &miss, Some(ScreeningStatus::Clear)),
            (
                detailed(ScreeningStatus::ConfirmedMatch, Some("x")),
                &miss,
                None,
            ),
            (
                detailed(ScreeningStatus::Clear, Some(&hit_entry)),
                &hit,
                None,
            ),
            (
                detailed(ScreeningStatus::Clear, Some("sdn:99 OTHER")),
                &hit,
                Some(ScreeningStatus::PotentialMatch),
            ),
            (
                Screening::Status(ScreeningStatus::Clear),
                &hit,
                Some(ScreeningStatus::PotentialMatch),
            ),
        ];
        for (recorded, result, expected) in cases {
            let update = screening_update(&recorded, result);
            assert_eq!(
                update.as_ref().map(Screening::status),
                expected,
                "{recorded:?}"
            );
        }
    }

    #[test]
    fn a_clearance_names_the_cleared_entry() {
        let cleared = cleared(&detailed(ScreeningStatus::PotentialMatch, Some("sdn:7 X")));
        assert_eq!(cleared, detailed(ScreeningStatus::Clear, Some("sdn:7 X")));
    }
}

/// The body of `POST /admin/v1/principals/{id}/screening/clear`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClearRequest {
    pub reason: String,
}

/// `POST /admin/v1/principals/{id}/screening/clear`: a reviewer clears a
/// principal's potential or confirmed match. The clearance is an audited
/// admin action naming the actor, the reason and the status it replaced,
/// committed to the audit log before the API answers.
pub async fn clear_screening(
    axum::extract::State(gateway): axum::extract::State<std::sync::Arc<crate::Gateway>>,
    axum::Extension(actor): axum::Extension<crate::admin::Actor>,
    axum::extract::Path(id): axum::extract::Path<String>,
    body: axum::body::Bytes,
) -> Result<axum::Json<serde_json::Value>, crate::admin::AdminError> {
    use crate::admin::AdminError;
    crate::admin::require_writer(&actor)?;
    let request: ClearRequest = serde_json::from_slice(&body)
        .map_err(|error| AdminError::invalid(format!("invalid JSON body: {error}")))?;
    if request.reason.trim().is_empty() {
        return Err(AdminError::invalid(
            "a clearance needs a `reason` for the audit record",
        ));
    }
    let principal = gateway.store.get_principal(&id).await?.ok_or_else(|| {
        AdminError::new(
            http::StatusCode::NOT_FOUND,
            "not_found",
            format!("principal `{id}` not found"),
        )
    })?;
    let previous = principal.attributes.screening.clone();
    let clearance = cleared(&previous);
    gateway
        .store
        .set_principal_screenings(&[(id.clone(), clearance.clone())], gateway.clock.now())
        .await?;
    gateway.refresh().await?;
    crate::admin::audit_admin(
        &gateway,
        &actor,
        "clear",
        portcullis_audit::AdminTargetKind::ScreeningClearance,
        &id,
        serde_json::json!({"reason": request.reason, "previous": previous, "screening": clearance}),
    )
    .await?;
    tracing::info!(actor = %actor.id(), principal = %id, "screening cleared");
    Ok(axum::Json(
        serde_json::json!({"id": id, "previous": previous, "screening": clearance}),
    ))
}
