//! Where a request goes: a route, its limits, a fresh instance of its current generation, and
//! the mapping of every way a guest can fail to a status code.
//!
//! Each request is matched to a route (404 if none), waits (briefly) for one of that route's
//! concurrency permits, takes an owned `Arc<Generation>` from the route's slot, and runs the guest with a fresh `Store` on the connection's own task: the handler
//! polls the guest until it sets the response head (which comes back over a oneshot). A guest
//! that has already ended by then (a small response: the common case) costs no task spawn; one
//! still running (streaming its body, or whose client went away) moves to a task of its own
//! and runs to its end within its deadline, whether or not its client reads ([`GuestRun`],
//! [`GuardedBody`]). The permit and the generation are released when the guest run ends.
//!
//! A guest whose client went away is handed to its route's list of abandoned guests
//! ([`crate::route::Orphans`]): a request that finds every slot taken stops the oldest of them
//! and takes its slot, so clients that reset or drop requests cannot keep a route busy.

use crate::guest::body::{GuardedBody, GuestRun, HeldBody, LimitedBody, ResponseBody, full};
use crate::config::ConnLimits;
use crate::engine::{HostState, Runtime};
use crate::wasi::stdio::RequestTag;
use crate::component::load::GuestPre;
use crate::metrics::{Metrics, RouteMetrics};
use crate::guest::reuse::{Pool, ReuseFailure};
use crate::route::{Orphan, ROUTE_HEADER, Route, RouteTable};
use crate::guest::slot::{Generation, InFlight};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderValue, RETRY_AFTER};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::Poll;
use std::time::Instant;
use tokio::sync::oneshot;
use tracing::Instrument;
use tracing::field::Empty;
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::{WasiHttpView, p3};

/// Name of the response header that says which generation served a request.
pub const GENERATION_HEADER: &str = "x-hotswap-generation";

/// Longest part of an unmatched path repeated in the 404 body.
const MAX_ECHOED_PATH: usize = 200;

/// Dispatches requests to their route's current generation under the route's limits.
pub struct Dispatcher {
    runtime: Arc<Runtime>,
    routes: Arc<RouteTable>,
    conn: ConnLimits,
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
    /// The request body crossed the limit (of this many bytes) while the guest read it.
    BodyTooLarge(u64),
}

/// What a guest answered: a response, or the `Debug` form of the error code it gave up with.
type ResponseResult = Result<hyper::Response<ResponseBody>, String>;

impl Dispatcher {
    /// A dispatcher serving the routes of `routes`. With `expose_errors` (dev mode) a failed
    /// request's 500 body carries the guest's error; otherwise only the log does.
    pub fn new(
        runtime: Arc<Runtime>,
        routes: Arc<RouteTable>,
        conn: ConnLimits,
        metrics: Arc<Metrics>,
        expose_errors: bool,
    ) -> Self {
        Dispatcher {
            runtime,
            routes,
            conn,
            next_id: AtomicU64::new(1),
            metrics,
            expose_errors,
        }
    }

    /// Requests currently holding a concurrency slot (running or streaming their body), over
    /// every route.
    pub fn in_flight(&self) -> usize {
        self.routes.all().iter().map(|r| r.in_flight()).sum()
    }

    /// Resolves once no request of any route holds a concurrency slot, counting guests that
    /// run on after their client left. Takes every slot as it does so: only for shutdown.
    pub async fn all_finished(&self) {
        for route in self.routes.all().iter() {
            route.all_finished().await;
        }
    }

