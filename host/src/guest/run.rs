//! One request's guest, from an admitted request to its response: a fresh instance of the
//! generation (or, for a WASI 0.3 guest with `--instance-reuse`, one of its reused instances),
//! the 0.2 and 0.3 call paths side by side (`call`), and every way a guest can fail mapped to
//! a status code (`GuestFailure`).
//!
//! The guest runs on the connection's own task until it sets its response head (which comes
//! back over a oneshot). A guest that has already ended by then (a small response: the common
//! case) costs no task spawn; one still running (streaming its body, or whose client went away)
//! moves to a task of its own and runs to its end within its deadline, whether or not its client
//! reads ([`GuestRun`], [`GuardedBody`]). The permit and the generation are released when the
//! guest run ends. A guest whose client went away is handed to its route's [`Orphans`](super::orphans::Orphans).

use super::body::{GuardedBody, GuestRun, HeldBody, LimitedBody, RequestBody, ResponseBody};
pub use super::bounds::Bounds;
use super::orphans::Orphan;
use super::respond::{plain, retry_shortly, too_large};
use super::reuse::{Pool, ReuseFailure};
use super::slot::{Generation, InFlight};
use crate::component::load::{GuestPre, PreExt};
use crate::engine::{HostState, Runtime};
use crate::metrics::RouteMetrics;
use crate::telemetry::traces::{GuestSpan, RequestSpan};
use crate::wasi::stdio::RequestTag;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use prometheus_client::metrics::gauge::Gauge;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Instant;
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::{WasiHttpView, p3};

/// A request that may run: it holds one of its route's concurrency permits and the generation
/// it runs on, until its guest run ends (or, on a reused instance, until its response body is
/// done).
pub struct Admitted {
    in_flight: InFlight,
    _permit: OwnedSemaphorePermit,
    gauge: Gauge,
}

impl Admitted {
    /// A request holding `permit`, running on `generation`; `gauge` counts it while it does.
    pub fn new(permit: OwnedSemaphorePermit, generation: &Arc<Generation>, gauge: Gauge) -> Self {
        gauge.inc();
        Admitted {
            in_flight: generation.enter(),
            _permit: permit,
            gauge,
        }
    }

