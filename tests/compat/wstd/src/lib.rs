//! `GET /` says hello, `POST /echo` streams the request body back, anything else is 404.

use wstd::http::{Body, Error, Method, Request, Response, StatusCode};

// A library crate (cdylib), so the component has no `wasi:cli/run` export: a pure proxy.
#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let route = (request.method().clone(), request.uri().path().to_owned());
    Ok(match (route.0, route.1.as_str()) {
        (Method::GET, "/") => Response::new("hello from wstd\n".into()),
        // The incoming body becomes the outgoing body as is: streamed, never buffered whole.
        (Method::POST, "/echo") => Response::new(request.into_body()),
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Body::empty())?,
    })
}
