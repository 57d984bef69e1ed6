//! The `hotswap` command.
//!
//! It uses the system allocator: mimalloc was tried (BENCHMARKS.md, tuning log) and its
//! throughput gain did not stand out from run-to-run noise, while it tripled the resident
//! memory (~85 MiB against ~28 MiB) and made it wander by ±10 MiB from one swap to the next.

fn main() -> std::process::ExitCode {
    hotswap::main()
}
