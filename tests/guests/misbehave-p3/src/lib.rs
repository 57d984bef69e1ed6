//! misbehave-p3: a `wasi:http/service@0.3.0` test guest that misbehaves on request, the
//! WASI 0.3 twin of `misbehave` (a `wasi:http/proxy@0.2` guest), so the host's tests can
//! check that one bad request cannot hurt the host whichever WASI version a guest targets.
//!
//! It exports `wasi:http/handler@0.3.0`, whose `handle` is an `async func`: it gets the
//! request and returns `result<response, error-code>`. A response body is a `stream<u8>`
//! the guest writes from a task spawned next to `handle` (see `http::streaming_response`).
//!
//! Routes (all `GET` unless noted; anything else → 404 `not found`, a bad query → 400):
//!
//! | route             | behaviour |
//! |-------------------|-----------|
//! | `/ok`             | 200 `ok` |
//! | `/loop`           | spins forever on the CPU, never calling the host |
//! | `/sleep-forever`  | waits forever on `wasi:clocks/monotonic-clock.wait-for` (an `async func`) |
//! | `/alloc`          | allocates and fills 1 MiB blocks without bound; when growth fails Rust aborts: a trap |
//! | `/trap-before`    | panics (a trap) before returning a response |
//! | `/trap-after`     | returns 200 with headers; the body task writes `partial`, then panics (a trap) with the body still open |
//! | `/headers?n=N`    | 200 `ok` with N header fields `x-h-0: 0` .. `x-h-{N-1}: {N-1}`, or 500 `header error at <i>: <Debug>` if the host refuses one |
//! | `/outbound?url=U` | outbound GET to U (percent-decoded) via `wasi:http/client.send`: 200 `status <code>` if a response came, else 502 `error <ErrorCode variant>` (e.g. `error HttpRequestDenied`; payload variants keep their Debug payload); 400 if U has no `scheme://` |
//! | `/env?key=K`      | 200 with the value of env var K, or 404 `unset` |
//! | `/stdio`          | prints `hello stdout` to stdout and `hello stderr` to stderr, then 200 `ok` |
//! | `/print-long?n=N` | writes N bytes of `x`, then the invalid UTF-8 bytes `ff fe fd` and `\n`, to stdout, then 200 `ok` |
//! | `/late-log?ms=N`  | waits N ms, prints `late-log done after N ms` to stdout, then 200 `ok`; with `&head=first` it returns 200 at once and the body task writes `started\n`, waits, prints, writes `done\n` and ends the body |
//! | `/leftovers`      | 200 `count=C dirty=D`: C is a static counter's value before this request bumps it, D the number of nonzero bytes in 8 fresh pages from `memory.grow`, which it then fills with 0xAB; a fresh instance sees `count=0 dirty=0` |
//! | `/error-code`     | returns the error `internal-error(none)` instead of a response |
//! | `POST /echo`      | 200 whose body is the request body, streamed back byte for byte |
//! | `/big?n=N`        | 200 with N bytes of `x`, written in 64 KiB chunks |
//! | `/version`        | 200 with the value of env var `VERSION`, or `p3` if it is unset |
//! | `/world`          | 200 `wasi:http@0.3` |
//!
//! Printing goes through Rust's std, which on `wasm32-wasip2` imports the WASI 0.2
//! `wasi:cli` interfaces (as does `std::env`); everything HTTP and clock is WASI 0.3.
//!
//! What it does alike with `misbehave` (the query, the memory tricks, the spin loop, the lines
//! printed, the outbound URL) is in `misbehave-core`; this crate holds the 0.3 I/O.

mod http;

mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit-p3",
        world: "hotswap:guest-p3/guest",
        // Generate bindings for the vendored WASI interfaces the world uses.
        generate_all,
    });
}

use bindings::exports::wasi::http::handler::Guest;
use bindings::wasi::clocks::monotonic_clock;
use bindings::wasi::http::client;
use bindings::wasi::http::types::{ErrorCode, Fields, Method, Request, Response, Scheme};
use bindings::wit_future;
use http::{BodyWriter, CHUNK, Reply, plain_headers, respond, streaming_response};
use misbehave_core::{
    CanaryMode, canary_mode, hoard_memory, leftovers, number, outbound_error, print_hello,
    print_late_log_done, print_long, query_param, spin_forever, split_url,
};
use wit_bindgen::StreamResult;

