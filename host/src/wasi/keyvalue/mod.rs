//! `wasi:keyvalue` (store, atomics, batch; `0.2.0-draft`) kept outside the guest, so state
//! outlives every instance, every swap and (with SQLite or Redis) every restart: new code, same
//! state.
//!
//! A guest opens a bucket by name (`""` is `default`); the host files it under the app's
//! namespace (`--keyvalue-namespace`, default: the component file's stem), so two apps sharing
//! a backend never see each other's keys. Values are byte strings; `increment` works on the
//! decimal text of an unsigned number, the same way on every backend. Limits (value size, keys
//! per bucket, key length, batch length) are errors the guest receives (`error::other`), and so
//! is a backend that is down: the host never traps the guest or crashes for them.
//!
//! Backends ([`StoreSpec`]): `sqlite` (default; a file per app, written in WAL mode, so a killed
//! process loses no acknowledged write), `memory` (gone with the process) and `redis://…` (shared
//! by a fleet of replicas). The store is opened on first use, so hosts whose guests never touch it
//! never create the file or connect.

mod host;
mod memory;
mod redis_store;
mod scratch;
mod sqlite;

pub use host::{KvView, add_to_linker};

use crate::metrics::Metrics;
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Default largest value, in bytes.
pub const DEFAULT_MAX_VALUE_SIZE: u64 = 1 << 20;
/// Default largest number of keys in one bucket.
pub const DEFAULT_MAX_KEYS: u64 = 100_000;
/// Largest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest number of keys in one batch call.
pub const MAX_BATCH: usize = 1000;
/// Keys per `list-keys` page.
const PAGE: usize = 1000;
/// Longest bucket or namespace name.
const MAX_NAME: usize = 64;

/// Which backend holds the state, as given to `--keyvalue`.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// `memory`: a map in the host process (survives swaps, not restarts).
    Memory,
    /// `sqlite:PATH`: a file.
    Sqlite(PathBuf),
    /// `sqlite`: a file per namespace in the state directory ([`default_sqlite_path`]).
    SqliteDefault,
    /// `redis://[user:password@]host[:port][/db]`.
    Redis(String),
}

impl StoreSpec {
    /// Parses `memory`, `sqlite`, `sqlite:PATH` or a `redis://` / `rediss://` URL.
    pub fn parse(s: &str) -> Result<StoreSpec, String> {
        let s = s.trim();
        if s == "memory" {
            return Ok(StoreSpec::Memory);
        }
        if s == "sqlite" {
            return Ok(StoreSpec::SqliteDefault);
        }
        if let Some(path) = s.strip_prefix("sqlite:") {
            if path.is_empty() {
                return Err("`sqlite:` needs a file path after the colon".into());
            }
            return std::path::absolute(path)
                .map(StoreSpec::Sqlite)
                .map_err(|e| format!("cannot resolve `{path}`: {e}"));
        }
        if s.starts_with("redis://") || s.starts_with("rediss://") || s.starts_with("redis+unix://")
        {
            redis::Client::open(s)
                .map_err(|e| format!("invalid Redis URL `{}`: {e}", redact(s)))?;
            return Ok(StoreSpec::Redis(s.to_string()));
        }
        Err(format!(
            "unknown key-value store `{}`: expected `sqlite`, `sqlite:PATH`, `memory` or a `redis://` URL",
            redact(s)
        ))
    }
}

impl fmt::Display for StoreSpec {
    /// The store as logs show it: a Redis URL without its password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreSpec::Memory => f.write_str("memory"),
            StoreSpec::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            StoreSpec::SqliteDefault => f.write_str("sqlite"),
            StoreSpec::Redis(url) => f.write_str(&redact(url)),
        }
    }
}

impl fmt::Debug for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `scheme://user:secret@host` → `scheme://user:***@host`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((auth, host)) = rest.rsplit_once('@') else {
        return url.to_string();
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => format!("{scheme}://***@{host}"),
    }
}

/// `$XDG_STATE_HOME/hotswap/keyvalue/NAMESPACE.sqlite3`, else under `~/.local/state`: one file
/// per app, so two apps on one machine each have theirs.
pub fn default_sqlite_path(namespace: &str) -> Result<PathBuf, String> {
    let state = match std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").filter(|h| !h.is_empty()).ok_or(
            "neither XDG_STATE_HOME nor HOME is set; pass `--keyvalue sqlite:PATH` or `--keyvalue memory`",
        )?)
        .join(".local/state"),
    };
    Ok(state.join(format!("hotswap/keyvalue/{namespace}.sqlite3")))
}

