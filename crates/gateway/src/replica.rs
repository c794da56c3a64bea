//! This replica's standing with the store: which snapshot version it has
//! applied and when, when it last confirmed that snapshot with the store,
//! and the loop that keeps it current.
//!
//! Staleness is measured from the last successful confirmation (a
//! notification heard, or a poll that read the stored version), never from
//! the last write: an idle replica whose polls succeed is current however
//! long ago anything changed. A replica on a shared PostgreSQL store that has
//! not confirmed within the staleness bound cannot know whether an order or
//! revocation was issued meanwhile, so it refuses models tagged
//! `fail_closed` and reports not ready until the store answers again. A
//! single-node SQLite deployment is always current: every write goes
//! through this process, whose admin path swaps the snapshot before it
//! answers.
//!
//! The loop also reports the applied version, `applied_at` and
//! `confirmed_at` to the store's `replicas` table, so operators (and order
//! receipts) can see every replica. A report that fails is logged and
//! retried on the next tick; it never stops the loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use portcullis_domain::StoreVersion;
use portcullis_store::{Backend, StoreEvent, StoreListener};
use tokio_util::sync::CancellationToken;

use crate::config::ReplicaConfig;
use crate::{Gateway, RefreshError};

/// The shortest wait allowed for one poll of the store version, so a very
/// short poll interval does not make every poll time out.
const MIN_POLL_TIMEOUT: Duration = Duration::from_millis(250);

/// What this replica has applied and confirmed. All fields are atomics so
/// the request path can check currency without a lock.
#[derive(Debug)]
pub struct ReplicaState {
    replica_id: String,
    started_at: Timestamp,
    staleness_bound_ms: i64,
    /// INVARIANT: true only when this process sees every write to the store
    /// (SQLite, one node), so no confirmation is ever needed.
    always_current: bool,
    last_confirmed_ms: AtomicI64,
    applied_version: AtomicI64,
    applied_at_ms: AtomicI64,
    report_in_flight: AtomicBool,
}

/// One report of this replica's state, as written to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaReport {
    pub applied_version: StoreVersion,
    pub applied_at: Timestamp,
    pub confirmed_at: Timestamp,
    pub started_at: Timestamp,
}

impl ReplicaState {
    /// The state of a replica that has just loaded `version` from the store
    /// at `now`, which counts as its first confirmation.
    pub fn new(
        replica_id: String,
        backend: Backend,
        config: &ReplicaConfig,
        version: StoreVersion,
        now: Timestamp,
    ) -> Self {
        Self {
            replica_id,
            started_at: now,
            staleness_bound_ms: i64::try_from(config.staleness_bound_ms).unwrap_or(i64::MAX),
            always_current: backend == Backend::Sqlite,
            last_confirmed_ms: AtomicI64::new(now.as_millisecond()),
            applied_version: AtomicI64::new(version),
            applied_at_ms: AtomicI64::new(now.as_millisecond()),
            report_in_flight: AtomicBool::new(false),
        }
    }

    pub fn replica_id(&self) -> &str {
        &self.replica_id
    }

    /// Whether the snapshot may be trusted for models tagged `fail_closed`
    /// at `now`: always on a single node, otherwise when the last
    /// confirmation is no older than the staleness bound.
    pub fn is_current(&self, now: Timestamp) -> bool {
        self.always_current || self.staleness_millis(now) <= self.staleness_bound_ms
    }

    /// Milliseconds since the last confirmation (0 if the clock went back).
    pub fn staleness_millis(&self, now: Timestamp) -> i64 {
        (now.as_millisecond() - self.last_confirmed_ms.load(Ordering::Acquire)).max(0)
    }

    /// The `Retry-After` a stale replica gives: the bound, in whole seconds
    /// rounded up, by which time a recovered store has been confirmed.
    pub fn retry_after_seconds(&self) -> u32 {
        let seconds = (self.staleness_bound_ms + 999) / 1000;
        u32::try_from(seconds.max(1)).unwrap_or(u32::MAX)
    }

    /// Records that the store confirmed this replica's snapshot as of `at`.
    /// Confirmations never move backwards, so a slow poll finishing after a
    /// newer notification cannot make the replica look staler than it is.
    pub fn confirm(&self, at: Timestamp) {
        self.last_confirmed_ms
            .fetch_max(at.as_millisecond(), Ordering::AcqRel);
    }

    /// Records that the snapshot for `version` was swapped in at `at`.
    pub fn record_applied(&self, version: StoreVersion, at: Timestamp) {
        self.applied_version.store(version, Ordering::Release);
        self.applied_at_ms
            .store(at.as_millisecond(), Ordering::Release);
    }

    pub fn last_confirmed_at(&self) -> Timestamp {
        timestamp(self.last_confirmed_ms.load(Ordering::Acquire))
    }

