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
//! allocation is made. On, spans end into a bounded queue (`export`) that a task drains.

mod export;
mod settings;

pub use export::SpanCounters;
pub use opentelemetry::KeyValue;
pub use settings::{
    SAMPLER_NAMES, SamplerChoice, TraceSettings, check_url, parse_resource_attributes, traces_url,
};

use anyhow::{Context as _, Result};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{Context, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, SpanExporter};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

/// The tracer of the process, once tracing is set up.
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// The instrumentation scope every span names.
const SCOPE: &str = "hotswap";

fn tracer() -> Option<&'static SdkTracer> {
    TRACER.get()
}

/// Whether traces are being recorded (an endpoint is configured).
pub fn enabled() -> bool {
    TRACER.get().is_some()
}

/// Tracing while the host runs; [`Traces::shutdown`] sends what is still queued.
pub struct Traces {
    provider: SdkTracerProvider,
    flush: export::Flush,
}

impl Traces {
    /// Exports what is queued (waiting at most `timeout`) and stops the provider.
    pub async fn shutdown(self, timeout: Duration) {
        self.flush.flush(timeout).await;
        let _ = self.provider.shutdown();
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
    let mut exporter = {
        use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
        opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_endpoint(settings.endpoint.clone())
            .with_timeout(settings.export_timeout)
            .build()
            .context("cannot set up the OTLP exporter")?
    };
    let resource = Resource::builder_empty()
        .with_service_name(settings.service_name.clone())
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("telemetry.sdk.name", "opentelemetry"),
            KeyValue::new("telemetry.sdk.language", "rust"),
        ])
        .with_attributes(
            settings
                .resource
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        )
        .build();
    exporter.set_resource(&resource);
    let (processor, flush) = export::start(
        exporter,
        settings.queue_size,
        settings.export_timeout,
        settings.endpoint.clone(),
        counters,
    );
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(settings.sampler.sampler())
        .with_resource(resource)
        .build();
    TRACER
        .set(provider.tracer(SCOPE))
        .map_err(|_| anyhow::anyhow!("tracing is set up once per process"))?;
    Ok(Traces { provider, flush })
}

/// Reads `traceparent` and `tracestate` from request headers.
struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Writes `traceparent` and `tracestate` into request headers.
struct HeadersMut<'a>(&'a mut http::HeaderMap);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// A started span and the context it is current in; ended when dropped.
struct Live(Context);

impl Live {
    fn start(
        tracer: &SdkTracer,
        name: String,
        kind: SpanKind,
        parent: &Context,
        attributes: Vec<KeyValue>,
    ) -> Live {
        let span = tracer
            .span_builder(name)
            .with_kind(kind)
            .with_attributes(attributes)
            .start_with_context(tracer, parent);
        Live(parent.with_span(span))
    }

    fn set(&self, attribute: KeyValue) {
        self.0.span().set_attribute(attribute);
    }

