//! The accept loop, connection settings, and graceful shutdown.

use crate::config::ConnLimits;
use crate::conn_io::{ConnIo, WaitingReads};
use crate::handler::Dispatcher;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What happened to the requests that were running when shutdown began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Requests in flight when shutdown began.
    pub in_flight: usize,
    /// Requests still running when the shutdown timeout ran out, and so cut.
    pub cut: usize,
}

/// Builds the HTTP/1.1 + HTTP/2 (cleartext) connection builder with the header limits.
fn connection_builder(limits: &ConnLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    let header_bytes = usize::try_from(limits.max_header_bytes).unwrap_or(usize::MAX);
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // hyper's `max_headers` counts fields; the section size is checked by the dispatcher
        // (`max_buf_size` would also cap the buffer bodies are read through, slowing uploads).
        .max_headers(limits.max_headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(u32::try_from(limits.max_streams).unwrap_or(u32::MAX));
    builder
}

/// Serves connections from `listener` until `shutdown` resolves, then drains: stops accepting,
/// lets in-flight requests finish for up to `shutdown_timeout`, closes idle connections.
pub async fn serve(
    listener: TcpListener,
    dispatcher: Arc<Dispatcher>,
    limits: &ConnLimits,
    shutdown_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) -> ShutdownReport {
    let builder = connection_builder(limits);
    let graceful = GracefulShutdown::new();
    let waiting_reads = WaitingReads::default();
    tokio::pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(error = %err, "cannot set TCP_NODELAY");
        }
        let dispatcher = dispatcher.clone();
        let service = service_fn(move |req| {
            let dispatcher = dispatcher.clone();
            async move { Ok::<_, Infallible>(dispatcher.handle(req).await) }
        });
        let io = ConnIo::new(
            TokioIo::new(stream),
            limits.write_timeout,
            peer,
            waiting_reads.clone(),
        );
        let conn = builder.serve_connection(io, service).into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(peer = %peer, error = %err, "connection ended with an error");
            }
        });
    }

    drop(listener);
    let in_flight = dispatcher.in_flight();
    tracing::info!(
        in_flight,
        connections = graceful.count(),
        "shutting down: no new connections; draining in-flight requests (up to {shutdown_timeout:?})"
    );
    // Open connections first; then guests still running on their own after their client left
    // (they hold a slot until they end).
    let drained = tokio::time::timeout(shutdown_timeout, async {
        graceful.shutdown().await;
        dispatcher.all_finished().await;
    })
    .await
    .is_ok();
    let cut = if drained {
        0
    } else {
        dispatcher.in_flight().min(in_flight)
    };
    tracing::info!(
        drained = in_flight - cut,
        cut,
        "shutdown complete: {} request(s) drained, {} cut",
        in_flight - cut,
        cut
    );
    ShutdownReport { in_flight, cut }
}
