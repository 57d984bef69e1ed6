//! The local copy of what was pulled, under `CACHE/oci/`, so a host restarted while its
//! registry is down still serves the last good component:
//!
//! - `manifests/HEX.json`: a manifest as the registry sent it; it hashes to `sha256:HEX`;
//! - `blobs/HEX.wasm`: a component layer; it hashes to `sha256:HEX`;
//! - `refs/NAME`: the manifest digest the reference NAME last served.
//!
//! Every file is named by the digest it must hash to, and re-hashed each time it is read: a
//! copy that does not match (a disk fault, a hand edit, a partial write by an older host) is
//! removed and reported, never served. From a manifest digest the chain is checked end to end:
//! the manifest's bytes hash to it, and the layer it names hashes to the digest it gives.

use super::manifest::{self, Descriptor};
use crate::config::reference::is_sha256_digest;
use sha2::{Digest, Sha256};
use std::io;
use std::path::{Path, PathBuf};

/// The `CACHE/oci` directory.
pub struct Store {
    dir: PathBuf,
}

/// Why a local copy is not used.
#[derive(Debug)]
pub enum Unusable {
    /// The file does not hash to its name (or has the wrong size); it was removed.
    Mismatch(String),
    /// The copy is intact but refused now (e.g. larger than a lowered `--max-component-size`).
    Refused(String),
}

impl Store {
    /// The store in `dir` (`CACHE/oci`); nothing is created until something is saved.
    pub fn new(dir: PathBuf) -> Store {
        Store { dir }
    }

    /// The component of manifest `digest`, re-checked against the digests: `Ok(None)` when
    /// there is no copy.
    pub fn load(
        &self,
        digest: &str,
        reference: &str,
        max_bytes: u64,
    ) -> Result<Option<Vec<u8>>, Unusable> {
        let Some(manifest_path) = self.manifest_file(digest) else {
            return Ok(None);
        };
        let Some(manifest) = read_checked(&manifest_path, digest, manifest::MAX_BYTES)? else {
            return Ok(None);
        };
        // The manifest hashes to its digest, so it is the one pulled and checked before; only
        // a limit lowered since can refuse it now.
        let layer = manifest::component_layer(&manifest, reference, max_bytes)
            .map_err(|e| Unusable::Refused(e.to_string()))?;
        let Some(blob_path) = self.blob_file(&layer.digest) else {
            return Ok(None);
        };
        let Some(bytes) = read_checked(&blob_path, &layer.digest, layer.size)? else {
            return Ok(None);
        };
        if bytes.len() as u64 != layer.size {
            remove(&blob_path);
            return Err(Unusable::Mismatch(format!(
                "`{}` is {} bytes, its descriptor says {}",
                blob_path.display(),
                bytes.len(),
                layer.size
            )));
        }
        Ok(Some(bytes))
    }

    /// Keeps manifest `digest` (its bytes, `manifest`) and its component layer `bytes`. The
    /// layer goes first: a manifest on disk never names a layer that was not written.
    pub fn save(
        &self,
        digest: &str,
        manifest: &[u8],
        layer: &Descriptor,
        bytes: &[u8],
    ) -> io::Result<()> {
        let (Some(manifest_path), Some(blob_path)) =
            (self.manifest_file(digest), self.blob_file(&layer.digest))
        else {
            return Err(io::Error::other("not a sha256 digest"));
        };
        write(&blob_path, bytes)?;
        write(&manifest_path, manifest)
    }

    /// The manifest digest reference `name` last served, if recorded.
    pub fn last_served(&self, name: &str) -> Option<String> {
        let path = self.ref_file(name);
        // A digest and a newline; anything longer is not one of ours.
        if std::fs::metadata(&path).ok()?.len() > 100 {
            return None;
        }
        let digest = std::fs::read_to_string(path).ok()?.trim().to_string();
        is_sha256_digest(&digest).then_some(digest)
    }

    /// Records that reference `name` now serves manifest `digest`.
    pub fn record_served(&self, name: &str, digest: &str) -> io::Result<()> {
        write(&self.ref_file(name), digest.as_bytes())
    }

    fn manifest_file(&self, digest: &str) -> Option<PathBuf> {
        let hex = hex_of(digest)?;
        Some(self.dir.join("manifests").join(format!("{hex}.json")))
    }

    fn blob_file(&self, digest: &str) -> Option<PathBuf> {
        let hex = hex_of(digest)?;
        Some(self.dir.join("blobs").join(format!("{hex}.wasm")))
    }

