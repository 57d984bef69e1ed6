//! Instance reuse for WASI 0.3 guests, opt-in (`--instance-reuse N`): one instance of a
//! generation serves up to N requests, up to `--instance-reuse-concurrency` of them at once,
//! as `wasmtime serve` and Spin do by default.
//!
//! The workers come from wasmtime-wasi-http's [`ProxyHandler`]: each owns a store and an
//! instance and runs the guest's event loop on a task of its own. Each [`Generation`] has its
//! own [`Pool`], so reuse never crosses a swap: new requests take the new generation's pool,
//! and the old pool is retired at once ([`Pool::retire`]), so that each of its workers stops
//! taking requests and drops its instance as soon as the requests it holds have ended.
//!
//! What reuse trades away: requests on one instance share its memory and globals (what one
//! request leaves behind, the next one sees), and an instance that traps, hits its memory limit
//! or passes a request's deadline while spinning ends every request it holds. Guest output is
//! tagged with the generation but not the request, since the store is shared.
//!
//! [`Generation`]: crate::guest::slot::Generation

use crate::engine::{HostState, Runtime, StoreSettings};
use crate::guest::body::ResponseBody;
use http_body_util::BodyExt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use wasmtime::component::GuestTaskId;
use wasmtime::{Store, StoreContextMut};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::handler::{
    ExpirationError, HandlerState, Instance, Proxy, ProxyHandler, ShouldAccept, TrapOrPanicError,
    WorkerExpiration, WorkerState, WorkerStatus,
};
use wasmtime_wasi_http::p3::bindings::ServicePre;

/// How long a worker with no request keeps its instance for the next one.
const IDLE_TIMEOUT: Duration = Duration::from_secs(1);

/// The reused instances of one generation.
pub struct Pool {
    handler: ProxyHandler<Workers>,
    id: u64,
}

/// How a request on a reused instance went wrong.
#[derive(Debug)]
pub enum ReuseFailure {
    /// Its deadline passed before the guest answered.
    TimedOut,
    /// The instance could not be created (the error says why).
    Instantiate(wasmtime::Error),
    /// The instance ended (trapped, hit a limit) before answering.
    Ended(String),
}

/// What one pool's workers share.
struct Workers {
    runtime: Arc<Runtime>,
    settings: StoreSettings,
    pre: ServicePre<HostState>,
    generation: u64,
    max_requests: usize,
    max_concurrent: usize,
    request_timeout: Duration,
    retirement: Arc<Retirement>,
    live: Arc<AtomicUsize>,
    set_aside: Arc<dyn Fn() + Send + Sync>,
}

/// Set once the pool's generation is no longer current; wakes the idle workers so they exit.
#[derive(Default)]
struct Retirement {
    retired: AtomicBool,
    wakers: Mutex<Vec<Waker>>,
}

impl Retirement {
    fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        let wakers = std::mem::take(&mut *self.wakers.lock().unwrap_or_else(|p| p.into_inner()));
        wakers.into_iter().for_each(Waker::wake);
    }

    fn register(&self, waker: &Waker) {
        let mut wakers = self.wakers.lock().unwrap_or_else(|p| p.into_inner());
        if !wakers.iter().any(|w| w.will_wake(waker)) {
            wakers.push(waker.clone());
        }
    }
}

impl Pool {
    /// A pool of reused instances of `pre`, generation `generation` of a route with `settings`;
    /// `live` counts the instances alive, and `set_aside` takes the pool out of its generation
    /// (called when one of its requests expires; see [`Worker::on_request_start`]).
    pub fn new(
        runtime: Arc<Runtime>,
        settings: StoreSettings,
        pre: ServicePre<HostState>,
        generation: u64,
        limits: &crate::config::GuestLimits,
        live: Arc<AtomicUsize>,
        set_aside: Box<dyn Fn() + Send + Sync>,
    ) -> Pool {
        Pool {
            id: 0,
            handler: ProxyHandler::new(Workers {
                runtime,
                settings,
                pre,
                generation,
                max_requests: limits.instance_reuse,
                max_concurrent: limits.instance_reuse_concurrency,
                request_timeout: limits.request_timeout,
                retirement: Arc::default(),
                live,
                set_aside: Arc::from(set_aside),
            }),
        }
    }

    /// Names the pool `id`.
    pub fn with_id(mut self, id: u64) -> Pool {
        self.id = id;
        self
    }

    /// The pool's number.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Hands `req` to a worker (a new one if none has room) and waits for the response head;
    /// the body streams from the worker's event loop.
    pub async fn handle(
        &self,
        deadline: Instant,
        req: http::Request<ResponseBody>,
    ) -> Result<http::Response<ResponseBody>, ReuseFailure> {
        let answer = tokio::time::timeout_at(deadline.into(), self.handler.handle(deadline, req));
        match answer.await {
            Ok(Ok(response)) => Ok(response.map(|body| body.boxed_unsync())),
            Err(_) => Err(ReuseFailure::TimedOut),
            Ok(Err(err)) if err.is::<ExpirationError>() => Err(ReuseFailure::TimedOut),
            // A guest spinning past the deadline is interrupted, which ends its instance: a
            // timeout, not a trap, for the request whose deadline it was.
            Ok(Err(_)) if Instant::now() >= deadline => Err(ReuseFailure::TimedOut),
            Ok(Err(err)) => {
                match err.downcast::<wasmtime_wasi_http::handler::InstantiationError<Instant>>() {
                    Ok(failed) => Err(ReuseFailure::Instantiate(wasmtime::format_err!(
                        "{}",
                        failed.error
                    ))),
                    // The worker's own warning says why (trap, memory limit, deadline).
                    Err(err) if err.is::<TrapOrPanicError>() => Err(ReuseFailure::Ended(
                        "the reused instance ended before answering".to_string(),
                    )),
                    Err(err) => Err(ReuseFailure::Ended(format!("{err:#}"))),
                }
            }
        }
    }