/// Checks a bucket or namespace name: 1 to 64 of `A-Z a-z 0-9 _ . -`.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid name: use 1 to {MAX_NAME} of the characters A-Z a-z 0-9 _ . -"
        ))
    }
}

/// The key-value settings, validated.
#[derive(Debug, Clone)]
pub struct KvSettings {
    /// The backend.
    pub store: StoreSpec,
    /// Prefix of every bucket of this app.
    pub namespace: String,
    /// Largest value, in bytes.
    pub max_value_size: u64,
    /// Largest number of keys per bucket.
    pub max_keys: u64,
}

/// What a guest's key-value call failed with: a limit, a bad argument or a backend failure,
/// the text says which. The guest sees `error::other(text)`; every valid bucket name opens, so
/// there is no `no-such-store`.
#[derive(Debug)]
pub struct KvError(String);

impl From<wasmtime::component::ResourceTableError> for KvError {
    fn from(err: wasmtime::component::ResourceTableError) -> Self {
        KvError(err.to_string())
    }
}

/// An open bucket, as the guest's `bucket` resource.
pub struct Bucket {
    name: String,
}

/// A page of keys and where the next starts.
type KeyPage = (Vec<String>, Option<u64>);

/// A failure inside a backend: either the guest's fault (a limit, a non-number to increment),
/// reported as is, or the backend's (down, full disk), which is also logged.
#[derive(Debug)]
pub(crate) enum BackendError {
    /// The request cannot be done: the text says why.
    Refused(String),
    /// The backend failed.
    Unavailable(String),
}

/// The key-value store of one host: a backend, the app's namespace, the limits.
pub struct KeyValue {
    backend: Arc<Backend>,
    settings: KvSettings,
    metrics: Arc<Metrics>,
    /// Whether the last backend call failed, so an outage is logged once, not per call.
    failing: AtomicBool,
    /// The default SQLite store is a file per namespace: the files opened so far, shared by
    /// every view of the same namespace (each file's lock is held by one connection).
    sqlite_files: Arc<Mutex<HashMap<String, Arc<Backend>>>>,
    /// A shadow candidate's view: its writes go here, and the backend is only read.
    scratch: Option<Arc<scratch::Scratch>>,
}

enum Backend {
    Memory(memory::Memory),
    Sqlite(sqlite::Sqlite),
    Redis(redis_store::Redis),
}

/// The default SQLite file of `namespace`, opened once per host.
fn sqlite_file(
    files: &Mutex<HashMap<String, Arc<Backend>>>,
    namespace: &str,
) -> anyhow::Result<Arc<Backend>> {
    let mut files = files.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(backend) = files.get(namespace) {
        return Ok(backend.clone());
    }
    let path = default_sqlite_path(namespace).map_err(anyhow::Error::msg)?;
    let backend = Arc::new(Backend::Sqlite(sqlite::Sqlite::new(path)));
    files.insert(namespace.to_string(), backend.clone());
    Ok(backend)
}

impl KeyValue {
    /// The store `settings` describe. Nothing is opened or connected yet (a Redis connection is
    /// made lazily, so this must run inside the tokio runtime).
    pub fn new(settings: KvSettings, metrics: Arc<Metrics>) -> anyhow::Result<KeyValue> {
        let sqlite_files = Arc::new(Mutex::new(HashMap::new()));
        let backend = match &settings.store {
            StoreSpec::Memory => Arc::new(Backend::Memory(memory::Memory::default())),
            StoreSpec::Sqlite(path) => Arc::new(Backend::Sqlite(sqlite::Sqlite::new(path.clone()))),
            StoreSpec::SqliteDefault => sqlite_file(&sqlite_files, &settings.namespace)?,
            StoreSpec::Redis(url) => Arc::new(Backend::Redis(redis_store::Redis::new(url)?)),
        };
        Ok(KeyValue {
            backend,
            settings,
            metrics,
            failing: AtomicBool::new(false),
            sqlite_files,
            scratch: None,
        })
    }

    /// The same store seen through `namespace`: one app's buckets, apart from every other
    /// app's. A backend is shared, never opened twice.
    pub fn for_namespace(&self, namespace: &str) -> anyhow::Result<KeyValue> {
        check_name(namespace).map_err(anyhow::Error::msg)?;
        let backend = match &self.settings.store {
            StoreSpec::SqliteDefault => sqlite_file(&self.sqlite_files, namespace)?,
            _ => self.backend.clone(),
        };
        Ok(KeyValue {
            backend,
            settings: KvSettings {
                namespace: namespace.to_string(),
                ..self.settings.clone()
            },
            metrics: self.metrics.clone(),
            failing: AtomicBool::new(false),
            sqlite_files: self.sqlite_files.clone(),
            scratch: None,
        })
    }

