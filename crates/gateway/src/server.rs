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

use crate::error::{ApiError, ApiFormat, ErrorSource};
use crate::request_id::RequestId;

/// The peer address of a connection, for trusted-proxy checks.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// The request head a client may send: at most this many header fields...
pub const MAX_REQUEST_HEADERS: usize = 256;
/// ...and at most this many bytes of them (names, values and separators).
/// Both are above what real edge proxies add (Envoy defaults to 100 fields
/// and 60 KiB; Cloudflare to 128 KiB in all). Above them the request gets
/// 431 `headers_too_large` in the API's native body, with `x-request-id`.
pub const MAX_REQUEST_HEADER_BYTES: usize = 128 * 1024;
/// hyper's own bounds, past ours, so that hyper's bare answer (no body, no
/// request id) is reached only by heads far over the limits above.
const HYPER_MAX_HEADERS: usize = 2 * MAX_REQUEST_HEADERS;
const HYPER_MAX_HEADER_BYTES: usize = 2 * MAX_REQUEST_HEADER_BYTES;

/// Why a request head is over the documented bounds, if it is.
fn head_over_bounds(headers: &http::HeaderMap) -> Option<String> {
    if headers.len() > MAX_REQUEST_HEADERS {
        return Some(format!(
            "the request has {} header fields; at most {MAX_REQUEST_HEADERS} are accepted",
            headers.len()
        ));
    }
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    (bytes > MAX_REQUEST_HEADER_BYTES).then(|| {
        format!(
            "the request headers are {bytes} bytes; at most {MAX_REQUEST_HEADER_BYTES} are accepted"
        )
    })
}

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub header_read_timeout: Duration,
    /// How long to wait for open connections after shutdown begins.
    pub drain_deadline: Duration,
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then stops
/// accepting, lets in-flight requests finish up to the drain deadline, and
/// cancels `cut` so that streams still running end with an error event.
// Owns its connection tasks: the graceful watcher drains them, and the
// cut token ends their streams at the deadline.
#[allow(clippy::disallowed_methods)]
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
        .max_headers(HYPER_MAX_HEADERS)
        .max_header_size(HYPER_MAX_HEADER_BYTES)
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
            let over_bounds = head_over_bounds(request.headers());
            async move {
                let mut response = match over_bounds {
                    Some(message) => {
                        let format = if request.uri().path().starts_with("/v1/messages") {
                            ApiFormat::Anthropic
                        } else {
                            ApiFormat::OpenAi
                        };
                        let id = request
                            .extensions()
                            .get::<RequestId>()
                            .map(|id| id.0.clone())
                            .unwrap_or_default();
                        let mut response = ApiError::new(
                            http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                            "headers_too_large",
                            message,
                            ErrorSource::Client,
                        )
                        .into_response_for(format, &id);
                        // The rest of the request is not read: end the
                        // connection rather than parse it as a new one.
                        response
                            .headers_mut()
                            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
                        response
                    }
                    None => match router.oneshot(request.map(axum::body::Body::new)).await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    },
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
