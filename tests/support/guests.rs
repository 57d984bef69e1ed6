//! Guest components, built from source by the build script (fixed versions) or on demand
//! here (guest-example with a chosen version string).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

/// Versions built by this test process; the lock also serializes the builds.
static BUILT: Mutex<Option<HashMap<String, Vec<u8>>>> = Mutex::new(None);

/// The bytes of a guest built by the build script.
pub fn bytes(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read guest `{path}`: {e}"))
}

/// `cargo build --release --target wasm32-wasip2` of guest-example with `GUEST_VERSION=version`
/// into `target_dir`; returns the built component's path (overwritten by the next build).
pub fn build_example_into(version: &str, target_dir: &Path) -> Result<PathBuf, String> {
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let out = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(Path::new(ROOT).join("guest-example/Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .env("GUEST_VERSION", version)
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "guest build failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(target_dir.join("wasm32-wasip2/release/guest_example.wasm"))
}

/// The bytes of guest-example built with `GUEST_VERSION=version`, built once per test process.
pub fn example_version(version: &str) -> Vec<u8> {
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    let cache = built.get_or_insert_with(HashMap::new);
    if let Some(bytes) = cache.get(version) {
        return bytes.clone();
    }
    let path = build_example_into(version, &Path::new(GUEST_TARGET_DIR).join("versioned"))
        .unwrap_or_else(|e| panic!("{e}"));
    let bytes = std::fs::read(&path).expect("read versioned guest");
    cache.insert(version.to_string(), bytes.clone());
    bytes
}

/// The misbehaving guest at `path` with its `/canary` mode set to `mode` (four bytes: `ok..`,
/// `fail`, `trap`, `slow`, `body`; any other is `ok` with other bytes): the same code, a new
/// generation per mode.
pub fn canary_build(path: &str, mode: &str) -> Vec<u8> {
    const MARKER: &[u8] = b"CANARY-MODE:ok..";
    assert_eq!(mode.len(), 4, "a canary mode is four bytes");
    let mut bytes = self::bytes(path);
    let at = bytes
        .windows(MARKER.len())
        .position(|w| w == MARKER)
        .unwrap_or_else(|| panic!("`{path}` has no canary marker"));
    bytes[at + 12..at + 16].copy_from_slice(mode.as_bytes());
    bytes
}
