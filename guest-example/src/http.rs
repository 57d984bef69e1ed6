//! Small helpers over the raw `wasi:http` bindings: send a complete response,
//! and stream a request body into a response body.

use crate::bindings::wasi::http::types::{
    Fields, IncomingBody, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use crate::bindings::wasi::io::streams::{InputStream, OutputStream, StreamError};

/// `blocking-write-and-flush` accepts at most 4096 bytes per call, and we read
/// request bodies in pieces of the same size.
const CHUNK: usize = 4096;

/// Builds a header list from `(name, value)` pairs.
fn headers(pairs: &[(&str, &str)]) -> Fields {
    let list: Vec<(String, Vec<u8>)> = pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.as_bytes().to_vec()))
        .collect();
    Fields::from_list(&list).expect("static header names and values are valid")
}

/// Sends a complete `text/plain` response with this status and body.
pub fn respond(out: ResponseOutparam, status: u16, body: &str) {
    respond_typed(out, status, "text/plain", body);
}

/// Sends a complete `text/html` response with this status and body.
pub fn respond_html(out: ResponseOutparam, status: u16, body: &str) {
    respond_typed(out, status, "text/html; charset=utf-8", body);
}

/// Sends a complete response of this content type, status and body, with its length.
fn respond_typed(out: ResponseOutparam, status: u16, content_type: &str, body: &str) {
    let length = body.len().to_string();
    let response = OutgoingResponse::new(headers(&[
        ("content-type", content_type),
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

/// Writes all of `data`, in pieces of at most [`CHUNK`] bytes, waiting for
/// each piece to be flushed.
pub fn write_all(stream: &OutputStream, data: &[u8]) -> Result<(), StreamError> {
    for piece in data.chunks(CHUNK) {
        stream.blocking_write_and_flush(piece)?;
    }
    Ok(())
}

/// Responds 200 with the request's body, copied piece by piece as it arrives:
/// the body is never held in memory whole.
pub fn echo(request: IncomingRequest, out: ResponseOutparam) {
    let incoming = request
        .consume()
        .expect("request body is consumed only once");
    let input = incoming.stream().expect("stream is taken only once");

    let response = OutgoingResponse::new(headers(&[("content-type", "application/octet-stream")]));
    let outgoing = response.body().expect("body is taken only once");
    ResponseOutparam::set(out, Ok(response));
    let output = outgoing.write().expect("stream is taken only once");

    let copied = copy(&input, &output);

    // Streams are children of their bodies: drop them before finishing.
    drop(input);
    drop(output);
    // Trailers of the request are not needed.
    drop(IncomingBody::finish(incoming));
    if copied.is_ok() {
        let _ = OutgoingBody::finish(outgoing, None);
    }
    // On error the outgoing body is dropped unfinished, which tells the host
    // the response is incomplete.
}

/// Copies `input` to `output` until `input` ends.
fn copy(input: &InputStream, output: &OutputStream) -> Result<(), StreamError> {
    loop {
        match input.blocking_read(CHUNK as u64) {
            Ok(bytes) => write_all(output, &bytes)?,
            Err(StreamError::Closed) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}
