//! Small helpers over the raw `wasi:http@0.3.0` bindings: building responses whose bodies
//! are `stream<u8>`s written by a task that outlives `handle`.

use std::future::Future;

use crate::bindings::wasi::http::types::{ErrorCode, Fields, Response, Trailers};
use crate::bindings::{wit_future, wit_stream};
use wit_bindgen::{FutureReader, FutureWriter, StreamWriter};

/// What `handler.handle` returns.
pub type Reply = Result<Response, ErrorCode>;

/// The writable end of a response body.
pub type BodyWriter = StreamWriter<u8>;

/// Size of the pieces bodies are written and copied in.
pub const CHUNK: usize = 64 << 10;

/// A complete `text/plain` response with this status and body.
pub fn respond(status: u16, body: &str) -> Reply {
    let headers = Fields::from_list(&[
        ("content-type".to_string(), b"text/plain".to_vec()),
        (
            "content-length".to_string(),
            body.len().to_string().into_bytes(),
        ),
    ])
    .expect("static header names and values are valid");
    respond_with(status, headers, body)
}

/// A complete response with these headers, this status and body.
pub fn respond_with(status: u16, headers: Fields, body: &str) -> Reply {
    let body = body.as_bytes().to_vec();
    Ok(streaming_response(
        status,
        headers,
        async move |mut writer: BodyWriter| {
            // If the client went away there is nobody to tell: the rest is dropped.
            writer.write_all(body).await;
        },
    ))
}

/// `text/plain` headers, without a length: for bodies that are streamed.
pub fn plain_headers() -> Fields {
    Fields::from_list(&[("content-type".to_string(), b"text/plain".to_vec())])
        .expect("static header names and values are valid")
}

/// A response with this status and these headers whose body is produced by `write_body`.
///
/// The body's bytes can only flow once the host holds the response, i.e. after `handle` has
/// returned it, so `write_body` runs in a task spawned next to the export's task: it is
/// polled after `handle` returns, and the export's task ends when it has finished. The body
/// ends (and the trailers future resolves to "no trailers") when `write_body` is done with
/// the writer and drops it.
pub fn streaming_response<F, Fut>(status: u16, headers: Fields, write_body: F) -> Response
where
    F: FnOnce(BodyWriter) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    let (writer, reader) = wit_stream::new::<u8>();
    let (trailers, trailers_reader) = no_trailers();
    let (response, transmitted) = Response::new(headers, Some(reader), trailers_reader);
    response.set_status_code(status).expect("valid status code");
    let body = write_body(writer);
    wit_bindgen::spawn_local(async move {
        body.await;
        // Dropping the writer sends its default value, `Ok(None)`; done explicitly here so
        // that it happens once the body is complete.
        drop(trailers);
        // Nothing to do with how the transmission went; kept open until the body is done.
        drop(transmitted);
    });
    response
}

/// What a body's trailers future carries: `future<result<option<trailers>, error-code>>`.
type TrailersResult = Result<Option<Trailers>, ErrorCode>;

/// A trailers future that resolves to `Ok(None)` (no trailers) once the writer is dropped.
pub fn no_trailers() -> (FutureWriter<TrailersResult>, FutureReader<TrailersResult>) {
    wit_future::new(|| Ok(None))
}
