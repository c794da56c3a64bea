//! Listeners: an accept loop over hyper's HTTP/1 server that sets
//! `TCP_NODELAY` on every accepted socket, bounds the time a client may take
//! to send its request head, stamps every response with `x-request-id`, and
//! drains connections on shutdown up to a deadline.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use http::HeaderValue;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::request_id::RequestId;

/// The peer address of a connection, for trusted-proxy checks.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub header_read_timeout: Duration,
    /// How long to wait for open connections after shutdown begins.
    pub drain_deadline: Duration,
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then stops
/// accepting, lets in-flight requests finish up to the drain deadline, and
/// cancels `cut` so that streams still running end with an error event.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    shutdown: CancellationToken,
    cut: CancellationToken,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .keep_alive(true);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Running out of file descriptors is transient; back off
                // instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
            let request_id = RequestId::generate();
            let header_value = HeaderValue::from_str(&request_id.0).ok();
            request.extensions_mut().insert(request_id);
            request.extensions_mut().insert(PeerAddr(peer));
            let router = router.clone();
            async move {
                let mut response = match router.oneshot(request.map(axum::body::Body::new)).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                if let Some(value) = header_value {
                    response.headers_mut().insert("x-request-id", value);
                }
                Ok::<_, Infallible>(response)
            }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(options.drain_deadline) => {
            tracing::warn!("drain deadline reached; cutting remaining streams");
            cut.cancel();
            // Give cut streams a moment to send their final error event.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
