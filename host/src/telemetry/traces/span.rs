//! What a span is here: W3C trace context (ids, the sampled flag, `tracestate`), the record a
//! finished span leaves for the exporter, and its attributes.
//!
//! The request path makes two spans per request, so a span is kept to plain data: ids from a
//! per-thread generator, two clock reads, a handful of attributes, one record offered to the
//! export queue when it ends. (An OpenTelemetry SDK span, with its sampler objects, shared
//! context, locks and conversion to protobuf on export, cost hello four times as much.)

use std::borrow::Cow;
use std::cell::Cell;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Longest `tracestate` carried on (the W3C limit is 32 members; 512 bytes is what a vendor
/// may rely on being kept).
const MAX_TRACE_STATE: usize = 512;

/// Where a span sits in its trace, as `traceparent` and `tracestate` carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanContext {
    /// The trace's id.
    pub trace_id: [u8; 16],
    /// The span's id.
    pub span_id: [u8; 8],
    /// Whether the trace is recorded.
    pub sampled: bool,
    /// The vendors' `tracestate`, passed on unchanged.
    pub state: Option<Arc<str>>,
}

impl SpanContext {
    /// Reads a `traceparent` (and its `tracestate`): `None` when absent or malformed (the
    /// request then starts a trace of its own, as the W3C specification says).
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<SpanContext> {
        let mut parts = traceparent.trim().split('-');
        let version = parts.next()?;
        let (trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?);
        // Version 00 has exactly four parts; a later version may add more after them.
        if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
            return None;
        }
        u8::from_str_radix(version, 16).ok()?;
        let trace_id: [u8; 16] = hex(trace)?;
        let span_id: [u8; 8] = hex(span)?;
        let [flags]: [u8; 1] = hex(flags)?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        let state = tracestate
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= MAX_TRACE_STATE)
            .map(Arc::from);
        Some(SpanContext {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
            state,
        })
    }

    /// This context as a `traceparent` header value.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{}",
            hex::encode(self.trace_id),
            hex::encode(self.span_id),
            if self.sampled { "01" } else { "00" }
        )
    }

    /// A new span of the same trace, as a child of this one.
    pub fn child(&self) -> SpanContext {
        SpanContext {
            span_id: new_span_id(),
            ..self.clone()
        }
    }
}

/// `N` bytes from exactly `2 * N` lowercase hex digits (W3C trace context allows no others).
fn hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0; N];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

thread_local! {
    /// The thread's id generator: SplitMix64 from a random seed.
    static IDS: Cell<u64> = Cell::new(RandomState::new().hash_one(std::thread::current().id()) | 1);
}

fn next_id() -> u64 {
    IDS.with(|state| {
        let mut z = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        state.set(z);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

/// A new, nonzero span id.
pub fn new_span_id() -> [u8; 8] {
    loop {
        let id = next_id();
        if id != 0 {
            return id.to_be_bytes();
        }
    }
}

/// A new, nonzero trace id.
pub fn new_trace_id() -> [u8; 16] {
    let mut id = [0; 16];
    id[..8].copy_from_slice(&next_id().to_be_bytes());
    id[8..].copy_from_slice(&new_span_id());
    id
}

/// Now, in nanoseconds since the Unix epoch.
pub fn now_ns() -> u64 {
    unix_ns(SystemTime::now())
}

/// `time` in nanoseconds since the Unix epoch.
pub fn unix_ns(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// What a span says it is, as OTLP numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Work inside the host.
    Internal = 1,
    /// A request served.
    Server = 2,
    /// A request made.
    Client = 3,
}

/// An attribute's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A string.
    Str(Cow<'static, str>),
    /// An integer.
    Int(i64),
}

impl From<&'static str> for Value {
    fn from(s: &'static str) -> Value {
        Value::Str(Cow::Borrowed(s))
    }
}

impl From<Cow<'static, str>> for Value {
    fn from(s: Cow<'static, str>) -> Value {
        Value::Str(s)
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(Cow::Owned(s))
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Value {
        Value::Int(n)
    }
}

/// One attribute of a span.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyValue {
    /// Its key, as the semantic conventions name it.
    pub key: &'static str,
    /// Its value.
    pub value: Value,
}

impl KeyValue {
    /// The attribute `key` = `value`.
    pub fn new(key: &'static str, value: impl Into<Value>) -> KeyValue {
        KeyValue {
            key,
            value: value.into(),
        }
    }
}

/// A finished span, as the exporter sends it.
#[derive(Debug, Clone)]
pub struct Record {
    /// Its trace, id and `tracestate`.
    pub context: SpanContext,
    /// Its parent's span id, if it has one.
    pub parent: Option<[u8; 8]>,
    /// Its name.
    pub name: Cow<'static, str>,
    /// Its kind.
    pub kind: Kind,
    /// When it started and ended, in nanoseconds since the Unix epoch.
    pub start: u64,
    /// See `start`.
    pub end: u64,
    /// Its attributes.
    pub attributes: Vec<KeyValue>,
    /// `Some` when it failed, with the description (possibly empty).
    pub error: Option<Cow<'static, str>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_reads_and_writes_as_w3c_says() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let cx = SpanContext::parse(tp, Some("congo=t61rcWkgMzE")).unwrap();
        assert!(cx.sampled);
        assert_eq!(cx.traceparent(), tp);
        assert_eq!(cx.state.as_deref(), Some("congo=t61rcWkgMzE"));
        let child = cx.child();
        assert_eq!(child.trace_id, cx.trace_id);
        assert_ne!(child.span_id, cx.span_id);
        // Unsampled, and a future version with more parts.
        assert!(
            !SpanContext::parse(&tp.replace("-01", "-00"), None)
                .unwrap()
                .sampled
        );
        assert!(SpanContext::parse(&format!("01{}-extra", &tp[2..]), None).is_some());
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert_eq!(SpanContext::parse(bad, None), None, "{bad}");
        }
    }

    #[test]
    fn ids_are_nonzero_and_differ() {
        let ids: std::collections::HashSet<[u8; 16]> = (0..1000).map(|_| new_trace_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(!ids.contains(&[0; 16]));
    }
}
