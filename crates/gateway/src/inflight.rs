//! The requests this replica is serving right now, by (principal, model), so
//! that an order applied mid-request can stop exactly the affected ones.
//!
//! INVARIANT: a request registers *before* it loads the snapshot it decides
//! with, and the snapshot swap happens *before* the registry is scanned. So
//! every admitted request is either decided under the new snapshot or seen
//! by the scan — none slips between the two.
//!
//! INVARIANT: the registry cannot fail open. Its lock does not poison (a
//! panic while it is held leaves the map usable, so later requests still
//! register and later scans still cut), and the lock is held only to copy
//! or change the map: a scan's verdicts (policy evaluation) run after the
//! lock is released, so a slow scan never holds up registration.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use tokio_util::sync::CancellationToken;

use portcullis_domain::PrincipalAttributes;

use crate::error::ApiError;

/// Why a request was stopped: the error it ends with, and the order that
/// stopped it (so its outcome entry can name the order).
#[derive(Debug, Clone)]
pub struct CutCause {
    pub error: ApiError,
    pub order_id: Option<String>,
}

impl From<ApiError> for CutCause {
    fn from(error: ApiError) -> Self {
        Self {
            error,
            order_id: None,
        }
    }
}

/// Why a request was stopped, set once before its token is cancelled.
pub type CutReason = Arc<OnceLock<CutCause>>;

#[derive(Clone)]
struct Entry {
    principal_id: Arc<str>,
    /// The attributes a token-authenticated caller brought, which the
    /// snapshot does not hold.
    attributes: Option<Arc<PrincipalAttributes>>,
    model: Arc<str>,
    streaming: bool,
    token: CancellationToken,
    reason: CutReason,
}

/// The registry of requests in flight.
#[derive(Default)]
pub struct Inflight {
    next_id: AtomicU64,
    entries: Mutex<HashMap<u64, Entry>>,
}

/// A request's registration; dropping it removes the request.
pub struct InflightGuard {
    registry: Arc<Inflight>,
    id: u64,
    /// Stream slots of `[[limits]]`, given back when the request ends.
    permit: Option<crate::limits::LimitPermit>,
}

impl InflightGuard {
    /// Keeps `permit` for as long as the request is in flight.
    pub fn hold(&mut self, permit: crate::limits::LimitPermit) {
        self.permit = Some(permit);
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.registry.entries.lock().remove(&self.id);
    }
}

/// What a registered request listens to.
#[derive(Clone)]
pub struct CutSignal {
    pub token: CancellationToken,
    pub reason: CutReason,
}

impl CutSignal {
    /// The error to end the request with once cut, if a cut gave one.
    pub fn reason(&self) -> Option<ApiError> {
        self.reason.get().map(|cause| cause.error.clone())
    }

    /// The order that cut the request, if an order did.
    pub fn order_id(&self) -> Option<String> {
        self.reason.get().and_then(|cause| cause.order_id.clone())
    }
}

/// One request in flight, as reported by a scan.
#[derive(Debug, Clone)]
pub struct InflightRequest {
    pub principal_id: Arc<str>,
    pub attributes: Option<Arc<PrincipalAttributes>>,
    pub model: Arc<str>,
    pub streaming: bool,
}

/// How many requests a cut stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CutCount {
    pub streams: u64,
    pub requests: u64,
}

