//! On-disk cache of compiled components.
//!
//! An entry is keyed by the component's sha256 and the engine's compatibility hash (wasmtime
//! version and every setting that shapes compiled code), so a restart or a swap back to a
//! version seen before skips compilation. Entries are written by this host only, atomically
//! and synced (temp file + fsync + rename) into a directory private to the user, behind a header
//! that carries the entry's own key and a checksum of key and payload. Anything that does not
//! check out is a miss: the component is compiled again and the entry rewritten. An entry
//! copied under another component's name carries the other key, so it is a miss too, never
//! that component's code.
//!
//! The trust model: an entry is native code the host runs. Whoever can write the cache
//! directory can make the host run their code, so the directory is created mode 0700 and one
//! that another user owns or others may write is not used ([`crate::private_dir`]).

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// First bytes of every cache entry (v2: the header carries the entry's key).
const MAGIC: &[u8; 16] = b"hotswap-cache-v2";
/// Magic, key, checksum of key and payload.
const HEADER_LEN: usize = MAGIC.len() + 32 + 32;

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
    /// Opens (creating if needed, mode 0700) the cache directory; refuses one that another
    /// user owns or others may write. Entries of each engine (one per `wasi:http` world and
    /// compiler) are keyed by that engine's compatibility hash.
    pub fn open(dir: &Path) -> Result<CompileCache> {
        crate::private_dir::ensure(dir)?;
        Ok(CompileCache {
            dir: dir.to_path_buf(),
        })
    }

    /// The directory entries live in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key of a component with this sha256 compiled by `engine`.
    fn key(engine: &Engine, component_sha: &[u8; 32]) -> [u8; 32] {
        let mut hasher = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        hasher.write(env!("CARGO_PKG_VERSION").as_bytes());
        let engine_key: [u8; 32] = hasher.0.finalize().into();
        let mut h = Sha256::new();
        h.update(component_sha);
        h.update(engine_key);
        h.finalize().into()
    }

    /// Where the entry for a component with this sha256, compiled by `engine`, lives.
    pub fn entry_path(&self, engine: &Engine, component_sha: &[u8; 32]) -> PathBuf {
        self.path_of(&Self::key(engine, component_sha))
    }

    fn path_of(&self, key: &[u8; 32]) -> PathBuf {
        self.dir.join(format!("{}.cwasm", hex::encode(key)))
    }

    /// Whether the compiled form of a component is in the cache (it may still turn out to be
    /// unusable when read).
    pub fn contains(&self, engine: &Engine, component_sha: &[u8; 32]) -> bool {
        self.entry_path(engine, component_sha).is_file()
    }

    /// Looks up the compiled form of a component. Blocking (file I/O).
    pub fn get(&self, engine: &Engine, component_sha: &[u8; 32]) -> Lookup {
        let key = Self::key(engine, component_sha);
        let path = self.path_of(&key);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Lookup::Miss,
            Err(e) => return Lookup::Corrupt(format!("cannot read `{}`: {e}", path.display())),
        };
        if bytes.len() < HEADER_LEN || &bytes[..MAGIC.len()] != MAGIC {
            return Lookup::Corrupt(format!("`{}` has no valid header", path.display()));
        }
        let (header, payload) = bytes.split_at(HEADER_LEN);
        let (stored_key, stored_sum) = header[MAGIC.len()..].split_at(32);
        if stored_key != key {
            return Lookup::Corrupt(format!(
                "`{}` holds the entry of another component or engine",
                path.display()
            ));
        }
        if stored_sum != checksum(&key, payload) {
            return Lookup::Corrupt(format!("`{}` fails its checksum", path.display()));
        }
        // SAFETY: wasmtime requires that deserialized bytes come from `Component::serialize` of
        // a compatible engine. This payload was written by this host under this very key (the
        // header says so, and its checksum over key and payload proves it was not truncated or
        // altered by accident) into a directory only this user can write; the key includes the
        // engine's compatibility hash, and wasmtime also checks its own version and
        // configuration header and fails on a mismatch.
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
        let key = Self::key(component.engine(), component_sha);
        let path = self.path_of(&key);
        let mut data = Vec::with_capacity(HEADER_LEN + payload.len());
        data.extend_from_slice(MAGIC);
        data.extend_from_slice(&key);
        data.extend_from_slice(&checksum(&key, &payload));
        data.extend_from_slice(&payload);
        crate::atomic_write::write(&path, &data)
            .with_context(|| format!("cannot write `{}`", path.display()))
    }
}

/// The checksum in an entry's header: sha256 of its key and payload.
fn checksum(key: &[u8; 32], payload: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(key);
    h.update(payload);
    h.finalize().into()
}
