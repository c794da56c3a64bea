//! Request ids: unique per process run, cheap to make, and set on every
//! response, error body and audit entry.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The id of one request, carried in request extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

static COUNTER: AtomicU64 = AtomicU64::new(0);
static RUN_PREFIX: OnceLock<u32> = OnceLock::new();

fn run_prefix() -> u32 {
    *RUN_PREFIX.get_or_init(|| {
        let mut bytes = [0u8; 4];
        // A random prefix keeps ids from different runs and replicas apart;
        // if the OS cannot supply randomness the counter still keeps ids
        // unique within this run.
        let _ = getrandom::fill(&mut bytes);
        u32::from_le_bytes(bytes)
    })
}

impl RequestId {
    pub fn generate() -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        RequestId(format!("req_{:08x}{:012x}", run_prefix(), n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_well_formed() {
        let a = RequestId::generate();
        let b = RequestId::generate();
        assert_ne!(a, b);
        assert!(a.0.starts_with("req_"));
        assert_eq!(a.0.len(), 4 + 8 + 12);
    }
}
