//! The single writer task of one log: it owns the frontier, assigns
//! positions, commits entries in groups and signs checkpoints.

use std::time::Duration;

use sqlx::AnyPool;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::entry::{AuditEntry, PreparedEntry};
use crate::error::AuditError;
use crate::merkle::{Frontier, Hash, leaf_hash};
use crate::note::{Checkpoint, NoteSigner};
use crate::store::{self, CheckpointRow, EntryInsert};
use crate::witness::{WitnessRecord, WitnessTarget, append_to_witness};

/// How a log batches, checkpoints and copies its checkpoints.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Sign a checkpoint once this many entries are not yet covered by one.
    pub checkpoint_every_entries: u64,
    /// Sign a checkpoint once uncovered entries are this old, even if fewer
    /// than `checkpoint_every_entries` of them exist.
    pub checkpoint_interval: Duration,
    /// The longest a recorded entry waits for its group commit to start.
    pub commit_interval: Duration,
    /// Entries that [`AuditHandle::record`] may queue before callers wait.
    pub queue_capacity: usize,
    /// The most entries committed in one transaction.
    pub max_batch_entries: usize,
    /// Where to copy each signed checkpoint, outside the store.
    pub witness: Option<WitnessTarget>,
    /// The longest one commit attempt may take. Callers waiting for their
    /// entry (a request before its first byte) learn of an unreachable
    /// store within about this long, instead of waiting out connection
    /// timeouts attempt after attempt.
    pub commit_timeout: Duration,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            checkpoint_every_entries: 1_000,
            checkpoint_interval: Duration::from_secs(1),
            commit_interval: Duration::from_millis(10),
            queue_capacity: 8_192,
            max_batch_entries: 4_096,
            witness: None,
            commit_timeout: Duration::from_secs(2),
        }
    }
}

impl AuditConfig {
    /// Rejects settings that would stall or never checkpoint.
    pub fn validate(&self) -> Result<(), AuditError> {
        let invalid = |detail: &str| Err(AuditError::InvalidConfig(detail.to_owned()));
        if self.checkpoint_every_entries == 0 {
            return invalid("checkpoint_every_entries must be at least 1");
        }
        if self.checkpoint_interval.is_zero() {
            return invalid("checkpoint_interval must be positive");
        }
        if self.queue_capacity == 0 {
            return invalid("queue_capacity must be at least 1");
        }
        if self.max_batch_entries == 0 {
            return invalid("max_batch_entries must be at least 1");
        }
        if self.commit_timeout.is_zero() {
            return invalid("commit_timeout must be positive");
        }
        Ok(())
    }
}

/// Proof that an entry is committed: where it sits and what it hashed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendReceipt {
    pub index: u64,
    pub leaf_hash: Hash,
}

/// A checkpoint and the signed note that carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    pub note: String,
}

/// What the writer has durably done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriterStatus {
    /// Entries committed to the store.
    pub committed_size: u64,
    /// The size of the latest committed checkpoint.
    pub checkpoint_size: u64,
    /// The last commit failure, cleared by the next successful commit.
    pub last_error: Option<String>,
    /// Recorded entries waiting in memory for the store to come back.
    pub retained_entries: u64,
    /// Recorded entries given up because the store stayed unavailable past
    /// the retention bound, or at shutdown. Each loss is logged with its
    /// count; committed entries are never among them.
    pub lost_entries: u64,
}

enum Command {
    Record(PreparedEntry),
    /// Appends an entry and reports its commit, like `AppendNow`, for
    /// callers that queue first and wait later.
    AppendNow(
        PreparedEntry,
        oneshot::Sender<Result<AppendReceipt, AuditError>>,
    ),
    Flush(oneshot::Sender<Result<Option<SignedCheckpoint>, AuditError>>),
    Shutdown(oneshot::Sender<Result<Option<SignedCheckpoint>, AuditError>>),
}

impl Command {
    /// Whether someone is waiting for this command's commit, so the batch
    /// should not linger.
    fn is_urgent(&self) -> bool {
        !matches!(self, Command::Record(_))
    }
}