    /// The same namespace as a shadow candidate sees it: it reads the real state, but its
    /// writes go to a scratch space of its own, dropped with the returned store
    /// (`keyvalue/scratch.rs`).
    pub fn scratch(&self) -> KeyValue {
        KeyValue {
            backend: self.backend.clone(),
            settings: self.settings.clone(),
            metrics: self.metrics.clone(),
            failing: AtomicBool::new(false),
            sqlite_files: self.sqlite_files.clone(),
            scratch: Some(Arc::default()),
        }
    }

    /// Times and counts one operation; logs a backend outage once and its end once.
    async fn run<T>(
        &self,
        op: &'static str,
        call: impl Future<Output = Result<T, BackendError>>,
    ) -> Result<T, KvError> {
        let started = Instant::now();
        let result = call.await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(BackendError::Refused(_)) => "refused",
            Err(BackendError::Unavailable(_)) => "error",
        };
        self.metrics.keyvalue_op(op, outcome, started.elapsed());
        match result {
            Ok(value) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(store = %self.settings.store, "key-value store reachable again");
                }
                Ok(value)
            }
            Err(BackendError::Refused(reason)) => Err(KvError(reason)),
            Err(BackendError::Unavailable(reason)) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(store = %self.settings.store, op, error = %reason, "key-value store unavailable; guests get an error until it is back");
                }
                Err(KvError(format!("key-value store unavailable: {reason}")))
            }
        }
    }

    fn check_key(&self, key: &str) -> Result<(), BackendError> {
        if key.len() > MAX_KEY_BYTES {
            return Err(BackendError::Refused(format!(
                "the key is {} bytes, more than the {MAX_KEY_BYTES} byte limit",
                key.len()
            )));
        }
        Ok(())
    }

    fn check_value(&self, key: &str, value: &[u8]) -> Result<(), BackendError> {
        self.check_key(key)?;
        if value.len() as u64 > self.settings.max_value_size {
            return Err(BackendError::Refused(format!(
                "the value of `{key}` is {} bytes, more than the {} byte limit",
                value.len(),
                self.settings.max_value_size
            )));
        }
        Ok(())
    }

    fn check_batch(n: usize) -> Result<(), BackendError> {
        if n > MAX_BATCH {
            return Err(BackendError::Refused(format!(
                "a batch of {n} keys is more than the {MAX_BATCH} key limit"
            )));
        }
        Ok(())
    }

    // Each operation checks its arguments once, then goes to the backend or, for a shadow
    // candidate, to its scratch space over the backend.

    async fn get_many(
        &self,
        bucket: &str,
        keys: Vec<String>,
    ) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        Self::check_batch(keys.len())?;
        for key in &keys {
            self.check_key(key)?;
        }
        let Some(scratch) = &self.scratch else {
            return self.backend_get_many(bucket, keys).await;
        };
        let seen: Vec<scratch::Seen> = keys.iter().map(|k| scratch.seen(bucket, k)).collect();
        let unknown: Vec<String> = keys
            .iter()
            .zip(&seen)
            .filter(|(_, s)| matches!(s, scratch::Seen::Untouched))
            .map(|(k, _)| k.clone())
            .collect();
        let mut real = if unknown.is_empty() {
            Vec::new()
        } else {
            self.backend_get_many(bucket, unknown).await?
        }
        .into_iter();
        Ok(seen
            .into_iter()
            .map(|s| match s {
                scratch::Seen::Written(value) => Some(value),
                scratch::Seen::Deleted => None,
                scratch::Seen::Untouched => real.next().flatten(),
            })
            .collect())
    }

    async fn set_many(
        &self,
        bucket: &str,
        pairs: Vec<(String, Vec<u8>)>,
    ) -> Result<(), BackendError> {
        Self::check_batch(pairs.len())?;
        for (key, value) in &pairs {
            self.check_value(key, value)?;
        }
        let (ns, max) = (&self.settings.namespace, self.settings.max_keys);
        if let Some(scratch) = &self.scratch {
            let pairs = pairs.into_iter().map(|(k, v)| (k, Some(v))).collect();
            return scratch.write(bucket, pairs, max);
        }
        match &*self.backend {
            Backend::Memory(m) => m.set_many(ns, bucket, pairs, max),
            Backend::Sqlite(s) => s.set_many(ns, bucket, &pairs, max),
            Backend::Redis(r) => r.set_many(ns, bucket, &pairs, max).await,
        }
    }

    async fn delete_many(&self, bucket: &str, keys: Vec<String>) -> Result<(), BackendError> {
        Self::check_batch(keys.len())?;
        for key in &keys {
            self.check_key(key)?;
        }
        if let Some(scratch) = &self.scratch {
            let deletes = keys.into_iter().map(|k| (k, None)).collect();
            return scratch.write(bucket, deletes, self.settings.max_keys);
        }
        let ns = &self.settings.namespace;
        match &*self.backend {
            Backend::Memory(m) => {
                m.delete_many(ns, bucket, &keys);
                Ok(())
            }
            Backend::Sqlite(s) => s.delete_many(ns, bucket, &keys),
            Backend::Redis(r) => r.delete_many(ns, bucket, &keys).await,
        }
    }

    async fn list_keys(&self, bucket: &str, cursor: u64) -> Result<KeyPage, BackendError> {
        let ns = &self.settings.namespace;
        let page = match &*self.backend {
            Backend::Memory(m) => m.list_keys(ns, bucket, cursor),
            Backend::Sqlite(s) => s.list_keys(ns, bucket, cursor)?,
            Backend::Redis(r) => r.list_keys(ns, bucket, cursor).await?,
        };
        Ok(match &self.scratch {
            Some(scratch) => scratch.list(bucket, cursor, page),
            None => page,
        })
    }

    async fn increment(&self, bucket: &str, key: &str, delta: u64) -> Result<u64, BackendError> {
        self.check_key(key)?;
        let (ns, max) = (&self.settings.namespace, self.settings.max_keys);
        if let Some(scratch) = &self.scratch {
            let now = self
                .get_many(bucket, vec![key.to_string()])
                .await?
                .pop()
                .flatten();
            return scratch.increment(bucket, key, now.as_deref(), delta, max);
        }
        match &*self.backend {
            Backend::Memory(m) => m.increment(ns, bucket, key, delta, max),
            Backend::Sqlite(s) => s.increment(ns, bucket, key, delta, max),
            Backend::Redis(r) => r.increment(ns, bucket, key, delta, max).await,
        }
    }

    /// The backend's values of `keys` (checked by the caller).
    async fn backend_get_many(
        &self,
        bucket: &str,
        keys: Vec<String>,
    ) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        let ns = &self.settings.namespace;
        match &*self.backend {
            Backend::Memory(m) => Ok(m.get_many(ns, bucket, &keys)),
            Backend::Sqlite(s) => s.get_many(ns, bucket, &keys),
            Backend::Redis(r) => r.get_many(ns, bucket, &keys).await,
        }
    }
}

