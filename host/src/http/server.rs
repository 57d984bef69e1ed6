//! The accept loop of a listener (the public one and the admin one alike), the settings of its
//! connections, and graceful shutdown.
//!
//! Every connection of either listener gets the same protections: a header read timeout, header
//! field and size limits, a write timeout ([`ConnIo`]), an idle timeout, and HTTP/2 keep-alive
//! pings that find peers gone without a word. A listener may also cap its open connections (the
//! admin listener does): one more is closed as soon as it is accepted.
//!
//! **Idle.** A connection is idle while none of its requests is in progress (a request is in
//! progress from its arrival until its response body has been sent, or dropped). A connection
//! idle for `--idle-timeout` is shut down gracefully: HTTP/1 closes it, HTTP/2 sends `GOAWAY`.
//! One that has not begun a single request within `--header-read-timeout` of being accepted is
//! shut down the same way: hyper bounds an HTTP/1 request head by that timeout, but not an
//! HTTP/2 handshake, which a client could otherwise leave half done for as long as it likes. A
//! request never counts as idle, however long its guest takes, and a graceful shutdown never
//! cuts one; but a connection still open [`CLOSE_GRACE`] after a graceful shutdown of an idle
//! connection (a client that stalls mid-handshake never reads the `GOAWAY`) is dropped.
//!
//! **Stop.** When the listener stops (a shutdown, or an upgrade handing it to a new process),
//! requests in progress finish. An HTTP/2 connection gets `GOAWAY`. An HTTP/1 connection gets
//! [`LAST_REQUEST_WAIT`] to begin one more request, which is answered with `Connection: close`,
//! and is closed then if it began none: a keep-alive client that sent its next request as the
//! stop began, or a connection accepted just before it whose request had not been read yet, is
//! answered, not reset.

use crate::config::ConnLimits;
use crate::guest::body::ResponseBody;
use crate::http::conn_io::{ConnIo, WaitingReads};
use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long an idle connection that was asked to close gracefully may take to do so before it
/// is dropped.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// How long a connection that is idle when the listener stops may take to begin one more
/// request, which is answered (with `Connection: close`) before it closes. A client that sent
/// its request as the stop began, or whose connection was accepted just before, gets an
/// answer instead of a closed connection; under load, the next request of a keep-alive
/// connection arrives well within this.
pub const LAST_REQUEST_WAIT: Duration = Duration::from_millis(500);
/// How often an HTTP/2 connection pings its peer while it has no frame from it, and how long it
/// waits for the answer before it closes the connection as dead.
const H2_KEEP_ALIVE: Duration = Duration::from_secs(20);

/// What happened to the requests that were running when shutdown began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Requests in flight when shutdown began.
    pub in_flight: usize,
    /// Requests still running when the shutdown timeout ran out, and so cut.
    pub cut: usize,
}

/// Serves one request of a listener: the dispatcher for the public listener, the admin API for
/// the admin one.
pub trait Handler: Send + Sync + 'static {
    /// Answers `req`; every problem is a response.
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> impl Future<Output = Response<ResponseBody>> + Send;
}

/// The listener's share of the shutdown: the connections still open, and the signal that asks
/// them to close.
#[derive(Clone)]
pub struct Connections {
    inner: Arc<ConnectionsInner>,
}

struct ConnectionsInner {
    open: AtomicUsize,
    all_closed: Notify,
    stop: watch::Sender<bool>,
}

impl Default for Connections {
    fn default() -> Self {
        Connections {
            inner: Arc::new(ConnectionsInner {
                open: AtomicUsize::new(0),
                all_closed: Notify::new(),
                stop: watch::channel(false).0,
            }),
        }
    }
}

impl Connections {
    /// Connections open now.
    pub fn open(&self) -> usize {
        self.inner.open.load(Ordering::Acquire)
    }

    /// Asks every connection to finish its requests and close.
    pub fn close_all(&self) {
        self.inner.stop.send_replace(true);
    }

    /// Resolves once every connection has closed.
    pub async fn closed(&self) {
        loop {
            let notified = self.inner.all_closed.notified();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }

    fn opened(&self) -> OpenConnection {
        self.inner.open.fetch_add(1, Ordering::AcqRel);
        OpenConnection(self.inner.clone())
    }
}

/// One open connection, counted until dropped.
struct OpenConnection(Arc<ConnectionsInner>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.all_closed.notify_waiters();
        }
    }
}

