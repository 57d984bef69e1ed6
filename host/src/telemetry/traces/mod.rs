//! OpenTelemetry traces over OTLP/HTTP, off unless an endpoint is configured, and then:
//!
//! - a server span per request ([`RequestSpan`]), continuing the caller's W3C `traceparent`
//!   and `tracestate`, with the guest's run as a child span ([`GuestSpan`]) and each outbound
//!   call the guest makes as a client span under that ([`OutboundSpan`]), whose context goes
//!   out in the call's own `traceparent`: a trace goes on into the next service;
//! - a span per reload (read or pull, compile, validate, install), tier-up and build
//!   ([`Steps`]), so a slow deploy shows in the same tool as a slow request.
//!
//! Off, every entry point is one check of a global that was never set: no span, context or
//! allocation is made. On, spans are plain records (`span`) that end into a bounded queue
//! (`export`), which a task drains, encoding them as OTLP protobuf itself (`encode`).

mod encode;
mod export;
mod settings;
mod span;

pub use export::SpanCounters;
pub use settings::{
    SAMPLER_NAMES, SamplerChoice, TraceSettings, check_url, parse_resource_attributes, traces_url,
};
pub use span::{KeyValue, Value};

use anyhow::{Context as _, Result};
use span::{Kind, Record, SpanContext, new_span_id, new_trace_id, now_ns, unix_ns};
use std::borrow::Cow;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

/// The process's tracer, once tracing is set up.
static TRACER: OnceLock<Tracer> = OnceLock::new();

/// The instrumentation scope every span names.
const SCOPE: &str = "hotswap";

/// What every span needs: which traces are recorded, and where ended spans go.
struct Tracer {
    sampler: SamplerChoice,
    queue: export::Queue,
}

fn tracer() -> Option<&'static Tracer> {
    TRACER.get()
}

/// Whether traces are being recorded (an endpoint is configured).
pub fn enabled() -> bool {
    TRACER.get().is_some()
}

/// Tracing while the host runs; [`Traces::shutdown`] sends what is still queued.
pub struct Traces {
    flush: export::Flush,
}

impl Traces {
    /// Exports what is queued, waiting at most `timeout`.
    pub async fn shutdown(self, timeout: Duration) {
        self.flush.flush(timeout).await;
    }

    /// Exports what is queued now, waiting at most `timeout`.
    pub async fn flush(&self, timeout: Duration) {
        self.flush.flush(timeout).await;
    }
}

