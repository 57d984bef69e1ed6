//! A shadow candidate's scratch space: its writes (sets, deletes, increments) land here, over
//! the real store it only reads, so a copy of a request cannot change the state the current
//! generation serves from. The space belongs to one canary and is dropped with it.
//!
//! Reads see the candidate's own writes first, then the real store. `list-keys` lists the real
//! store's page without the keys the candidate deleted, and adds the keys only it wrote to the
//! first page. The space holds at most `max_keys` entries and [`MAX_SCRATCH_BYTES`] of keys and
//! values over all buckets; past that, writes are refused (the guest gets an error, and its
//! response most likely mismatches).

use super::{BackendError, KeyPage, add_decimal};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Most bytes of keys and values one scratch space holds.
pub const MAX_SCRATCH_BYTES: usize = 16 << 20;

/// The candidate's writes per bucket (a value, or `None` for a key it deleted), and their
/// entries and bytes.
#[derive(Default)]
struct Writes {
    buckets: HashMap<String, BTreeMap<String, Option<Vec<u8>>>>,
    entries: usize,
    bytes: usize,
}

/// An entry's size: its key and its value.
fn size(key: &str, value: &Option<Vec<u8>>) -> usize {
    key.len() + value.as_ref().map_or(0, Vec::len)
}

/// One shadow candidate's writes.
#[derive(Default)]
pub(super) struct Scratch {
    writes: Mutex<Writes>,
}

/// What the scratch space knows of a key.
pub(super) enum Seen {
    /// The candidate wrote this value.
    Written(Vec<u8>),
    /// The candidate deleted it.
    Deleted,
    /// The candidate never touched it: the real store has the answer.
    Untouched,
}

impl Scratch {
    fn lock(&self) -> std::sync::MutexGuard<'_, Writes> {
        self.writes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the candidate wrote to `key` of `bucket`.
    pub(super) fn seen(&self, bucket: &str, key: &str) -> Seen {
        match self.lock().buckets.get(bucket).and_then(|b| b.get(key)) {
            Some(Some(value)) => Seen::Written(value.clone()),
            Some(None) => Seen::Deleted,
            None => Seen::Untouched,
        }
    }

    /// Records writes (`None`: a delete), unless the space would pass `max_keys` entries.
    pub(super) fn write(
        &self,
        bucket: &str,
        pairs: Vec<(String, Option<Vec<u8>>)>,
        max_keys: u64,
    ) -> Result<(), BackendError> {
        let mut writes = self.lock();
        let known = writes.buckets.get(bucket);
        let old = |k: &String| known.and_then(|b| b.get(k));
        let new = pairs.iter().filter(|(k, _)| old(k).is_none()).count();
        let grown: usize = pairs.iter().map(|(k, v)| size(k, v)).sum();
        let freed: usize = pairs
            .iter()
            .filter_map(|(k, _)| old(k).map(|v| size(k, v)))
            .sum();
        let bytes = (writes.bytes + grown).saturating_sub(freed);
        if (writes.entries + new) as u64 > max_keys || bytes > MAX_SCRATCH_BYTES {
            return Err(BackendError::Refused(format!(
                "the shadow candidate's scratch space is full ({max_keys} keys or \
                 {MAX_SCRATCH_BYTES} bytes)"
            )));
        }
        writes.entries += new;
        writes.bytes = bytes;
        writes
            .buckets
            .entry(bucket.to_string())
            .or_default()
            .extend(pairs);
        Ok(())
    }

    /// `delta` added to `now` (the value the candidate sees), written here; the sum.
    pub(super) fn increment(
        &self,
        bucket: &str,
        key: &str,
        now: Option<&[u8]>,
        delta: u64,
        max_keys: u64,
    ) -> Result<u64, BackendError> {
        let sum = add_decimal(key, now, delta)?;
        let value = Some(sum.to_string().into_bytes());
        self.write(bucket, vec![(key.to_string(), value)], max_keys)?;
        Ok(sum)
    }

    /// The real store's page `(keys, next)` of `bucket` as the candidate sees it: without its
    /// deletes and, on the first page (`cursor` 0), with the keys only it wrote.
    pub(super) fn list(&self, bucket: &str, cursor: u64, (keys, next): KeyPage) -> KeyPage {
        let writes = self.lock();
        let Some(mine) = writes.buckets.get(bucket) else {
            return (keys, next);
        };
        let mut listed: Vec<String> = keys
            .into_iter()
            .filter(|k| !matches!(mine.get(k), Some(None)))
            .collect();
        if cursor == 0 {
            let real: std::collections::HashSet<String> = listed.iter().cloned().collect();
            listed.extend(
                mine.iter()
                    .filter(|(k, v)| v.is_some() && !real.contains(*k))
                    .map(|(k, _)| k.clone()),
            );
        }
        (listed, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_shadow_the_real_store_and_stay_bounded() {
        let scratch = Scratch::default();
        assert!(matches!(scratch.seen("b", "k"), Seen::Untouched));
        scratch
            .write("b", vec![("k".into(), Some(b"1".to_vec()))], 2)
            .unwrap();
        scratch.write("b", vec![("gone".into(), None)], 2).unwrap();
        assert!(matches!(scratch.seen("b", "k"), Seen::Written(v) if v == b"1"));
        assert!(matches!(scratch.seen("b", "gone"), Seen::Deleted));
        assert!(matches!(scratch.seen("other", "k"), Seen::Untouched));
        // Rewriting a key it holds is fine; a third key is not.
        assert_eq!(scratch.increment("b", "k", Some(b"1"), 2, 2).unwrap(), 3);
        assert!(scratch.write("c", vec![("x".into(), None)], 2).is_err());
        // Bytes are bounded too, whatever the key count allows.
        let big = Scratch::default();
        let half = vec![0u8; MAX_SCRATCH_BYTES / 2];
        big.write("b", vec![("one".into(), Some(half.clone()))], 100)
            .unwrap();
        assert!(
            big.write("b", vec![("two".into(), Some(half.clone()))], 100)
                .is_err()
        );
        // Rewriting a key frees what it held.
        big.write("b", vec![("one".into(), Some(half))], 100)
            .unwrap();
        let page = (vec!["a".to_string(), "gone".to_string()], None);
        let (keys, _) = scratch.list("b", 0, page);
        assert_eq!(keys, ["a", "k"]);
    }
}
