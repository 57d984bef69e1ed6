//! `GET /` says hello, `POST /echo` streams the request body back, anything else is 404.

use futures::{Sink, SinkExt, StreamExt};
use spin_sdk::http::{Fields, IncomingRequest, Method, OutgoingResponse, ResponseOutparam};
use spin_sdk::http_component;

// The two-argument form is Spin's native wasi:http handler: the body streams both ways.
#[http_component]
async fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
    let route = (request.method(), request.path_with_query());
    match (route.0, route.1.as_deref()) {
        (Method::Get, Some("/")) => {
            let mut body = respond(200, response_out);
            let _ = body.send(b"hello from spin-p2\n".to_vec()).await;
        }
        (Method::Post, Some("/echo")) => {
            let mut incoming = request.into_body_stream();
            let mut body = respond(200, response_out);
            while let Some(Ok(chunk)) = incoming.next().await {
                if body.send(chunk).await.is_err() {
                    return;
                }
            }
        }
        _ => drop(respond(404, response_out)),
    }
    // Dropping the body sink finishes the body.
}

/// Sends the head of a response with `status` and returns a sink for its body.
fn respond(status: u16, out: ResponseOutparam) -> impl Sink<Vec<u8>> + Unpin {
    let response = OutgoingResponse::new(Fields::new());
    response.set_status_code(status).expect("valid status");
    let body = response.take_body();
    out.set(response);
    body
}
