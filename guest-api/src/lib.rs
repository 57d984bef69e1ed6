//! guest-api: a small JSON API component for the hotswap host, meant to be
//! mounted at the route prefix `/api`. The host passes the full original path,
//! so the routes below include the prefix.
//!
//! Routes:
//! - `GET /api`, `GET /api/` → 200 `{"service":"api","version":"<V>"}`
//! - `GET /api/time`         → 200 `{"unix_ms":N}` (wall clock)
//! - `POST /api/echo`        → 200, the request body streamed back (`application/octet-stream`)
//! - anything else           → 404 `{"error":"not found","path":"<path>"}`
//!
//! `<V>` is the `GUEST_VERSION` environment variable at build time (`dev` if unset).

mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "hotswap:host/guest",
        // The world's interfaces all come from the vendored WASI packages:
        // generate bindings for them here rather than map them to a crate.
        generate_all,
    });
}

use bindings::exports::wasi::http::incoming_handler::Guest;
use bindings::wasi::clocks::wall_clock;
use bindings::wasi::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use bindings::wasi::io::streams::{OutputStream, StreamError};

/// Set at build time; cargo tracks `option_env!`, so changing it rebuilds.
const VERSION: &str = match option_env!("GUEST_VERSION") {
    Some(v) => v,
    None => "dev",
};

/// `blocking-write-and-flush` accepts at most 4096 bytes per call; request
/// bodies are read in pieces of the same size.
const CHUNK: usize = 4096;

struct Component;

impl Guest for Component {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let target = request.path_with_query().unwrap_or_else(|| "/".to_string());
        let path = target.split_once('?').map_or(target.as_str(), |(p, _)| p);

        match (request.method(), path) {
            (Method::Get, "/api" | "/api/") => respond_json(
                out,
                200,
                &format!(
                    r#"{{"service":"api","version":"{}"}}"#,
                    json_escape(VERSION)
                ),
            ),
            (Method::Get, "/api/time") => {
                let now = wall_clock::now();
                let ms = now.seconds * 1000 + u64::from(now.nanoseconds / 1_000_000);
                respond_json(out, 200, &format!(r#"{{"unix_ms":{ms}}}"#));
            }
            (Method::Post, "/api/echo") => echo(request, out),
            _ => respond_json(
                out,
                404,
                &format!(r#"{{"error":"not found","path":"{}"}}"#, json_escape(path)),
            ),
        }
    }
}

/// Builds a header list from `(name, value)` pairs.
fn headers(pairs: &[(&str, &str)]) -> Fields {
    let list: Vec<(String, Vec<u8>)> = pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.as_bytes().to_vec()))
        .collect();
    Fields::from_list(&list).expect("static header names and values are valid")
}

/// Sends a complete `application/json` response with this status and body.
fn respond_json(out: ResponseOutparam, status: u16, body: &str) {
    let length = body.len().to_string();
    let response = OutgoingResponse::new(headers(&[
        ("content-type", "application/json"),
        ("content-length", &length),
    ]));
    response.set_status_code(status).expect("valid status code");
    let outgoing = response.body().expect("body is taken only once");
    // Hand the headers to the host first, then write the body.
    ResponseOutparam::set(out, Ok(response));
    let stream = outgoing.write().expect("stream is taken only once");
    // If the client went away there is nobody to tell: just stop writing.
    let _ = write_all(&stream, body.as_bytes());
    drop(stream); // the stream must be dropped before the body is finished
    let _ = OutgoingBody::finish(outgoing, None);
}

/// Responds 200 with the request's body, copied piece by piece as it arrives.
fn echo(request: IncomingRequest, out: ResponseOutparam) {
    let incoming = request
        .consume()
        .expect("request body is consumed only once");
    let input = incoming.stream().expect("stream is taken only once");
    let response = OutgoingResponse::new(headers(&[("content-type", "application/octet-stream")]));
    let outgoing = response.body().expect("body is taken only once");
    ResponseOutparam::set(out, Ok(response));
    let output = outgoing.write().expect("stream is taken only once");

    let copied = loop {
        match input.blocking_read(CHUNK as u64) {
            Ok(bytes) => {
                if let Err(e) = write_all(&output, &bytes) {
                    break Err(e);
                }
            }
            Err(StreamError::Closed) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    // Streams are children of their bodies: drop them before finishing.
    drop(input);
    drop(output);
    drop(IncomingBody::finish(incoming));
    if copied.is_ok() {
        let _ = OutgoingBody::finish(outgoing, None);
    }
    // On error the outgoing body is dropped unfinished: the host sees an
    // incomplete response.
}

/// Writes all of `data`, in pieces of at most [`CHUNK`] bytes.
fn write_all(stream: &OutputStream, data: &[u8]) -> Result<(), StreamError> {
    for piece in data.chunks(CHUNK) {
        stream.blocking_write_and_flush(piece)?;
    }
    Ok(())
}

/// Escapes `s` for use inside a JSON string literal.
fn json_escape(s: &str) -> String {
    let mut escaped = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => escaped.push_str("\\\""),
            '\\' => escaped.push_str("\\\\"),
            c if u32::from(c) < 0x20 => escaped.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => escaped.push(c),
        }
    }
    escaped
}

bindings::export!(Component with_types_in bindings);
