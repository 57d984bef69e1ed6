//! Where a request goes: limits, a fresh instance of the current generation, and the mapping of
//! every way a guest can fail to a status code.
//!
//! Each request waits (briefly) for a concurrency permit, takes an owned `Arc<Generation>` from
//! the slot, and runs the guest with a fresh `Store` on the connection's own task: the handler
//! polls the guest until it sets the response head (which comes back over a oneshot). A guest
//! that has already ended by then (a small response: the common case) costs no task spawn; one
//! still running (streaming its body, or whose client went away) moves to a task of its own
//! and runs to its end within its deadline, whether or not its client reads ([`GuestRun`],
//! [`GuardedBody`]). The permit and the generation are released when the guest run ends.

use crate::body::{GuardedBody, GuestRun, LimitedBody, ResponseBody, full};
use crate::config::Limits;
use crate::engine::{HostState, Runtime};
use crate::guest_io::RequestTag;
use crate::metrics::Metrics;
use crate::slot::{Generation, InFlight, Slot};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderValue, RETRY_AFTER};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::Poll;
use std::time::Instant;
use tokio::sync::{Semaphore, oneshot};
use tracing::Instrument;
use tracing::field::Empty;
use wasmtime::Store;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// Name of the response header that says which generation served a request.
pub const GENERATION_HEADER: &str = "x-hotswap-generation";

/// Dispatches requests to the current generation under the configured limits.
pub struct Dispatcher {
    runtime: Arc<Runtime>,
    slot: Arc<Slot>,
    limits: Limits,
    permits: Arc<Semaphore>,
    next_id: AtomicU64,
    metrics: Arc<Metrics>,
    expose_errors: bool,
}

/// How a guest run ended, when it did not end well.
#[derive(Debug)]
enum GuestFailure {
    /// The request deadline passed.
    TimedOut,
    /// The guest tried to grow a memory past `--max-memory`.
    MemoryLimit(String),
    /// A per-kind pool of the instance allocator was full (the error says which).
    PoolExhausted(String),
    /// A trap or host error.
    Trap(String),
    /// The guest ended without setting a response.
    NoResponse,
}

type ResponseResult = Result<hyper::Response<HyperOutgoingBody>, ErrorCode>;

impl Dispatcher {
    /// A dispatcher serving from `slot`.
    /// A dispatcher serving from `slot`. With `expose_errors` (dev mode) a failed request's 500
    /// body carries the guest's error; otherwise only the log does.
    pub fn new(
        runtime: Arc<Runtime>,
        slot: Arc<Slot>,
        limits: Limits,
        metrics: Arc<Metrics>,
        expose_errors: bool,
    ) -> Self {
        let permits = Arc::new(Semaphore::new(limits.max_concurrency));
        Dispatcher {
            runtime,
            slot,
            limits,
            permits,
            next_id: AtomicU64::new(1),
            metrics,
            expose_errors,
        }
    }

    /// Requests currently holding a concurrency slot (running or streaming their body).
    pub fn in_flight(&self) -> usize {
        self.limits.max_concurrency - self.permits.available_permits()
    }

    /// Resolves once no request holds a concurrency slot, counting guests that run on after
    /// their client left. Takes every slot as it does so: only for shutdown.
    pub async fn all_finished(&self) {
        let all = u32::try_from(self.limits.max_concurrency).unwrap_or(u32::MAX);
        // The semaphore is never closed, so this only returns once every slot is free.
        let _all = self.permits.acquire_many(all).await;
    }