    /// Serves one request. Never fails: every problem becomes a response.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<ResponseBody> {
        let started = Instant::now();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let Some(route) = self.routes.find(req.uri().path()) else {
            self.metrics.unrouted.inc();
            let path: String = req.uri().path().chars().take(MAX_ECHOED_PATH).collect();
            return plain(StatusCode::NOT_FOUND, format!("no route matches {path}\n"));
        };
        self.runtime.route_request(&route);
        // A span per request only at debug level: at info, creating and entering one costs ~7 %
        // of a hello request (BENCHMARKS.md), so the lines logged at info and above carry the
        // request's id, route, method and path as fields of their own (`RequestTag`).
        let span = tracing::debug_span!(
            "request",
            id,
            route = %route.name,
            method = %req.method(),
            path = %req.uri().path(),
            status = Empty,
            generation = Empty,
            duration_ms = Empty,
        );
        // The generation that served the request, 0 when none did (refused before the guest).
        let mut generation = 0;
        let mut response = self
            .dispatch(&route, id, started, req, &mut generation)
            .instrument(span.clone())
            .await;
        if generation != 0 {
            let headers = response.headers_mut();
            headers.insert(GENERATION_HEADER, HeaderValue::from(generation));
            headers.insert(ROUTE_HEADER, route.header.clone());
        }
        let status = response.status().as_u16();
        let elapsed = started.elapsed();
        route.metrics.request(status, generation, elapsed);
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
        route: &Arc<Route>,
        id: u64,
        started: Instant,
        req: Request<Incoming>,
        served_by: &mut u64,
    ) -> Response<ResponseBody> {
        if let Some(refusal) = check_head(&req, &self.conn) {
            return refusal;
        }
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let limits = &route.limits;
        if declared.is_some_and(|len| len > limits.max_body_size) {
            return too_large(limits.max_body_size);
        }

        // A free permit is taken at once; only a request that has to queue sets a timer, and it
        // first takes back the slot of a guest whose client went away, if there is one.
        let permit = match route.permits.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                route.orphans.give_way();
                tokio::time::timeout(limits.queue_timeout, route.permits.clone().acquire_owned())
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
        };
        let permit = match permit {
            Some(permit) => permit,
            None => {
                tracing::warn!(
                    route = %route.name,
                    request_id = id,
                    method = %req.method(),
                    path = %req.uri().path(),
                    limit = limits.max_concurrency,
                    "concurrency limit reached; answering 503"
                );
                return retry_shortly("the server is at its concurrency limit; retry shortly\n");
            }
        };
        let Some(generation) = route.slot.current() else {
            // Building, compiling, or no valid component: a client may come back later.
            let reason = route.slot.unavailable_reason();
            return retry_shortly(format!("{reason}\n"));
        };
        let number = generation.number;
        *served_by = number;
        let in_flight = generation.enter();
        drop(generation);

        let tag = RequestTag {
            id,
            route: route.name.clone(),
            method: req.method().clone(),
            uri: req.uri().clone(),
        };
        let exceeded = Arc::new(AtomicBool::new(false));
        let req = req.map(|body| LimitedBody::new(body, limits.max_body_size, exceeded.clone()));
        let deadline = started + limits.request_timeout;
        let (response_tx, mut response_rx) = oneshot::channel::<ResponseResult>();
        let runtime = self.runtime.clone();
        // The guest run reaches its route (store settings, limits, metrics) through this one
        // reference; the request's `Hold` keeps another until its permit is released.
        let guest_route = route.clone();
        route.metrics.in_flight.inc();
        // `dispatch` runs inside the request's span (if enabled); the guest run logs into it
        // explicitly.
        let span = tracing::Span::current();
        let guest_tag = tag.clone();
        // The guest runs right here, on the connection's task, until it sets the response head
        // below; if it is still running then, it goes on on a task of its own (`GuardedBody`).
        let hold = Hold {
            _in_flight: in_flight,
            _permit: permit,
            route: route.clone(),
        };
        let guest_exceeded = exceeded.clone();
        let max_body_size = limits.max_body_size;
        let abandoned: crate::guest::body::Abandoned = {
            let (route, tag) = (route.clone(), tag.clone());
            Box::new(move |task| route.orphans.adopt(Orphan::new(task, tag, number)))
        };
        let mut guest = GuestRun::new(
            async move {
                let result = run_guest(
                    &runtime,
                    &guest_route,
                    hold,
                    &guest_tag,
                    deadline,
                    req,
                    response_tx,
                    &span,
                )
                .await;
                match result {
                    // A guest may answer without reading all of an oversize body (a 0.3 guest sees
                    // its end, not an error): whatever it answered is not an answer to the request.
                    Ok(()) if guest_exceeded.load(Ordering::Relaxed) => {
                        Err(GuestFailure::BodyTooLarge(max_body_size))
                    }
                    Err(failure) => {
                        span.in_scope(|| {
                            log_failure(&guest_route.metrics, &guest_tag, number, &failure)
                        });
                        Err(failure)
                    }
                    Ok(()) => Ok(()),
                }
            },
            abandoned,
        );

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
            (Some(Ok(_)), _) if exceeded.load(Ordering::Relaxed) => {
                drop(guest);
                too_large(limits.max_body_size)
            }
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
                    tracing::debug!(request_id = id, code = %code, "guest gave up on an oversize body");
                    return too_large(limits.max_body_size);
                }
                tracing::warn!(
                    route = %tag.route,
                    request_id = id,
                    method = %tag.method,
                    path = %tag.uri.path(),
                    generation = number,
                    code = %code,
                    "guest answered with an error code"
                );
                plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("the component failed to handle the request: {code}\n"),
                )
            }
            (None, outcome) => {
                // The guest run ended, or will, without setting a response.
                let outcome = match outcome {
                    Some(outcome) => outcome,
                    None => guest.await,
                };
                if exceeded.load(Ordering::Relaxed) {
                    return too_large(limits.max_body_size);
                }
                // A failure was logged where it happened; a clean return without a response is
                // one too, logged here.
                let failure = outcome.err().unwrap_or_else(|| {
                    log_failure(&route.metrics, &tag, number, &GuestFailure::NoResponse);
                    GuestFailure::NoResponse
                });
                failure_response(failure, self.expose_errors)
            }
        }
    }
}