/// A cloneable handle to one log's writer.
#[derive(Clone, Debug)]
pub struct AuditHandle {
    sender: mpsc::Sender<Command>,
    status: watch::Receiver<WriterStatus>,
    origin: String,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Record(_) => "Record",
            Command::AppendNow(..) => "AppendNow",
            Command::Flush(_) => "Flush",
            Command::Shutdown(_) => "Shutdown",
        })
    }
}

impl AuditHandle {
    /// The origin of the log this handle writes to.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Queues an entry for the next group commit. Returns once the entry is
    /// accepted into the bounded queue, waiting while the queue is full; the
    /// entry is committed within about one commit interval afterwards. An
    /// error means the entry was not accepted.
    pub async fn record(&self, entry: &AuditEntry) -> Result<(), AuditError> {
        let prepared = PreparedEntry::new(entry)?;
        self.sender
            .send(Command::Record(prepared))
            .await
            .map_err(|_| AuditError::WriterStopped)
    }

    /// Queues an entry for group commit without waiting, for callers that
    /// cannot await (a stream ending in `Drop`). A full queue hands the entry
    /// to a task that waits for room, so it is delayed, never dropped.
    // The helper task only waits for queue room; it ends with the send.
    #[allow(clippy::disallowed_methods)]
    pub fn record_detached(&self, entry: &AuditEntry) -> Result<(), AuditError> {
        let prepared = PreparedEntry::new(entry)?;
        match self.sender.try_send(Command::Record(prepared)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(command)) => {
                let sender = self.sender.clone();
                tokio::spawn(async move {
                    let _ = sender.send(command).await;
                });
                Ok(())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(AuditError::WriterStopped),
        }
    }

    /// Appends an entry and returns only after it is committed.
    pub async fn append_now(&self, entry: &AuditEntry) -> Result<AppendReceipt, AuditError> {
        self.submit(entry).await?.committed().await
    }

    /// Queues an entry for the next group commit and returns at once with a
    /// [`PendingCommit`] that resolves when the entry is durable, or fails
    /// when its commit failed. A caller overlaps its own work (an upstream
    /// call) with the commit and acts on the outcome only after it is
    /// known: an entry whose commit failed is not retried, so the caller
    /// must not act on it.
    pub async fn submit(&self, entry: &AuditEntry) -> Result<PendingCommit, AuditError> {
        let prepared = PreparedEntry::new(entry)?;
        let (reply, receipt) = oneshot::channel();
        self.sender
            .send(Command::AppendNow(prepared, reply))
            .await
            .map_err(|_| AuditError::WriterStopped)?;
        Ok(PendingCommit { receipt })
    }

    /// Commits everything queued before this call and signs a checkpoint
    /// covering it. Returns the latest checkpoint, or `None` for an empty log.
    pub async fn flush(&self) -> Result<Option<SignedCheckpoint>, AuditError> {
        let (reply, done) = oneshot::channel();
        self.sender
            .send(Command::Flush(reply))
            .await
            .map_err(|_| AuditError::WriterStopped)?;
        done.await.map_err(|_| AuditError::WriterStopped)?
    }

    /// What the writer has committed so far.
    pub fn status(&self) -> WriterStatus {
        self.status.borrow().clone()
    }

    /// A receiver that changes after every commit, for readiness checks and
    /// metrics.
    pub fn watch_status(&self) -> watch::Receiver<WriterStatus> {
        self.status.clone()
    }
}

/// An entry queued by [`AuditHandle::submit`], not yet known to be durable.
#[derive(Debug)]
pub struct PendingCommit {
    receipt: oneshot::Receiver<Result<AppendReceipt, AuditError>>,
}

impl PendingCommit {
    /// Waits for the entry's commit.
    pub async fn committed(self) -> Result<AppendReceipt, AuditError> {
        self.receipt.await.map_err(|_| AuditError::WriterStopped)?
    }
}

/// An open audit log: its writer task and a handle to it.
#[derive(Debug)]
pub struct AuditLog {
    handle: AuditHandle,
    task: tokio::task::JoinHandle<()>,
}

