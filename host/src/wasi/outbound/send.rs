//! Sending an allowed outbound request: resolve its host once, check each address against the
//! rule that allowed the name, and connect to an address that passed (plain TCP, or TLS with
//! the host name for SNI and certificate checks), then speak HTTP/1.1 on that connection.

use super::{Destination, Rule};
use bytes::Bytes;
use http_body::Body;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

/// Connect, first-byte and between-bytes timeouts when the guest sets none (the request's
/// deadline bounds them anyway).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Why an allowed name was not connected to.
pub(super) enum Refused {
    /// The name did not resolve (or not in time).
    Resolve(String),
    /// Every address it resolved to is one the rule does not allow.
    Address {
        /// The first refused address.
        address: IpAddr,
        /// What kind of address it is.
        kind: &'static str,
    },
}

impl Refused {
    /// One WARN line naming the host, the address and the rule that would allow it.
    pub(super) fn log(
        &self,
        route: Option<&str>,
        generation: u64,
        destination: &Destination,
        rule: &Rule,
    ) {
        match self {
            Refused::Resolve(reason) => tracing::warn!(
                route,
                generation,
                host = %destination.name,
                port = destination.port,
                "outbound request failed: cannot resolve `{}`: {reason}",
                destination.name
            ),
            Refused::Address { address, kind } => {
                let needed = match address {
                    IpAddr::V6(v6) => format!("[{v6}]:{}", destination.port),
                    IpAddr::V4(v4) => format!("{v4}:{}", destination.port),
                };
                tracing::warn!(
                    route,
                    generation,
                    host = %destination.name,
                    port = destination.port,
                    address = %address,
                    rule = %rule.text,
                    "outbound request denied: `{}` resolves to {address}, {kind}; the rule \
                     `{}` allows the name, not that address (only `--allow-outbound {needed}` \
                     would)",
                    destination.authority(),
                    rule.text,
                )
            }
        }
    }

    /// The error the guest sees.
    pub(super) fn into_error(self) -> Error {
        match self {
            Refused::Resolve(_) => Error::DnsError {
                rcode: Some("address not available".to_string()),
                info_code: None,
            },
            Refused::Address { .. } => Error::DestinationIpProhibited,
        }
    }
}

/// The addresses to connect to, in the resolver's order: the host's own IP literal, or those
/// its name resolves to that `rule` allows (none allowed: the first refused one says why).
pub(super) async fn resolve(
    destination: &Destination,
    rule: &Rule,
    options: Option<&RequestOptions>,
) -> Result<Vec<SocketAddr>, Refused> {
    let addresses: Vec<SocketAddr> = match destination.ip {
        Some(ip) => vec![SocketAddr::new(ip, destination.port)],
        None => {
            let timeout = options
                .and_then(|o| o.connect_timeout)
                .unwrap_or(DEFAULT_TIMEOUT);
            let lookup = tokio::net::lookup_host((destination.name.as_str(), destination.port));
            match tokio::time::timeout(timeout, lookup).await {
                Ok(Ok(found)) => found.collect(),
                Ok(Err(err)) => return Err(Refused::Resolve(err.to_string())),
                Err(_) => return Err(Refused::Resolve(format!("no answer within {timeout:?}"))),
            }
        }
    };
    let mut refused = None;
    let mut allowed = Vec::new();
    for address in addresses {
        match rule.allows_address(address.ip()) {
            Ok(()) => allowed.push(address),
            Err(kind) => {
                refused.get_or_insert(Refused::Address {
                    address: address.ip(),
                    kind,
                });
            }
        }
    }
    if !allowed.is_empty() {
        return Ok(allowed);
    }
    Err(refused.unwrap_or_else(|| Refused::Resolve("no address".to_string())))
}

/// A connection to the first of `addresses` that accepts one within `timeout` (each address
/// gets what is left of it), as clients do with the several addresses of one name.
async fn connect(addresses: &[SocketAddr], timeout: Duration) -> Result<TcpStream, Error> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = Error::ConnectionTimeout;
    for address in addresses {
        match tokio::time::timeout_at(deadline, TcpStream::connect(address)).await {
            Ok(Ok(tcp)) => return Ok(tcp),
            Ok(Err(err)) if err.kind() == std::io::ErrorKind::ConnectionRefused => {
                last = Error::ConnectionRefused;
            }
            Ok(Err(err)) => last = Error::Connect(err),
            Err(_) => return Err(Error::ConnectionTimeout),
        }
    }
    Err(last)
}

/// The response and the future that drives the rest of the connection, as wasi:http wants them.
type Sent = (
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), Error>> + Send>,
);

