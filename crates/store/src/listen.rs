//! Change notifications from a PostgreSQL store to other processes.
//!
//! Every write transaction queues `NOTIFY portcullis_store, '<version>'`
//! (see `bump_version`), which PostgreSQL delivers only on commit. A
//! [`StoreListener`] holds one dedicated connection that `LISTEN`s on that
//! channel. Notifications are transient: any sent while the connection is
//! down are lost. So on every (re)connect the listener first `LISTEN`s and
//! only then reports [`StoreEvent::Resync`], and the caller loads the full
//! contents after that event. A commit either happens before the load (and
//! the load sees it) or after `LISTEN` (and its notification arrives), so no
//! write can fall between the two.

use std::time::Duration;

use portcullis_domain::StoreVersion;
use sqlx::postgres::{PgListener, PgPoolOptions};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::{Backend, Store, StoreError};

/// The PostgreSQL channel that carries store versions.
pub const NOTIFY_CHANNEL: &str = "portcullis_store";

/// How long one connection attempt may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The first pause after a failed connection; it doubles up to the maximum.
const FIRST_RECONNECT_DELAY: Duration = Duration::from_millis(50);
/// The longest pause between two connection attempts, which bounds how long
/// a replica stays deaf after the database comes back.
const MAX_RECONNECT_DELAY: Duration = Duration::from_millis(500);
/// Events queued for a slow consumer before the listener waits for it.
const EVENT_QUEUE_DEPTH: usize = 1024;

/// What a [`StoreListener`] reports, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreEvent {
    /// The listener is connected and listening. Anything committed from now
    /// on will be notified; anything committed before may have been missed,
    /// so the caller must load the full contents now.
    Resync,
    /// A committed write bumped the store to this version.
    Version(StoreVersion),
    /// The listening connection was lost or could not be opened. The
    /// listener keeps trying and reports [`StoreEvent::Resync`] once it is
    /// listening again; until then no notification arrives.
    Disconnected { reason: String },
}

/// A background task listening for store notifications on a dedicated
/// connection. Dropping it stops the task and closes the connection.
#[derive(Debug)]
pub struct StoreListener {
    events: mpsc::Receiver<StoreEvent>,
    task: JoinHandle<()>,
}

impl StoreListener {
    /// The next event, or `None` once the listener task has stopped (which
    /// happens only when the listener is being dropped).
    pub async fn recv(&mut self) -> Option<StoreEvent> {
        self.events.recv().await
    }
}

impl Drop for StoreListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Store {
    /// Starts listening for versions committed by any process sharing this
    /// PostgreSQL database. The first event is [`StoreEvent::Resync`] once
    /// the connection is listening (or [`StoreEvent::Disconnected`] if it
    /// cannot be opened yet). SQLite has no notifications across processes:
    /// there the result is [`StoreError::NotificationsUnsupported`] and
    /// callers poll [`Store::version`] instead.
    // The listener owns its task and aborts it when dropped.
    #[allow(clippy::disallowed_methods)]
    pub fn listen(&self) -> Result<StoreListener, StoreError> {
        if self.backend != Backend::Postgres {
            return Err(StoreError::NotificationsUnsupported);
        }
        let (sender, events) = mpsc::channel(EVENT_QUEUE_DEPTH);
        let task = tokio::spawn(listen_forever(self.url.clone(), sender));
        Ok(StoreListener { events, task })
    }
}

/// Connects, listens and forwards notifications until the receiver is gone,
/// reconnecting with a short capped backoff whenever the connection fails.
async fn listen_forever(url: String, events: mpsc::Sender<StoreEvent>) {
    let mut reconnect_delay = FIRST_RECONNECT_DELAY;
    loop {
        let reason = match connect_and_listen(&url).await {
            Ok(mut listener) => {
                if events.send(StoreEvent::Resync).await.is_err() {
                    return;
                }
                reconnect_delay = FIRST_RECONNECT_DELAY;
                match forward(&mut listener, &events).await {
                    Forwarded::ReceiverGone => return,
                    Forwarded::ConnectionLost(reason) => reason,
                }
            }
            Err(reason) => reason,
        };
        if events
            .send(StoreEvent::Disconnected { reason })
            .await
            .is_err()
        {
            return;
        }
        tokio::time::sleep(reconnect_delay).await;
        reconnect_delay = (reconnect_delay * 2).min(MAX_RECONNECT_DELAY);
    }
}

/// Opens a fresh connection and issues `LISTEN`. Each attempt gets its own
/// single-connection pool, so a lost connection is dropped with its pool
/// rather than reconnected silently behind the caller's back.
async fn connect_and_listen(url: &str) -> Result<PgListener, String> {
    let attempt = async {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .max_lifetime(None)
            .idle_timeout(None)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect(url)
            .await?;
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.eager_reconnect(false);
        listener.ignore_pool_close_event(true);
        listener.listen(NOTIFY_CHANNEL).await?;
        Ok::<_, sqlx::Error>(listener)
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(Ok(listener)) => Ok(listener),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!(
            "no connection within {} ms",
            CONNECT_TIMEOUT.as_millis()
        )),
    }
}

enum Forwarded {
    ReceiverGone,
    ConnectionLost(String),
}

async fn forward(listener: &mut PgListener, events: &mpsc::Sender<StoreEvent>) -> Forwarded {
    loop {
        let notification = match listener.try_recv().await {
            Ok(Some(notification)) => notification,
            Ok(None) => return Forwarded::ConnectionLost("connection closed".into()),
            Err(error) => return Forwarded::ConnectionLost(error.to_string()),
        };
        // Only this crate writes to the channel, always a bare version. A
        // payload that is not one still proves something changed, so it
        // asks for a full reload rather than being ignored.
        let event = match notification.payload().parse::<StoreVersion>() {
            Ok(version) => StoreEvent::Version(version),
            Err(_) => {
                tracing::warn!(
                    payload = notification.payload(),
                    "unexpected store notification; reloading"
                );
                StoreEvent::Resync
            }
        };
        if events.send(event).await.is_err() {
            return Forwarded::ReceiverGone;
        }
    }
}
