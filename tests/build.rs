//! Builds the guest components the tests use, from source, for `wasm32-wasip2`, and names them
//! by generated constants (`GUEST_EXAMPLE`, `MISBEHAVE`, `MISBEHAVE_P3`, `OTHER_WORLD`, `STATEFUL`). No `.wasm` file is
//! ever committed.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf();
    let target_dir = guest_target_dir(&root);

    for watched in [
        "guest-example/src",
        "guest-example/Cargo.toml",
        "tests/guests",
        "wit",
        "wit-p3",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    build(&root.join("guest-example/Cargo.toml"), &target_dir);
    build(&root.join("tests/guests/Cargo.toml"), &target_dir);

    let out = target_dir.join("wasm32-wasip2/release");
    let consts = format!(
        "/// guest-example, built with its default version string.\n\
         pub const GUEST_EXAMPLE: &str = {:?};\n\
         /// The misbehaving test guest.\n\
         pub const MISBEHAVE: &str = {:?};\n\
         /// Its WASI 0.3 twin (exports `wasi:http/handler@0.3`).\n\
         pub const MISBEHAVE_P3: &str = {:?};\n\
         /// A component of another world (a wasi:cli command).\n\
         pub const OTHER_WORLD: &str = {:?};\n\
         /// The test guest that reads wasi:config and keeps state in wasi:keyvalue.\n\
         pub const STATEFUL: &str = {:?};\n\
         /// Workspace root.\n\
         pub const ROOT: &str = {:?};\n\
         /// Target directory the guests are built in.\n\
         pub const GUEST_TARGET_DIR: &str = {:?};\n",
        out.join("guest_example.wasm"),
        out.join("misbehave.wasm"),
        out.join("misbehave_p3.wasm"),
        out.join("other-world.wasm"),
        out.join("stateful.wasm"),
        root,
        target_dir,
    );
    let dest = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR")).join("guests.rs");
    std::fs::write(&dest, consts).expect("write guests.rs");
}

/// `target/guests` under the workspace's target directory, kept apart from the host's own
/// build so the nested cargo never waits on the outer one's lock.
fn guest_target_dir(root: &Path) -> PathBuf {
    let target = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    target.join("guests")
}

fn build(manifest: &Path, target_dir: &Path) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--release",
        "--target",
        "wasm32-wasip2",
        "--manifest-path",
    ])
    .arg(manifest)
    .arg("--target-dir")
    .arg(target_dir);
    // Build-script variables describe the host build; they must not leak into the guest build.
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if (key.starts_with("CARGO_") && key != "CARGO_HOME")
            || key.starts_with("RUSTC")
            || key.starts_with("RUSTDOC")
            || matches!(
                key,
                "TARGET"
                    | "HOST"
                    | "OPT_LEVEL"
                    | "PROFILE"
                    | "DEBUG"
                    | "OUT_DIR"
                    | "RUSTFLAGS"
                    | "NUM_JOBS"
            )
        {
            cmd.env_remove(key);
        }
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo for {}: {e}", manifest.display()));
    assert!(
        status.success(),
        "building {} for wasm32-wasip2 failed; is the target installed? (`rustup target add wasm32-wasip2`)",
        manifest.display()
    );
}