impl Inflight {
    /// Registers a request. `parent` is the process-wide token that ends
    /// every stream at the shutdown deadline.
    pub fn register(
        self: &Arc<Self>,
        principal_id: &str,
        attributes: Option<Arc<PrincipalAttributes>>,
        model: &str,
        streaming: bool,
        parent: &CancellationToken,
    ) -> (InflightGuard, CutSignal) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let signal = CutSignal {
            token: parent.child_token(),
            reason: Arc::new(OnceLock::new()),
        };
        let entry = Entry {
            principal_id: principal_id.into(),
            attributes,
            model: model.into(),
            streaming,
            token: signal.token.clone(),
            reason: signal.reason.clone(),
        };
        self.entries.lock().insert(id, entry);
        (
            InflightGuard {
                registry: self.clone(),
                id,
                permit: None,
            },
            signal,
        )
    }

    /// Every request in flight.
    pub fn snapshot(&self) -> Vec<InflightRequest> {
        self.entries
            .lock()
            .values()
            .map(|entry| InflightRequest {
                principal_id: entry.principal_id.clone(),
                attributes: entry.attributes.clone(),
                model: entry.model.clone(),
                streaming: entry.streaming,
            })
            .collect()
    }

    /// Stops every request for which `verdict` (given the principal id, the
    /// attributes the caller carried if any, and the model) returns an
    /// error, ending it with that error. Returns how many were stopped.
    pub fn cut_where(
        &self,
        mut verdict: impl FnMut(&str, Option<&PrincipalAttributes>, &str) -> Option<CutCause>,
    ) -> CutCount {
        // Copy under the lock, decide outside it. A request that registers
        // after the copy loads the snapshot that was swapped in before this
        // scan began, so it is decided under the new rules.
        let entries: Vec<Entry> = self
            .entries
            .lock()
            .values()
            .filter(|entry| !entry.token.is_cancelled())
            .cloned()
            .collect();
        let mut count = CutCount::default();
        for entry in entries {
            if let Some(error) = verdict(
                &entry.principal_id,
                entry.attributes.as_deref(),
                &entry.model,
            ) {
                if entry.reason.set(error).is_err() || entry.token.is_cancelled() {
                    // Another scan (or the shutdown) cut it while this one
                    // decided; the first reason stands and counts once.
                    continue;
                }
                entry.token.cancel();
                if entry.streaming {
                    count.streams += 1;
                } else {
                    count.requests += 1;
                }
            }
        }
        count
    }

    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    fn denial() -> ApiError {
        ApiError::new(
            StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS,
            "legal_restriction",
            "order",
            crate::error::ErrorSource::Policy,
        )
    }

    #[test]
    fn a_cut_stops_only_the_matching_requests_and_dropping_deregisters() {
        let registry = Arc::new(Inflight::default());
        let parent = CancellationToken::new();
        let (bruno_guard, bruno) = registry.register("bruno", None, "mythos", true, &parent);
        let (_alice_guard, alice) = registry.register("alice", None, "mythos", true, &parent);
        let (_wait_guard, waiting) = registry.register("bruno", None, "mythos", false, &parent);
        let count =
            registry.cut_where(|principal, _, _| (principal == "bruno").then(|| denial().into()));
        assert_eq!(
            count,
            CutCount {
                streams: 1,
                requests: 1
            }
        );
        assert!(bruno.token.is_cancelled() && waiting.token.is_cancelled());
        assert_eq!(bruno.reason().map(|e| e.code), Some("legal_restriction"));
        assert!(!alice.token.is_cancelled());
        // A second scan does not count the same request twice.
        let again =
            registry.cut_where(|principal, _, _| (principal == "bruno").then(|| denial().into()));
        assert_eq!(again, CutCount::default());
        assert_eq!(registry.len(), 3);
        drop(bruno_guard);
        assert_eq!(registry.len(), 2);
    }

    #[test]
    fn a_panic_while_the_registry_is_held_does_not_open_it() {
        let registry = Arc::new(Inflight::default());
        let parent = CancellationToken::new();
        let (_first_guard, first) = registry.register("bruno", None, "fable", true, &parent);
        // A verdict that panics mid-scan, as a policy bug would.
        let scan = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            registry.cut_where(|_, _, _| panic!("policy evaluation failed"))
        }));
        assert!(scan.is_err());
        // And a panic while the lock itself is held.
        let held = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _entries = registry.entries.lock();
            panic!("while held");
        }));
        assert!(held.is_err());
        // Requests still register, and a scan still cuts every one of them.
        let (_second_guard, second) = registry.register("bruno", None, "fable", false, &parent);
        assert_eq!(registry.len(), 2);
        let count =
            registry.cut_where(|principal, _, _| (principal == "bruno").then(|| denial().into()));
        assert_eq!(
            count,
            CutCount {
                streams: 1,
                requests: 1
            }
        );
        assert!(first.token.is_cancelled() && second.token.is_cancelled());
    }

    #[test]
    fn verdicts_run_without_the_lock_so_registration_is_not_blocked() {
        let registry = Arc::new(Inflight::default());
        let parent = CancellationToken::new();
        let (_guard, _signal) = registry.register("alice", None, "fable", true, &parent);
        let inner = registry.clone();
        let mut registered_during_scan = 0;
        registry.cut_where(|_, _, _| {
            // A request arriving while the scan decides registers at once
            // (with the lock held this would deadlock).
            let (guard, _) = inner.register("carol", None, "fable", false, &parent);
            registered_during_scan = inner.len();
            drop(guard);
            None
        });
        assert_eq!(registered_during_scan, 2);
    }

    #[test]
    fn the_shutdown_token_reaches_every_request() {
        let registry = Arc::new(Inflight::default());
        let parent = CancellationToken::new();
        let (_guard, signal) = registry.register("alice", None, "haiku", true, &parent);
        parent.cancel();
        assert!(signal.token.is_cancelled());
        assert!(signal.reason().is_none());
    }
}