    fn fail(&self, description: impl Into<std::borrow::Cow<'static, str>>) {
        self.0.span().set_status(Status::error(description));
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.span().end();
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
pub struct RequestSpan(Live);

impl RequestSpan {
    /// The span of the request `info` describes, or `None` when tracing is off.
    pub fn start(info: RequestInfo<'_>) -> Option<RequestSpan> {
        let tracer = tracer()?;
        let parent = TraceContextPropagator::new().extract(&Headers(info.headers));
        let (route, prefix) = info.route;
        let attributes = vec![
            KeyValue::new("http.request.method", info.method.as_str().to_string()),
            KeyValue::new("url.path", info.path.to_string()),
            KeyValue::new("http.route", prefix.to_string()),
            KeyValue::new("hotswap.route", route.to_string()),
            KeyValue::new("network.protocol.version", protocol(info.version)),
        ];
        Some(RequestSpan(Live::start(
            tracer,
            format!("{} {prefix}", info.method),
            SpanKind::Server,
            &parent,
            attributes,
        )))
    }

    /// Records the response: its status (5xx marks the span an error) and the generation that
    /// served it, if one did.
    pub fn respond(&self, status: u16, generation: Option<u64>) {
        self.0.set(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
        if let Some(generation) = generation {
            self.0
                .set(KeyValue::new("hotswap.generation", generation as i64));
        }
        if status >= 500 {
            self.0.fail("");
        }
    }

    /// The span of the guest's run on `generation`, a child of this one.
    pub fn guest(&self, generation: u64, world: &'static str, tier: &'static str) -> GuestSpan {
        let tracer = tracer().expect("a request span exists only while tracing is on");
        GuestSpan(Live::start(
            tracer,
            "guest".to_string(),
            SpanKind::Internal,
            &self.0.0,
            vec![
                KeyValue::new("hotswap.generation", generation as i64),
                KeyValue::new("hotswap.world", world),
                KeyValue::new("hotswap.tier", tier),
            ],
        ))
    }
}

/// The span of a guest's run, from its instance's creation to the end of its work (its
/// response body included); ended when dropped.
pub struct GuestSpan(Live);

impl GuestSpan {
    /// Marks the run failed (`kind`: timeout, trap, memory, …) with `message`.
    pub fn fail(&self, kind: &'static str, message: &str) {
        self.0.set(KeyValue::new("error.type", kind));
        self.0.fail(message.to_string());
    }

    /// The context the guest's outbound calls continue.
    pub fn context(&self) -> TraceContext {
        TraceContext(Some(self.0.0.clone()))
    }
}

/// Where a guest's outbound calls hang in the trace (nothing when tracing is off).
#[derive(Clone, Default)]
pub struct TraceContext(Option<Context>);

impl std::fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let span = self.0.as_ref().map(|cx| cx.span().span_context().span_id());
        f.debug_tuple("TraceContext").field(&span).finish()
    }
}

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
        let (parent, tracer) = (self.0.as_ref()?, tracer()?);
        let mut attributes = vec![
            KeyValue::new("http.request.method", method.as_str().to_string()),
            KeyValue::new("url.full", uri.to_string()),
        ];
        if let Some(host) = uri.host() {
            attributes.push(KeyValue::new("server.address", host.to_string()));
        }
        if let Some(port) = uri.port_u16() {
            attributes.push(KeyValue::new("server.port", i64::from(port)));
        }
        let span = Live::start(
            tracer,
            method.as_str().to_string(),
            SpanKind::Client,
            parent,
            attributes,
        );
        if !headers.contains_key("traceparent") {
            TraceContextPropagator::new().inject_context(&span.0, &mut HeadersMut(headers));
        }
        Some(OutboundSpan(span))
    }
}

/// The span of one outbound call; ended when dropped.
pub struct OutboundSpan(Live);

impl OutboundSpan {
    /// Records the response's status (5xx marks it an error).
    pub fn respond(&self, status: u16) {
        self.0.set(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
        if status >= 500 {
            self.0.fail("");
        }
    }

    /// Marks the call failed with `reason`.
    pub fn fail(&self, reason: &str) {
        self.0.fail(reason.to_string());
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
        let root = tracer
            .span_builder(name)
            .with_kind(SpanKind::Internal)
            .with_start_time(recorded.started)
            .with_attributes(attributes)
            .start_with_context(tracer, &Context::new());
        let cx = Context::new().with_span(root);
        for (step, start, end, attributes) in recorded.steps {
            let span = tracer
                .span_builder(step)
                .with_kind(SpanKind::Internal)
                .with_start_time(start)
                .with_attributes(attributes)
                .start_with_context(tracer, &cx);
            let mut span = span;
            opentelemetry::trace::Span::end_with_timestamp(&mut span, end);
        }
        let span = cx.span();
        if let Some(error) = error {
            span.set_status(Status::error(error.to_string()));
        }
        span.end();
    }
}

/// An attribute of a string (for callers that name one without the crate's types).
pub fn attr(key: &'static str, value: impl Into<Value>) -> KeyValue {
    KeyValue::new(key, value)
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
