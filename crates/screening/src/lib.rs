//! Denied-party screening: importing the OFAC SDN list (`sdn.csv` with
//! `alt.csv` aliases) and the Consolidated Screening List CSV into an indexed,
//! versioned [`ScreeningList`], normalising names across orderings,
//! diacritics, legal forms and scripts, and scoring a person's or
//! organisation's name against every listed name with Jaro-Winkler on the
//! whole name and on aligned name parts. A [`Screener`] turns the best score
//! and a configured threshold into the `screening` attribute of a principal.
//!
//! This crate knows nothing about storage, HTTP or policy: it reads bytes and
//! returns plain results.

mod import;
mod list;
mod normalize;
mod score;
mod screen;

pub use import::{ImportError, ImportWarning, ListEntry, ListFile, SourceVersion};
pub use list::{NameMatch, ScreeningList, ScreeningListBuilder};
pub use normalize::{NormalizedName, consonant_skeleton, normalize_name};
pub use score::{ComparableName, name_similarity};
pub use screen::{
    DEFAULT_POTENTIAL_MATCH_THRESHOLD, Screener, ScreeningConfig, ScreeningConfigError,
    ScreeningMatch, ScreeningResult, verified_names,
};
