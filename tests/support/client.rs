//! A minimal HTTP client on hyper's connection API: one connection per [`Client`], reused for
//! keep-alive, HTTP/1.1 or HTTP/2 (prior knowledge).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::time::Duration;

/// Upper bound on any single request made by a test.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A response, fully read.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The value of header `name`, if it is there and readable as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }

    /// The `x-hotswap-generation` header as a number.
    pub fn generation(&self) -> Option<u64> {
        self.headers
            .get("x-hotswap-generation")?
            .to_str()
            .ok()?
            .parse()
            .ok()
    }
}

enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

/// One client connection.
pub struct Client {
    addr: SocketAddr,
    sender: Sender,
}

impl Client {
    /// Opens an HTTP/1.1 connection.
    pub async fn connect(addr: SocketAddr) -> std::io::Result<Client> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(conn);
        Ok(Client {
            addr,
            sender: Sender::H1(sender),
        })
    }

    /// Opens an HTTP/2 cleartext connection (prior knowledge).
    pub async fn connect_h2(addr: SocketAddr) -> std::io::Result<Client> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(conn);
        Ok(Client {
            addr,
            sender: Sender::H2(sender),
        })
    }

    /// Sends a request and reads the whole response. An error means the connection failed or
    /// the body was cut.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: impl Into<Bytes>,
    ) -> Result<Reply, String> {
        self.send_with(method, path, &[], body).await
    }

    /// Like [`Client::send`] with extra header fields, appended in order; a `host` field
    /// replaces the default one.
    pub async fn send_with(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Reply, String> {
        let uri = match self.sender {
            Sender::H1(_) => path.to_string(),
            Sender::H2(_) => format!("http://{}{}", self.addr, path),
        };
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Full::new(body.into()))
            .map_err(|e| e.to_string())?;
        let fields = req.headers_mut();
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("host"))
        {
            fields.insert(
                hyper::header::HOST,
                self.addr.to_string().parse().map_err(|e| format!("{e}"))?,
            );
        }
        for (name, value) in headers {
            let name = hyper::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| e.to_string())?;
            let value = hyper::header::HeaderValue::from_str(value).map_err(|e| e.to_string())?;
            fields.append(name, value);
        }
        let fut = async {
            let resp = match &mut self.sender {
                Sender::H1(s) => {
                    s.ready()
                        .await
                        .map_err(|e| format!("connection not ready: {e}"))?;
                    s.send_request(req).await
                }
                Sender::H2(s) => {
                    s.ready()
                        .await
                        .map_err(|e| format!("connection not ready: {e}"))?;
                    s.send_request(req).await
                }
            }
            .map_err(|e| format!("request failed: {e}"))?;
            read_reply(resp).await
        };
        tokio::time::timeout(REQUEST_TIMEOUT, fut)
            .await
            .map_err(|_| format!("no response within {REQUEST_TIMEOUT:?}"))?
    }

    /// `GET path`.
    pub async fn get(&mut self, path: &str) -> Result<Reply, String> {
        self.send("GET", path, Bytes::new()).await
    }
}

/// `GET path` on a fresh connection.
pub async fn get(addr: SocketAddr, path: &str) -> Result<Reply, String> {
    Client::connect(addr)
        .await
        .map_err(|e| e.to_string())?
        .get(path)
        .await
}

/// `POST path` with `body` on a fresh connection.
pub async fn post(addr: SocketAddr, path: &str, body: impl Into<Bytes>) -> Result<Reply, String> {
    Client::connect(addr)
        .await
        .map_err(|e| e.to_string())?
        .send("POST", path, body)
        .await
}

/// A request body handed over in the given pieces, with no length known in advance: HTTP/1.1
/// sends it with `Transfer-Encoding: chunked`.
struct Chunked(std::collections::VecDeque<Bytes>);

impl hyper::body::Body for Chunked {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

/// `POST path` on a fresh HTTP/1.1 connection with a chunked body made of `chunks` (no
/// `Content-Length`). An error means the connection failed or the response body was cut.
pub async fn post_chunked(
    addr: SocketAddr,
    path: &str,
    chunks: Vec<Bytes>,
) -> Result<Reply, String> {
    let fut = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = Request::builder()
            .method("POST")
            .uri(path)
            .header("host", addr.to_string())
            .body(Chunked(chunks.into()))
            .map_err(|e| e.to_string())?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        read_reply(resp).await
    };
    tokio::time::timeout(REQUEST_TIMEOUT, fut)
        .await
        .map_err(|_| format!("no response within {REQUEST_TIMEOUT:?}"))?
}

/// Reads a whole response; an error means the body was cut.
async fn read_reply(resp: hyper::Response<hyper::body::Incoming>) -> Result<Reply, String> {
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("response body cut (status {}): {e}", parts.status))?
        .to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}