impl crate::http::server::Handler for Dispatcher {
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> impl Future<Output = Response<ResponseBody>> + Send {
        Dispatcher::handle(self, req)
    }
}

impl crate::http::server::Drain for Dispatcher {
    fn in_flight(&self) -> usize {
        Dispatcher::in_flight(self)
    }

    fn all_finished(&self) -> impl Future<Output = ()> + Send {
        Dispatcher::all_finished(self)
    }
}

/// What a request holds while its guest runs, or (on a reused instance) until its response
/// body is done: its concurrency permit and its generation.
struct Hold {
    _in_flight: InFlight,
    _permit: tokio::sync::OwnedSemaphorePermit,
    route: Arc<Route>,
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.route.metrics.in_flight.dec();
    }
}

/// Runs the guest: in a fresh store and instance of the generation, or, for a WASI 0.3 guest
/// with `--instance-reuse`, on one of the generation's reused instances; within the deadline.
#[expect(
    clippy::too_many_arguments,
    reason = "one request's pieces, moved into the guest's future"
)]
async fn run_guest(
    runtime: &Arc<Runtime>,
    route: &Arc<Route>,
    hold: Hold,
    tag: &RequestTag,
    deadline: Instant,
    req: Request<LimitedBody<Incoming>>,
    response_tx: oneshot::Sender<ResponseResult>,
    span: &tracing::Span,
) -> Result<(), GuestFailure> {
    let generation = hold._in_flight.generation();
    if let GuestPre::P3(pre) = &generation.pre
        && route.limits.instance_reuse > 1
    {
        let pool = generation.reuse_pool(|live, set_aside| {
            Pool::new(
                runtime.clone(),
                route.store.clone(),
                pre.clone(),
                generation.number,
                &route.limits,
                live,
                set_aside,
            )
        });
        let req = req.map(|body| body.boxed_unsync());
        return match pool.handle(deadline, req).await {
            Ok(response) => {
                // The body streams from the reused instance's own task; the request's permit
                // and generation are held until it is done.
                let response = response.map(|body| HeldBody::new(body, hold).boxed_unsync());
                let _ = response_tx.send(Ok(response));
                Ok(())
            }
            Err(ReuseFailure::TimedOut) => Err(GuestFailure::TimedOut),
            Err(ReuseFailure::Instantiate(err))
                if err
                    .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
                    .is_some() =>
            {
                Err(GuestFailure::PoolExhausted(err.to_string()))
            }
            Err(ReuseFailure::Instantiate(err)) => Err(GuestFailure::Trap(format!("{err:#}"))),
            Err(ReuseFailure::Ended(err)) => Err(GuestFailure::Trap(err)),
        };
    }
    let mut store = runtime.new_store(
        generation.pre.engine(),
        &route.store,
        generation.number,
        Some(tag),
        deadline,
        span,
    );
    let call = call_guest(&mut store, generation, req, response_tx);
    let result = tokio::time::timeout_at(deadline.into(), call).await;
    let state = store.data();
    let result = match result {
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
    };
    // The store (and its instance slot) goes before the permit that bounds them.
    drop(store);
    drop(hold);
    result
}