/// Builds the HTTP/1.1 + HTTP/2 (cleartext) connection builder with the header limits.
fn connection_builder(limits: &ConnLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    let header_bytes = usize::try_from(limits.max_header_bytes).unwrap_or(usize::MAX);
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // hyper's `max_headers` counts fields; the section size is checked per request
        // (`check_headers`; `max_buf_size` would also cap the buffer bodies are read through,
        // slowing uploads).
        .max_headers(limits.max_headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(u32::try_from(limits.max_streams).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(H2_KEEP_ALIVE))
        .keep_alive_timeout(H2_KEEP_ALIVE);
    builder
}

/// A listener's connections: their limits, and the most that may be open at once.
pub struct Accept {
    /// Limits on every connection.
    pub limits: ConnLimits,
    /// Connections beyond this many are closed as soon as they are accepted (`None`: no cap).
    pub max_connections: Option<usize>,
    /// Names the listener in log lines.
    pub name: &'static str,
    /// Serve HTTPS with this configuration (`None`: plain HTTP).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Most TLS handshakes a listener runs at once; more connections wait their turn (within the
/// header read timeout), so that a flood of handshakes takes a bounded share of the CPU and the
/// requests of connections already open are served beside it.
const MAX_HANDSHAKES: usize = 32;

/// Accepts connections from `listener` and serves them with `handler` until `stop` resolves;
/// then stops accepting and returns, leaving the open connections to [`Connections`].
pub async fn accept<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    accept: Accept,
    connections: Connections,
    stop: impl Future<Output = ()>,
) {
    let builder = Arc::new(connection_builder(&accept.limits));
    let waiting_reads = WaitingReads::default();
    let tls = accept.tls.clone().map(|config| Handshakes {
        acceptor: tokio_rustls::TlsAcceptor::from(config),
        turns: Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES)),
    });
    let mut over_cap_logged = false;
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(err) => {
                    tracing::warn!(listener = accept.name, error = %err, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        if let Some(max) = accept.max_connections {
            if connections.open() >= max {
                if !over_cap_logged {
                    tracing::warn!(listener = accept.name, %peer, max, "too many open connections; closing new ones until some close");
                    over_cap_logged = true;
                }
                drop(stream);
                continue;
            }
            over_cap_logged = false;
        }
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(error = %err, "cannot set TCP_NODELAY");
        }
        let open = connections.opened();
        let stopping = connections.inner.stop.subscribe();
        let timeouts = Timeouts {
            first_request: accept.limits.header_read_timeout,
            idle: accept.limits.idle_timeout,
        };
        let (builder, handler, waiting) = (builder.clone(), handler.clone(), waiting_reads.clone());
        let write_timeout = accept.limits.write_timeout;
        match &tls {
            None => {
                let io = ConnIo::new(TokioIo::new(stream), write_timeout, peer, waiting);
                tokio::spawn(serve_connection(
                    io, builder, handler, timeouts, stopping, open,
                ));
            }
            Some(tls) => {
                let tls = tls.clone();
                tokio::spawn(async move {
                    let Some(stream) = tls.handshake(stream, peer, timeouts.first_request).await
                    else {
                        return;
                    };
                    let io = ConnIo::new(TokioIo::new(stream), write_timeout, peer, waiting);
                    serve_connection(io, builder, handler, timeouts, stopping, open).await;
                });
            }
        }
    }
}

/// A listener's TLS: its acceptor, and the turns its handshakes take ([`MAX_HANDSHAKES`]).
#[derive(Clone)]
struct Handshakes {
    acceptor: tokio_rustls::TlsAcceptor,
    turns: Arc<tokio::sync::Semaphore>,
}

impl Handshakes {
    /// The TLS session of `stream`, or `None` (logged at debug) when the client does not
    /// complete its handshake within `timeout` (waiting for a turn included) or it fails.
    async fn handshake(
        &self,
        stream: tokio::net::TcpStream,
        peer: std::net::SocketAddr,
        timeout: Duration,
    ) -> Option<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
        let shaken = tokio::time::timeout(timeout, async {
            let _turn = self.turns.acquire().await.ok()?;
            match self.acceptor.accept(stream).await {
                Ok(tls) => Some(tls),
                Err(err) => {
                    tracing::debug!(%peer, error = %err, "TLS handshake failed");
                    None
                }
            }
        })
        .await;
        match shaken {
            Ok(tls) => tls,
            Err(_) => {
                tracing::debug!(%peer, ?timeout, "TLS handshake not done within the header read timeout; closing");
                None
            }
        }
    }
}

