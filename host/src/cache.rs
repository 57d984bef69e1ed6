//! On-disk cache of compiled components.
//!
//! An entry is keyed by the component's sha256 and the engine's compatibility hash (wasmtime
//! version and every setting that shapes compiled code), so a restart or a swap back to a
//! version seen before skips compilation. Entries are written by this host only, atomically
//! (temp file + rename) into a directory private to the user, behind a header with a checksum
//! of the payload. Anything that does not check out is a miss: the component is compiled again
//! and the entry rewritten. Nothing read from the cache can crash the host.

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// First bytes of every cache entry.
const MAGIC: &[u8; 16] = b"hotswap-cache-v1";
const HEADER_LEN: usize = MAGIC.len() + 32;

/// A compiled-component cache in one directory.
pub struct CompileCache {
    dir: PathBuf,
}

/// What a lookup found.
pub enum Lookup {
    /// A usable compiled component.
    Hit(Component),
    /// No entry.
    Miss,
    /// An entry that failed its checks; it will be replaced.
    Corrupt(String),
}

/// Feeds `Hash` output into sha256, to turn the engine's compatibility hash into stable bytes.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl CompileCache {
    /// Opens (creating if needed, mode 0700) the cache directory. Entries of each engine (one
    /// per `wasi:http` world) are keyed by that engine's compatibility hash.
    pub fn open(dir: &Path) -> Result<CompileCache> {
        std::fs::create_dir_all(dir).with_context(|| {
            format!(
                "cannot create the compile cache directory `{}`",
                dir.display()
            )
        })?;
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        Ok(CompileCache {
            dir: dir.to_path_buf(),
        })
    }

    /// The directory entries live in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the entry for a component with this sha256, compiled by `engine`, lives.
    pub fn entry_path(&self, engine: &Engine, component_sha: &[u8; 32]) -> PathBuf {
        let mut hasher = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        hasher.write(env!("CARGO_PKG_VERSION").as_bytes());
        let engine_key: [u8; 32] = hasher.0.finalize().into();
        let mut h = Sha256::new();
        h.update(component_sha);
        h.update(engine_key);
        let key: [u8; 32] = h.finalize().into();
        self.dir.join(format!("{}.cwasm", hex::encode(key)))
    }

    /// Whether the compiled form of a component is in the cache (it may still turn out to be
    /// unusable when read).
    pub fn contains(&self, engine: &Engine, component_sha: &[u8; 32]) -> bool {
        self.entry_path(engine, component_sha).is_file()
    }

    /// Looks up the compiled form of a component. Blocking (file I/O).
    pub fn get(&self, engine: &Engine, component_sha: &[u8; 32]) -> Lookup {
        let path = self.entry_path(engine, component_sha);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Lookup::Miss,
            Err(e) => return Lookup::Corrupt(format!("cannot read `{}`: {e}", path.display())),
        };
        if bytes.len() < HEADER_LEN || &bytes[..MAGIC.len()] != MAGIC {
            return Lookup::Corrupt(format!("`{}` has no valid header", path.display()));
        }
        let (header, payload) = bytes.split_at(HEADER_LEN);
        let sum: [u8; 32] = Sha256::digest(payload).into();
        if header[MAGIC.len()..] != sum {
            return Lookup::Corrupt(format!("`{}` fails its checksum", path.display()));
        }
        // SAFETY: wasmtime requires that deserialized bytes come from `Component::serialize` of
        // a compatible engine. This payload was written by this host (the header and checksum
        // prove it was not truncated or altered by accident) into a directory only this user
        // can write, under a key that includes the engine's compatibility hash; wasmtime also
        // checks its own version and configuration header and fails on a mismatch.
        match unsafe { Component::deserialize(engine, payload) } {
            Ok(component) => Lookup::Hit(component),
            Err(e) => Lookup::Corrupt(format!("`{}` could not be loaded: {e}", path.display())),
        }
    }

    /// Stores the compiled form of a component. Blocking (file I/O).
    pub fn put(&self, component_sha: &[u8; 32], component: &Component) -> Result<()> {
        let payload = component
            .serialize()
            .map_err(anyhow::Error::from)
            .context("serialize")?;
        let sum: [u8; 32] = Sha256::digest(&payload).into();
        let path = self.entry_path(component.engine(), component_sha);
        let mut data = Vec::with_capacity(HEADER_LEN + payload.len());
        data.extend_from_slice(MAGIC);
        data.extend_from_slice(&sum);
        data.extend_from_slice(&payload);
        crate::atomic_write::write(&path, &data)
            .with_context(|| format!("cannot write `{}`", path.display()))
    }
}
