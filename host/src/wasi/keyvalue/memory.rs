//! The `memory` backend: buckets in a map of the host process. State survives swaps (the map
//! belongs to the host, not to a generation) and is gone when the process ends.

use super::{BackendError, KeyPage, PAGE, add_decimal, bucket_full};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

type Buckets = HashMap<(String, String), BTreeMap<String, Vec<u8>>>;

/// Every bucket of every namespace, behind one lock (each call holds it for a map operation).
#[derive(Default)]
pub(super) struct Memory {
    buckets: Mutex<Buckets>,
}

/// The keys of a bucket nobody wrote to.
static EMPTY: BTreeMap<String, Vec<u8>> = BTreeMap::new();

impl Memory {
    fn lock(&self) -> std::sync::MutexGuard<'_, Buckets> {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `f` on the bucket, created if missing: for writes.
    fn with<T>(
        &self,
        ns: &str,
        bucket: &str,
        f: impl FnOnce(&mut BTreeMap<String, Vec<u8>>) -> T,
    ) -> T {
        f(self
            .lock()
            .entry((ns.to_string(), bucket.to_string()))
            .or_default())
    }

    /// `f` on the bucket, or on an empty one: reads of bucket names never written leave no
    /// entry behind, so a guest probing names cannot grow the map.
    fn read<T>(
        &self,
        ns: &str,
        bucket: &str,
        f: impl FnOnce(&BTreeMap<String, Vec<u8>>) -> T,
    ) -> T {
        let buckets = self.lock();
        f(buckets
            .get(&(ns.to_string(), bucket.to_string()))
            .unwrap_or(&EMPTY))
    }

    pub(super) fn get_many(&self, ns: &str, bucket: &str, keys: &[String]) -> Vec<Option<Vec<u8>>> {
        self.read(ns, bucket, |map| {
            keys.iter().map(|k| map.get(k).cloned()).collect()
        })
    }

    pub(super) fn set_many(
        &self,
        ns: &str,
        bucket: &str,
        pairs: Vec<(String, Vec<u8>)>,
        max_keys: u64,
    ) -> Result<(), BackendError> {
        self.with(ns, bucket, |map| {
            let new = pairs.iter().filter(|(k, _)| !map.contains_key(k)).count() as u64;
            if new > 0 && map.len() as u64 + new > max_keys {
                return Err(bucket_full(bucket, max_keys));
            }
            map.extend(pairs);
            Ok(())
        })
    }

    pub(super) fn delete_many(&self, ns: &str, bucket: &str, keys: &[String]) {
        self.with(ns, bucket, |map| {
            for key in keys {
                map.remove(key);
            }
        })
    }

    pub(super) fn list_keys(&self, ns: &str, bucket: &str, cursor: u64) -> KeyPage {
        self.read(ns, bucket, |map| {
            let skip = usize::try_from(cursor).unwrap_or(usize::MAX);
            let keys: Vec<String> = map.keys().skip(skip).take(PAGE).cloned().collect();
            let next = skip.saturating_add(keys.len());
            let more = next < map.len();
            (keys, more.then_some(next as u64))
        })
    }

    pub(super) fn increment(
        &self,
        ns: &str,
        bucket: &str,
        key: &str,
        delta: u64,
        max_keys: u64,
    ) -> Result<u64, BackendError> {
        self.with(ns, bucket, |map| {
            let current = map.get(key);
            if current.is_none() && map.len() as u64 >= max_keys {
                return Err(bucket_full(bucket, max_keys));
            }
            let sum = add_decimal(key, current.map(Vec::as_slice), delta)?;
            map.insert(key.to_string(), sum.to_string().into_bytes());
            Ok(sum)
        })
    }
}
