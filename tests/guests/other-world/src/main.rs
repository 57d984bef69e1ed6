//! A component of the wasi:cli/command world: it exports `wasi:cli/run`, not
//! `wasi:http/incoming-handler`, so the hotswap host must refuse to load it.

fn main() {
    println!("hello from other-world: a wasi:cli/command, not a wasi:http/proxy guest");
}
