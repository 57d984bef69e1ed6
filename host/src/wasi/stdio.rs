//! Guest stdout and stderr, turned into host log lines tagged with the generation and request.
//!
//! What one request may log is bounded ([`OutputBudget`], `--max-guest-output`, stdout and
//! stderr together): beyond it, output is counted and dropped, and one line says how much when
//! the request ends. A guest that writes 100 MB costs neither 100 MB of memory (lines are cut
//! at `MAX_LINE`) nor 100 MB of log.

use bytes::Bytes;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// A line longer than this is logged in pieces.
const MAX_LINE: usize = 16 << 10;

/// Which guest stream a line came from.
#[derive(Clone, Copy, Debug)]
enum Which {
    Stdout,
    Stderr,
}

impl Which {
    fn name(self) -> &'static str {
        match self {
            Which::Stdout => "stdout",
            Which::Stderr => "stderr",
        }
    }
}

/// What a log line says about the request it belongs to: its id, method and path. Cheap to
/// take, as the method and URI share hyper's buffers; the request's span (debug level) has the
/// same, but log lines at info and above must not depend on it.
#[derive(Clone, Debug)]
pub struct RequestTag {
    /// The host's number for the request (`request_id` in logs).
    pub id: u64,
    /// The route serving it.
    pub route: crate::metrics::RouteName,
    /// The request method.
    pub method: http::Method,
    /// The request target; logs show its path.
    pub uri: http::Uri,
    /// Where its guest's outbound calls hang in its trace (nothing when traces are off).
    pub trace: crate::telemetry::traces::TraceContext,
    /// Its side of its route's canary (`current` or `candidate`; `shadow` for a shadow
    /// candidate's copy), on a route with a policy.
    pub role: Option<&'static str>,
}

/// How many bytes of output one request (or, on a reused instance, each of its requests) may
/// still log, shared by its stdout and stderr; what went over is reported once, when the last
/// of its streams goes.
#[derive(Debug)]
pub struct OutputBudget {
    limit: u64,
    used: AtomicU64,
    dropped: AtomicU64,
    generation: u64,
    request: Option<RequestTag>,
    span: tracing::Span,
}

impl OutputBudget {
    /// A budget of `limit` bytes for `request` (`None`: a validation or a reused instance)
    /// served by `generation`.
    pub fn new(
        limit: u64,
        generation: u64,
        request: Option<RequestTag>,
        span: tracing::Span,
    ) -> Arc<Self> {
        Arc::new(OutputBudget {
            limit,
            used: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            generation,
            request,
            span,
        })
    }

    /// How many of `wanted` more bytes may be logged; the rest is counted as dropped.
    fn take(&self, wanted: usize) -> usize {
        let wanted = wanted as u64;
        let used = self.used.fetch_add(wanted, Ordering::Relaxed);
        let allowed = self.limit.saturating_sub(used).min(wanted);
        if allowed < wanted {
            self.dropped.fetch_add(wanted - allowed, Ordering::Relaxed);
        }
        allowed as usize
    }

    /// A new request begins on a reused instance: it gets the whole budget again (and what the
    /// last one dropped is reported now).
    pub fn renew(&self) {
        self.report();
        self.used.store(0, Ordering::Relaxed);
    }

    fn report(&self) {
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped == 0 {
            return;
        }
        let request = self.request.as_ref();
        self.span.in_scope(|| {
            tracing::warn!(
                route = request.map(|r| tracing::field::display(&r.route)),
                generation = self.generation,
                request_id = request.map(|r| r.id),
                role = request.and_then(|r| r.role),
                method = request.map(|r| tracing::field::display(&r.method)),
                path = request.map(|r| tracing::field::display(r.uri.path())),
                limit = self.limit,
                dropped,
                "guest output over the per-request limit of {} bytes: {dropped} bytes dropped",
                self.limit
            )
        });
    }
}

impl Drop for OutputBudget {
    fn drop(&mut self) {
        self.report();
    }
}

