//! The HTTP side of the host: the accept loop and connection limits of both listeners
//! ([`server`]), a connection's I/O ([`conn_io`]), and the public listener's request handler
//! ([`handler`]), TLS with certificates that reload ([`tls`]) and a shadow canary's copies of requests
//! ([`shadow`]); in dev mode, the event
//! stream ([`events`]) and the live-reload script in guests' pages ([`live_reload`]).

pub mod conn_io;
pub mod events;
pub mod handler;
pub mod live_reload;
pub mod server;
pub mod shadow;
pub mod tls;
