//! guest-example: a small `wasi:http/proxy` component served by the hotswap host.
//!
//! Routes:
//! - `GET /`           → 200 `hello from hotswap guest-example version <V>\n`
//! - `POST /echo`      → 200, the request body streamed back
//! - `GET /sleep?ms=N` → sleeps N milliseconds, then 200 `slept N ms\n`
//! - anything else     → 404; a malformed query → 400
//!
//! `<V>` is the `GUEST_VERSION` environment variable at build time (`dev` if
//! unset), so tests can build distinguishable versions of the same guest.

mod http;

mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "hotswap:host/guest",
        // The world's interfaces all come from the vendored WASI packages:
        // generate bindings for them here rather than map them to a crate.
        generate_all,
    });
}

use bindings::exports::wasi::http::incoming_handler::Guest;
use bindings::wasi::clocks::monotonic_clock;
use bindings::wasi::http::types::{IncomingRequest, Method, ResponseOutparam};

/// Set at build time; cargo tracks `option_env!`, so changing it rebuilds.
const VERSION: &str = match option_env!("GUEST_VERSION") {
    Some(v) => v,
    None => "dev",
};

struct Component;

impl Guest for Component {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let target = request.path_with_query().unwrap_or_else(|| "/".to_string());
        let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));

        match (request.method(), path) {
            (Method::Get, "/") => {
                let body = format!("hello from hotswap guest-example version {VERSION}\n");
                http::respond(out, 200, &body);
            }
            (Method::Post, "/echo") => http::echo(request, out),
            (Method::Get, "/sleep") => {
                match query_param(query, "ms").and_then(|v| v.parse().ok()) {
                    Some(ms) => sleep(out, ms),
                    None => http::respond(out, 400, "bad request: expected ?ms=<milliseconds>\n"),
                }
            }
            _ => http::respond(out, 404, "not found\n"),
        }
    }
}

/// Handles `/sleep?ms=N`: blocks on a monotonic-clock pollable, then answers.
fn sleep(out: ResponseOutparam, ms: u64) {
    let Some(nanos) = ms.checked_mul(1_000_000) else {
        return http::respond(out, 400, "bad request: ms too large\n");
    };
    monotonic_clock::subscribe_duration(nanos).block();
    http::respond(out, 200, &format!("slept {ms} ms\n"));
}

/// Returns the value of `key` in a `a=1&b=2` query string (no percent-decoding).
fn query_param<'q>(query: &'q str, key: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

bindings::export!(Component with_types_in bindings);
