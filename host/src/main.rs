//! The `hotswap` command.

/// Every request allocates and frees many small objects (store, WASI context, resource table,
/// hyper buffers); mimalloc measured faster than glibc's malloc on that path (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    hotswap::main()
}