async fn call_guest(
    store: &mut Store<HostState>,
    generation: &Generation,
    req: Request<LimitedBody<Incoming>>,
    response_tx: oneshot::Sender<ResponseResult>,
) -> wasmtime::Result<()> {
    match &generation.pre {
        GuestPre::P2(pre) => {
            let proxy = pre.instantiate_async(&mut *store).await?;
            let req = store
                .data_mut()
                .http()
                .new_incoming_request(Scheme::Http, req)?;
            let out = store
                .data_mut()
                .http()
                .new_response_outparam_from_callback(move |answer| {
                    let _ = response_tx.send(answer.map_err(|code| format!("{code:?}")));
                })?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut *store, req, out)
                .await
        }
        GuestPre::P3(pre) => {
            let service = pre.instantiate_async(&mut *store).await?;
            let (req, request_io) = p3::Request::from_http(store.data_mut().http().hooks, req);
            store
                .run_concurrent(async move |accessor| {
                    let answer = match service.handle(accessor, req).await? {
                        Ok(response) => Ok(accessor
                            .with(|mut access| response.into_http(&mut access, request_io))?),
                        Err(code) => Err(format!("{code:?}")),
                    };
                    let _ = response_tx.send(answer);
                    // The response body, and whatever the guest does after answering, runs in
                    // this store's event loop: keep it turning until the guest's task has
                    // exited.
                    std::future::poll_fn(|cx| accessor.poll_no_interesting_tasks(cx)).await;
                    wasmtime::Result::<()>::Ok(())
                })
                .await?
        }
    }
}

fn log_failure(metrics: &RouteMetrics, tag: &RequestTag, generation: u64, failure: &GuestFailure) {
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
        GuestFailure::BodyTooLarge(_) => (
            "body_limit",
            None,
            "the request body crossed the limit after the response began; response cut",
        ),
    };
    metrics.trap(kind);
    tracing::warn!(
        route = %tag.route,
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
        GuestFailure::BodyTooLarge(limit) => too_large(limit),
    }
}

/// The refusal of a request whose head is not acceptable, on any listener: no `Host` (nor an
/// authority), or more header fields or bytes than the limits. hyper enforces these limits on
/// HTTP/1 only down to its 8 KiB buffer, and not at all for the field count on HTTP/2: they are
/// checked here for every protocol.
pub fn check_head<B>(req: &Request<B>, limits: &ConnLimits) -> Option<Response<ResponseBody>> {
    if req.uri().authority().is_none() && !req.headers().contains_key(HOST) {
        return Some(plain(
            StatusCode::BAD_REQUEST,
            "the request has no Host header\n",
        ));
    }
    let fields = req.headers().len();
    let section: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if fields > limits.max_headers || section as u64 > limits.max_header_bytes {
        return Some(plain(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "the request headers exceed the limits ({} fields, {} bytes)\n",
                limits.max_headers, limits.max_header_bytes
            ),
        ));
    }
    None
}

fn too_large(limit: u64) -> Response<ResponseBody> {
    plain(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is larger than the {limit} byte limit\n"),
    )
}

/// 503 with `Retry-After: 1`: the host is momentarily full (concurrency cap, instance pool), or
/// the route has no generation yet.
fn retry_shortly(body: impl Into<bytes::Bytes>) -> Response<ResponseBody> {
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
