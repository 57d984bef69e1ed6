//! End-to-end tests: the real `hotswap` binary on loopback, serving guests built from source.
//! Every server binds `127.0.0.1:0`; every request loop is bounded in count and time.

mod admin_api;
mod bad_input;
mod canary;
mod client_limits;
mod compat;
mod conformance;
mod core_serving;
mod deploy;
mod dev_loop;
mod guardrails;
mod live_reload;
mod loader_fuzz;
mod registry;
mod routes;
mod shutdown;
mod startup;
mod state;
mod swapping;
mod tiers;
mod tls;
mod traces;
mod trust;
mod upgrade;
mod wasi_p3;
