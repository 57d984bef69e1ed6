//! A reader of the host's event stream (`text/event-stream`), as a browser's `EventSource`
//! reads it: one HTTP/1.1 `GET`, then events (`event:` and `data:` lines, a blank line after
//! each), comments (`: heartbeat`) skipped. Every read is bounded in time.

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One event: its name and its data (JSON).
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub name: String,
    pub data: serde_json::Value,
}

/// An open stream.
pub struct EventReader {
    reader: BufReader<TcpStream>,
    /// The response's status code.
    pub status: u16,
    /// The response's header fields, names in lower case.
    pub headers: Vec<(String, String)>,
    /// Bytes of the current chunk still to read (`None`: not chunked).
    chunk_left: Option<usize>,
    pending: String,
}

impl EventReader {
    /// Sends `GET path` and reads the response head.
    pub async fn open(addr: SocketAddr, path: &str) -> Result<EventReader, String> {
        let connect = async {
            let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
            let request =
                format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
            stream
                .write_all(request.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            let mut reader = BufReader::new(stream);
            let mut status_line = String::new();
            reader
                .read_line(&mut status_line)
                .await
                .map_err(|e| e.to_string())?;
            let status = status_line
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("bad status line {status_line:?}"))?;
            let mut headers = Vec::new();
            loop {
                let mut line = String::new();
                reader
                    .read_line(&mut line)
                    .await
                    .map_err(|e| e.to_string())?;
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
                }
            }
            let chunked = headers
                .iter()
                .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
            Ok(EventReader {
                reader,
                status,
                headers,
                chunk_left: chunked.then_some(0),
                pending: String::new(),
            })
        };
        tokio::time::timeout(Duration::from_secs(10), connect)
            .await
            .map_err(|_| "no response head within 10s".to_string())?
    }

    /// The value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// More bytes of the body (dechunked); `None` at its end.
    async fn more(&mut self) -> Option<String> {
        let mut buf = vec![0u8; 4096];
        match self.chunk_left {
            None => {
                let n = self.reader.read(&mut buf).await.ok()?;
                (n > 0).then(|| String::from_utf8_lossy(&buf[..n]).into_owned())
            }
            Some(0) => {
                let mut size = String::new();
                self.reader.read_line(&mut size).await.ok()?;
                if size.trim().is_empty() {
                    // The CRLF after the chunk before.
                    size.clear();
                    self.reader.read_line(&mut size).await.ok()?;
                }
                let size = usize::from_str_radix(size.trim(), 16).ok()?;
                if size == 0 {
                    return None;
                }
                self.chunk_left = Some(size);
                Some(String::new())
            }
            Some(left) => {
                let n = self.reader.read(&mut buf[..left.min(4096)]).await.ok()?;
                if n == 0 {
                    return None;
                }
                self.chunk_left = Some(left - n);
                Some(String::from_utf8_lossy(&buf[..n]).into_owned())
            }
        }
    }

    /// The next event within `timeout`; `None` if none came, or the stream ended.
    pub async fn next(&mut self, timeout: Duration) -> Option<SseEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(end) = self.pending.find("\n\n") {
                let block: String = self.pending.drain(..end + 2).collect();
                let mut name = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // a comment or `retry:`
                }
                let data = serde_json::from_str(&data)
                    .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {data}"));
                return Some(SseEvent { name, data });
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            let more = tokio::time::timeout(left, self.more()).await.ok()??;
            self.pending.push_str(&more);
        }
    }

    /// The next event named `name` within `timeout`, the events before it returned too.
    pub async fn next_named(
        &mut self,
        name: &str,
        timeout: Duration,
    ) -> (Option<SseEvent>, Vec<SseEvent>) {
        let deadline = Instant::now() + timeout;
        let mut before = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.next(left).await {
                Some(event) if event.name == name => return (Some(event), before),
                Some(event) => before.push(event),
                None => break,
            }
        }
        (None, before)
    }
}
