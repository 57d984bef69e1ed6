//! misbehave: a `wasi:http/proxy` test guest that misbehaves on request, so the
//! host's tests can check that one bad request cannot hurt the host.
//!
//! Routes (all `GET` but `POST /canary`; anything else → 404 `not found`, a bad query → 400):
//!
//! | route             | behaviour |
//! |-------------------|-----------|
//! | `/ok`             | 200 `ok` |
//! | `/canary`         | by the build's canary mode (`misbehave-core`): 200 `canary ok`, 500, a trap, 50 or 150 ms late, or 200 `canary differs`; `POST` reads the body and answers 200 `canary read N` (`canary differs N`; `fail`: 500) |
//! | `/loop`           | spins forever on the CPU, never calling the host |
//! | `/sleep-forever`  | blocks forever on a monotonic-clock pollable |
//! | `/alloc`          | allocates and fills 1 MiB blocks without bound; when growth fails Rust aborts: a trap |
//! | `/trap-before`    | panics (a trap) before setting any response |
//! | `/trap-after`     | sets 200 with headers, writes and flushes `partial`, then panics (a trap) |
//! | `/headers?n=N`    | 200 `ok` with N header fields `x-h-0: 0` .. `x-h-{N-1}: {N-1}`, or 500 `header error at <i>: <Debug>` if the host refuses one |
//! | `/random?n=N`     | 200 with the number of bytes `get-random-bytes(N)` returned |
//! | `/outbound?url=U` | outbound GET to U (percent-decoded) via `wasi:http/outgoing-handler`: 200 `status <code>` if a response came, else 502 `error <ErrorCode variant>` (e.g. `error HttpRequestDenied`; payload variants keep their Debug payload); 400 if U has no `scheme://` |
//! | `/env?key=K`      | 200 with the value of env var K, or 404 `unset` |
//! | `/stdio`          | prints `hello stdout` to stdout and `hello stderr` to stderr, then 200 `ok` |
//! | `/late-log?ms=N`  | sleeps N ms, prints `late-log done after N ms` to stdout, then 200 `ok` (so a test can tell whether a guest whose client hung up ran to its end); with `&head=first` it sends 200 and `started\n` first, then sleeps, prints and ends the body with `done\n` |
//! | `/refuse-then-log?ms=N` | answers with error code `internal-error`, then sleeps N ms and prints `refuse-then-log done after N ms` to stdout |
//! | `/no-response`    | returns without ever setting the response |
//! | `/print-pieces`   | writes `start a print `, `1`, `2`, `3`, `4`, `\n` to stderr, each through a new `get-stderr()` handle, then 200 `ok` |
//! | `/print-long?n=N` | writes N bytes of `x`, then the invalid UTF-8 bytes `ff fe fd` and `\n`, to stdout, then 200 `ok` |
//! | `/leftovers`      | 200 `count=C dirty=D`: C is a static counter's value before this request bumps it, D the number of nonzero bytes in 8 fresh pages from `memory.grow`, which it then fills with 0xAB; a fresh instance sees `count=0 dirty=0` |
//! | `/shaped?type=T&length=L&encoding=E` | 200 with a fixed small HTML document (`SHAPED_BODY`) as `text/html; charset=utf-8` (`type=html`, the default) or `text/plain` (`type=plain`); with a `content-length` unless `length=no` (then the body is written in two pieces, and the host streams it); with `content-encoding: E` if given (the bytes are not compressed: tests compare them) |
//! | `/scatter`        | 200 `runs=72 changed=C`: C is how many of 72 bytes of a static in the memory image (one in every other 4 KiB page) no longer hold their initial value, which it then overwrites; a fresh instance sees `changed=0` |
//!
//! What it does alike with `misbehave-p3`, its WASI 0.3 twin (the query, the memory tricks, the
//! spin loop, the lines printed, the outbound URL), is in `misbehave-core`; this crate holds
//! the `wasi:http/proxy@0.2` I/O.

mod http;

mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "hotswap:host/guest",
        // Generate bindings for the vendored WASI interfaces the world uses.
        generate_all,
    });
}

use bindings::exports::wasi::http::incoming_handler::Guest;
use bindings::wasi::cli::stderr;
use bindings::wasi::clocks::monotonic_clock;
use bindings::wasi::http::outgoing_handler;
use bindings::wasi::http::types::{
    ErrorCode, Fields, IncomingRequest, Method, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};
use bindings::wasi::random::random;
use http::respond;
use misbehave_core::{
    CanaryMode, canary_mode, hoard_memory, leftovers, number, outbound_error, print_hello,
    print_late_log_done, print_long, query_param, scatter, spin_forever, split_url,
};

struct Component;