    /// The pool's generation is no longer current: its workers take no new request and drop
    /// their instances once the requests they hold have ended.
    pub fn retire(&self) {
        self.handler.state().retirement.retire();
    }
}

impl HandlerState for Workers {
    type StoreData = HostState;
    type WorkerExpiration = Expiry;
    type WorkerState = Worker;

    async fn instantiate(&self) -> wasmtime::Result<Instance<HostState, Expiry, Worker>> {
        let deadline = Instant::now() + self.request_timeout;
        let mut store = self.runtime.new_store(
            self.pre.engine(),
            &self.settings,
            self.generation,
            None,
            deadline,
            &tracing::Span::none(),
        );
        let service = self.pre.instantiate_async(&mut store).await?;
        self.live.fetch_add(1, Ordering::Relaxed);
        Ok(Instance {
            store,
            proxy: Proxy::P3(service),
            view: <HostState as WasiHttpView>::http,
            expiration: Expiry {
                retirement: self.retirement.clone(),
                request_timeout: self.request_timeout,
                timer: Box::pin(tokio::time::sleep(IDLE_TIMEOUT)),
            },
            state: Worker {
                max_requests: self.max_requests,
                max_concurrent: self.max_concurrent,
                generation: self.generation,
                live: self.live.clone(),
                set_aside: self.set_aside.clone(),
            },
        })
    }
}

/// One worker's view of its limits.
pub struct Worker {
    max_requests: usize,
    max_concurrent: usize,
    generation: u64,
    live: Arc<AtomicUsize>,
    set_aside: Arc<dyn Fn() + Send + Sync>,
}

impl WorkerState for Worker {
    type StoreData = HostState;
    /// The request's deadline.
    type RequestData = Instant;

    /// A retired pool still serves the requests already queued on it (they started on its
    /// generation); new ones cannot reach it.
    fn should_accept_request(&self, concurrent: usize, total: usize) -> ShouldAccept {
        if total >= self.max_requests {
            ShouldAccept::Never
        } else if concurrent >= self.max_concurrent {
            ShouldAccept::No
        } else {
            ShouldAccept::Yes
        }
    }

    fn on_request_start(
        &self,
        mut store: StoreContextMut<'_, HostState>,
        deadline: Instant,
        _task: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync>> {
        // Guest code on this instance may run until the latest deadline of its requests; a
        // request whose own deadline passes first is answered 504 and the worker takes no more.
        let state = store.data_mut();
        state.deadline = state.deadline.max(deadline);
        state.start_slice();
        // Resolving means the request expired (it is dropped unpolled once answered). The
        // worker then takes no more requests but lives on until its others end; the requests
        // queued in its pool could wait behind it for that long (the queue's wake-up can land
        // on the expired worker), so the pool is set aside and new requests get a new one.
        let set_aside = self.set_aside.clone();
        Box::pin(async move {
            tokio::time::sleep_until(deadline.into()).await;
            set_aside();
        })
    }

    fn drop(&self, store: Store<HostState>, result: wasmtime::Result<()>) {
        self.live.fetch_sub(1, Ordering::Relaxed);
        if let Err(err) = result {
            let state = store.data();
            let why = if state.limiter.hit_memory_limit {
                "a reused instance hit the memory limit; its requests failed"
            } else if state.timed_out {
                "a reused instance passed its requests' deadline; stopped"
            } else {
                "a reused instance ended with an error; its requests failed"
            };
            tracing::warn!(generation = self.generation, error = %format!("{err:#}"), "{why}");
        }
    }
}

/// When a worker's instance is dropped: idle for `IDLE_TIMEOUT` (1 s), idle once its
/// generation is retired, or every request it holds past its deadline (a guest spinning with
/// the store held cannot be told from inside its event loop).
pub struct Expiry {
    retirement: Arc<Retirement>,
    request_timeout: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl WorkerExpiration for Expiry {
    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        status: WorkerStatus,
        start: Instant,
    ) -> Poll<()> {
        let this = self.get_mut();
        let until = match status {
            WorkerStatus::Idle => {
                if this.retirement.is_retired() {
                    return Poll::Ready(());
                }
                this.retirement.register(cx.waker());
                start + IDLE_TIMEOUT
            }
            // `start` is when the newest request it holds began.
            WorkerStatus::Requests => start + this.request_timeout,
            WorkerStatus::PostReturn => start + this.request_timeout,
        };
        if this.timer.deadline() != until.into() {
            this.timer.as_mut().reset(until.into());
        }
        this.timer.as_mut().poll(cx)
    }
}
