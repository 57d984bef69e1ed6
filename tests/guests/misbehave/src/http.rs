//! Small helpers over the raw `wasi:http` bindings.

use crate::bindings::wasi::http::types::{
    Fields, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use crate::bindings::wasi::io::streams::{OutputStream, StreamError};

/// `blocking-write-and-flush` accepts at most 4096 bytes per call.
const CHUNK: usize = 4096;

/// Sends a complete `text/plain` response with this status and body.
pub fn respond(out: ResponseOutparam, status: u16, body: &str) {
    let headers = Fields::from_list(&[
        ("content-type".to_string(), b"text/plain".to_vec()),
        (
            "content-length".to_string(),
            body.len().to_string().into_bytes(),
        ),
    ])
    .expect("static header names and values are valid");
    respond_with(out, status, headers, body);
}

/// Sends a complete response with these headers, this status and body.
pub fn respond_with(out: ResponseOutparam, status: u16, headers: Fields, body: &str) {
    let response = OutgoingResponse::new(headers);
    response.set_status_code(status).expect("valid status code");
    let outgoing = response.body().expect("body is taken only once");
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