impl Guest for Component {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let target = request.path_with_query().unwrap_or_else(|| "/".to_string());
        let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
        if path == "/canary" && matches!(request.method(), Method::Post) {
            let read = body_length(request);
            return match canary_mode() {
                CanaryMode::Fail => respond(out, 500, "canary fails"),
                CanaryMode::Body => respond(out, 200, &format!("canary differs {read}")),
                _ => respond(out, 200, &format!("canary read {read}")),
            };
        }
        if !matches!(request.method(), Method::Get) {
            return respond(out, 404, "not found");
        }
        match path {
            "/ok" => respond(out, 200, "ok"),
            "/canary" => match canary_mode() {
                CanaryMode::Ok => respond(out, 200, "canary ok"),
                CanaryMode::Fail => respond(out, 500, "canary fails"),
                CanaryMode::Trap => panic!("misbehave: the canary traps"),
                CanaryMode::Slow => {
                    monotonic_clock::subscribe_duration(50_000_000).block();
                    respond(out, 200, "canary ok")
                }
                CanaryMode::Slower => {
                    monotonic_clock::subscribe_duration(150_000_000).block();
                    respond(out, 200, "canary ok")
                }
                CanaryMode::Body => respond(out, 200, "canary differs"),
            },
            "/loop" => spin_forever(),
            "/sleep-forever" => sleep_forever(),
            "/alloc" => hoard_memory(),
            "/trap-before" => panic!("misbehave: trap before any response"),
            "/trap-after" => trap_after_partial_body(out),
            "/headers" => match number(query, "n") {
                Some(n) => many_headers(out, n),
                None => respond(out, 400, "expected ?n=<count>"),
            },
            "/random" => match number(query, "n") {
                Some(n) => respond(out, 200, &random::get_random_bytes(n).len().to_string()),
                None => respond(out, 400, "expected ?n=<count>"),
            },
            "/outbound" => match query_param(query, "url") {
                Some(url) => outbound(out, &url),
                None => respond(out, 400, "expected ?url=<url>"),
            },
            "/env" => match query_param(query, "key") {
                Some(key) => match std::env::var(&key) {
                    Ok(value) => respond(out, 200, &value),
                    Err(_) => respond(out, 404, "unset"),
                },
                None => respond(out, 400, "expected ?key=<name>"),
            },
            "/late-log" => match number(query, "ms") {
                Some(ms) if query_param(query, "head").as_deref() == Some("first") => {
                    late_log_after_head(out, ms)
                }
                Some(ms) => {
                    sleep_ms(ms);
                    print_late_log_done(ms);
                    respond(out, 200, "ok");
                }
                None => respond(out, 400, "expected ?ms=<milliseconds>"),
            },
            "/refuse-then-log" => match number(query, "ms") {
                Some(ms) => {
                    ResponseOutparam::set(out, Err(ErrorCode::InternalError(None)));
                    sleep_ms(ms);
                    println!("refuse-then-log done after {ms} ms");
                }
                None => respond(out, 400, "expected ?ms=<milliseconds>"),
            },
            "/shaped" => shaped(out, query),
            "/leftovers" => respond(out, 200, &leftovers()),
            "/scatter" => respond(out, 200, &scatter()),
            "/no-response" => drop(out),
            "/print-long" => match number(query, "n") {
                Some(n) => {
                    print_long(n);
                    respond(out, 200, "ok");
                }
                None => respond(out, 400, "expected ?n=<bytes>"),
            },
            "/print-pieces" => {
                for piece in ["start a print ", "1", "2", "3", "4", "\n"] {
                    let _ = stderr::get_stderr().blocking_write_and_flush(piece.as_bytes());
                }
                respond(out, 200, "ok");
            }
            "/stdio" => {
                print_hello();
                respond(out, 200, "ok");
            }
            _ => respond(out, 404, "not found"),
        }
    }
}

/// `/late-log?head=first`: the response head and a first line, then the sleep and the log line,
/// then the end of the body. Writes to a client that has gone are ignored.
fn late_log_after_head(out: ResponseOutparam, ms: u64) {
    let headers = Fields::from_list(&[("content-type".to_string(), b"text/plain".to_vec())])
        .expect("static header names and values are valid");
    let response = OutgoingResponse::new(headers);
    let body = response.body().expect("body is taken only once");
    ResponseOutparam::set(out, Ok(response));
    let stream = body.write().expect("stream is taken only once");
    let _ = http::write_all(&stream, b"started\n");
    sleep_ms(ms);
    print_late_log_done(ms);
    let _ = http::write_all(&stream, b"done\n");
    drop(stream);
    let _ = OutgoingBody::finish(body, None);
}

/// The body of `/shaped`.
const SHAPED_BODY: &str =
    "<!doctype html>\n<html><head><title>shaped</title></head><body><p>shaped</p></body></html>\n";