impl AuditLog {
    /// Opens (creating tables if needed) the log `origin` in the store behind
    /// `pool`, continues its tree from the stored frontier, and starts the
    /// writer task. Exactly one writer may own an origin at a time.
    // The writer task is owned by the returned handle, which shuts it down.
    #[allow(clippy::disallowed_methods)]
    pub async fn open(
        pool: AnyPool,
        origin: &str,
        signer: NoteSigner,
        config: AuditConfig,
    ) -> Result<AuditLog, AuditError> {
        config.validate()?;
        if origin.is_empty() || origin.contains('\n') {
            return Err(AuditError::InvalidConfig(format!(
                "origin `{origin}` must be one non-empty line"
            )));
        }
        store::ensure_schema(&pool).await?;
        let state = load_state(&pool, origin).await?;
        let (sender, receiver) = mpsc::channel(config.queue_capacity);
        let (status_sender, status) = watch::channel(WriterStatus {
            committed_size: state.frontier.size(),
            checkpoint_size: state.last_checkpoint_size,
            last_error: None,
            retained_entries: 0,
            lost_entries: 0,
        });
        let writer = Writer {
            pool,
            origin: origin.to_owned(),
            signer,
            config,
            frontier: state.frontier,
            next_checkpoint_seq: state.next_checkpoint_seq,
            last_checkpoint_size: state.last_checkpoint_size,
            last_checkpoint: state.last_checkpoint,
            // Entries replayed on open that no checkpoint covers yet are
            // treated as if committed now, so they are covered within one
            // checkpoint interval.
            uncovered_since: (state.frontier_size_hint > state.last_checkpoint_size)
                .then(Instant::now),
            status: status_sender,
            retained: Vec::new(),
            retry: None,
        };
        let task = tokio::spawn(writer.run(receiver));
        Ok(AuditLog {
            handle: AuditHandle {
                sender,
                status,
                origin: origin.to_owned(),
            },
            task,
        })
    }

    /// A cloneable handle for the group-commit path.
    pub fn handle(&self) -> AuditHandle {
        self.handle.clone()
    }

    /// Appends an entry and returns only after it is committed. Use this for
    /// admin actions and orders, which must be durable before they are
    /// acknowledged.
    pub async fn append_now(&self, entry: &AuditEntry) -> Result<AppendReceipt, AuditError> {
        self.handle.append_now(entry).await
    }

    /// Queues an entry for group commit; see [`AuditHandle::record`].
    pub async fn record(&self, entry: &AuditEntry) -> Result<(), AuditError> {
        self.handle.record(entry).await
    }

    /// Commits everything queued and signs a covering checkpoint.
    pub async fn flush(&self) -> Result<Option<SignedCheckpoint>, AuditError> {
        self.handle.flush().await
    }

    /// Commits everything queued before this call, signs a final checkpoint
    /// and stops the writer. Later calls on outstanding handles fail with
    /// [`AuditError::WriterStopped`].
    pub async fn close(self) -> Result<Option<SignedCheckpoint>, AuditError> {
        let (reply, done) = oneshot::channel();
        self.handle
            .sender
            .send(Command::Shutdown(reply))
            .await
            .map_err(|_| AuditError::WriterStopped)?;
        let result = done.await.map_err(|_| AuditError::WriterStopped)?;
        let _ = self.task.await;
        result
    }

    /// Like [`AuditLog::close`], but gives up at `deadline`: a store that
    /// stays unavailable cannot hold the process. What was not committed by
    /// then is reported as an error naming how many entries it was.
    pub async fn close_within(
        self,
        deadline: Duration,
    ) -> Result<Option<SignedCheckpoint>, AuditError> {
        let status = self.handle.status.clone();
        let task_abort = self.task.abort_handle();
        match tokio::time::timeout(deadline, self.close()).await {
            Ok(result) => result,
            Err(_) => {
                task_abort.abort();
                let status = status.borrow().clone();
                Err(AuditError::CommitFailed(format!(
                    "the store did not take the last entries within {} ms; {} recorded entries were not committed ({})",
                    deadline.as_millis(),
                    status.retained_entries,
                    status
                        .last_error
                        .unwrap_or_else(|| "no error reported".into()),
                )))
            }
        }
    }
}

struct LoadedState {
    frontier_size_hint: u64,
    frontier: Frontier,
    next_checkpoint_seq: i64,
    last_checkpoint_size: u64,
    last_checkpoint: Option<SignedCheckpoint>,
}

