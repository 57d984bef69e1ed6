//! hotswap: an HTTP host for `wasi:http` WebAssembly components (WASI 0.2 and 0.3) that swaps in
//! new builds without a restart and without dropping a request.
//!
//! **Where a request goes.** [`http::server`] accepts the connection (header, idle and write
//! timeouts for both listeners; TLS with [`http::tls`]'s certificates, which reload like
//! components) and hands each request to [`http::handler`], which finds its
//! [`route::Route`] (longest path prefix; 404 if none) and admits it: acceptable head, body
//! within the limit, one of the route's concurrency permits, and a current generation from the
//! route's [`guest::slot`]. [`guest::run`] then runs the guest on that generation: a fresh
//! instance in a store of its own ([`engine`], bounded in time, memory and output), calling
//! `wasi:http/incoming-handler` for a 0.2 guest or `wasi:http/handler` for a 0.3 one (or, with
//! `--instance-reuse`, one of the generation's [`guest::reuse`]d instances), and maps every way
//! it can fail to a status code. What guests may import beyond `wasi:http` lives in [`wasi`].
//! With an OTLP endpoint, the request, the guest's run and its outbound calls are spans
//! ([`telemetry::traces`]), as are reloads, builds and tier-ups.
//!
//! **Where a new component goes.** Each route has its own [`reload`] pipeline, started by
//! [`route::start`]: its [`watcher`] (or its build, a SIGHUP from [`signals`], a registry poll,
//! or the [`admin`] API) sends a trigger to its reloader, which reads the file (or pulls from a
//! registry, [`component::oci`]), compiles and validates it ([`component::load`], at the
//! compiler tier [`component::tier`] gives it, from the [`component::cache`] when it can), and
//! [`reload::install`]s it: the one way a generation starts serving, whether a new build, a
//! tier-up (the Cranelift build of a generation that serves from Winch) or a rollback.
//! Requests already running keep the generation they started with. With `--apps`,
//! [`route::apps`] starts a route for every component dropped into the directory.
//!
//! **The layers.** A module imports from its own layer and those under it, never from above
//! (checked by a test, `layering_tests`): the composition root (`app`: the command, startup,
//! shutdown); [`http`] and [`admin`]; [`route`]; [`reload`]; [`guest`]; [`component`];
//! [`engine`]; [`config`]; [`wasi`]; and the leaves, which import nothing of the crate
//! ([`cli`], [`metrics`], [`telemetry`], [`signals`], [`process`], [`watcher`],
//! [`atomic_write`], [`private_dir`], [`digest`], [`names`], [`kind`], and [`events`], the
//! dev-mode bus that reloads and builds publish into and the public listener serves to
//! browsers).
//!
//! **The process.** Listeners may be handed over instead of bound (systemd's socket
//! activation, or the process this one replaces), systemd hears of readiness, and `SIGUSR2`
//! upgrades the binary without closing a listener: [`process`].

#![deny(missing_docs)]

pub mod admin;
mod app;
pub mod atomic_write;
pub mod cli;
pub mod component;
pub mod config;
pub mod digest;
pub mod engine;
pub mod events;
pub mod guest;
pub mod http;
pub mod kind;
#[cfg(test)]
mod layering_tests;
pub mod metrics;
pub mod names;
pub mod private_dir;
pub mod process;
pub mod reload;
pub mod route;
pub mod signals;
pub mod telemetry;
#[cfg(test)]
mod vendored_tests;
pub mod wasi;
pub mod watcher;

/// A directory path of its own for one unit test (unique per test process and call), removed
/// first if an earlier run left it; the test creates what it needs in it.
#[cfg(test)]
pub(crate) fn test_dir(tag: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "hotswap-{tag}-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

pub use app::{main, run, serve};
