//! Where a request goes on the public listener: its route (404 if none), admission under the
//! route's limits, then the guest ([`crate::guest::run`]), then the response's headers and
//! metrics. Each step is a function of its own:
//!
//! 1. `Dispatcher::admit`: the request's head is acceptable, its declared body is within the
//!    limit, one of the route's concurrency permits is free (waiting up to `--queue-timeout`,
//!    after taking back the slot of a guest whose client went away, if there is one), and the
//!    route has a generation to serve;
//! 2. [`run::serve`]: the guest runs on that generation and answers, or its failure does;
//! 3. `Dispatcher::respond`: the response names the route and generation that served it, and
//!    is counted; with `--live-reload`, an HTML page gets its script ([`super::live_reload`]).
//!
//! In dev mode the event stream's path ([`super::events`]) is answered by the host itself,
//! before any route is looked up.

use crate::config::ConnLimits;
use crate::engine::Runtime;
use crate::guest::body::{HeldBody, RequestBody, ResponseBody};
use crate::guest::canary::{Canary, Role};
use crate::guest::respond::{plain, retry_shortly, too_large};
use crate::guest::run::{self, Admitted};
use crate::http::events::EventStream;
use crate::http::live_reload;
use crate::http::shadow;
use crate::metrics::Metrics;
use crate::route::{ROUTE_HEADER, Route, RouteTable};
use crate::telemetry::traces::{RequestInfo, RequestSpan};
use crate::wasi::stdio::RequestTag;
use http::header::{CONTENT_LENGTH, HOST, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tracing::Instrument;
use tracing::field::Empty;

/// Name of the response header that says which generation served a request.
pub const GENERATION_HEADER: &str = "x-hotswap-generation";

/// Name of the response header that says which side of a route's canary served a request
/// (`current` or `candidate`), on every response of a route with a canary policy.
pub const ROLE_HEADER: &str = "x-hotswap-role";

/// Longest part of an unmatched path repeated in the 404 body.
const MAX_ECHOED_PATH: usize = 200;

/// Dispatches requests to their route's current generation under the route's limits.
pub struct Dispatcher {
    runtime: Arc<Runtime>,
    routes: Arc<RouteTable>,
    conn: ConnLimits,
    next_id: AtomicU64,
    metrics: Arc<Metrics>,
    dev: Option<DevTools>,
}

/// The dev-mode tools of the public listener.
pub struct DevTools {
    /// The event stream, answered at its path.
    pub stream: EventStream,
    /// Guests' HTML pages get the live-reload script.
    pub live_reload: bool,
}

impl Dispatcher {
    /// A dispatcher serving the routes of `routes`, the request heads bounded by `conn`, and
    /// `dev`'s event stream and live reload (dev mode).
    pub fn new(
        runtime: Arc<Runtime>,
        routes: Arc<RouteTable>,
        conn: ConnLimits,
        metrics: Arc<Metrics>,
        dev: Option<DevTools>,
    ) -> Self {
        Dispatcher {
            runtime,
            routes,
            conn,
            next_id: AtomicU64::new(1),
            metrics,
            dev,
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
        if let Some(dev) = &self.dev
            && req.uri().path() == dev.stream.path
        {
            return dev.stream.serve(&req);
        }
        let head = req.method() == Method::HEAD;
        let Some(route) = self.routes.find(req.uri().path()) else {
            self.metrics.unrouted.inc();
            let path: String = req.uri().path().chars().take(MAX_ECHOED_PATH).collect();
            return plain(StatusCode::NOT_FOUND, format!("no route matches {path}\n"));
        };
        self.runtime.route_request(route.id);
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
            role = Empty,
            duration_ms = Empty,
        );
        // The request's trace span (when traces are on), its guest's span a child of it.
        let trace = RequestSpan::start(RequestInfo {
            headers: req.headers(),
            method: req.method(),
            path: req.uri().path(),
            route: (&route.name, &route.prefix),
            version: req.version(),
        });
        let (response, generation, side) = self
            .serve(&route, id, started, req, trace.as_ref())
            .instrument(span.clone())
            .await;
        let response = respond(&route, response, (generation, side), started, &span);
        let response = match (&self.dev, generation) {
            (Some(dev), Some(generation)) if dev.live_reload => {
                live_reload::inject(response, head, &route.name, generation, &dev.stream.path)
            }
            _ => response,
        };
        match trace {
            // The span ends when the response body is done (or dropped).
            Some(trace) => {
                trace.respond(response.status().as_u16(), generation);
                response.map(|body| HeldBody::new(body, trace).boxed_unsync())
            }
            None => response,
        }
    }

    /// Admits the request and runs its guest; the response, the generation that served it
    /// (`None` when the request was refused before any guest ran), and its side of the route's
    /// canary, if one runs.
    async fn serve(
        &self,
        route: &Arc<Route>,
        id: u64,
        started: Instant,
        req: Request<Incoming>,
        trace: Option<&RequestSpan>,
    ) -> (Response<ResponseBody>, Option<u64>, Option<Side>) {
        let (admitted, side) = match self.admit(route, id, &req).await {
            Ok(admitted) => admitted,
            Err(refusal) => return (refusal, None, None),
        };
        let number = admitted.generation().number;
        let tag = RequestTag {
            id,
            route: route.name.clone(),
            method: req.method().clone(),
            uri: req.uri().clone(),
            trace: Default::default(),
            role: role_of(route, side.as_ref()).map(Role::as_str),
        };
        // A shadow canary gets a copy of its share of the requests.
        let (req, copy) = match &side {
            Some((Role::Current, canary)) if canary.copies() => {
                match shadow::prepare(route, canary, req).await {
                    Ok(prepared) => prepared,
                    Err(refusal) => return (refusal, None, None),
                }
            }
            _ => (req.map(RequestBody::Streaming), None),
        };
        let copy = copy.map(|copy| (copy, tag.clone()));
        let response = run::serve(
            &self.runtime,
            &route.guests,
            admitted,
            (tag, trace),
            started,
            req,
        )
        .await;
        let response = match copy {
            Some((copy, tag)) => copy.start(&self.runtime, route, tag, response),
            None => response,
        };
        (response, Some(number), side)
    }

    /// Admission: the refusal to send, or the request's permit and generation (and its side of
    /// the route's canary, if one runs).
    async fn admit(
        &self,
        route: &Route,
        id: u64,
        req: &Request<Incoming>,
    ) -> Result<(Admitted, Option<Side>), Response<ResponseBody>> {
        if let Some(refusal) = check_head(req, &self.conn) {
            return Err(refusal);
        }
        let limits = &route.guests.limits;
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limits.max_body_size) {
            return Err(too_large(limits.max_body_size));
        }
        // A free permit is taken at once; only a request that has to queue sets a timer, and it
        // first takes back the slot of a guest whose client went away, if there is one.
        let permit = match route.permits.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                let _waiting = route.guests.orphans.wait();
                tokio::time::timeout(limits.queue_timeout, route.permits.clone().acquire_owned())
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
        };
        let Some(permit) = permit else {
            tracing::warn!(
                route = %route.name,
                request_id = id,
                method = %req.method(),
                path = %req.uri().path(),
                limit = limits.max_concurrency,
                "concurrency limit reached; answering 503"
            );
            return Err(retry_shortly(
                "the server is at its concurrency limit; retry shortly\n",
            ));
        };
        let Some((generation, side)) = route.slot.pick(req.headers()) else {
            // Building, compiling, or no valid component: a client may come back later.
            let reason = route.slot.unavailable_reason();
            return Err(retry_shortly(format!("{reason}\n")));
        };
        let admitted = Admitted::new(permit, &generation, route.metrics.in_flight.clone());
        Ok((admitted, side))
    }
}

