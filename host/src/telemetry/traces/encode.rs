//! Spans as OTLP protobuf (`opentelemetry/proto/collector/trace/v1`): an
//! `ExportTraceServiceRequest` with one `ResourceSpans` (this host) holding one `ScopeSpans`
//! (`hotswap`), written straight from the records, field numbers as the `.proto` files give
//! them. The resource and scope are encoded once.

use super::span::{KeyValue, Record, Value};

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;

/// The resource and scope of every batch, encoded once.
pub struct Encoder {
    /// `ResourceSpans.resource` (field 1), tag and length included.
    resource: Vec<u8>,
    /// `ScopeSpans.scope` (field 1), tag and length included.
    scope: Vec<u8>,
}

impl Encoder {
    /// An encoder for spans of the resource with `attributes`, in the scope `scope` of
    /// `version`.
    pub fn new(attributes: &[(String, String)], scope: &str, version: &str) -> Encoder {
        let mut resource = Vec::new();
        nested(&mut resource, 1, |buf| {
            for (key, value) in attributes {
                nested(buf, 1, |buf| {
                    string(buf, 1, key);
                    nested(buf, 2, |buf| string(buf, 1, value));
                });
            }
        });
        let mut encoded_scope = Vec::new();
        nested(&mut encoded_scope, 1, |buf| {
            string(buf, 1, scope);
            string(buf, 2, version);
        });
        Encoder {
            resource,
            scope: encoded_scope,
        }
    }

    /// The request body that exports `spans`.
    pub fn request(&self, spans: &[Record]) -> Vec<u8> {
        let mut buf = Vec::with_capacity(64 + spans.len() * 256);
        nested(&mut buf, 1, |buf| {
            buf.extend_from_slice(&self.resource);
            nested(buf, 2, |buf| {
                buf.extend_from_slice(&self.scope);
                for span in spans {
                    nested(buf, 2, |buf| encode_span(buf, span));
                }
            });
        });
        buf
    }
}

/// One `Span` message's fields.
fn encode_span(buf: &mut Vec<u8>, span: &Record) {
    bytes(buf, 1, &span.context.trace_id);
    bytes(buf, 2, &span.context.span_id);
    if let Some(state) = &span.context.state {
        string(buf, 3, state);
    }
    if let Some(parent) = &span.parent {
        bytes(buf, 4, parent);
    }
    string(buf, 5, &span.name);
    key(buf, 6, VARINT);
    varint(buf, span.kind as u64);
    key(buf, 7, FIXED64);
    buf.extend_from_slice(&span.start.to_le_bytes());
    key(buf, 8, FIXED64);
    buf.extend_from_slice(&span.end.max(span.start).to_le_bytes());
    for attribute in &span.attributes {
        nested(buf, 9, |buf| encode_attribute(buf, attribute));
    }
    if let Some(description) = &span.error {
        // Status: message (2), code (3) = STATUS_CODE_ERROR (2).
        nested(buf, 15, |buf| {
            if !description.is_empty() {
                string(buf, 2, description);
            }
            key(buf, 3, VARINT);
            varint(buf, 2);
        });
    }
}

/// One `KeyValue`: key (1), `AnyValue` (2) with a string (1) or an int (3).
fn encode_attribute(buf: &mut Vec<u8>, attribute: &KeyValue) {
    string(buf, 1, attribute.key);
    nested(buf, 2, |buf| match &attribute.value {
        Value::Str(s) => string(buf, 1, s),
        Value::Int(n) => {
            key(buf, 3, VARINT);
            varint(buf, *n as u64);
        }
    });
}

fn key(buf: &mut Vec<u8>, field: u32, wire: u8) {
    varint(buf, u64::from(field) << 3 | u64::from(wire));
}

fn varint(buf: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        buf.push(n as u8 | 0x80);
        n >>= 7;
    }
    buf.push(n as u8);
}

fn bytes(buf: &mut Vec<u8>, field: u32, value: &[u8]) {
    key(buf, field, LEN);
    varint(buf, value.len() as u64);
    buf.extend_from_slice(value);
}

fn string(buf: &mut Vec<u8>, field: u32, value: &str) {
    bytes(buf, field, value.as_bytes());
}

/// A length-delimited field whose contents `write` appends: written in place after a one-byte
/// length, moved along if the length needs more bytes.
fn nested(buf: &mut Vec<u8>, field: u32, write: impl FnOnce(&mut Vec<u8>)) {
    key(buf, field, LEN);
    let at = buf.len();
    buf.push(0);
    write(buf);
    let len = buf.len() - at - 1;
    if len < 0x80 {
        buf[at] = len as u8;
    } else {
        let mut prefix = Vec::with_capacity(10);
        varint(&mut prefix, len as u64);
        buf.splice(at..=at, prefix);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_long_nested_fields_are_standard_protobuf() {
        let mut buf = Vec::new();
        varint(&mut buf, 300);
        assert_eq!(buf, [0xac, 0x02]);
        // A nested field of 200 bytes takes a two-byte length, moved in front of its contents.
        let mut buf = Vec::new();
        nested(&mut buf, 1, |buf| buf.extend_from_slice(&[7; 200]));
        assert_eq!(&buf[..3], &[0x0a, 0xc8, 0x01]);
        assert_eq!(buf.len(), 3 + 200);
        assert!(buf[3..].iter().all(|&b| b == 7));
    }
}