    /// Serves one request. Never fails: every problem becomes a response.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<ResponseBody> {
        let started = Instant::now();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        // A span per request only at debug level: at info, creating and entering one costs ~7 %
        // of a hello request (BENCHMARKS.md), so the lines logged at info and above carry the
        // request's id, method and path as fields of their own (`RequestTag`).
        let span = tracing::debug_span!(
            "request",
            id,
            method = %req.method(),
            path = %req.uri().path(),
            status = Empty,
            generation = Empty,
            duration_ms = Empty,
        );
        // The generation that served the request, 0 when none did (refused before the guest).
        let mut generation = 0;
        let mut response = self
            .dispatch(id, started, req, &mut generation)
            .instrument(span.clone())
            .await;
        if generation != 0 {
            response
                .headers_mut()
                .insert(GENERATION_HEADER, HeaderValue::from(generation));
        }
        let status = response.status().as_u16();
        let elapsed = started.elapsed();
        self.metrics.request(status, generation, elapsed);
        if !span.is_disabled() {
            span.record("status", status);
            span.record("generation", generation);
            span.record("duration_ms", elapsed.as_secs_f64() * 1000.0);
            span.in_scope(|| tracing::debug!("response head sent"));
        }
        response
    }

    async fn dispatch(
        &self,
        id: u64,
        started: Instant,
        req: Request<Incoming>,
        served_by: &mut u64,
    ) -> Response<ResponseBody> {
        if req.uri().authority().is_none() && !req.headers().contains_key(HOST) {
            return plain(StatusCode::BAD_REQUEST, "the request has no Host header\n");
        }
        // hyper enforces these limits on HTTP/1 only down to its 8 KiB buffer, and not at all
        // for the field count on HTTP/2: check both here for every protocol.
        let fields = req.headers().len();
        let section: usize = req
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum();
        if fields > self.limits.max_headers || section as u64 > self.limits.max_header_bytes {
            return plain(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                format!(
                    "the request headers exceed the limits ({} fields, {} bytes)\n",
                    self.limits.max_headers, self.limits.max_header_bytes
                ),
            );
        }
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.limits.max_body_size) {
            return too_large(self.limits.max_body_size);
        }

        // A free permit is taken at once; only a request that has to queue sets a timer.
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => tokio::time::timeout(
                self.limits.queue_timeout,
                self.permits.clone().acquire_owned(),
            )
            .await
            .ok()
            .and_then(Result::ok),
        };
        let permit = match permit {
            Some(permit) => permit,
            None => {
                tracing::warn!(
                    request_id = id,
                    method = %req.method(),
                    path = %req.uri().path(),
                    limit = self.limits.max_concurrency,
                    "concurrency limit reached; answering 503"
                );
                return retry_shortly("the server is at its concurrency limit; retry shortly\n");
            }
        };
        let Some(generation) = self.slot.current() else {
            let reason = self.slot.unavailable_reason();
            return plain(StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n"));
        };
        let number = generation.number;
        *served_by = number;
        let in_flight = generation.enter();
        drop(generation);

        let tag = RequestTag {
            id,
            method: req.method().clone(),
            uri: req.uri().clone(),
        };
        let exceeded = Arc::new(AtomicBool::new(false));
        let req =
            req.map(|body| LimitedBody::new(body, self.limits.max_body_size, exceeded.clone()));
        let deadline = started + self.limits.request_timeout;
        let (response_tx, mut response_rx) = oneshot::channel::<ResponseResult>();
        let runtime = self.runtime.clone();
        let metrics = self.metrics.clone();
        metrics.in_flight.inc();
        // `dispatch` runs inside the request's span (if enabled); the guest run logs into it
        // explicitly.
        let span = tracing::Span::current();
        let guest_tag = tag.clone();
        // The guest runs right here, on the connection's task, until it sets the response head
        // below; if it is still running then, it goes on on a task of its own (`GuardedBody`).
        let mut guest = GuestRun::new(async move {
            let result = run_guest(
                &runtime,
                &in_flight,
                &guest_tag,
                deadline,
                req,
                response_tx,
                &span,
            )
            .await;
            if let Err(failure) = &result {
                span.in_scope(|| log_failure(&metrics, &guest_tag, number, failure));
            }
            drop(in_flight);
            drop(permit);
            metrics.in_flight.dec();
            result
        });

        // Race the guest's end against its response head. `head` is `None` when the guest
        // dropped the response unset; `outcome` is `None` while the guest is still running.
        let (head, outcome) = std::future::poll_fn(|cx| {
            if let Poll::Ready(outcome) = Pin::new(&mut guest).poll(cx) {
                // The guest ran to its end in one go (a small response): whatever head it set
                // is waiting in the channel.
                return Poll::Ready((response_rx.try_recv().ok(), Some(outcome)));
            }
            Pin::new(&mut response_rx)
                .poll(cx)
                .map(|head| (head.ok(), None))
        })
        .await;
        match (head, outcome) {
            (Some(Ok(resp)), None) => {
                resp.map(|body| GuardedBody::running(body, guest).boxed_unsync())
            }
            (Some(Ok(resp)), Some(outcome)) => resp.map(|body| {
                GuardedBody::<GuestFailure>::finished(body, outcome.is_ok()).boxed_unsync()
            }),
            (Some(Err(code)), _) => {
                // A guest that goes on after giving up finishes on its own task.
                drop(guest);
                if exceeded.load(Ordering::Relaxed) {
                    tracing::debug!(request_id = id, ?code, "guest gave up on an oversize body");
                    return too_large(self.limits.max_body_size);
                }
                tracing::warn!(
                    request_id = id,
                    method = %tag.method,
                    path = %tag.uri.path(),
                    generation = number,
                    ?code,
                    "guest answered with an error code"
                );
                plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("the component failed to handle the request: {code:?}\n"),
                )
            }
            (None, outcome) => {
                // The guest run ended, or will, without setting a response.
                let outcome = match outcome {
                    Some(outcome) => outcome,
                    None => guest.await,
                };
                if exceeded.load(Ordering::Relaxed) {
                    return too_large(self.limits.max_body_size);
                }
                // A failure was logged where it happened; a clean return without a response is
                // one too, logged here.
                let failure = outcome.err().unwrap_or_else(|| {
                    log_failure(&self.metrics, &tag, number, &GuestFailure::NoResponse);
                    GuestFailure::NoResponse
                });
                failure_response(failure, self.expose_errors)
            }
        }
    }
}