/// `/shaped`: the same HTML bytes in the response shape the query asks for.
fn shaped(out: ResponseOutparam, query: &str) {
    let content_type: &[u8] = match query_param(query, "type").as_deref() {
        Some("plain") => b"text/plain",
        _ => b"text/html; charset=utf-8",
    };
    let mut fields = vec![("content-type".to_string(), content_type.to_vec())];
    let length = query_param(query, "length").as_deref() != Some("no");
    if length {
        fields.push((
            "content-length".to_string(),
            SHAPED_BODY.len().to_string().into_bytes(),
        ));
    }
    if let Some(encoding) = query_param(query, "encoding") {
        fields.push(("content-encoding".to_string(), encoding.into_bytes()));
    }
    let headers = Fields::from_list(&fields).expect("valid header names and values");
    let response = OutgoingResponse::new(headers);
    let body = response.body().expect("body is taken only once");
    ResponseOutparam::set(out, Ok(response));
    let stream = body.write().expect("stream is taken only once");
    let (first, rest) = SHAPED_BODY.split_at(SHAPED_BODY.len() / 2);
    let _ = http::write_all(&stream, first.as_bytes());
    let _ = http::write_all(&stream, rest.as_bytes());
    drop(stream);
    let _ = OutgoingBody::finish(body, None);
}

/// Blocks inside the host for `ms` milliseconds.
fn sleep_ms(ms: u64) {
    monotonic_clock::subscribe_duration(ms.saturating_mul(1_000_000)).block();
}

/// Blocks forever inside the host, waiting on a clock that never fires in time.
fn sleep_forever() -> ! {
    const HOUR_NS: u64 = 3_600 * 1_000_000_000;
    loop {
        monotonic_clock::subscribe_duration(HOUR_NS).block();
    }
}

/// Commits to a 200 response, sends part of the body, then traps.
fn trap_after_partial_body(out: ResponseOutparam) -> ! {
    let headers = Fields::from_list(&[
        ("content-type".to_string(), b"text/plain".to_vec()),
        ("x-misbehave".to_string(), b"trap-after".to_vec()),
    ])
    .expect("static header names and values are valid");
    let response = OutgoingResponse::new(headers);
    response.set_status_code(200).expect("valid status code");
    let body = response.body().expect("body is taken only once");
    ResponseOutparam::set(out, Ok(response));

    let stream = body.write().expect("stream is taken only once");
    let _ = http::write_all(&stream, b"partial");
    panic!("misbehave: trap after a partial body");
}

/// Responds with `n` header fields `x-h-<i>: <i>`.
fn many_headers(out: ResponseOutparam, n: u64) {
    let headers = Fields::new();
    for i in 0..n {
        if let Err(e) = headers.append(&format!("x-h-{i}"), i.to_string().as_bytes()) {
            return respond(out, 500, &format!("header error at {i}: {e:?}"));
        }
    }
    http::respond_with(out, 200, headers, "ok");
}

/// Makes an outbound `GET url` and reports the status code or the error.
fn outbound(out: ResponseOutparam, url: &str) {
    match outbound_get(url) {
        Ok(Ok(status)) => respond(out, 200, &format!("status {status}")),
        Ok(Err(code)) => respond(out, 502, &outbound_error(&code)),
        Err(bad_url) => respond(out, 400, bad_url),
    }
}

/// `Err` if `url` cannot be parsed; `Ok(Err)` if the host or the network
/// refused the request.
fn outbound_get(url: &str) -> Result<Result<u16, ErrorCode>, &'static str> {
    let url = split_url(url)?;
    let scheme = match url.scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => Scheme::Other(other.to_string()),
    };

    let request = OutgoingRequest::new(Fields::new());
    let invalid = "url rejected by outgoing-request";
    request.set_method(&Method::Get).map_err(|()| invalid)?;
    request.set_scheme(Some(&scheme)).map_err(|()| invalid)?;
    request
        .set_authority(Some(url.authority))
        .map_err(|()| invalid)?;
    request
        .set_path_with_query(Some(&url.path_with_query))
        .map_err(|()| invalid)?;
    // A GET has an empty body: take it and finish it straight away.
    let body = request.body().map_err(|()| invalid)?;

    let future = match outgoing_handler::handle(request, None) {
        Ok(future) => future,
        Err(code) => return Ok(Err(code)),
    };
    let _ = OutgoingBody::finish(body, None);
    loop {
        match future.get() {
            None => future.subscribe().block(),
            Some(Ok(Ok(response))) => return Ok(Ok(response.status())),
            Some(Ok(Err(code))) => return Ok(Err(code)),
            Some(Err(())) => unreachable!("the response is taken only once"),
        }
    }
}

bindings::export!(Component with_types_in bindings);

/// Reads the request body to its end: how many bytes it had.
fn body_length(request: IncomingRequest) -> usize {
    let Ok(body) = request.consume() else {
        return 0;
    };
    let Ok(stream) = body.stream() else {
        return 0;
    };
    let mut read = 0;
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        read += chunk.len();
    }
    read
}
