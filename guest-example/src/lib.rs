//! guest-example: a small `wasi:http/proxy` component served by the hotswap host.
//!
//! Routes:
//! - `GET /`           → 200 `hello from hotswap guest-example version <V>\n`
//! - `GET /page`       → 200 `text/html`: a page showing the same greeting (what a browser
//!   follows with the host's `--live-reload`)
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
            (Method::Get, "/") => http::respond(out, 200, &greeting()),
            (Method::Get, "/page") => http::respond_html(out, 200, &page()),
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

/// What `GET /` answers, and `GET /page` shows.
fn greeting() -> String {
    format!("hello from hotswap guest-example version {VERSION}\n")
}

/// `GET /page`: an HTML page with the greeting in its heading.
fn page() -> String {
    let greeting = escape_html(greeting().trim_end());
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>guest-example</title>\n</head>\n<body>\n<h1 id=\"greeting\">{greeting}</h1>\n\
         <p>Served by a <code>wasi:http</code> component. Edit the greeting in \
         <code>guest-example/src/lib.rs</code> and save.</p>\n</body>\n</html>\n"
    )
}

/// `text` with the characters that mean something in HTML escaped.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
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