/// How long a connection may go without a request in progress.
#[derive(Clone, Copy)]
struct Timeouts {
    /// Before its first request begins.
    first_request: Duration,
    /// After that.
    idle: Duration,
}

/// Serves one connection until it ends, shutting it down gracefully once it has been idle for
/// too long (see the module docs) or when the listener stops, and dropping it if it is still
/// open and idle [`CLOSE_GRACE`] after that.
async fn serve_connection<H, S>(
    io: ConnIo<TokioIo<S>>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    handler: Arc<H>,
    timeouts: Timeouts,
    mut stopping: watch::Receiver<bool>,
    open: OpenConnection,
) where
    H: Handler,
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let peer = io.peer();
    let activity = Arc::new(Activity::new());
    let service = {
        let activity = activity.clone();
        let listener = open.0.clone();
        service_fn(move |req: Request<Incoming>| {
            let busy = activity.begin(req.version());
            let handler = handler.clone();
            // A request that begins after the listener stopped is the connection's last: its
            // response says so, and hyper closes the connection once it is written. (Asking
            // hyper to close from outside could race a response it writes, kept alive, in the
            // same poll.)
            let last = *listener.stop.borrow() && req.version() < http::Version::HTTP_2;
            async move {
                let mut response = handler.handle(req).await;
                if last {
                    response.headers_mut().insert(
                        http::header::CONNECTION,
                        http::HeaderValue::from_static("close"),
                    );
                }
                Ok::<_, Infallible>(response.map(|inner| Tracked { inner, _busy: busy }))
            }
        })
    };
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    // One timer for the connection's life, re-armed rather than made anew: the loop below runs
    // only when the timer fires or the listener stops, never once per request, so that it never
    // polls the connection a second time in the poll in which the connection chose to wait (a
    // response held back one turn to be written with others, `ConnIo`).
    let check = tokio::time::sleep(timeouts.first_request.min(timeouts.idle));
    tokio::pin!(check);
    // When a graceful shutdown was asked for, and so when an idle connection is dropped.
    let mut closing: Option<Instant> = None;
    // The listener stopped: until this instant an HTTP/1 connection may begin one more request.
    let mut last_call: Option<Instant> = None;
    // Asks the connection to close once its requests are done, and to be dropped
    // [`CLOSE_GRACE`] later if it is idle and still open then.
    macro_rules! graceful {
        () => {{
            conn.as_mut().graceful_shutdown();
            closing = Some(Instant::now());
            check.as_mut().reset((Instant::now() + CLOSE_GRACE).into());
        }};
    }
    // The listener stopped. HTTP/2 closes with `GOAWAY`, which clients handle. HTTP/1 is not
    // closed at once, even with a request in progress: hyper may have written that response,
    // kept alive, a moment before it counts as ended here, and the client may be sending its
    // next one already. Instead, a request that begins after the stop is answered with
    // `Connection: close` (above), and a connection that begins none within
    // [`LAST_REQUEST_WAIT`] is closed then.
    macro_rules! stop {
        () => {{
            if activity.is_http2() {
                graceful!();
            } else {
                let until = Instant::now() + LAST_REQUEST_WAIT;
                last_call = Some(until);
                check.as_mut().reset(until.into());
            }
        }};
    }
    if *stopping.borrow() {
        stop!();
    }
    loop {
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(err) = ended {
                    tracing::debug!(%peer, error = %err, "connection ended with an error");
                }
                return;
            }
            changed = stopping.changed(), if closing.is_none() && last_call.is_none() => {
                if changed.is_err() || *stopping.borrow() {
                    stop!();
                }
            }
            () = check.as_mut() => {
                let next = match closing {
                    // No request came: it closes now.
                    // No request began since the stop (or one still runs): close now.
                    None if last_call.is_some_and(|until| Instant::now() >= until) => {
                        last_call = None;
                        conn.as_mut().graceful_shutdown();
                        closing = Some(Instant::now());
                        Instant::now() + CLOSE_GRACE
                    }
                    None if last_call.is_some() => last_call.unwrap_or_else(Instant::now),
                    None if activity.idle_for(timeouts) => {
                        tracing::debug!(%peer, "closing an idle connection");
                        conn.as_mut().graceful_shutdown();
                        closing = Some(Instant::now());
                        Instant::now() + CLOSE_GRACE
                    }
                    None => activity.idle_deadline(timeouts),
                    // Asked to close, and still idle: a client that never read the `GOAWAY` (or
                    // never finished its handshake). Nothing is in progress to cut.
                    Some(_) if activity.is_idle() => {
                        tracing::debug!(%peer, "dropping an idle connection that did not close");
                        return;
                    }
                    // Requests in progress: they finish (the shutdown timeout bounds them).
                    Some(_) => Instant::now() + CLOSE_GRACE,
                };
                check.as_mut().reset(next.into());
            }
        }
    }
}