    fn ref_file(&self, name: &str) -> PathBuf {
        self.dir.join("refs").join(name)
    }
}

/// The hex of a `sha256:` digest, which is safe in a file name.
fn hex_of(digest: &str) -> Option<&str> {
    is_sha256_digest(digest).then(|| &digest["sha256:".len()..])
}

/// The bytes of `path` if it exists, at most `max` bytes long and hashing to `digest`;
/// otherwise the file is removed and the mismatch returned.
fn read_checked(path: &Path, digest: &str, max: u64) -> Result<Option<Vec<u8>>, Unusable> {
    let mismatch = |detail: String| {
        remove(path);
        Unusable::Mismatch(format!(
            "`{}` does not match its digest {digest}: {detail}",
            path.display()
        ))
    };
    let len = match std::fs::metadata(path) {
        Ok(metadata) => metadata.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Unusable::Refused(format!(
                "cannot read `{}`: {e}",
                path.display()
            )));
        }
    };
    if len > max {
        return Err(mismatch(format!(
            "it is {len} bytes, more than the {max} expected"
        )));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| Unusable::Refused(format!("cannot read `{}`: {e}", path.display())))?;
    if bytes.len() as u64 > max {
        return Err(mismatch(format!(
            "it grew to {} bytes while read",
            bytes.len()
        )));
    }
    let actual = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
    if actual != digest {
        return Err(mismatch(format!("its bytes hash to {actual}")));
    }
    Ok(Some(bytes))
}

/// Writes `bytes` to `path` whole or not at all, creating its directory.
fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    crate::atomic_write::write(path, bytes)
}

fn remove(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove a local copy that does not match its digest");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::component::oci::{WASM_CONFIG_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE};

    fn digest_of(bytes: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
    }

    /// A store holding one component; returns it, the manifest digest and the layer's path.
    fn saved(dir: &Path, component: &[u8]) -> (Store, String, PathBuf) {
        let layer = Descriptor {
            media_type: WASM_LAYER_MEDIA_TYPE.into(),
            digest: digest_of(component),
            size: component.len() as u64,
        };
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "config": {"mediaType": WASM_CONFIG_MEDIA_TYPE, "digest": digest_of(b"{}"), "size": 2},
            "layers": [{"mediaType": layer.media_type, "digest": layer.digest, "size": layer.size}],
        }))
        .unwrap();
        let digest = digest_of(&manifest);
        let store = Store::new(dir.join("oci"));
        store.save(&digest, &manifest, &layer, component).unwrap();
        let blob = store.blob_file(&layer.digest).unwrap();
        (store, digest, blob)
    }

    #[test]
    fn a_saved_copy_loads_and_a_changed_one_is_removed_not_served() {
        let dir = crate::test_dir("oci-store");
        let (store, digest, blob) = saved(&dir, b"\0asm component bytes");
        let load = |max| store.load(&digest, "oci://r/a:v1", max);
        assert_eq!(load(1 << 20).unwrap().unwrap(), b"\0asm component bytes");

        // Intact but over a lowered limit: refused, kept.
        assert!(matches!(load(4), Err(Unusable::Refused(_))));
        assert!(blob.exists());

        // Same length, other bytes: removed, and then there is no copy.
        std::fs::write(&blob, b"\0asm tampered  bytes").unwrap();
        match load(1 << 20) {
            Err(Unusable::Mismatch(why)) => assert!(why.contains("does not match"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(!blob.exists());
        assert!(load(1 << 20).unwrap().is_none());
    }

    #[test]
    fn a_changed_manifest_is_removed_and_refs_hold_digests_only() {
        let dir = crate::test_dir("oci-store-manifest");
        let (store, digest, _) = saved(&dir, b"\0asm other");
        let manifest = store.manifest_file(&digest).unwrap();
        std::fs::write(&manifest, b"{}").unwrap();
        assert!(matches!(
            store.load(&digest, "oci://r/a:v1", 1 << 20),
            Err(Unusable::Mismatch(_))
        ));
        assert!(!manifest.exists());
        assert!(
            store
                .load("sha256:not-hex", "oci://r/a:v1", 1 << 20)
                .unwrap()
                .is_none()
        );

        store.record_served("r_a_v1", &digest).unwrap();
        assert_eq!(
            store.last_served("r_a_v1").as_deref(),
            Some(digest.as_str())
        );
        std::fs::write(store.ref_file("r_a_v1"), "../../etc/passwd").unwrap();
        assert_eq!(store.last_served("r_a_v1"), None);
    }
}