/// A request's side of its route's canary, and the canary that judges it.
type Side = (Role, Arc<Canary>);

/// The side a request of `route` is on: its canary side, or `current` on a route with a
/// policy and no canary running; `None` on a route without a policy.
fn role_of(route: &Route, side: Option<&Side>) -> Option<Role> {
    match side {
        Some((role, _)) => Some(*role),
        None => route.slot.canary_policy().map(|_| Role::Current),
    }
}

/// The response as it leaves: it names the route and the generation that served it (if one
/// did) and, on a route with a canary policy, its side; it is counted in the route's metrics
/// (and its canary's numbers, which may decide a verdict here) and recorded in the request's
/// span.
fn respond(
    route: &Route,
    mut response: Response<ResponseBody>,
    (generation, side): (Option<u64>, Option<Side>),
    started: Instant,
    span: &tracing::Span,
) -> Response<ResponseBody> {
    let role = role_of(route, side.as_ref());
    if let Some(generation) = generation {
        let headers = response.headers_mut();
        headers.insert(GENERATION_HEADER, HeaderValue::from(generation));
        headers.insert(ROUTE_HEADER, route.header.clone());
        if let Some(role) = role {
            headers.insert(ROLE_HEADER, HeaderValue::from_static(role.as_str()));
        }
    }
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    if let Some((role, canary)) = side {
        let error = status >= 500;
        route.metrics.canary_request(role.as_str(), error);
        if let Some(verdict) = canary.record(role, error, elapsed) {
            route.slot.conclude(&canary, &verdict, &route.metrics);
        }
    }
    let generation = generation.unwrap_or(0);
    route.metrics.request(status, generation, elapsed);
    if !span.is_disabled() {
        span.record("status", status);
        span.record("generation", generation);
        if let Some(role) = role {
            span.record("role", role.as_str());
        }
        span.record("duration_ms", elapsed.as_secs_f64() * 1000.0);
        span.in_scope(|| tracing::debug!("response head sent"));
    }
    response
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