async fn load_state(pool: &AnyPool, origin: &str) -> Result<LoadedState, AuditError> {
    let inconsistent = |detail: String| AuditError::InconsistentStore {
        origin: origin.to_owned(),
        detail,
    };
    let latest = store::load_latest_checkpoint(pool, origin).await?;
    let (mut frontier, next_checkpoint_seq, last_checkpoint) = match latest {
        None => (Frontier::new(), 0, None),
        Some(row) => {
            let size = u64::try_from(row.tree_size)
                .map_err(|_| inconsistent(format!("checkpoint {} has a negative size", row.seq)))?;
            let frontier = store::frontier_from_text(size, &row.frontier).ok_or_else(|| {
                inconsistent(format!("checkpoint {} has a malformed frontier", row.seq))
            })?;
            if store::hash_to_hex(&frontier.root()) != row.root_hash {
                return Err(inconsistent(format!(
                    "checkpoint {} frontier does not match its root",
                    row.seq
                )));
            }
            let checkpoint =
                Checkpoint::from_note_text(row.note.split("\n\n").next().unwrap_or_default())
                    .map_err(|error| inconsistent(format!("checkpoint {}: {error}", row.seq)))?;
            (
                frontier,
                row.seq + 1,
                Some(SignedCheckpoint {
                    checkpoint,
                    note: row.note,
                }),
            )
        }
    };
    let last_checkpoint_size = frontier.size();
    // Entries committed after the latest checkpoint (at most one checkpoint
    // interval's worth) are replayed from their stored leaf hashes.
    loop {
        let page = store::load_leaf_hashes_page(pool, origin, frontier.size(), 10_000).await?;
        if page.is_empty() {
            break;
        }
        for (idx, leaf) in page {
            if idx != store::to_i64(frontier.size()) {
                return Err(inconsistent(format!(
                    "entry {} is missing",
                    frontier.size()
                )));
            }
            let leaf = store::hash_from_hex(&leaf)
                .ok_or_else(|| inconsistent(format!("entry {idx} has a malformed leaf hash")))?;
            frontier.append(leaf);
        }
    }
    if last_checkpoint_size > 0
        && store::count_entries_from(pool, origin, 0).await? < last_checkpoint_size
    {
        return Err(inconsistent(format!(
            "the latest checkpoint covers {last_checkpoint_size} entries but fewer are stored"
        )));
    }
    Ok(LoadedState {
        frontier_size_hint: frontier.size(),
        frontier,
        next_checkpoint_seq,
        last_checkpoint_size,
        last_checkpoint,
    })
}

struct Writer {
    pool: AnyPool,
    origin: String,
    signer: NoteSigner,
    config: AuditConfig,
    frontier: Frontier,
    next_checkpoint_seq: i64,
    last_checkpoint_size: u64,
    last_checkpoint: Option<SignedCheckpoint>,
    /// When the oldest committed entry not covered by a checkpoint was
    /// committed; `None` when every committed entry is covered.
    uncovered_since: Option<Instant>,
    status: watch::Sender<WriterStatus>,
    /// Recorded entries whose commit failed, oldest first, committed ahead
    /// of anything newer once the store takes writes again.
    retained: Vec<PreparedEntry>,
    /// When to try the retained entries again, and the wait after that.
    retry: Option<(Instant, Duration)>,
}

/// The most recorded entries kept in memory while the store is failing.
/// Requests that wait for their own entry (see [`AuditHandle::submit`]) are
/// refused during an outage, so only entries that follow an earlier,
/// committed one accumulate here (a stream's outcome); past this bound the
/// oldest are given up and counted.
const MAX_RETAINED_ENTRIES: usize = 65_536;
/// The longest wait between two attempts while the store is failing, so the
/// writer notices recovery within a fraction of a second.
const MAX_RETRY_BACKOFF: Duration = Duration::from_millis(250);

/// The commands taken from the queue for one commit.
#[derive(Default)]
struct Batch {
    entries: Vec<PreparedEntry>,
    /// Waiters for `append_now`, with the position of their entry in
    /// `entries`.
    appenders: Vec<(usize, oneshot::Sender<Result<AppendReceipt, AuditError>>)>,
    flushers: Vec<oneshot::Sender<Result<Option<SignedCheckpoint>, AuditError>>>,
    shutdown: Option<oneshot::Sender<Result<Option<SignedCheckpoint>, AuditError>>>,
    urgent: bool,
}

