//! The access decision for one request. Until the Cedar policy engine is in
//! the snapshot, this applies the baseline rules: the principal must be
//! active and the model released.

use portcullis_domain::{Model, Principal, ReleaseState};

/// Allow or deny, with the ids of the rules that decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// 200, 403 (ordinary policy) or 451 (legal restriction).
    pub status: u16,
    pub reasons: Vec<String>,
}

impl Decision {
    fn allow(reason: &str) -> Self {
        Self {
            allowed: true,
            status: 200,
            reasons: vec![reason.to_owned()],
        }
    }

    fn deny(status: u16, reason: &str) -> Self {
        Self {
            allowed: false,
            status,
            reasons: vec![reason.to_owned()],
        }
    }
}

/// Decides whether `principal` may invoke `model`.
pub fn decide(principal: &Principal, model: &Model) -> Decision {
    if !principal.attributes.active {
        return Decision::deny(403, "principal_inactive");
    }
    match model.state {
        ReleaseState::Released => Decision::allow("permit_released"),
        _ => Decision::deny(403, "no_permit"),
    }
}
