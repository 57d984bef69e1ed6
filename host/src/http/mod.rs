//! The HTTP side of the host: the accept loop and connection limits of both listeners
//! ([`server`]), a connection's I/O ([`conn_io`]), and the public listener's request handler
//! ([`handler`]), and TLS with certificates that reload ([`tls`]).

pub mod conn_io;
pub mod handler;
pub mod server;
pub mod tls;