/// A guest output stream that becomes log lines, tagged with the request and inside its span.
///
/// One `GuestLog` is made per stream per request, and every handle the guest opens on that
/// stream (each `get-stdout()` call returns a new one) writes into its one line buffer: a line
/// written in pieces through several handles is still one log line, and a line never mixes two
/// requests. What is left without a newline is logged when the request's store is dropped.
#[derive(Clone, Debug)]
pub struct GuestLog {
    lines: Arc<Mutex<LineBuffer>>,
}

impl GuestLog {
    /// The guest's stdout while `generation` serves `request` (`None`: a validation run),
    /// logged inside `span`, within `budget`.
    pub fn stdout(
        generation: u64,
        request: Option<RequestTag>,
        span: tracing::Span,
        budget: Arc<OutputBudget>,
    ) -> Self {
        Self::new(Which::Stdout, generation, request, span, budget)
    }

    /// The guest's stderr, as [`GuestLog::stdout`].
    pub fn stderr(
        generation: u64,
        request: Option<RequestTag>,
        span: tracing::Span,
        budget: Arc<OutputBudget>,
    ) -> Self {
        Self::new(Which::Stderr, generation, request, span, budget)
    }

    fn new(
        which: Which,
        generation: u64,
        request: Option<RequestTag>,
        span: tracing::Span,
        budget: Arc<OutputBudget>,
    ) -> Self {
        GuestLog {
            lines: Arc::new(Mutex::new(LineBuffer {
                which,
                generation,
                request,
                span,
                buf: Vec::new(),
                budget,
            })),
        }
    }

    fn writer(&self) -> LineWriter {
        LineWriter {
            lines: self.lines.clone(),
        }
    }
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.writer())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.writer())
    }
}

/// The bytes of one stream of one request since its last newline, and what to tag lines with.
#[derive(Debug)]
struct LineBuffer {
    which: Which,
    generation: u64,
    request: Option<RequestTag>,
    span: tracing::Span,
    buf: Vec<u8>,
    budget: Arc<OutputBudget>,
}

impl LineBuffer {
    fn push(&mut self, bytes: &[u8]) {
        let allowed = self.budget.take(bytes.len());
        let mut bytes = &bytes[..allowed];
        while let Some(pos) = bytes.iter().position(|&b| b == b'\n') {
            self.buf.extend_from_slice(&bytes[..pos]);
            self.emit();
            bytes = &bytes[pos + 1..];
        }
        self.buf.extend_from_slice(bytes);
        while self.buf.len() >= MAX_LINE {
            let rest = self.buf.split_off(MAX_LINE);
            self.emit();
            self.buf = rest;
        }
    }

    fn emit(&mut self) {
        let line = String::from_utf8_lossy(&self.buf);
        let line = line.strip_suffix('\r').unwrap_or(&line);
        // Entering the request span only here, when a line is logged, attaches guest output to
        // its request without instrumenting every poll of the guest (costly for streaming).
        let request = self.request.as_ref();
        self.span.in_scope(|| {
            tracing::info!(
                target: "hotswap::guest",
                route = request.map(|r| tracing::field::display(&r.route)),
                generation = self.generation,
                request_id = request.map(|r| r.id),
                role = request.and_then(|r| r.role),
                method = request.map(|r| tracing::field::display(&r.method)),
                path = request.map(|r| tracing::field::display(r.uri.path())),
                stream = self.which.name(),
                "{line}"
            )
        });
        self.buf.clear();
    }
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.emit();
        }
    }
}

/// One guest handle on a stream; every handle of the stream shares its [`LineBuffer`].
struct LineWriter {
    lines: Arc<Mutex<LineBuffer>>,
}

impl LineWriter {
    fn push(&self, bytes: &[u8]) {
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(bytes);
    }
}

#[async_trait::async_trait]
impl Pollable for LineWriter {
    async fn ready(&mut self) {}
}

impl OutputStream for LineWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(MAX_LINE)
    }
}

impl tokio::io::AsyncWrite for LineWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