struct Component;

impl Guest for Component {
    async fn handle(request: Request) -> Reply {
        let target = request
            .get_path_with_query()
            .unwrap_or_else(|| "/".to_string());
        let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
        match (request.get_method(), path) {
            (Method::Post, "/echo") => Ok(echo(request)),
            (Method::Get, _) => get(path, query).await,
            _ => respond(404, "not found"),
        }
    }
}

/// The `GET` routes.
async fn get(path: &str, query: &str) -> Reply {
    match path {
        "/ok" => respond(200, "ok"),
        "/canary" => match canary_mode() {
            CanaryMode::Ok => respond(200, "canary ok"),
            CanaryMode::Fail => respond(500, "canary fails"),
            CanaryMode::Trap => panic!("misbehave-p3: the canary traps"),
            CanaryMode::Slow => {
                sleep_ms(50).await;
                respond(200, "canary ok")
            }
            CanaryMode::Slower => {
                sleep_ms(150).await;
                respond(200, "canary ok")
            }
            CanaryMode::Body => respond(200, "canary differs"),
        },
        "/loop" => spin_forever(),
        "/sleep-forever" => sleep_forever().await,
        "/alloc" => hoard_memory(),
        "/trap-before" => panic!("misbehave-p3: trap before any response"),
        "/trap-after" => Ok(trap_after_partial_body()),
        "/headers" => match number(query, "n") {
            Some(n) => many_headers(n),
            None => respond(400, "expected ?n=<count>"),
        },
        "/outbound" => match query_param(query, "url") {
            Some(url) => outbound(&url).await,
            None => respond(400, "expected ?url=<url>"),
        },
        "/env" => match query_param(query, "key") {
            Some(key) => match std::env::var(&key) {
                Ok(value) => respond(200, &value),
                Err(_) => respond(404, "unset"),
            },
            None => respond(400, "expected ?key=<name>"),
        },
        "/stdio" => {
            print_hello();
            respond(200, "ok")
        }
        "/print-long" => match number(query, "n") {
            Some(n) => {
                print_long(n);
                respond(200, "ok")
            }
            None => respond(400, "expected ?n=<bytes>"),
        },
        "/late-log" => match number(query, "ms") {
            Some(ms) if query_param(query, "head").as_deref() == Some("first") => {
                Ok(late_log_after_head(ms))
            }
            Some(ms) => {
                sleep_ms(ms).await;
                print_late_log_done(ms);
                respond(200, "ok")
            }
            None => respond(400, "expected ?ms=<milliseconds>"),
        },
        "/leftovers" => respond(200, &leftovers()),
        "/error-code" => Err(ErrorCode::InternalError(None)),
        "/big" => match number(query, "n") {
            Some(n) => Ok(big(n)),
            None => respond(400, "expected ?n=<bytes>"),
        },
        "/version" => respond(
            200,
            &std::env::var("VERSION").unwrap_or_else(|_| "p3".into()),
        ),
        "/world" => respond(200, "wasi:http@0.3"),
        _ => respond(404, "not found"),
    }
}

/// Waits `ms` milliseconds in the host (the export's task is suspended meanwhile).
async fn sleep_ms(ms: u64) {
    monotonic_clock::wait_for(ms.saturating_mul(1_000_000)).await;
}

/// Waits forever in the host, on a clock that never fires in time.
async fn sleep_forever() -> ! {
    const HOUR_NS: u64 = 3_600 * 1_000_000_000;
    loop {
        monotonic_clock::wait_for(HOUR_NS).await;
    }
}

/// A 200 response whose body gets `partial`, then the guest traps with the body still open.
fn trap_after_partial_body() -> Response {
    let headers = Fields::from_list(&[
        ("content-type".to_string(), b"text/plain".to_vec()),
        ("x-misbehave".to_string(), b"trap-after".to_vec()),
    ])
    .expect("static header names and values are valid");
    streaming_response(200, headers, async |mut body: BodyWriter| {
        // The write completes once the host has taken the bytes.
        body.write_all(b"partial".to_vec()).await;
        panic!("misbehave-p3: trap after a partial body");
    })
}