/// Whether a connection has a request in progress, and since when it has had none.
struct Activity {
    started: Instant,
    busy: AtomicUsize,
    /// Whether any request has begun.
    seen: std::sync::atomic::AtomicBool,
    /// Whether its requests are HTTP/2.
    http2: std::sync::atomic::AtomicBool,
    /// Milliseconds since `started` at which the last request in progress ended.
    idle_since_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            started: Instant::now(),
            busy: AtomicUsize::new(0),
            seen: std::sync::atomic::AtomicBool::new(false),
            http2: std::sync::atomic::AtomicBool::new(false),
            idle_since_ms: AtomicU64::new(0),
        }
    }

    fn begin(self: &Arc<Self>, version: http::Version) -> Busy {
        if version == http::Version::HTTP_2 {
            self.http2.store(true, Ordering::Release);
        }
        self.seen.store(true, Ordering::Release);
        self.busy.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    /// Whether its requests are HTTP/2 (unknown, and `false`, before the first).
    fn is_http2(&self) -> bool {
        self.http2.load(Ordering::Acquire)
    }

    fn is_idle(&self) -> bool {
        self.busy.load(Ordering::Acquire) == 0
    }

    /// The timeout that applies now: before the first request, or between requests.
    fn timeout(&self, timeouts: Timeouts) -> Duration {
        if self.seen.load(Ordering::Acquire) {
            timeouts.idle
        } else {
            timeouts.first_request
        }
    }

    /// How long the connection has had no request in progress.
    fn idle(&self) -> Duration {
        if !self.is_idle() {
            return Duration::ZERO;
        }
        let since = Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
        self.started.elapsed().saturating_sub(since)
    }

    /// Whether it has been idle for longer than its timeout.
    fn idle_for(&self, timeouts: Timeouts) -> bool {
        self.is_idle() && self.idle() >= self.timeout(timeouts)
    }

    /// When to look again: when the connection will have been idle for its timeout if
    /// nothing happens before, and at the latest one idle timeout from now (a request in
    /// progress may end in between, and a connection's first timeout may be the longer one).
    fn idle_deadline(&self, timeouts: Timeouts) -> Instant {
        let now = Instant::now();
        let due = now + self.timeout(timeouts).saturating_sub(self.idle());
        due.min(now + timeouts.idle)
    }
}

/// A request in progress on its connection; dropped with its response body.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let at = self.0.started.elapsed().as_millis() as u64;
        self.0.idle_since_ms.store(at, Ordering::Release);
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted as in progress until it is sent or dropped.
struct Tracked {
    inner: ResponseBody,
    _busy: Busy,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What a listener needs to drain on shutdown: its connections, and requests whose guests run
/// on after their connection closed.
pub trait Drain {
    /// Requests in progress now.
    fn in_flight(&self) -> usize;
    /// Resolves once none is.
    fn all_finished(&self) -> impl Future<Output = ()> + Send;
}

/// Stops accepting (the caller has already stopped the accept loop), asks every connection to
/// close once its requests are done, and waits for that and for every request, for up to
/// `shutdown_timeout`.
pub async fn drain(
    connections: &Connections,
    requests: &impl Drain,
    shutdown_timeout: Duration,
) -> ShutdownReport {
    let in_flight = requests.in_flight();
    tracing::info!(
        in_flight,
        connections = connections.open(),
        "shutting down: no new connections; draining in-flight requests (up to {shutdown_timeout:?})"
    );
    connections.close_all();
    // Open connections first; then guests still running on their own after their client left
    // (they hold a slot until they end).
    let drained = tokio::time::timeout(shutdown_timeout, async {
        connections.closed().await;
        requests.all_finished().await;
    })
    .await
    .is_ok();
    let cut = if drained {
        0
    } else {
        requests.in_flight().min(in_flight)
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