/// Instantiates the generation in a fresh store and calls its handler, within the deadline.
async fn run_guest(
    runtime: &Runtime,
    in_flight: &InFlight,
    tag: &RequestTag,
    deadline: Instant,
    req: Request<LimitedBody<Incoming>>,
    response_tx: oneshot::Sender<ResponseResult>,
    span: &tracing::Span,
) -> Result<(), GuestFailure> {
    let generation = in_flight.generation();
    let mut store = runtime.new_store(generation.number, Some(tag), deadline, span);
    let call = call_guest(&mut store, generation, req, response_tx);
    let result = tokio::time::timeout_at(deadline.into(), call).await;
    let state = store.data();
    match result {
        Ok(Ok(())) => Ok(()),
        Err(_elapsed) => Err(GuestFailure::TimedOut),
        Ok(Err(_)) if state.timed_out => Err(GuestFailure::TimedOut),
        Ok(Err(err))
            if err
                .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
                .is_some() =>
        {
            Err(GuestFailure::PoolExhausted(err.to_string()))
        }
        // `{:#}` keeps the cause chain and the wasm backtrace but not a captured host backtrace.
        Ok(Err(err)) if state.limiter.hit_memory_limit => {
            Err(GuestFailure::MemoryLimit(format!("{err:#}")))
        }
        Ok(Err(err)) => Err(GuestFailure::Trap(format!("{err:#}"))),
    }
}

async fn call_guest(
    store: &mut Store<HostState>,
    generation: &Generation,
    req: Request<LimitedBody<Incoming>>,
    response_tx: oneshot::Sender<ResponseResult>,
) -> wasmtime::Result<()> {
    let proxy = generation.pre.instantiate_async(&mut *store).await?;
    let req = store
        .data_mut()
        .http()
        .new_incoming_request(Scheme::Http, req)?;
    let out = store.data_mut().http().new_response_outparam(response_tx)?;
    proxy
        .wasi_http_incoming_handler()
        .call_handle(&mut *store, req, out)
        .await
}

fn log_failure(metrics: &Metrics, tag: &RequestTag, generation: u64, failure: &GuestFailure) {
    let (kind, error, message) = match failure {
        GuestFailure::TimedOut => ("timeout", None, "request deadline exceeded; guest stopped"),
        GuestFailure::MemoryLimit(err) => ("memory", Some(err), "guest hit the memory limit"),
        GuestFailure::PoolExhausted(err) => ("pool", Some(err), "instance pool exhausted"),
        GuestFailure::Trap(err) => ("trap", Some(err), "guest trapped"),
        GuestFailure::NoResponse => (
            "no_response",
            None,
            "guest returned without setting a response; answering 500",
        ),
    };
    metrics.trap(kind);
    tracing::warn!(
        request_id = tag.id,
        method = %tag.method,
        path = %tag.uri.path(),
        generation,
        error = error.map(tracing::field::display),
        "{message}"
    );
}

fn failure_response(failure: GuestFailure, expose_errors: bool) -> Response<ResponseBody> {
    let detail = |text: &str, err: &str| {
        if expose_errors {
            format!("{text}:\n{err}\n")
        } else {
            format!("{text}\n")
        }
    };
    match failure {
        GuestFailure::TimedOut => plain(
            StatusCode::GATEWAY_TIMEOUT,
            "the component did not answer within the request deadline\n",
        ),
        GuestFailure::MemoryLimit(err) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            detail("the component exceeded its memory limit", &err),
        ),
        GuestFailure::PoolExhausted(_) => {
            retry_shortly("no instance slot is free; retry shortly\n")
        }
        GuestFailure::Trap(err) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            detail("the component failed while handling the request", &err),
        ),
        GuestFailure::NoResponse => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the component returned without sending a response\n",
        ),
    }
}

fn too_large(limit: u64) -> Response<ResponseBody> {
    plain(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is larger than the {limit} byte limit\n"),
    )
}

/// 503 with `Retry-After: 1`: the host is momentarily full (concurrency cap, instance pool).
fn retry_shortly(body: &'static str) -> Response<ResponseBody> {
    let mut resp = plain(StatusCode::SERVICE_UNAVAILABLE, body);
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

/// A plain-text response generated by the host.
pub fn plain(status: StatusCode, body: impl Into<bytes::Bytes>) -> Response<ResponseBody> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
