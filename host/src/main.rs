//! The `hotswap` command.

fn main() -> std::process::ExitCode {
    hotswap::main()
}
