//! One log line per interval for a failure that repeats on every request.
//!
//! While the audit store is down every request fails the same way; a line
//! per request would bury everything else (and fill the disk the store
//! may be short of). A [`LogThrottle`] lets one line through per interval
//! and counts the ones it held back, for the next line to report.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// How often a throttled failure is logged.
pub const LOG_INTERVAL_MS: u64 = 1_000;

#[derive(Debug)]
pub struct LogThrottle {
    /// Milliseconds since the process's first throttled line, plus one (0:
    /// never logged).
    last: AtomicU64,
    suppressed: AtomicU64,
}

impl LogThrottle {
    pub const fn new() -> Self {
        Self {
            last: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Whether a line may be written at `now_ms` (a monotonic clock in
    /// milliseconds): `Some(n)` with the number of lines held back since
    /// the last one, or `None` to stay quiet (the line is counted).
    pub fn admit_at(&self, now_ms: u64, interval_ms: u64) -> Option<u64> {
        let stamp = now_ms.saturating_add(1);
        let last = self.last.load(Ordering::Relaxed);
        if last != 0 && stamp < last.saturating_add(interval_ms) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        // One of several racing threads wins the slot; the others count.
        match self
            .last
            .compare_exchange(last, stamp, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => Some(self.suppressed.swap(0, Ordering::Relaxed)),
            Err(_) => {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// [`Self::admit_at`] on the process's monotonic clock, once per
    /// [`LOG_INTERVAL_MS`].
    pub fn admit(&self) -> Option<u64> {
        static START: OnceLock<Instant> = OnceLock::new();
        let elapsed = START.get_or_init(Instant::now).elapsed();
        self.admit_at(
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            LOG_INTERVAL_MS,
        )
    }
}

impl Default for LogThrottle {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_and_the_rest_are_counted() {
        let throttle = LogThrottle::new();
        // (time in ms, expected answer)
        let steps = [
            (0, Some(0)),
            (10, None),
            (999, None),
            (1_000, Some(2)),
            (1_500, None),
            (5_000, Some(1)),
            (5_001, None),
        ];
        for (at, expected) in steps {
            assert_eq!(throttle.admit_at(at, 1_000), expected, "at {at} ms");
        }
    }
}
