//! Cranelift's function-level incremental compilation cache, on disk under the compile cache
//! directory (`<cache dir>/incremental/`).
//!
//! When a new build shares most of its functions with one compiled before (a JavaScript or
//! Python guest whose script changed, over the same engine; a Rust guest where one function
//! changed), only the functions that changed are compiled; the others come from here. The key
//! of an entry is Cranelift's own: a hash of the function, the compiler and its settings.
//! Beside those entries sit those of the memo in hotswap's wasmtime (vendor/README.md): keyed by
//! a function's wasm and its module, they let an unchanged function skip even its translation
//! to Cranelift's IR. A function is counted once: a memo hit is a hit; a memo miss is counted by
//! the lookup under Cranelift's key that follows it.
//!
//! - Bounded: once the entries pass the size limit, the oldest (by write time) are removed
//!   until they take 80 % of it.
//! - Safe against corrupt entries: each carries a checksum of its key and value; one that does not
//!   check out, or cannot be read, is a miss (the function is compiled again), never a crash.
//! - Safe against several hosts sharing the directory: entries are written to a temporary file
//!   whose name no other writer uses ([`crate::atomic_write`]) and renamed into place, so a
//!   reader sees a whole entry or none; the checksum covers the key, so an entry can only ever
//!   be read as its own function; an entry removed by another host's eviction while read is a
//!   miss.

use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;
use wasmtime_internal_cranelift::wasm_memo;

/// Keys of the markers that say a component's code was compiled with Cranelift here
/// ([`DiskStore::knows_code`]) start with these bytes.
const CODE_PREFIX: &[u8; 6] = b"hscode";

/// Marks an entry written by this store (`01` entries, whose checksum left out the key, are
/// misses).
const MAGIC: &[u8; 8] = b"hsincr02";
const HEADER_LEN: usize = MAGIC.len() + 32;
/// Share of the limit the entries are cut back to when they pass it.
const EVICT_TO_PERCENT: u64 = 80;

/// Hits and misses of one store, for the reload log and the metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Functions found in the cache.
    pub hits: u64,
    /// Functions looked up and not found (compiled, then stored).
    pub misses: u64,
    /// Of the hits, those found by their wasm (the memo), so not even translated.
    pub untranslated: u64,
}

/// The on-disk store behind `Config::enable_incremental_compilation`.
#[derive(Debug)]
pub struct DiskStore {
    dir: PathBuf,
    max_bytes: u64,
    /// Bytes of entries in the directory, as far as this host knows (written or found at start).
    bytes: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    untranslated: AtomicU64,
    /// Held while evicting, so two compile threads don't both scan the directory.
    evicting: Mutex<()>,
}

impl DiskStore {
    /// Opens (creating it, mode 0700) the store in `dir`, holding at most about `max_bytes`.
    pub fn open(dir: &Path, max_bytes: u64) -> std::io::Result<DiskStore> {
        crate::private_dir::ensure(dir).map_err(std::io::Error::other)?;
        let bytes = entries(dir).iter().map(|e| e.1).sum();
        Ok(DiskStore {
            dir: dir.to_path_buf(),
            max_bytes,
            bytes: AtomicU64::new(bytes),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            untranslated: AtomicU64::new(0),
            evicting: Mutex::new(()),
        })
    }

    /// Hits and misses so far.
    pub fn counts(&self) -> Counts {
        Counts {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            untranslated: self.untranslated.load(Ordering::Relaxed),
        }
    }

    /// Whether code with this [`code_digest`] was compiled with Cranelift into this store
    /// before, so that compiling it again mostly takes its functions from here (each one
    /// untranslated, if its module is unchanged too). Not counted as a hit or a miss. The
    /// marker is evicted like an entry, and after the functions of that compile, so it may
    /// outlive some of them: then the compile is slower, never wrong.
    pub fn knows_code(&self, digest: &[u8; 32]) -> bool {
        self.read(&[&CODE_PREFIX[..], digest].concat()).is_some()
    }

    /// Records that code with this [`code_digest`] has been compiled into this store.
    pub fn remember_code(&self, digest: &[u8; 32]) {
        use wasmtime::CacheStore;
        self.insert(&[&CODE_PREFIX[..], digest].concat(), Vec::new());
    }

