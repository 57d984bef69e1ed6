//! The `hotswap` binary as the end-to-end tests run it: the very same entry point as
//! `host/src/main.rs`, built inside this package so `cargo test` keeps it fresh.

fn main() -> std::process::ExitCode {
    hotswap::main()
}
