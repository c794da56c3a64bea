//! The export-control access policy engine: who may use which model, here
//! and now. It holds ISO 3166 country data and versioned embargo data, and
//! definition profiles (what "US person" means under `ear`, `citizens_only`,
//! `itar` or a custom profile).
//!
//! This crate knows nothing about HTTP, SQL or JWTs. It reads principals'
//! verified attributes as given and consumes, but never computes, their
//! denied-party screening status.

mod attributes;
mod country;
mod embargo;
mod profile;

pub use attributes::{AssuranceLevel, AttributeError, AttributeProblem, validate_attributes};
pub use country::{CountryCode, CountryCodeError, SubdivisionCode, all_countries};
pub use embargo::{
    EmbargoConfig, EmbargoEntry, EmbargoError, EmbargoList, EmbargoPack, EmbargoSource,
};
pub use profile::{
    BUILT_IN_PROFILES, CountryAttribution, CustomProfileConfig, DefinitionProfile, ProfileError,
    ProfileFacts, ProfileRegistry, VerificationWindow,
};