    /// The generation it runs on.
    pub fn generation(&self) -> &Arc<Generation> {
        self.in_flight.generation()
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.gauge.dec();
    }
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

/// Runs `req`'s guest on its admitted generation and answers with what it responds, or with
/// the status its failure maps to. With the request's trace span, the guest's run is a span
/// of its own under it, and its outbound calls go under that.
pub async fn serve(
    runtime: &Arc<Runtime>,
    bounds: &Arc<Bounds>,
    admitted: Admitted,
    (mut tag, trace): (RequestTag, Option<&RequestSpan>),
    started: Instant,
    req: Request<RequestBody>,
) -> Response<ResponseBody> {
    let exceeded = Arc::new(AtomicBool::new(false));
    let generation = admitted.generation();
    let number = generation.number;
    let guest_span = trace.map(|trace| {
        let span = trace.guest(
            number,
            generation.world().as_str(),
            generation.tier.as_str(),
        );
        tag.trace = span.context();
        span
    });
    let (guest, response_rx) = start(
        runtime,
        bounds,
        admitted,
        (&tag, guest_span),
        started,
        req,
        &exceeded,
    );
    answer(bounds, guest, response_rx, &exceeded, &tag, number).await
}

/// The guest's run, ready to be polled, and where its response head will come.
fn start(
    runtime: &Arc<Runtime>,
    bounds: &Arc<Bounds>,
    admitted: Admitted,
    (tag, guest_span): (&RequestTag, Option<GuestSpan>),
    started: Instant,
    req: Request<RequestBody>,
    exceeded: &Arc<AtomicBool>,
) -> (GuestRun<GuestFailure>, oneshot::Receiver<ResponseResult>) {
    let limits = &bounds.limits;
    let number = admitted.generation().number;
    let req = req.map(|body| LimitedBody::new(body, limits.max_body_size, exceeded.clone()));
    let deadline = started + limits.request_timeout;
    let (response_tx, response_rx) = oneshot::channel::<ResponseResult>();
    // `serve` runs inside the request's span (if enabled); the guest run logs into it.
    let span = tracing::Span::current();
    let (runtime, guest_bounds, guest_tag) = (runtime.clone(), bounds.clone(), tag.clone());
    let guest_exceeded = exceeded.clone();
    let run = async move {
        let result = run(
            &runtime,
            &guest_bounds,
            admitted,
            &guest_tag,
            deadline,
            req,
            response_tx,
            &span,
        )
        .await;
        match result {
            // A guest may answer without reading all of an oversize body (a 0.3 guest sees its
            // end, not an error): whatever it answered is not an answer to the request.
            Ok(()) if guest_exceeded.load(Ordering::Relaxed) => Err(GuestFailure::BodyTooLarge(
                guest_bounds.limits.max_body_size,
            )),
            Err(failure) => {
                span.in_scope(|| log_failure(&guest_bounds.metrics, &guest_tag, number, &failure));
                if let Some(guest_span) = &guest_span {
                    let (kind, error, message) = failure.describe();
                    guest_span.fail(kind, error.map_or(message, String::as_str));
                }
                Err(failure)
            }
            Ok(()) => Ok(()),
        }
        // The guest's span ends here, with its run.
    };
    let abandoned = {
        let (bounds, tag) = (bounds.clone(), tag.clone());
        Box::new(move |task| bounds.orphans.adopt(Orphan::new(task, tag, number)))
    };
    (GuestRun::new(run, abandoned), response_rx)
}

/// Races the guest's end against its response head, and makes the response: the guest's (its
/// body guarded until the guest ends), or the one its failure maps to.
async fn answer(
    bounds: &Bounds,
    mut guest: GuestRun<GuestFailure>,
    mut response_rx: oneshot::Receiver<ResponseResult>,
    exceeded: &AtomicBool,
    tag: &RequestTag,
    number: u64,
) -> Response<ResponseBody> {
    let max_body_size = bounds.limits.max_body_size;
    // `head` is `None` when the guest dropped the response unset; `outcome` is `None` while
    // the guest is still running.
    let (head, outcome) = std::future::poll_fn(|cx| {
        if let Poll::Ready(outcome) = Pin::new(&mut guest).poll(cx) {
            // The guest ran to its end in one go (a small response): whatever head it set is
            // waiting in the channel.
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
            too_large(max_body_size)
        }
        (Some(Ok(resp)), None) => resp.map(|body| GuardedBody::running(body, guest).boxed_unsync()),
        (Some(Ok(resp)), Some(outcome)) => resp.map(|body| {
            GuardedBody::<GuestFailure>::finished(body, outcome.is_ok()).boxed_unsync()
        }),
        (Some(Err(code)), _) => {
            // A guest that goes on after giving up finishes on its own task.
            drop(guest);
            if exceeded.load(Ordering::Relaxed) {
                tracing::debug!(request_id = tag.id, code = %code, "guest gave up on an oversize body");
                return too_large(max_body_size);
            }
            tracing::warn!(
                route = %tag.route,
                request_id = tag.id,
                role = tag.role,
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
                return too_large(max_body_size);
            }
            // A failure was logged where it happened; a clean return without a response is one
            // too, logged here.
            let failure = outcome.err().unwrap_or_else(|| {
                log_failure(&bounds.metrics, tag, number, &GuestFailure::NoResponse);
                GuestFailure::NoResponse
            });
            failure_response(failure, bounds.expose_errors)
        }
    }
}

/// Runs the guest within the deadline: on one of the generation's reused instances (a WASI 0.3
/// guest with `--instance-reuse`), else in a fresh store and instance.
#[expect(
    clippy::too_many_arguments,
    reason = "one request's pieces, moved into the guest's future"
)]
async fn run(
    runtime: &Arc<Runtime>,
    bounds: &Bounds,
    admitted: Admitted,
    tag: &RequestTag,
    deadline: Instant,
    req: Request<LimitedBody<RequestBody>>,
    response_tx: oneshot::Sender<ResponseResult>,
    span: &tracing::Span,
) -> Result<(), GuestFailure> {
    let generation = admitted.generation().clone();
    if let GuestPre::P3(pre) = &*generation.pre
        && bounds.limits.instance_reuse > 1
    {
        return run_reused(runtime, bounds, admitted, pre, deadline, req, response_tx).await;
    }
    let mut store = runtime.new_store(
        generation.pre.engine(),
        &bounds.store,
        generation.number,
        Some(tag),
        deadline,
        span,
    );
    let called = tokio::time::timeout_at(
        deadline.into(),
        call(&mut store, &generation, req, response_tx),
    )
    .await;
    let state = store.data();
    let result = match called {
        Ok(Ok(())) => Ok(()),
        Err(_elapsed) => Err(GuestFailure::TimedOut),
        Ok(Err(_)) if state.timed_out => Err(GuestFailure::TimedOut),
        Ok(Err(err)) if state.limiter.hit_memory_limit => {
            Err(GuestFailure::MemoryLimit(format!("{err:#}")))
        }
        Ok(Err(err)) => Err(failure_of(err)),
    };
    // The store (and its instance slot) goes before the permit that bounds them.
    drop(store);
    drop(admitted);
    result
}