/// Sends `request` over a new connection to one of `addresses` (TLS for `https`, checked
/// against the destination's name), within the guest's timeouts.
pub(super) async fn send(
    mut request: http::Request<WasiBody>,
    destination: &Destination,
    addresses: &[SocketAddr],
    options: Option<RequestOptions>,
) -> Result<Sent, Error> {
    let options = options.unwrap_or_default();
    let connect_timeout = options.connect_timeout.unwrap_or(DEFAULT_TIMEOUT);
    let first_byte_timeout = options.first_byte_timeout.unwrap_or(DEFAULT_TIMEOUT);
    let between_bytes_timeout = options
        .between_bytes_timeout
        .unwrap_or(DEFAULT_TIMEOUT)
        .max(Duration::from_nanos(1));
    let tls = request.uri().scheme() == Some(&http::uri::Scheme::HTTPS);

    let tcp = connect(addresses, connect_timeout).await?;
    let (mut sender, conn) =
        tokio::time::timeout(connect_timeout, handshake(destination, tcp, tls))
            .await
            .map_err(|_| Error::ConnectionTimeout)??;

    // The request line carries the path only (the authority travels in `Host`, which
    // wasi:http sets), as for any request not sent through a proxy.
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".to_string());
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(path)
        .build()
        .map_err(|_| Error::HttpRequestUriInvalid)?;

    // Drive the connection while waiting for the response head; it goes on driving the body
    // from the future handed back with the response.
    let mut conn = Some(conn);
    let response = {
        let send = tokio::time::timeout(first_byte_timeout, sender.send_request(request));
        tokio::pin!(send);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(sent) = send.as_mut().poll(cx) {
                return Poll::Ready(match sent {
                    Ok(Ok(response)) => Ok(response),
                    Ok(Err(err)) => Err(Error::from(err)),
                    Err(_) => Err(Error::ConnectionReadTimeout),
                });
            }
            if let Some(running) = conn.as_mut()
                && let Poll::Ready(result) = Pin::new(running).poll(cx)
            {
                conn = None;
                if let Err(err) = result {
                    return Poll::Ready(Err(err));
                }
                // The connection ended cleanly before the head: the send sees why next.
                cx.waker().wake_by_ref();
            }
            Poll::Pending
        })
        .await?
    };
    let response = response.map(|incoming| {
        BetweenBytes {
            incoming,
            limit: between_bytes_timeout,
            timer: Box::pin(tokio::time::sleep(between_bytes_timeout)),
        }
        .boxed_unsync()
    });
    Ok((
        response,
        Box::new(async move {
            match conn {
                Some(conn) => conn.await,
                None => Ok(()),
            }
        }),
    ))
}

/// An HTTP/1.1 client connection on `tcp`, over TLS for `destination` if `tls`.
async fn handshake(
    destination: &Destination,
    tcp: TcpStream,
    tls: bool,
) -> Result<(hyper::client::conn::http1::SendRequest<WasiBody>, ConnTask), Error> {
    if tls {
        let stream = tls_connect(destination, tcp).await?;
        hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map(|(sender, conn)| (sender, conn_task(conn)))
            .map_err(Error::from)
    } else {
        hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map(|(sender, conn)| (sender, conn_task(conn)))
            .map_err(Error::from)
    }
}

/// The TLS session for `destination` on `tcp`: webpki's roots, the host name for SNI and for
/// the certificate check (an IP literal is checked as an IP address).
async fn tls_connect(
    destination: &Destination,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Error> {
    use rustls::pki_types::ServerName;
    static CONFIG: std::sync::OnceLock<std::sync::Arc<rustls::ClientConfig>> =
        std::sync::OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        std::sync::Arc::new(
            rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
        )
    });
    let name = match destination.ip {
        Some(ip) => ServerName::from(ip),
        None => {
            ServerName::try_from(destination.name.clone()).map_err(Error::InvalidDnsNameError)?
        }
    };
    tokio_rustls::TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await
        .map_err(Error::Tls)
}

/// The connection half of an outbound HTTP/1.1 exchange (plain or over TLS), which drives its
/// I/O until the response body is done.
type ConnTask = Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>;

/// `conn`, as a [`ConnTask`] that names a timeout as such.
fn conn_task<F>(conn: F) -> ConnTask
where
    F: Future<Output = Result<(), hyper::Error>> + Send + 'static,
{
    Box::pin(async move {
        conn.await.map_err(|err| {
            if err.is_timeout() {
                Error::HttpResponseTimeout
            } else {
                Error::from(err)
            }
        })
    })
}

/// A response body that fails when no frame arrives for `limit` (the guest's
/// `between-bytes-timeout`).
struct BetweenBytes {
    incoming: hyper::body::Incoming,
    limit: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl Body for BetweenBytes {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(err))) if err.is_timeout() => {
                Poll::Ready(Some(Err(Error::HttpResponseTimeout)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(Error::from(err)))),
            Poll::Ready(Some(Ok(frame))) => {
                let next = tokio::time::Instant::now() + self.limit;
                self.timer.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                ready!(self.timer.as_mut().poll(cx));
                Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.incoming.size_hint()
    }
}