/// Sets up tracing for the process with `settings`, counting spans in `counters`. Must run on
/// the tokio runtime (the export task is spawned on it), once.
pub fn init(settings: &TraceSettings, counters: SpanCounters) -> Result<Traces> {
    // One TLS provider for the process (for an https:// collector); a second install is a no-op.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .user_agent(concat!("hotswap/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(settings.export_timeout)
        .timeout(settings.export_timeout)
        .build()
        .context("cannot build the OTLP client")?;
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in &settings.headers {
        let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .with_context(|| format!("`{name}` is not a header name"))?;
        let value = reqwest::header::HeaderValue::from_str(value)
            .with_context(|| format!("the value of header `{name}` is not a header value"))?;
        headers.append(name, value);
    }
    let mut resource = vec![
        ("service.name".to_string(), settings.service_name.clone()),
        (
            "service.version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
        ("telemetry.sdk.name".to_string(), "hotswap".to_string()),
        ("telemetry.sdk.language".to_string(), "rust".to_string()),
        (
            "telemetry.sdk.version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
    ];
    for (key, value) in &settings.resource {
        match resource.iter_mut().find(|(k, _)| k == key) {
            Some(kept) if key != "service.name" => kept.1 = value.clone(),
            Some(_) => {}
            None => resource.push((key.clone(), value.clone())),
        }
    }
    let collector = export::Collector {
        client,
        url: settings.endpoint.clone(),
        headers,
        encoder: encode::Encoder::new(&resource, SCOPE, env!("CARGO_PKG_VERSION")),
    };
    let (queue, flush) = export::start(
        collector,
        settings.queue_size,
        settings.export_timeout,
        counters,
    );
    TRACER
        .set(Tracer {
            sampler: settings.sampler,
            queue,
        })
        .map_err(|_| anyhow::anyhow!("tracing is set up once per process"))?;
    Ok(Traces { flush })
}

/// A span being timed: its context, its parent, when it started, what it says so far.
struct Open {
    context: SpanContext,
    parent: Option<[u8; 8]>,
    name: Cow<'static, str>,
    kind: Kind,
    start: u64,
    attributes: Vec<KeyValue>,
}

impl Open {
    /// Ends the span now with `more` attributes and `error`, and offers it to the export
    /// queue (if its trace is recorded).
    fn end(self, more: impl IntoIterator<Item = KeyValue>, error: Option<Cow<'static, str>>) {
        let Some(tracer) = tracer() else { return };
        if !self.context.sampled {
            return;
        }
        let mut attributes = self.attributes;
        attributes.extend(more);
        tracer.queue.offer(Record {
            context: self.context,
            parent: self.parent,
            name: self.name,
            kind: self.kind,
            start: self.start,
            end: now_ns(),
            attributes,
            error,
        });
    }
}

/// What a request on the public listener is, for its span.
pub struct RequestInfo<'a> {
    /// Its headers (the caller's `traceparent` is read from them).
    pub headers: &'a http::HeaderMap,
    /// Its method.
    pub method: &'a http::Method,
    /// Its path.
    pub path: &'a str,
    /// The route that serves it: its name and its prefix.
    pub route: (&'a str, &'a str),
    /// The HTTP version it came over.
    pub version: http::Version,
}

/// The server span of one request: named `METHOD PREFIX` (the route's prefix), a child of the
/// caller's `traceparent` if it sent one; ended when dropped (the host drops it when the
/// response's body is done).
pub struct RequestSpan {
    /// `None` once ended.
    open: Option<Open>,
    /// The response's status (0: none yet).
    status: AtomicU32,
    /// The generation that served it (0: none).
    generation: AtomicU64,
}

impl RequestSpan {
    /// The span of the request `info` describes, or `None` when tracing is off.
    pub fn start(info: RequestInfo<'_>) -> Option<RequestSpan> {
        let tracer = tracer()?;
        let header = |name| info.headers.get(name).and_then(|v| v.to_str().ok());
        let caller =
            header("traceparent").and_then(|tp| SpanContext::parse(tp, header("tracestate")));
        let trace_id = caller.as_ref().map_or_else(new_trace_id, |c| c.trace_id);
        let sampled = tracer.sampler.sample(caller.as_ref(), &trace_id);
        let (parent, state) = match caller {
            Some(c) => (Some(c.span_id), c.state),
            None => (None, None),
        };
        let (route, prefix) = info.route;
        let method = method_name(info.method);
        let attributes = if sampled {
            // Room for the two the response adds.
            let mut attributes = Vec::with_capacity(7);
            attributes.extend([
                KeyValue::new("http.request.method", method.clone()),
                KeyValue::new("url.path", info.path.to_string()),
                KeyValue::new("http.route", prefix.to_string()),
                KeyValue::new("hotswap.route", route.to_string()),
                KeyValue::new("network.protocol.version", protocol(info.version)),
            ]);
            attributes
        } else {
            Vec::new()
        };
        Some(RequestSpan {
            open: Some(Open {
                context: SpanContext {
                    trace_id,
                    span_id: new_span_id(),
                    sampled,
                    state,
                },
                parent,
                name: if sampled {
                    Cow::Owned(format!("{method} {prefix}"))
                } else {
                    Cow::Borrowed("")
                },
                kind: Kind::Server,
                start: now_ns(),
                attributes,
            }),
            status: AtomicU32::new(0),
            generation: AtomicU64::new(0),
        })
    }

    fn context(&self) -> &SpanContext {
        &self.open.as_ref().expect("open until dropped").context
    }

    /// Records the response: its status (5xx marks the span an error) and the generation that
    /// served it, if one did.
    pub fn respond(&self, status: u16, generation: Option<u64>) {
        self.status.store(u32::from(status), Ordering::Relaxed);
        if let Some(generation) = generation {
            self.generation.store(generation, Ordering::Relaxed);
        }
    }

    /// The span of the guest's run on `generation`, a child of this one.
    pub fn guest(&self, generation: u64, world: &'static str, tier: &'static str) -> GuestSpan {
        let parent = self.context();
        let context = parent.child();
        let attributes = if context.sampled {
            // Room for `error.type`.
            let mut attributes = Vec::with_capacity(4);
            attributes.extend([
                KeyValue::new("hotswap.generation", generation as i64),
                KeyValue::new("hotswap.world", world),
                KeyValue::new("hotswap.tier", tier),
            ]);
            attributes
        } else {
            Vec::new()
        };
        GuestSpan {
            open: Some(Open {
                parent: Some(parent.span_id),
                context,
                name: Cow::Borrowed("guest"),
                kind: Kind::Internal,
                start: now_ns(),
                attributes,
            }),
            failure: Mutex::new(None),
        }
    }
}

impl Drop for RequestSpan {
    fn drop(&mut self) {
        let Some(open) = self.open.take() else { return };
        let status = self.status.load(Ordering::Relaxed);
        let generation = self.generation.load(Ordering::Relaxed);
        let mut more = Vec::with_capacity(2);
        if status != 0 {
            more.push(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
        }
        if generation != 0 {
            more.push(KeyValue::new("hotswap.generation", generation as i64));
        }
        open.end(more, (status >= 500).then_some(Cow::Borrowed("")));
    }
}

/// The span of a guest's run, from its instance's creation to the end of its work (its
/// response body included); ended when dropped.
pub struct GuestSpan {
    /// `None` once ended.
    open: Option<Open>,
    /// What failed, if the run did: its kind and the message.
    failure: Mutex<Option<(&'static str, String)>>,
}

impl GuestSpan {
    /// Marks the run failed (`kind`: timeout, trap, memory, …) with `message`.
    pub fn fail(&self, kind: &'static str, message: &str) {
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some((kind, message.to_string()));
    }

    /// The context the guest's outbound calls continue.
    pub fn context(&self) -> TraceContext {
        TraceContext(self.open.as_ref().map(|open| open.context.clone()))
    }
}

impl Drop for GuestSpan {
    fn drop(&mut self) {
        let Some(open) = self.open.take() else { return };
        let failure = self
            .failure
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match failure {
            Some((kind, message)) => open.end(
                [KeyValue::new("error.type", kind)],
                Some(Cow::Owned(message)),
            ),
            None => open.end([], None),
        }
    }
}

/// Where a guest's outbound calls hang in the trace (nothing when tracing is off).
#[derive(Debug, Clone, Default)]
pub struct TraceContext(Option<SpanContext>);

impl TraceContext {
    /// A client span for an outbound `method uri` under this context, its context written
    /// into `headers` (`traceparent`, `tracestate`) unless the guest set a `traceparent` of
    /// its own; `None` when tracing is off.
    pub fn outbound(
        &self,
        method: &http::Method,
        uri: &http::Uri,
        headers: &mut http::HeaderMap,
    ) -> Option<OutboundSpan> {
        let parent = self.0.as_ref()?;
        tracer()?;
        let context = parent.child();
        if !headers.contains_key("traceparent") {
            if let Ok(value) = http::HeaderValue::from_str(&context.traceparent()) {
                headers.insert("traceparent", value);
            }
            if let Some(state) = context.state.as_deref()
                && let Ok(value) = http::HeaderValue::from_str(state)
            {
                headers.insert("tracestate", value);
            }
        }
        let mut attributes = Vec::new();
        if context.sampled {
            attributes.push(KeyValue::new("http.request.method", method_name(method)));
            attributes.push(KeyValue::new("url.full", uri.to_string()));
            if let Some(host) = uri.host() {
                attributes.push(KeyValue::new("server.address", host.to_string()));
            }
            if let Some(port) = uri.port_u16() {
                attributes.push(KeyValue::new("server.port", i64::from(port)));
            }
        }
        Some(OutboundSpan {
            open: Some(Open {
                parent: Some(parent.span_id),
                context,
                name: method_name(method),
                kind: Kind::Client,
                start: now_ns(),
                attributes,
            }),
            status: AtomicU32::new(0),
            failure: Mutex::new(None),
        })
    }
}

/// The span of one outbound call; ended when dropped.
pub struct OutboundSpan {
    /// `None` once ended.
    open: Option<Open>,
    /// The response's status (0: none).
    status: AtomicU32,
    /// Why the call failed, if it did.
    failure: Mutex<Option<String>>,
}

impl OutboundSpan {
    /// Records the response's status (5xx marks it an error).
    pub fn respond(&self, status: u16) {
        self.status.store(u32::from(status), Ordering::Relaxed);
    }

    /// Marks the call failed with `reason`.
    pub fn fail(&self, reason: &str) {
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.to_string());
    }
}

impl Drop for OutboundSpan {
    fn drop(&mut self) {
        let Some(open) = self.open.take() else { return };
        let status = self.status.load(Ordering::Relaxed);
        let failure = self
            .failure
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let error = match failure {
            Some(reason) => Some(Cow::Owned(reason)),
            None => (status >= 500).then_some(Cow::Borrowed("")),
        };
        let more =
            (status != 0).then(|| KeyValue::new("http.response.status_code", i64::from(status)));
        open.end(more, error);
    }
}

/// The steps of one piece of background work (a reload, a tier-up, a build), recorded as
/// they end and sent as one trace when the work is done: a root span and a child per step.
/// Inert when tracing is off.
pub struct Steps(Option<Box<Recorded>>);

struct Recorded {
    started: SystemTime,
    steps: Vec<(&'static str, SystemTime, SystemTime, Vec<KeyValue>)>,
}

impl Steps {
    /// Starts recording now.
    pub fn begin() -> Steps {
        Steps(enabled().then(|| {
            Box::new(Recorded {
                started: SystemTime::now(),
                steps: Vec::new(),
            })
        }))
    }

    /// Records nothing (for a field that holds the steps of work to come).
    pub fn off() -> Steps {
        Steps(None)
    }

    /// A step that ends now and took `took`.
    pub fn step(&mut self, name: &'static str, took: Duration, attributes: Vec<KeyValue>) {
        self.step_ended(name, took, Duration::ZERO, attributes);
    }

    /// A step that took `took` and ended `ago` (a step followed by another one whose time is
    /// known).
    pub fn step_ended(
        &mut self,
        name: &'static str,
        took: Duration,
        ago: Duration,
        attributes: Vec<KeyValue>,
    ) {
        if let Some(recorded) = &mut self.0 {
            let now = SystemTime::now();
            let end = now.checked_sub(ago).unwrap_or(now).max(recorded.started);
            let start = end.checked_sub(took).unwrap_or(end).max(recorded.started);
            recorded.steps.push((name, start, end, attributes));
        }
    }

    /// Sends the work as a span named `name` with `attributes`, failed with `error` if given,
    /// and its steps as children.
    pub fn finish(self, name: &'static str, attributes: Vec<KeyValue>, error: Option<&str>) {
        let (Some(recorded), Some(tracer)) = (self.0, tracer()) else {
            return;
        };
        let trace_id = new_trace_id();
        if !tracer.sampler.sample(None, &trace_id) {
            return;
        }
        let root = SpanContext {
            trace_id,
            span_id: new_span_id(),
            sampled: true,
            state: None,
        };
        for (step, start, end, attributes) in recorded.steps {
            tracer.queue.offer(Record {
                context: root.child(),
                parent: Some(root.span_id),
                name: Cow::Borrowed(step),
                kind: Kind::Internal,
                start: unix_ns(start),
                end: unix_ns(end),
                attributes,
                error: None,
            });
        }
        tracer.queue.offer(Record {
            context: root,
            parent: None,
            name: Cow::Borrowed(name),
            kind: Kind::Internal,
            start: unix_ns(recorded.started),
            end: now_ns(),
            attributes,
            error: error.map(|e| Cow::Owned(e.to_string())),
        });
    }
}

/// An attribute (for callers that name one without the crate's types).
pub fn attr(key: &'static str, value: impl Into<Value>) -> KeyValue {
    KeyValue::new(key, value)
}

/// A method's name, without an allocation for the standard ones.
fn method_name(method: &http::Method) -> Cow<'static, str> {
    use http::Method;
    Cow::Borrowed(match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => return Cow::Owned(method.as_str().to_string()),
    })
}

fn protocol(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "1.1",
    }
}
