//! Servers on the guests most areas share.

use crate::Server;
use crate::guests::{self, GUEST_EXAMPLE, MISBEHAVE};
use std::path::{Path, PathBuf};

/// A server on the misbehaving guest (WASI 0.2).
pub fn misbehave(args: &[&str]) -> Server {
    Server::start(Path::new(MISBEHAVE), args)
}

/// A server on guest-example.
pub fn example(args: &[&str]) -> Server {
    Server::start(Path::new(GUEST_EXAMPLE), args)
}

/// A server watching `dir/app.wasm`, which starts as guest-example `v1`.
pub fn start_v1(dir: &Path) -> (Server, PathBuf) {
    let path = dir.join("app.wasm");
    std::fs::write(&path, guests::example_version("v1")).unwrap();
    let server = Server::start(&path, &["--debounce", "50ms"]);
    (server, path)
}
