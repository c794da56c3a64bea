//! Screening names and principals against a list with a configured threshold.

use portcullis_domain::{PrincipalAttributes, Screening, ScreeningStatus};

use crate::list::{ScreeningList, SimilarTokenCache};
use crate::score::ComparableName;

/// The default score at or above which a name is a potential match.
///
/// Measured on the OFAC SDN sample with `examples/threshold_sweep.rs`: at
/// 0.88 every exact, alias, reordered and single-typo variant of 490 sampled
/// entries is still found, while 7 of 218 ordinary names are flagged, mostly
/// common Hispanic and Korean names that share given name and surname with a
/// listed person who has more name parts. At 0.90 the flagged share drops only
/// to 5 of 218 but typos in short single-word names ("Havanatur") start to be
/// missed. A missed listed party is a violation while a false match costs one
/// review, so the lower value wins. Every result records the threshold it was
/// decided with.
pub const DEFAULT_POTENTIAL_MATCH_THRESHOLD: f64 = 0.88;

/// Screening settings, validated before use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScreeningConfig {
    /// A best score at or above this makes the result `potential_match`.
    pub potential_match_threshold: f64,
}

impl Default for ScreeningConfig {
    fn default() -> Self {
        ScreeningConfig {
            potential_match_threshold: DEFAULT_POTENTIAL_MATCH_THRESHOLD,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScreeningConfigError {
    #[error("potential match threshold `{threshold}` must be greater than 0 and at most 1")]
    ThresholdOutOfRange { threshold: f64 },
}

impl ScreeningConfig {
    pub fn validate(&self) -> Result<(), ScreeningConfigError> {
        let threshold = self.potential_match_threshold;
        if threshold > 0.0 && threshold <= 1.0 {
            Ok(())
        } else {
            Err(ScreeningConfigError::ThresholdOutOfRange { threshold })
        }
    }
}

/// The listed entry closest to a screened name.
#[derive(Debug, Clone, PartialEq)]
pub struct ScreeningMatch {
    /// `sdn:<ent_num>` or `csl:<row id>`.
    pub entry_id: String,
    /// The entry's primary name, as listed.
    pub entry_name: String,
    /// The listed name (primary or alias) that scored best, as listed.
    pub matched_name: String,
    /// The principal's or caller's name that produced the score.
    pub screened_name: String,
    pub score: f64,
}

/// The outcome of screening one name or one principal.
///
/// `status` is `potential_match` when the best score reaches `threshold`,
/// `clear` when it does not, and `unscreened` when there was no name to
/// screen. `closest_match` is the best-scoring entry found, also when it
/// stayed below the threshold, so a reviewer can see how near it came.
#[derive(Debug, Clone, PartialEq)]
pub struct ScreeningResult {
    pub status: ScreeningStatus,
    pub list_version: String,
    pub threshold: f64,
    pub closest_match: Option<ScreeningMatch>,
}

impl ScreeningResult {
    /// The best score found, or `None` when nothing was screened or no listed
    /// name shared a similar token.
    pub fn score(&self) -> Option<f64> {
        self.closest_match.as_ref().map(|found| found.score)
    }

    /// The matched entry as the principal-attribute contract records it:
    /// the entry id followed by its primary name. Only a potential match names
    /// an entry.
    pub fn entry(&self) -> Option<String> {
        if self.status != ScreeningStatus::PotentialMatch {
            return None;
        }
        self.closest_match
            .as_ref()
            .map(|found| format!("{} {}", found.entry_id, found.entry_name))
    }

    /// The principal attribute `screening` value for this result.
    pub fn to_screening(&self) -> Screening {
        if self.status == ScreeningStatus::Unscreened {
            return Screening::Status(ScreeningStatus::Unscreened);
        }
        Screening::Detailed {
            status: self.status,
            list_version: Some(self.list_version.clone()),
            entry: self.entry(),
            score: Some(self.score().unwrap_or(0.0)),
        }
    }
}

/// A list and the settings to screen against it; cheap to share behind an
/// `Arc` in a snapshot, and never modified after construction.
#[derive(Debug, Clone)]
pub struct Screener {
    list: ScreeningList,
    config: ScreeningConfig,
}

impl Screener {
    pub fn new(list: ScreeningList, config: ScreeningConfig) -> Result<Self, ScreeningConfigError> {
        config.validate()?;
        Ok(Screener { list, config })
    }

    pub fn list(&self) -> &ScreeningList {
        &self.list
    }

    pub fn config(&self) -> &ScreeningConfig {
        &self.config
    }

    /// Screen one name as written (any script, either "Given SURNAME" or
    /// "SURNAME, Given").
    pub fn screen_name(&self, name: &str) -> ScreeningResult {
        self.screen_names(&[name])
    }

    /// Screen several names of one party and keep the highest score. An empty
    /// slice, or names that normalise to nothing, leave it `unscreened`.
    pub fn screen_names(&self, names: &[&str]) -> ScreeningResult {
        self.screen_names_cached(
            names,
            &mut SimilarTokenCache::new(self.config.potential_match_threshold),
        )
    }

    /// Screen many parties at once, each given by its names, as when the list
    /// changes and every known principal is screened again. The result is the
    /// same as screening each party alone; the batch only avoids comparing a
    /// name part that recurs across parties with the whole list again.
    pub fn screen_batch(&self, parties: &[Vec<String>]) -> Vec<ScreeningResult> {
        let mut cache = SimilarTokenCache::new(self.config.potential_match_threshold);
        parties
            .iter()
            .map(|names| {
                let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
                self.screen_names_cached(&name_refs, &mut cache)
            })
            .collect()
    }

    /// Screen many principals at once; see [`Screener::screen_batch`].
    pub fn screen_principals(&self, principals: &[PrincipalAttributes]) -> Vec<ScreeningResult> {
        let parties: Vec<Vec<String>> = principals.iter().map(verified_names).collect();
        self.screen_batch(&parties)
    }

    fn screen_names_cached(
        &self,
        names: &[&str],
        cache: &mut SimilarTokenCache,
    ) -> ScreeningResult {
        let threshold = self.config.potential_match_threshold;
        let mut screened_any_name = false;
        let mut closest_match: Option<ScreeningMatch> = None;
        for name in names {
            let query = ComparableName::from_raw(name);
            if query.normalized.is_empty() {
                continue;
            }
            screened_any_name = true;
            let Some(found) = self.list.best_match_cached(&query, cache) else {
                continue;
            };
            if closest_match
                .as_ref()
                .is_none_or(|closest| found.score > closest.score)
            {
                closest_match = Some(ScreeningMatch {
                    entry_id: found.entry.entry_id.clone(),
                    entry_name: found.entry.primary_name.clone(),
                    matched_name: found.matched_name.to_owned(),
                    screened_name: (*name).to_owned(),
                    score: found.score,
                });
            }
        }
        let status = if !screened_any_name {
            ScreeningStatus::Unscreened
        } else if closest_match
            .as_ref()
            .is_some_and(|closest| closest.score >= threshold)
        {
            ScreeningStatus::PotentialMatch
        } else {
            ScreeningStatus::Clear
        };
        ScreeningResult {
            status,
            list_version: self.list.list_version().to_owned(),
            threshold,
            closest_match,
        }
    }

    /// Screen a principal by its verified name claims: `name`, and
    /// `given_name` with `family_name`. Claims outside `verified_claims` are
    /// never used, and a principal without verified name claims stays
    /// `unscreened`.
    pub fn screen_principal(&self, attributes: &PrincipalAttributes) -> ScreeningResult {
        let names = verified_names(attributes);
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        self.screen_names(&name_refs)
    }
}

/// The names a principal is screened under, from its verified claims only.
pub fn verified_names(attributes: &PrincipalAttributes) -> Vec<String> {
    let Some(verified) = &attributes.verified_claims else {
        return Vec::new();
    };
    let claims = &verified.claims;
    let mut names = Vec::new();
    if let Some(name) = claims
        .name
        .as_deref()
        .filter(|name| !name.trim().is_empty())
    {
        names.push(name.to_owned());
    }
    let given_and_family: Vec<&str> = [claims.given_name.as_deref(), claims.family_name.as_deref()]
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect();
    if !given_and_family.is_empty() {
        let combined = given_and_family.join(" ");
        if !names.contains(&combined) {
            names.push(combined);
        }
    }
    names
}
