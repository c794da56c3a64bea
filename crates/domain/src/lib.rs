//! Plain domain types shared by every Portcullis crate: models and their
//! release states, principals with their verified identity attributes, API
//! keys, and the clock abstraction that lets tests control time.
//!
//! This crate knows nothing about HTTP, SQL or Cedar. Types here derive serde
//! only where their JSON shape is itself a contract (principal attributes, the
//! model declaration) so that the store and the admin API agree on one form.

mod clock;
mod key;
mod model;
mod principal;

pub use clock::{Clock, ManualClock, SystemClock};
pub use key::{ApiKey, GeneratedKey, KEY_PREFIX, hash_api_key};
pub use model::{Model, ModelDraft, Provider, ReleaseState, ValidationError};
pub use principal::{
    Principal, PrincipalAttributes, Screening, ScreeningStatus, UsPersonBasis, Verification,
    VerifiedClaims, VerifiedIdentityClaims,
};

/// A monotonically increasing number identifying one state of the store.
/// Every write bumps it; a snapshot records the version it was built from.
pub type StoreVersion = i64;
