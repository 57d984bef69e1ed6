//! The doors a guest, a client, a registry, a full disk or an unlucky operator could open, each
//! shown shut: a guest reaching a loopback service through an allowed name, clients that reset
//! their streams or leave connections idle, the admin listener under the public listener's
//! limits, uploads that cannot be saved, an app that cannot load making the whole host unready,
//! Kubernetes volume updates, signals during startup, a compile cache holding someone else's
//! code, guests flooding the log, and random bytes at both listeners. (A registry that never
//! ends its layer is in `registry`.)

mod admin;
mod cache;
mod clients;
mod fuzz;
mod guest_output;
mod outbound;
mod readiness;
mod signals;
mod volumes;

use std::net::SocketAddr;

/// `GET path` on the admin listener, with the bearer token if given.
async fn admin_get(admin: SocketAddr, path: &str) -> hotswap_tests::Reply {
    hotswap_tests::get(admin, path)
        .await
        .unwrap_or_else(|e| panic!("admin GET {path}: {e}"))
}
