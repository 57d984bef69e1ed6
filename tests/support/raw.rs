//! Plain TCP for what an HTTP client library will not do: half-sent requests, hand-made
//! requests, and reading exactly what the server wrote.

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the server did with a raw exchange.
#[derive(Debug)]
pub struct RawOutcome {
    /// Every byte the server sent.
    pub bytes: Vec<u8>,
    /// The server closed (or reset) the connection; `false` means `timeout` ran out first.
    pub closed: bool,
    /// Time from the last byte written until the connection ended (or the timeout).
    pub elapsed: Duration,
}

impl RawOutcome {
    /// The bytes as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The status code of the first response, if one was sent.
    pub fn status(&self) -> Option<u16> {
        let text = self.text();
        let line = text.lines().next()?;
        let mut parts = line.split(' ');
        parts.next().filter(|v| v.starts_with("HTTP/"))?;
        parts.next()?.parse().ok()
    }
}

/// Connects to `addr`, writes `request` (which may be incomplete), and reads until the server
/// closes the connection or `timeout` passes.
pub async fn exchange(
    addr: SocketAddr,
    request: &[u8],
    timeout: Duration,
) -> std::io::Result<RawOutcome> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(request).await?;
    stream.flush().await?;
    Ok(read_until_closed(&mut stream, timeout).await)
}

/// Reads from `stream` until EOF, a reset, or `timeout`.
pub async fn read_until_closed(stream: &mut TcpStream, timeout: Duration) -> RawOutcome {
    let start = Instant::now();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let closed = loop {
        let left = timeout.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => bytes.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    RawOutcome {
        bytes,
        closed,
        elapsed: start.elapsed(),
    }
}

/// Sends `GET path` on a new connection, reads for `read_for` (nothing, the head, part of a
/// body…), then hangs up; returns what arrived.
pub async fn hang_up_after(addr: SocketAddr, path: &str, read_for: Duration) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    // `exchange` drops its connection when `read_for` runs out.
    exchange(addr, request.as_bytes(), read_for)
        .await
        .expect("connect and send the request")
        .text()
}