/// `/late-log?head=first`: the response at once, its body `started\n`, then the wait and the
/// log line, then `done\n` and the end of the body. Writes to a client that has gone are
/// ignored.
fn late_log_after_head(ms: u64) -> Response {
    streaming_response(200, plain_headers(), async move |mut body: BodyWriter| {
        body.write_all(b"started\n".to_vec()).await;
        sleep_ms(ms).await;
        print_late_log_done(ms);
        body.write_all(b"done\n".to_vec()).await;
    })
}

/// Responds with `n` header fields `x-h-<i>: <i>`.
fn many_headers(n: u64) -> Reply {
    let headers = Fields::new();
    for i in 0..n {
        if let Err(e) = headers.append(&format!("x-h-{i}"), i.to_string().as_bytes()) {
            return respond(500, &format!("header error at {i}: {e:?}"));
        }
    }
    http::respond_with(200, headers, "ok")
}

/// `/big?n=N`: N bytes of `x`, streamed in [`CHUNK`]-sized writes.
fn big(n: u64) -> Response {
    streaming_response(200, plain_headers(), async move |mut body: BodyWriter| {
        let mut left = n;
        while left > 0 {
            let len = left.min(CHUNK as u64) as usize;
            if !body.write_all(vec![b'x'; len]).await.is_empty() {
                return; // the client went away
            }
            left -= len as u64;
        }
    })
}

/// `POST /echo`: a 200 response whose body is the request body, copied chunk by chunk as it
/// arrives.
fn echo(request: Request) -> Response {
    // `consume-body` wants a future through which we could report a failure to handle the
    // body; it resolves to `Ok(())` when its writer is dropped, after the copy.
    let (handled, handled_reader) = wit_future::new(|| Ok(()));
    let (mut incoming, trailers) = Request::consume_body(request, handled_reader);
    streaming_response(200, plain_headers(), async move |mut body: BodyWriter| {
        let mut buf = Vec::with_capacity(CHUNK);
        loop {
            let (status, chunk) = incoming.read(buf).await;
            if status == StreamResult::Dropped {
                break; // the request body has ended
            }
            buf = if chunk.is_empty() {
                chunk
            } else {
                let unsent = body.write_all(chunk).await;
                if !unsent.is_empty() {
                    break; // the client went away
                }
                unsent // empty, and keeps the allocation
            };
            buf.reserve(CHUNK);
        }
        // The request's trailers (if any) are not echoed.
        drop((handled, trailers));
    })
}

/// Makes an outbound `GET url` and reports the status code or the error.
async fn outbound(url: &str) -> Reply {
    match outbound_get(url) {
        Ok(request) => match client::send(request).await {
            Ok(response) => respond(200, &format!("status {}", response.get_status_code())),
            Err(code) => respond(502, &outbound_error(&code)),
        },
        Err(bad_url) => respond(400, bad_url),
    }
}

/// Builds a `GET url` request with no body; `Err` if `url` cannot be parsed or the request
/// refuses a part of it.
fn outbound_get(url: &str) -> Result<Request, &'static str> {
    let url = split_url(url)?;
    let scheme = match url.scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => Scheme::Other(other.to_string()),
    };

    // No body (`none`), and no trailers: the trailers future resolves to `Ok(None)` as soon
    // as its writer is dropped, here.
    let (_no_trailers, trailers) = http::no_trailers();
    let (request, _transmitted) = Request::new(Fields::new(), None, trailers, None);
    let invalid = "url rejected by request";
    request.set_method(&Method::Get).map_err(|()| invalid)?;
    request.set_scheme(Some(&scheme)).map_err(|()| invalid)?;
    request
        .set_authority(Some(url.authority))
        .map_err(|()| invalid)?;
    request
        .set_path_with_query(Some(&url.path_with_query))
        .map_err(|()| invalid)?;
    Ok(request)
}

bindings::export!(Component with_types_in bindings);