/// Adds `n` to the decimal text `current` (absent: 0), as every backend's `increment` does.
pub(crate) fn add_decimal(
    key: &str,
    current: Option<&[u8]>,
    delta: u64,
) -> Result<u64, BackendError> {
    let now = match current {
        None => 0,
        Some(bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                BackendError::Refused(format!(
                    "the value of `{key}` is not an unsigned decimal number"
                ))
            })?,
    };
    now.checked_add(delta).ok_or_else(|| {
        BackendError::Refused(format!("incrementing `{key}` by {delta} overflows a u64"))
    })
}

/// The error for a set that would add a key to a full bucket.
pub(crate) fn bucket_full(bucket: &str, max: u64) -> BackendError {
    BackendError::Refused(format!(
        "bucket `{bucket}` is full: it holds the limit of {max} keys"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_specs_parse_and_hide_passwords() {
        assert_eq!(StoreSpec::parse("memory"), Ok(StoreSpec::Memory));
        assert_eq!(StoreSpec::parse("sqlite"), Ok(StoreSpec::SqliteDefault));
        assert_eq!(
            StoreSpec::parse("sqlite:/tmp/kv.db"),
            Ok(StoreSpec::Sqlite(PathBuf::from("/tmp/kv.db")))
        );
        let redis = StoreSpec::parse("redis://app:hunter2@127.0.0.1:6379/0").unwrap();
        assert_eq!(redis.to_string(), "redis://app:***@127.0.0.1:6379/0");
        let err = StoreSpec::parse("postgres://app:hunter2@db").unwrap_err();
        assert!(err.contains("unknown key-value store"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        assert!(StoreSpec::parse("sqlite:").is_err());
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("default").is_ok());
        assert!(check_name("app-1.v2_x").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a:b").is_err());
        assert!(check_name(&"x".repeat(65)).is_err());
    }

    #[test]
    fn increments_work_on_decimal_text() {
        assert_eq!(add_decimal("k", None, 3).unwrap(), 3);
        assert_eq!(add_decimal("k", Some(b"41"), 1).unwrap(), 42);
        assert!(matches!(
            add_decimal("k", Some(b"forty"), 1),
            Err(BackendError::Refused(_))
        ));
        assert!(matches!(
            add_decimal("k", Some(u64::MAX.to_string().as_bytes()), 1),
            Err(BackendError::Refused(_))
        ));
    }
}
