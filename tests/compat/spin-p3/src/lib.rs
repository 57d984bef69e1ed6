//! `GET /` says hello, `POST /echo` streams the request body back, anything else is 404.

use spin_sdk::http::{IntoResponse, Method, Request, StatusCode};
use spin_sdk::http_service;
use spin_sdk::wasip3::http::types::{ErrorCode, Response};

// Spin SDK 7's entry point: exports `wasi:http/handler@0.3.0` (the `wasi:http/service` world).
#[http_service]
async fn handle(request: Request) -> Result<Response, ErrorCode> {
    let route = (request.method().clone(), request.uri().path().to_owned());
    let response = match (route.0, route.1.as_str()) {
        (Method::GET, "/") => "hello from spin-p3\n".into_response(),
        // The request's body stream is piped into the response: streamed, never buffered whole.
        (Method::POST, "/echo") => (StatusCode::OK, request.into_body()).into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    };
    response.map_err(|e| ErrorCode::InternalError(Some(e.to_string())))
}
