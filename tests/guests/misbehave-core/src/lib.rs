//! misbehave-core: what the misbehaving test guests do alike, whichever WASI world they
//! export. `misbehave` (`wasi:http/proxy@0.2`) and `misbehave-p3` (`wasi:http/service@0.3`)
//! call it for everything that is not their world's I/O: parsing the query, the memory tricks
//! (`/alloc`, `/leftovers`, `/scatter`), the spin loop, the lines they print (`/stdio`,
//! `/late-log`, `/print-long`) and the answers about an outbound call (`/outbound`).
//!
//! Plain Rust with no WASI import of its own: printing goes through Rust's std, which on
//! `wasm32-wasip2` writes to the WASI 0.2 `wasi:cli` streams in both guests. (`stateful`, which
//! borrows misbehave's `http.rs`, takes its query parsing from here too.)

use std::fmt::Debug;
use std::hint::black_box;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

// ----- /canary: one behaviour per build ----------------------------------------------------------

/// What `/canary` does in this build, written in the component's data: the tests make a
/// build that fails, traps, is slow or answers another body by overwriting the four bytes after
/// `CANARY-MODE:` in the component (same length, so it stays valid) — each such build has
/// other bytes, and so is a new generation, while the code is the same.
#[used]
static CANARY_MODE: [u8; 16] = *b"CANARY-MODE:ok..";

/// What `/canary` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CanaryMode {
    /// 200 `canary ok` (the default, and any mode not named below).
    Ok,
    /// 500.
    Fail,
    /// Traps before answering.
    Trap,
    /// Answers 200 after 50 ms.
    Slow,
    /// Answers 200 after 150 ms (`s150`): three times `slow`.
    Slower,
    /// 200 with another body (`canary differs`).
    Body,
}

/// This build's `/canary` mode, read from its data at run time (volatile reads: the compiler
/// must not fold the bytes the tests overwrite).
pub fn canary_mode() -> CanaryMode {
    let mut mode = [0u8; 4];
    for (i, byte) in mode.iter_mut().enumerate() {
        // SAFETY: reads within the static array.
        *byte = unsafe { std::ptr::read_volatile(CANARY_MODE.as_ptr().add(12 + i)) };
    }
    match &mode {
        b"fail" => CanaryMode::Fail,
        b"trap" => CanaryMode::Trap,
        b"slow" => CanaryMode::Slow,
        b"s150" => CanaryMode::Slower,
        b"body" => CanaryMode::Body,
        _ => CanaryMode::Ok,
    }
}

// ----- the query -----------------------------------------------------------------------------

/// Returns the value of `key` in an `a=1&b=2` query string, percent-decoded
/// (`%XX` only; `+` stays `+`).
/// `None` if the key is missing or its value is not valid percent-encoded UTF-8.
pub fn query_param(query: &str, key: &str) -> Option<String> {
    let raw = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)?;
    percent_decode(raw)
}

/// Parses query parameter `key` as a non-negative integer.
pub fn number(query: &str, key: &str) -> Option<u64> {
    query_param(query, key)?.parse().ok()
}

fn percent_decode(s: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(s.len());
    let mut rest = s.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        match b {
            b'%' => {
                let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
                bytes.push(u8::from_str_radix(hex, 16).ok()?);
                rest = &tail[2..];
            }
            _ => {
                bytes.push(b);
                rest = tail;
            }
        }
    }
    String::from_utf8(bytes).ok()
}

// ----- the CPU and memory --------------------------------------------------------------------

/// `/loop`: burns CPU forever without calling the host: only epoch/fuel interruption can stop
/// it. `black_box` keeps the loop from being optimised away.
pub fn spin_forever() -> ! {
    let mut counter: u64 = 0;
    loop {
        counter = black_box(counter).wrapping_add(1);
    }
}

/// `/alloc`: grows memory 1 MiB at a time, writing every byte so nothing can be elided.
/// When `memory.grow` fails the allocator reports failure and Rust aborts,
/// which in wasm is a trap.
pub fn hoard_memory() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    let mut fill: u8 = 1;
    loop {
        let mut block = vec![0u8; 1 << 20];
        block.fill(fill);
        fill = fill.wrapping_add(1);
        hoard.push(black_box(block));
        black_box(&hoard);
    }
}

/// Bumped by every `/leftovers` request this instance serves.
static SERVED: AtomicU64 = AtomicU64::new(0);