    /// The directory the entries live in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, key: &[u8]) -> PathBuf {
        let name = hex::encode(Sha256::digest(key));
        self.dir.join(format!("{name}.fn"))
    }

    fn read(&self, key: &[u8]) -> Option<Vec<u8>> {
        let mut bytes = std::fs::read(self.path(key)).ok()?;
        if bytes.len() < HEADER_LEN || &bytes[..MAGIC.len()] != MAGIC {
            return None;
        }
        if bytes[MAGIC.len()..HEADER_LEN] != checksum(key, &bytes[HEADER_LEN..]) {
            return None;
        }
        bytes.drain(..HEADER_LEN);
        Some(bytes)
    }

    fn write(&self, key: &[u8], value: &[u8]) -> std::io::Result<u64> {
        let mut data = Vec::with_capacity(HEADER_LEN + value.len());
        data.extend_from_slice(MAGIC);
        data.extend_from_slice(&checksum(key, value));
        data.extend_from_slice(value);
        crate::atomic_write::write_unsynced(&self.path(key), &data)?;
        Ok(data.len() as u64)
    }

    /// Removes the oldest entries until they take [`EVICT_TO_PERCENT`] of the limit.
    fn evict(&self) {
        let Ok(_guard) = self.evicting.try_lock() else {
            return;
        };
        let mut found = entries(&self.dir);
        let mut total: u64 = found.iter().map(|e| e.1).sum();
        let target = self.max_bytes / 100 * EVICT_TO_PERCENT;
        found.sort_by_key(|e| e.2);
        for (path, size, _) in found {
            if total <= target {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total = total.saturating_sub(size);
            }
        }
        self.bytes.store(total, Ordering::Relaxed);
    }
}

/// The checksum an entry carries: of its key and its value, so that an entry found under another
/// function's name (however it got there) does not check out.
fn checksum(key: &[u8], value: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update((key.len() as u64).to_le_bytes());
    hasher.update(key);
    hasher.update(value);
    hasher.finalize().into()
}

/// A digest of the code sections of every core module in `component`, in order: two builds
/// with the same digest have the same functions (a JS or Python guest whose script changed, over
/// the same engine). `None` if the bytes do not parse.
pub fn code_digest(component: &[u8]) -> Option<[u8; 32]> {
    use wasmparser::{Parser, Payload};
    let mut hasher = Sha256::new();
    hasher.update(b"hotswap code digest 1");
    for payload in Parser::new(0).parse_all(component) {
        if let Payload::CodeSectionStart { range, .. } = payload.ok()? {
            let code = component.get(range)?;
            hasher.update((code.len() as u64).to_le_bytes());
            hasher.update(code);
        }
    }
    Some(hasher.finalize().into())
}

/// The entries of `dir`: path, size, write time.
fn entries(dir: &Path) -> Vec<(PathBuf, u64, SystemTime)> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    read.flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".fn"))
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            Some((e.path(), meta.len(), meta.modified().ok()?))
        })
        .collect()
}

