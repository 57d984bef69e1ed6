//! The native peer of the hotswap benchmarks: the same two routes as guest-example, served by
//! hyper directly with the same connection setup as the host (hyper-util's auto builder on a
//! multi-threaded tokio runtime, TCP_NODELAY).
//!
//! `hello-native [ADDR]` (default `127.0.0.1:0`) prints `Serving HTTP on http://ADDR/` on
//! stdout once it listens.
//!
//! - `GET /`      → 200 `hello from hello-native\n`
//! - `POST /echo` → 200, the request body streamed back as it arrives
//! - otherwise    → 404

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;

type Body = BoxBody<Bytes, hyper::Error>;

fn full(status: StatusCode, content_type: &'static str, text: &'static str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from_static(text.as_bytes())).map_err(|never| match never {}).boxed())
        .expect("static response is valid")
}

async fn handle(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    Ok(match (req.method(), req.uri().path()) {
        (&Method::GET, "/") => full(StatusCode::OK, "text/plain", "hello from hello-native\n"),
        (&Method::POST, "/echo") => Response::builder()
            .header("content-type", "application/octet-stream")
            .body(req.into_body().boxed())
            .expect("static response is valid"),
        _ => full(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    })
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_string())
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("bad address: {e}")))?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("Serving HTTP on http://{}/", listener.local_addr()?);
    std::io::stdout().flush()?;

    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(err) => {
                eprintln!("accept failed: {err}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        tokio::spawn(async move {
            let _ = builder.serve_connection(TokioIo::new(stream), service_fn(handle)).await;
        });
    }
}