/// A WASI 0.3 request on one of the generation's reused instances. The response body streams
/// from the instance's own task; the request's permit and generation are held until it is done.
async fn run_reused(
    runtime: &Arc<Runtime>,
    bounds: &Bounds,
    admitted: Admitted,
    pre: &wasmtime_wasi_http::p3::bindings::ServicePre<HostState>,
    deadline: Instant,
    req: Request<LimitedBody<RequestBody>>,
    response_tx: oneshot::Sender<ResponseResult>,
) -> Result<(), GuestFailure> {
    let generation = admitted.generation().clone();
    let pool = generation.reuse_pool(|live, set_aside| {
        Pool::new(
            runtime.clone(),
            bounds.store.clone(),
            pre.clone(),
            generation.number,
            &bounds.limits,
            live,
            set_aside,
        )
    });
    let req = req.map(|body| body.boxed_unsync());
    match pool.handle(deadline, req).await {
        Ok(response) => {
            let response = response.map(|body| HeldBody::new(body, admitted).boxed_unsync());
            let _ = response_tx.send(Ok(response));
            Ok(())
        }
        Err(ReuseFailure::TimedOut) => Err(GuestFailure::TimedOut),
        Err(ReuseFailure::Instantiate(err)) => Err(failure_of(err)),
        Err(ReuseFailure::Ended(err)) => Err(GuestFailure::Trap(err)),
    }
}

/// An error from wasmtime: a full instance pool, or a trap (or host error).
fn failure_of(err: wasmtime::Error) -> GuestFailure {
    if err
        .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
    {
        GuestFailure::PoolExhausted(err.to_string())
    } else {
        // `{:#}` keeps the cause chain and the wasm backtrace but not a captured host backtrace.
        GuestFailure::Trap(format!("{err:#}"))
    }
}

/// Instantiates the generation in `store` and calls its handler: the 0.2 `incoming-handler`
/// with a response outparam whose callback sends the head, or the 0.3 `handler` in the store's
/// event loop, which keeps turning (the body, whatever the guest does after answering) until
/// the guest's task has exited.
async fn call(
    store: &mut Store<HostState>,
    generation: &Generation,
    req: Request<LimitedBody<RequestBody>>,
    response_tx: oneshot::Sender<ResponseResult>,
) -> wasmtime::Result<()> {
    match &*generation.pre {
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
                    std::future::poll_fn(|cx| accessor.poll_no_interesting_tasks(cx)).await;
                    wasmtime::Result::<()>::Ok(())
                })
                .await?
        }
    }
}

impl GuestFailure {
    /// Its kind (as `hotswap_guest_traps_total` counts it), the error, and what the log says.
    fn describe(&self) -> (&'static str, Option<&String>, &'static str) {
        match self {
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
        }
    }
}

fn log_failure(metrics: &RouteMetrics, tag: &RequestTag, generation: u64, failure: &GuestFailure) {
    let (kind, error, message) = failure.describe();
    metrics.trap(kind);
    tracing::warn!(
        route = %tag.route,
        request_id = tag.id,
        role = tag.role,
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