impl wasmtime::CacheStore for DiskStore {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        let memo = wasm_memo::is_memo_key(key);
        match self.read(key) {
            Some(value) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                if memo {
                    self.untranslated.fetch_add(1, Ordering::Relaxed);
                }
                Some(Cow::Owned(value))
            }
            // The function is looked up under Cranelift's key next, and counted there.
            None if memo => None,
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        match self.write(key, &value) {
            Ok(written) => {
                let total = self.bytes.fetch_add(written, Ordering::Relaxed) + written;
                if total > self.max_bytes {
                    self.evict();
                }
                true
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::CacheStore;

    #[test]
    fn entries_round_trip_and_a_damaged_one_is_a_miss() {
        let dir = crate::test_dir("incremental");
        let store = DiskStore::open(&dir, 1 << 20).unwrap();
        assert!(store.get(b"f1").is_none());
        assert!(store.insert(b"f1", b"machine code".to_vec()));
        assert_eq!(store.get(b"f1").as_deref(), Some(&b"machine code"[..]));
        assert_eq!(
            store.counts(),
            Counts {
                hits: 1,
                misses: 1,
                untranslated: 0
            }
        );

        // Flip a byte of the value, then truncate the file: both are misses, not errors.
        let path = store.path(b"f1");
        let mut bytes = std::fs::read(&path).unwrap();
        *bytes.last_mut().unwrap() ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert!(store.get(b"f1").is_none());
        std::fs::write(&path, &bytes[..10]).unwrap();
        assert!(store.get(b"f1").is_none());
        std::fs::write(&path, b"").unwrap();
        assert!(store.get(b"f1").is_none());
        // Written again, it is good again.
        assert!(store.insert(b"f1", b"machine code".to_vec()));
        assert!(store.get(b"f1").is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The checksum covers the key: a whole, undamaged entry found under another function's
    /// name (as a collision of two writers' temporary files once put it there) is a miss.
    #[test]
    fn an_entry_under_another_functions_name_is_a_miss() {
        let dir = crate::test_dir("incremental");
        let store = DiskStore::open(&dir, 1 << 20).unwrap();
        assert!(store.insert(b"f1", b"code of f1".to_vec()));
        assert!(store.insert(b"f2", b"code of f2".to_vec()));
        std::fs::copy(store.path(b"f1"), store.path(b"f2")).unwrap();
        assert!(store.get(b"f2").is_none());
        assert_eq!(store.get(b"f1").as_deref(), Some(&b"code of f1"[..]));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_function_found_by_its_wasm_counts_once_as_an_untranslated_hit() {
        let dir = crate::test_dir("incremental");
        let store = DiskStore::open(&dir, 1 << 20).unwrap();
        let memo_key = [&wasm_memo::KEY_PREFIX[..], &[9; 32]].concat();
        let cranelift_key = [9u8; 32];
        // First compile: the memo misses (not counted), then Cranelift's key misses.
        assert!(store.get(&memo_key).is_none());
        assert!(store.get(&cranelift_key).is_none());
        assert!(store.insert(&cranelift_key, b"stencil".to_vec()));
        assert!(store.insert(&memo_key, b"entry".to_vec()));
        // Next compile: the memo hits, Cranelift's key is not looked up.
        assert_eq!(store.get(&memo_key).as_deref(), Some(&b"entry"[..]));
        assert_eq!(
            store.counts(),
            Counts {
                hits: 1,
                misses: 1,
                untranslated: 1
            }
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_store_stays_within_its_limit_and_keeps_the_newest_entries() {
        let dir = crate::test_dir("incremental");
        let store = DiskStore::open(&dir, 10_000).unwrap();
        for i in 0..100u32 {
            assert!(store.insert(&i.to_le_bytes(), vec![7; 500]));
            // Distinct write times, so "oldest" is well defined.
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let total: u64 = entries(&dir).iter().map(|e| e.1).sum();
        assert!(total <= 10_000, "{total} bytes on disk");
        assert!(
            store.get(&99u32.to_le_bytes()).is_some(),
            "the newest was evicted"
        );
        assert!(
            store.get(&0u32.to_le_bytes()).is_none(),
            "the oldest was kept"
        );
        // A second host on the same directory sees the entries the first one left.
        let other = DiskStore::open(&dir, 10_000).unwrap();
        assert!(other.get(&99u32.to_le_bytes()).is_some());
        assert_eq!(other.bytes.load(Ordering::Relaxed), total);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Two hosts on one cache directory (here two stores in one process), each with compile
    /// threads writing and reading the same functions while evictions run: a lookup finds a
    /// function's own entry or nothing, never another function's, and no temporary file is
    /// left behind. (Temporary names of hosts in different processes with the same PID are
    /// kept apart by `atomic_write`'s random part; an entry that still ends up under another
    /// function's name is the next test's.)
    #[test]
    fn hosts_sharing_the_directory_never_read_another_functions_entry() {
        let dir = crate::test_dir("incremental");
        let value = |k: u32| -> Vec<u8> { k.to_le_bytes().repeat(16 + (k % 5) as usize * 64) };
        // Small enough that evictions run throughout.
        let stores = [
            DiskStore::open(&dir, 16 << 10).unwrap(),
            DiskStore::open(&dir, 16 << 10).unwrap(),
        ];
        std::thread::scope(|scope| {
            for (host, store) in stores.iter().enumerate() {
                for thread in 0..2u32 {
                    scope.spawn(move || {
                        for round in 0..1000u32 {
                            let k = (round * 7 + thread * 13 + host as u32 * 5) % 61;
                            store.insert(&k.to_le_bytes(), value(k));
                            let r = (round * 11 + thread * 3 + host as u32) % 61;
                            if let Some(found) = store.get(&r.to_le_bytes()) {
                                assert_eq!(found.as_ref(), value(r).as_slice(), "function {r}");
                            }
                        }
                    });
                }
            }
        });
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| !name.ends_with(".fn"))
            .collect();
        assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
