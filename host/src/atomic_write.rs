//! Files replaced whole or not at all: the bytes go to a temporary file beside the target,
//! which is then renamed over it, so a reader (a request, the watcher, another host sharing the
//! directory) sees the old file or the whole new one, never part of either.
//!
//! The compile cache, the incremental cache, the registry's last-pulled copy and admin uploads
//! all write this way. Their temporary names never collide with another writer's, in this
//! process or any other: two containers each running hotswap as PID 1 over one shared volume
//! have the same PID, so the name also carries a number drawn at random once per process.
//!
//! [`write()`] also makes the replacement durable: the new file's bytes are synced before the
//! rename (otherwise a crash can leave the new name on an empty or partial file), and the
//! directory after it (otherwise the rename itself can be lost, and a restart finds the old
//! file: an upload reported as saved would silently go back a version). Uploads, registry copies
//! and compile cache entries are written this way. The incremental cache writes thousands of
//! small entries per build with [`write_unsynced`] instead: a sync costs about 4 ms here
//! (a 13 MB JavaScript guest's first build writes some 25,000 entries: 100 s of syncs), and each
//! entry carries a checksum over its key and value, so one cut short by a crash is a miss that
//! costs the recompile of one function, never wrong code.

use std::hash::BuildHasher;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// A path beside `path` for a temporary file that no other writer uses:
/// `.NAME.tmp-PID-RANDOM-N`. It starts with a dot, so the apps directory and the watcher,
/// which skip hidden files, never take it for a component, and it does not end in any of the
/// stores' entry suffixes, so they never take it for an entry.
pub fn temp_path(path: &Path) -> PathBuf {
    static NONCE: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nonce = *NONCE.get_or_init(|| {
        std::collections::hash_map::RandomState::new().hash_one(std::time::SystemTime::now())
    });
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(
        ".{name}.tmp-{}-{nonce:016x}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Writes `bytes` to `path` through a temporary file ([`temp_path`]), synced, then renamed over
/// `path`, and syncs the directory: when this returns `Ok`, the new file survives a crash. The
/// temporary file is removed when any step fails, leaving `path` as it was. The directory must
/// exist.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace(path, bytes, true)
}

/// [`write()`] without the syncs: whole or not at all for readers, but not durable across a
/// crash. Only for entries that carry their own checksum (see the module docs).
pub fn write_unsynced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace(path, bytes, false)
}

fn replace(path: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
    use std::io::Write;
    let tmp = temp_path(path);
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        file.write_all(bytes)?;
        if durable {
            file.sync_all()?;
        }
        drop(file);
        std::fs::rename(&tmp, path)?;
        if durable {
            let dir = match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir,
                _ => Path::new("."),
            };
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_are_hidden_and_never_repeat() {
        let target = Path::new("/srv/app.wasm");
        let names: std::collections::HashSet<PathBuf> =
            (0..1000).map(|_| temp_path(target)).collect();
        assert_eq!(names.len(), 1000);
        for name in &names {
            assert_eq!(name.parent(), target.parent());
            let file = name.file_name().unwrap().to_string_lossy();
            assert!(file.starts_with(".app.wasm.tmp-"), "{file}");
            assert!(!file.ends_with(".wasm"), "{file}");
        }
    }

    #[test]
    fn a_write_replaces_the_file_and_leaves_nothing_behind() {
        let dir = crate::test_dir("atomic-write");
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("entry");
        write(&path, b"first").unwrap();
        write(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["entry"]);
        // A target that cannot be replaced (a directory) fails and leaves no temporary file.
        let blocked = dir.join("blocked");
        std::fs::create_dir_all(blocked.join("inner")).unwrap();
        assert!(write(&blocked, b"x").is_err());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