    /// The state as it would be reported now.
    pub fn report(&self) -> ReplicaReport {
        ReplicaReport {
            applied_version: self.applied_version.load(Ordering::Acquire),
            applied_at: timestamp(self.applied_at_ms.load(Ordering::Acquire)),
            confirmed_at: self.last_confirmed_at(),
            started_at: self.started_at,
        }
    }
}

fn timestamp(millis: i64) -> Timestamp {
    Timestamp::from_millisecond(millis).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Why the watch loop woke up.
enum Wake {
    /// This process committed a write (its own store handle published it).
    LocalWrite,
    /// The poll interval elapsed.
    Poll,
    /// The listener reported something, or stopped (`None`).
    Listener(Option<StoreEvent>),
}

/// Keeps the snapshot current until `stop` is cancelled.
///
/// On PostgreSQL it listens for notifications on a dedicated connection and
/// reloads the full snapshot whenever that connection is (re)established;
/// on both backends it polls the stored version every `poll_every`, which
/// picks up writes by other processes (CLI commands on the same SQLite
/// file, or a lost notification) and confirms the snapshot while idle.
pub async fn watch_store(gateway: Arc<Gateway>, poll_every: Duration, stop: CancellationToken) {
    let mut local_writes = gateway.store.subscribe();
    let mut listener = match gateway.store.backend() {
        Backend::Postgres => match gateway.store.listen() {
            Ok(listener) => Some(listener),
            Err(error) => {
                tracing::warn!(%error, "cannot listen for store changes; polling only");
                None
            }
        },
        Backend::Sqlite => None,
    };
    let mut poll = tokio::time::interval(poll_every);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let poll_timeout = poll_every.max(MIN_POLL_TIMEOUT);
    let mut listening = false;
    let mut store_answering = true;
    let mut reported_version = None;
    loop {
        let wake = tokio::select! {
            _ = stop.cancelled() => return,
            changed = local_writes.changed() => {
                if changed.is_err() {
                    return;
                }
                Wake::LocalWrite
            }
            event = next_event(&mut listener) => Wake::Listener(event),
            _ = poll.tick() => Wake::Poll,
        };
        let polled = matches!(wake, Wake::Poll);
        match wake {
            Wake::LocalWrite | Wake::Poll => {
                let observed_at = gateway.clock.now();
                match tokio::time::timeout(poll_timeout, gateway.store.version()).await {
                    Ok(Ok(version)) => {
                        if !store_answering {
                            tracing::info!("the store answers again");
                            store_answering = true;
                        }
                        catch_up(&gateway, version, observed_at).await;
                    }
                    Ok(Err(error)) => {
                        if store_answering {
                            tracing::warn!(%error, "cannot read the store version; the snapshot is unconfirmed until it answers");
                            store_answering = false;
                        }
                    }
                    Err(_) => {
                        if store_answering {
                            tracing::warn!(
                                timeout_ms = poll_timeout.as_millis() as u64,
                                "the store did not answer a version poll; the snapshot is unconfirmed until it does"
                            );
                            store_answering = false;
                        }
                    }
                }
            }
            Wake::Listener(Some(StoreEvent::Resync)) => {
                tracing::info!("listening for store changes; reloading the full snapshot");
                listening = true;
                let observed_at = gateway.clock.now();
                match gateway.refresh().await {
                    Ok(()) => gateway.replica.confirm(observed_at),
                    Err(error) => refresh_failed(&gateway, &error, observed_at),
                }
            }
            Wake::Listener(Some(StoreEvent::Version(version))) => {
                catch_up(&gateway, version, gateway.clock.now()).await;
            }
            Wake::Listener(Some(StoreEvent::Disconnected { reason })) => {
                if listening {
                    tracing::warn!(%reason, "lost the store notification connection; reconnecting");
                    listening = false;
                }
            }
            Wake::Listener(None) => {
                tracing::warn!("the store listener stopped; polling only");
                listener = None;
            }
        }
        metrics::gauge!("portcullis_replica_confirmed_at_seconds")
            .set(gateway.replica.last_confirmed_at().as_millisecond() as f64 / 1000.0);
        let applied_version = gateway.snapshot.load().version;
        if polled || reported_version != Some(applied_version) {
            reported_version = Some(applied_version);
            spawn_report(&gateway);
        }
    }
}

async fn next_event(listener: &mut Option<StoreListener>) -> Option<StoreEvent> {
    match listener {
        Some(listener) => listener.recv().await,
        None => std::future::pending().await,
    }
}

/// Brings the snapshot up to `version`, which the store was known to hold at
/// `observed_at`, and confirms it once the snapshot is at least that new.
async fn catch_up(gateway: &Gateway, version: StoreVersion, observed_at: Timestamp) {
    if version <= gateway.snapshot.load().version {
        gateway.replica.confirm(observed_at);
        return;
    }
    match gateway.refresh().await {
        Ok(()) => gateway.replica.confirm(observed_at),
        Err(error) => refresh_failed(gateway, &error, observed_at),
    }
}

/// A reload that failed because the store is unreachable leaves the replica
/// unconfirmed. One that failed because the new contents do not compile
/// keeps the current snapshot on purpose (an invalid policy never replaces
/// a working one), and the store did answer, so the replica stays confirmed.
fn refresh_failed(gateway: &Gateway, error: &RefreshError, observed_at: Timestamp) {
    match error {
        RefreshError::Store(error) => {
            tracing::warn!(%error, "snapshot reload failed; the snapshot is unconfirmed until it succeeds");
        }
        RefreshError::Policy(error) => {
            tracing::error!(%error, "the stored policies do not compile; keeping the current snapshot");
            gateway.replica.confirm(observed_at);
        }
    }
}

/// Writes this replica's state to the store in the background. At most one
/// report is in flight, so an unreachable store cannot pile them up.
// A one-shot report bounded by its own timeout; it owns nothing to end.
#[allow(clippy::disallowed_methods)]
fn spawn_report(gateway: &Arc<Gateway>) {
    if gateway
        .replica
        .report_in_flight
        .swap(true, Ordering::AcqRel)
    {
        return;
    }
    let gateway = gateway.clone();
    tokio::spawn(async move {
        let report = gateway.replica.report();
        if let Err(error) = gateway
            .store
            .report_replica(
                gateway.replica.replica_id(),
                report.applied_version,
                report.applied_at,
                report.confirmed_at,
                report.started_at,
            )
            .await
        {
            tracing::debug!(%error, "cannot report this replica's state; retrying on the next poll");
        }
        gateway
            .replica
            .report_in_flight
            .store(false, Ordering::Release);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(millis: i64) -> Timestamp {
        Timestamp::from_millisecond(1_800_000_000_000 + millis).unwrap()
    }

    fn state(backend: Backend) -> ReplicaState {
        let config = ReplicaConfig {
            id: None,
            staleness_bound_ms: 2_000,
            poll_interval_ms: 1_000,
        };
        ReplicaState::new("r1".into(), backend, &config, 7, at(0))
    }

    #[test]
    fn staleness_is_measured_from_the_last_confirmation() {
        let replica = state(Backend::Postgres);
        // (confirmations so far, now, current?)
        let cases: &[(&[i64], i64, bool)] = &[
            (&[], 0, true),
            (&[], 2_000, true),
            (&[], 2_001, false),
            (&[1_500], 3_500, true),
            (&[1_500], 3_501, false),
            // A late confirmation of an older moment does not move it back.
            (&[1_500, 900], 3_501, false),
            (&[1_500, 900, 60_000], 61_000, true),
            // The clock stepping back is not staleness.
            (&[1_500, 900, 60_000], 59_000, true),
        ];
        for (confirmations, now, current) in cases {
            let replica = state(Backend::Postgres);
            for confirmed in *confirmations {
                replica.confirm(at(*confirmed));
            }
            assert_eq!(
                replica.is_current(at(*now)),
                *current,
                "confirmed at {confirmations:?}, now {now}"
            );
        }
        assert_eq!(replica.retry_after_seconds(), 2);
    }

    #[test]
    fn a_single_node_store_is_always_current() {
        let replica = state(Backend::Sqlite);
        assert!(replica.is_current(at(10 * 24 * 3_600_000)));
    }

    #[test]
    fn reports_carry_the_applied_and_confirmed_moments() {
        let replica = state(Backend::Postgres);
        assert_eq!(
            replica.report(),
            ReplicaReport {
                applied_version: 7,
                applied_at: at(0),
                confirmed_at: at(0),
                started_at: at(0),
            }
        );
        replica.record_applied(9, at(40));
        replica.confirm(at(35));
        assert_eq!(
            replica.report(),
            ReplicaReport {
                applied_version: 9,
                applied_at: at(40),
                confirmed_at: at(35),
                started_at: at(0),
            }
        );
    }

    #[test]
    fn retry_after_rounds_the_bound_up_to_whole_seconds() {
        for (bound_ms, seconds) in [(1, 1), (1_000, 1), (1_001, 2), (2_000, 2), (30_500, 31)] {
            let config = ReplicaConfig {
                id: None,
                staleness_bound_ms: bound_ms,
                poll_interval_ms: 1,
            };
            let replica = ReplicaState::new("r".into(), Backend::Postgres, &config, 1, at(0));
            assert_eq!(replica.retry_after_seconds(), seconds, "{bound_ms}");
        }
    }
}