/// `/leftovers`: reports what an earlier request could have left behind in this instance's
/// memory (a static in the data segment; pages past the initial heap), then leaves traces of
/// its own.
pub fn leftovers() -> String {
    const PAGES: usize = 8;
    const PAGE: usize = 64 << 10;
    let count = SERVED.fetch_add(1, Ordering::SeqCst);
    let old = core::arch::wasm32::memory_grow(0, PAGES);
    if old == usize::MAX {
        return "memory.grow failed".to_string();
    }
    let start = (old * PAGE) as *mut u8;
    let mut dirty = 0usize;
    for i in 0..PAGES * PAGE {
        // SAFETY: these pages were just added to linear memory and belong to no Rust object
        // (the allocator grows memory past them when it needs more).
        unsafe {
            let byte = start.add(i);
            if byte.read_volatile() != 0 {
                dirty += 1;
            }
            byte.write_volatile(0xAB);
        }
    }
    format!("count={count} dirty={dirty}")
}

/// Host pages (4 KiB) of [`SCATTER`] that `/scatter` writes: every other one, so they are that
/// many separate runs of dirty pages, more than the host's page scan reports in one go (32).
const SCATTER_RUNS: usize = 72;
const HOST_PAGE: usize = 4 << 10;
/// What every byte of [`SCATTER`] starts as.
const SCATTER_BYTE: u8 = 0x5A;
/// Not zero, so it lives in the component's data segments (its memory image), not in memory
/// that starts out zeroed.
static mut SCATTER: [u8; SCATTER_RUNS * 2 * HOST_PAGE] =
    [SCATTER_BYTE; SCATTER_RUNS * 2 * HOST_PAGE];

/// `/scatter`: reports how many of the pages an earlier request could have dirtied in the
/// memory image no longer hold their initial bytes, then dirties them (one byte each, every
/// other host page).
pub fn scatter() -> String {
    let base = &raw mut SCATTER as *mut u8;
    let mut changed = 0;
    for run in 0..SCATTER_RUNS {
        // SAFETY: in bounds of `SCATTER`, which nothing else touches; volatile so the compiler
        // keeps every read and write.
        unsafe {
            let byte = base.add(run * 2 * HOST_PAGE + 100);
            if byte.read_volatile() != SCATTER_BYTE {
                changed += 1;
            }
            byte.write_volatile(0xC3);
        }
    }
    format!("runs={SCATTER_RUNS} changed={changed}")
}

// ----- what the guests print -----------------------------------------------------------------

/// `/stdio`: `hello stdout` to stdout and `hello stderr` to stderr.
pub fn print_hello() {
    println!("hello stdout");
    eprintln!("hello stderr");
}

/// `/late-log`: the line that says the guest ran to its end, `late-log done after N ms`.
pub fn print_late_log_done(ms: u64) {
    println!("late-log done after {ms} ms");
}

/// `/print-long?n=N`: N bytes of `x`, then the invalid UTF-8 bytes `ff fe fd` and `\n`, to
/// stdout, in one write.
pub fn print_long(n: u64) {
    let mut line = vec![b'x'; n as usize];
    line.extend_from_slice(&[0xff, 0xfe, 0xfd, b'\n']);
    let _ = std::io::stdout().write_all(&line);
}

// ----- outbound calls ------------------------------------------------------------------------

/// An outbound URL in the parts a `wasi:http` request is given.
pub struct Url<'a> {
    /// `http`, `https` or another scheme, as written.
    pub scheme: &'a str,
    pub authority: &'a str,
    /// Starts with `/`.
    pub path_with_query: String,
}

/// Splits `scheme://authority/path?query`; `Err` if there is no `scheme://`.
pub fn split_url(url: &str) -> Result<Url<'_>, &'static str> {
    let (scheme, rest) = url.split_once("://").ok_or("url needs a scheme://")?;
    let (authority, path_with_query) = match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    Ok(Url {
        scheme,
        authority,
        path_with_query,
    })
}

/// The body of a 502 for an outbound call that failed: `error <ErrorCode variant>`. The
/// bindings' Debug reads `ErrorCode::HttpRequestDenied`: the variant is kept (payload variants
/// keep their Debug payload).
pub fn outbound_error(code: &impl Debug) -> String {
    let debug = format!("{code:?}");
    let variant = debug.strip_prefix("ErrorCode::").unwrap_or(&debug);
    format!("error {variant}")
}