impl Batch {
    fn push(&mut self, command: Command) {
        self.urgent |= command.is_urgent();
        match command {
            Command::Record(entry) => self.entries.push(entry),
            Command::AppendNow(entry, reply) => {
                self.appenders.push((self.entries.len(), reply));
                self.entries.push(entry);
            }
            Command::Flush(reply) => self.flushers.push(reply),
            Command::Shutdown(reply) => self.shutdown = Some(reply),
        }
    }

    fn wants_checkpoint(&self) -> bool {
        !self.flushers.is_empty() || self.shutdown.is_some()
    }
}

/// Where a commit attempt failed, which decides whether it is ambiguous.
enum CommitAttemptError {
    BeforeCommit(AuditError),
    AtCommit(AuditError),
}

/// The outcome of a commit that succeeded.
struct Committed {
    frontier: Frontier,
    leaves: Vec<Hash>,
    /// The canonical JSON of each entry, as hashed.
    entry_jsons: Vec<String>,
    checkpoints: Vec<(CheckpointRow, SignedCheckpoint)>,
}

impl Writer {
    async fn run(mut self, mut receiver: mpsc::Receiver<Command>) {
        loop {
            // The next moment the writer must act without a command: a retry
            // of retained entries, or a checkpoint over uncovered entries.
            let wake_at = match (self.retry, self.uncovered_since) {
                (Some((retry_at, _)), _) => Some(retry_at),
                (None, Some(since)) => Some(since + self.config.checkpoint_interval),
                (None, None) => None,
            };
            let first = if let Some(wake_at) = wake_at {
                tokio::select! {
                    command = receiver.recv() => command,
                    () = tokio::time::sleep_until(wake_at) => {
                        if self.retry.is_some() && self.retained.is_empty() && self.uncovered_since.is_none() {
                            self.probe().await;
                        } else {
                            self.commit_batch(Batch { urgent: true, ..Batch::default() }, true).await;
                        }
                        continue;
                    }
                }
            } else {
                receiver.recv().await
            };
            let Some(first) = first else {
                // Every handle is gone: commit what is retained and cover
                // what is committed with a final checkpoint.
                self.commit_batch(Batch::default(), true).await;
                self.give_up_retained("the log was closed");
                return;
            };
            let mut batch = Batch::default();
            batch.push(first);
            let linger_until = Instant::now() + self.config.commit_interval;
            while !batch.urgent
                && batch.shutdown.is_none()
                && batch.entries.len() < self.config.max_batch_entries
            {
                match receiver.try_recv() {
                    Ok(command) => {
                        batch.push(command);
                        continue;
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                    Err(mpsc::error::TryRecvError::Empty) => {}
                }
                match tokio::time::timeout_at(linger_until, receiver.recv()).await {
                    Ok(Some(command)) => batch.push(command),
                    Ok(None) | Err(_) => break,
                }
            }
            // Drain what is already queued behind an urgent command so that it
            // shares the transaction, up to the batch limit.
            while batch.shutdown.is_none() && batch.entries.len() < self.config.max_batch_entries {
                match receiver.try_recv() {
                    Ok(command) => batch.push(command),
                    Err(_) => break,
                }
            }
            let stopping = batch.shutdown.is_some();
            let force_checkpoint = batch.wants_checkpoint();
            self.commit_batch(batch, force_checkpoint).await;
            if stopping {
                return;
            }
        }
    }

    /// Commits the retained entries and then `batch`, in one transaction.
    ///
    /// On failure every waiter is answered at once with the error (an
    /// `append_now` or `submit` caller acts only on a committed entry, so
    /// its entry leaves the batch), and recorded entries are retained and
    /// retried with backoff from the main loop. The writer never blocks in
    /// a retry loop: new commands keep getting answers while the store is
    /// down, and the first commit after recovery takes everything retained.
    async fn commit_batch(&mut self, mut batch: Batch, force_checkpoint: bool) {
        if !self.retained.is_empty() {
            let retained = std::mem::take(&mut self.retained);
            let offset = retained.len();
            let mut entries = retained;
            entries.append(&mut batch.entries);
            batch.entries = entries;
            for (position, _) in &mut batch.appenders {
                *position += offset;
            }
        }
        let start = self.frontier.size();
        let attempt = tokio::time::timeout(
            self.config.commit_timeout,
            self.try_commit(&batch, force_checkpoint),
        )
        .await;
        let result = match attempt {
            Ok(Ok(committed)) => Ok(committed),
            // Failed before COMMIT was sent: nothing can have been applied.
            Ok(Err(CommitAttemptError::BeforeCommit(error))) => Err(error),
            // COMMIT itself failed or the attempt ran out of time: the
            // database may have applied it, so look before retrying.
            Ok(Err(CommitAttemptError::AtCommit(error))) => {
                self.recover_ambiguous_commit_within(&batch, start, force_checkpoint, error)
                    .await
            }
            Err(_) => {
                let error = AuditError::CommitFailed(format!(
                    "the store did not complete the commit within {} ms",
                    self.config.commit_timeout.as_millis()
                ));
                self.recover_ambiguous_commit_within(&batch, start, force_checkpoint, error)
                    .await
            }
        };
        match result {
            Ok(committed) => {
                self.retry = None;
                self.finish_commit(batch, committed);
            }
            Err(error) => {
                let message = error.to_string();
                tracing::error!(origin = %self.origin, error = %message, "audit commit failed");
                self.status
                    .send_modify(|status| status.last_error = Some(message.clone()));
                let mut batch = self.fail_waiters(batch, &message);
                let shutdown = batch.shutdown.take();
                self.retain(batch.entries);
                if let Some(reply) = shutdown {
                    self.give_up_retained("the gateway is shutting down");
                    let _ = reply.send(Err(AuditError::CommitFailed(message)));
                    return;
                }
                let backoff = self
                    .retry
                    .map_or(Duration::from_millis(10), |(_, backoff)| {
                        (backoff * 2).min(MAX_RETRY_BACKOFF)
                    });
                // Retry retained entries or an uncovered checkpoint later,
                // or, with nothing pending, probe the store, so the failure
                // clears (and readiness returns) without waiting for traffic.
                self.retry = Some((Instant::now() + backoff, backoff));
            }
        }
    }

    /// Learns whether the store takes writes again, with nothing to commit.
    // The probe's timestamp is only a marker row, never part of the log, so
    // it needs no injected clock.
    #[allow(clippy::disallowed_methods)]
    async fn probe(&mut self) {
        let probed_micros = jiff::Timestamp::now().as_microsecond();
        let probed = tokio::time::timeout(
            self.config.commit_timeout,
            store::probe_write(&self.pool, &self.origin, probed_micros),
        )
        .await
        .unwrap_or_else(|_| {
            Err(AuditError::CommitFailed(
                "the store did not take the probe write in time".into(),
            ))
        });
        match probed {
            Ok(()) => {
                tracing::info!(origin = %self.origin, "the store takes audit writes again");
                self.retry = None;
                self.status.send_modify(|status| status.last_error = None);
            }
            Err(error) => {
                let message = error.to_string();
                self.status
                    .send_modify(|status| status.last_error = Some(message));
                let backoff = self
                    .retry
                    .map_or(Duration::from_millis(10), |(_, backoff)| {
                        (backoff * 2).min(MAX_RETRY_BACKOFF)
                    });
                self.retry = Some((Instant::now() + backoff, backoff));
            }
        }
    }

    /// Keeps recorded entries for the next attempt, within the bound.
    fn retain(&mut self, entries: Vec<PreparedEntry>) {
        self.retained = entries;
        if self.retained.len() > MAX_RETAINED_ENTRIES {
            let excess = self.retained.len() - MAX_RETAINED_ENTRIES;
            self.retained.drain(..excess);
            tracing::error!(
                origin = %self.origin,
                lost_entries = excess,
                "the store stayed unavailable; recorded audit entries beyond the retention bound were given up"
            );
            self.status
                .send_modify(|status| status.lost_entries += excess as u64);
        }
        let retained = self.retained.len() as u64;
        self.status
            .send_modify(|status| status.retained_entries = retained);
    }

    /// Gives up every retained entry, logging how many.
    fn give_up_retained(&mut self, why: &str) {
        if self.retained.is_empty() {
            return;
        }
        let lost = self.retained.len() as u64;
        self.retained.clear();
        tracing::error!(origin = %self.origin, lost_entries = lost, why, "recorded audit entries could not be committed");
        self.status.send_modify(|status| {
            status.lost_entries += lost;
            status.retained_entries = 0;
        });
    }

    /// [`Writer::recover_ambiguous_commit`], bounded by the commit timeout.
    async fn recover_ambiguous_commit_within(
        &self,
        batch: &Batch,
        start: u64,
        force_checkpoint: bool,
        error: AuditError,
    ) -> Result<Committed, AuditError> {
        let message = error.to_string();
        tokio::time::timeout(
            self.config.commit_timeout,
            self.recover_ambiguous_commit(batch, start, force_checkpoint, error),
        )
        .await
        .unwrap_or(Err(AuditError::CommitFailed(message)))
    }

    /// A commit can fail after the database applied it (a connection lost
    /// during COMMIT). If the batch's rows are all there, it did commit.
    async fn recover_ambiguous_commit(
        &self,
        batch: &Batch,
        start: u64,
        force_checkpoint: bool,
        error: AuditError,
    ) -> Result<Committed, AuditError> {
        if batch.entries.is_empty() {
            return Err(error);
        }
        match store::count_entries_from(&self.pool, &self.origin, start).await {
            Ok(count) if count == batch.entries.len() as u64 => {
                let committed = self.prepare(batch, force_checkpoint)?;
                let stored =
                    store::load_leaf_hashes_page(&self.pool, &self.origin, start, count).await?;
                let matches = stored.len() == committed.leaves.len()
                    && stored
                        .iter()
                        .zip(&committed.leaves)
                        .all(|((_, stored_leaf), leaf)| *stored_leaf == store::hash_to_hex(leaf));
                if matches { Ok(committed) } else { Err(error) }
            }
            _ => Err(error),
        }
    }

    /// Answers and removes every waiter after a failed commit, keeping only
    /// the recorded entries for the retry.
    fn fail_waiters(&self, batch: Batch, message: &str) -> Batch {
        let Batch {
            entries,
            appenders,
            flushers,
            shutdown,
            urgent,
        } = batch;
        let mut appender_positions = Vec::with_capacity(appenders.len());
        for (position, reply) in appenders {
            appender_positions.push(position);
            let _ = reply.send(Err(AuditError::CommitFailed(message.to_owned())));
        }
        for reply in flushers {
            let _ = reply.send(Err(AuditError::CommitFailed(message.to_owned())));
        }
        let entries = entries
            .into_iter()
            .enumerate()
            .filter(|(position, _)| !appender_positions.contains(position))
            .map(|(_, entry)| entry)
            .collect();
        Batch {
            entries,
            appenders: Vec::new(),
            flushers: Vec::new(),
            shutdown,
            urgent,
        }
    }

    /// Computes positions, leaves, the new frontier and any checkpoints for
    /// a batch, without touching the writer's state.
    fn prepare(&self, batch: &Batch, force_checkpoint: bool) -> Result<Committed, AuditError> {
        let mut frontier = self.frontier.clone();
        let mut leaves = Vec::with_capacity(batch.entries.len());
        let mut entry_jsons = Vec::with_capacity(batch.entries.len());
        let mut checkpoints = Vec::new();
        let mut covered_size = self.last_checkpoint_size;
        let mut seq = self.next_checkpoint_seq;
        for entry in &batch.entries {
            let json = entry.canonical_json_at(frontier.size());
            let leaf = leaf_hash(json.as_bytes());
            frontier.append(leaf);
            leaves.push(leaf);
            entry_jsons.push(json);
            if frontier.size() - covered_size >= self.config.checkpoint_every_entries {
                checkpoints.push(self.sign_checkpoint(&frontier, seq)?);
                seq += 1;
                covered_size = frontier.size();
            }
        }
        let interval_elapsed = self
            .uncovered_since
            .is_some_and(|since| since.elapsed() >= self.config.checkpoint_interval);
        if frontier.size() > covered_size && (force_checkpoint || interval_elapsed) {
            checkpoints.push(self.sign_checkpoint(&frontier, seq)?);
        }
        Ok(Committed {
            frontier,
            leaves,
            entry_jsons,
            checkpoints,
        })
    }

    fn sign_checkpoint(
        &self,
        frontier: &Frontier,
        seq: i64,
    ) -> Result<(CheckpointRow, SignedCheckpoint), AuditError> {
        let checkpoint = Checkpoint {
            origin: self.origin.clone(),
            tree_size: frontier.size(),
            root_hash: frontier.root(),
        };
        let note = checkpoint.sign(&self.signer)?;
        let row = CheckpointRow {
            seq,
            tree_size: store::to_i64(checkpoint.tree_size),
            root_hash: store::hash_to_hex(&checkpoint.root_hash),
            frontier: store::frontier_to_text(frontier),
            note: note.clone(),
        };
        Ok((row, SignedCheckpoint { checkpoint, note }))
    }

    async fn try_commit(
        &self,
        batch: &Batch,
        force_checkpoint: bool,
    ) -> Result<Committed, CommitAttemptError> {
        let before = CommitAttemptError::BeforeCommit;
        let committed = self.prepare(batch, force_checkpoint).map_err(before)?;
        if batch.entries.is_empty() && committed.checkpoints.is_empty() {
            return Ok(committed);
        }
        let start = self.frontier.size();
        let mut inserts = Vec::with_capacity(batch.entries.len());
        for (offset, ((entry, leaf), json)) in batch
            .entries
            .iter()
            .zip(&committed.leaves)
            .zip(&committed.entry_jsons)
            .enumerate()
        {
            inserts.push(EntryInsert {
                index: start + offset as u64,
                leaf_hash: store::hash_to_hex(leaf),
                entry_json: json,
                columns: &entry.columns,
            });
        }
        let mut transaction = self
            .pool
            .begin()
            .await
            .map_err(|error| before(error.into()))?;
        store::insert_entries(&mut transaction, &self.origin, &inserts)
            .await
            .map_err(before)?;
        for (row, _) in &committed.checkpoints {
            store::insert_checkpoint(&mut transaction, &self.origin, row)
                .await
                .map_err(before)?;
        }
        transaction
            .commit()
            .await
            .map_err(|error| CommitAttemptError::AtCommit(error.into()))?;
        Ok(committed)
    }

    fn finish_commit(&mut self, batch: Batch, committed: Committed) {
        let start = self.frontier.size();
        self.frontier = committed.frontier;
        for (row, signed) in committed.checkpoints {
            self.next_checkpoint_seq = row.seq + 1;
            self.last_checkpoint_size = signed.checkpoint.tree_size;
            if let Some(target) = &self.config.witness {
                let record = WitnessRecord {
                    origin: self.origin.clone(),
                    tree_size: signed.checkpoint.tree_size,
                    note: signed.note.clone(),
                };
                if let Err(error) = append_to_witness(target, &record) {
                    // The store holds the checkpoint; a missing witness copy
                    // only weakens later truncation checks, so it must not
                    // stop the log.
                    tracing::warn!(origin = %self.origin, error = %error, "could not copy audit checkpoint to the witness");
                }
            }
            self.last_checkpoint = Some(signed);
        }
        if self.frontier.size() == self.last_checkpoint_size {
            self.uncovered_since = None;
        } else if self.uncovered_since.is_none() {
            self.uncovered_since = Some(Instant::now());
        }
        let committed_size = self.frontier.size();
        let checkpoint_size = self.last_checkpoint_size;
        self.status.send_modify(|status| {
            status.committed_size = committed_size;
            status.checkpoint_size = checkpoint_size;
            status.last_error = None;
            status.retained_entries = 0;
        });
        for (position, reply) in batch.appenders {
            let receipt = AppendReceipt {
                index: start + position as u64,
                leaf_hash: committed.leaves[position],
            };
            let _ = reply.send(Ok(receipt));
        }
        for reply in batch.flushers {
            let _ = reply.send(Ok(self.last_checkpoint.clone()));
        }
        if let Some(reply) = batch.shutdown {
            let _ = reply.send(Ok(self.last_checkpoint.clone()));
        }
    }
}
