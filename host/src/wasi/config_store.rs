//! `wasi:config/store`: the runtime values guests read, from `[component.config]` in
//! `hotswap.toml` and `--config-var KEY=VALUE` (a flag wins over the file).
//!
//! The values live in an `arc-swap` cell, like a generation: each request takes the set that is
//! current when it starts and keeps it to its end. Re-reading the file (on save in dev mode, on
//! SIGHUP or `POST /reload` in any mode) swaps in a new set without a restart and without a new
//! component. Values are never logged, only the names of the keys that changed: they are
//! where secrets go.

use crate::metrics::Metrics;
use arc_swap::ArcSwap;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use wasmtime_wasi_config::WasiConfigVariables;

/// Reads the values of a configuration file again (the configuration layer knows how).
pub type Reread = Box<dyn Fn(&std::path::Path) -> anyhow::Result<ConfigValues> + Send + Sync>;

/// A set of values; its `Debug` shows the keys only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConfigValues(pub BTreeMap<String, String>);

impl fmt::Debug for ConfigValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl ConfigValues {
    /// `file`, with `overrides` on top.
    fn merged(file: &ConfigValues, overrides: &ConfigValues) -> ConfigValues {
        let mut all = file.0.clone();
        all.extend(overrides.0.iter().map(|(k, v)| (k.clone(), v.clone())));
        ConfigValues(all)
    }
}

/// The values one request sees.
pub struct Snapshot {
    values: ConfigValues,
    /// The same values in the form `wasmtime-wasi-config` serves.
    pub vars: WasiConfigVariables,
}

impl Snapshot {
    fn new(values: ConfigValues) -> Self {
        let vars = values
            .0
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Snapshot { values, vars }
    }
}

/// The current values and where they come from.
pub struct GuestConfig {
    current: ArcSwap<Snapshot>,
    /// `--config-var` values, which every re-read keeps on top.
    overrides: ConfigValues,
    /// The configuration file, if the values came from one, and how to read them from it again.
    file: Option<(PathBuf, Reread)>,
    metrics: Arc<Metrics>,
    /// Serialises re-reads, so "what changed" is always relative to the last one.
    reloading: Mutex<()>,
}

impl GuestConfig {
    /// Values from `file_values` (read from `file`, if any, which `reread` reads again) under
    /// `overrides`.
    pub fn new(
        file_values: ConfigValues,
        overrides: ConfigValues,
        file: Option<(PathBuf, Reread)>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let values = ConfigValues::merged(&file_values, &overrides);
        GuestConfig {
            current: ArcSwap::from_pointee(Snapshot::new(values)),
            overrides,
            file,
            metrics,
            reloading: Mutex::new(()),
        }
    }

    /// The values a request starting now sees.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Re-reads `[component.config]` from the file and swaps in the new values if they differ.
    /// A file that cannot be read or parsed keeps the current values (and says why).
    pub fn reload(&self, trigger: &'static str) {
        let Some((file, reread)) = &self.file else {
            return;
        };
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let read = reread(file);
        let file_values = match read {
            Ok(values) => values,
            Err(err) => {
                self.metrics.config_reload("failed");
                tracing::warn!(path = %file.display(), trigger, "config values not reloaded: {err:#}; keeping the current values");
                return;
            }
        };
        let new = ConfigValues::merged(&file_values, &self.overrides);
        let old = self.snapshot();
        if old.values == new {
            self.metrics.config_reload("unchanged");
            tracing::debug!(path = %file.display(), trigger, "config values unchanged");
            return;
        }
        let changes = describe_changes(&old.values, &new);
        self.current.store(Arc::new(Snapshot::new(new)));
        self.metrics.config_reload("changed");
        tracing::info!(path = %file.display(), trigger, "reloaded config values ({changes}); new requests see them");
    }
}

/// `added: a, b; changed: c; removed: d`: key names only, never values.
fn describe_changes(old: &ConfigValues, new: &ConfigValues) -> String {
    let added: Vec<&str> = new
        .0
        .keys()
        .filter(|k| !old.0.contains_key(*k))
        .map(String::as_str)
        .collect();
    let removed: Vec<&str> = old
        .0
        .keys()
        .filter(|k| !new.0.contains_key(*k))
        .map(String::as_str)
        .collect();
    let changed: Vec<&str> = new
        .0
        .iter()
        .filter(|(k, v)| old.0.get(*k).is_some_and(|old| old != *v))
        .map(|(k, _)| k.as_str())
        .collect();
    [("added", added), ("changed", changed), ("removed", removed)]
        .into_iter()
        .filter(|(_, keys)| !keys.is_empty())
        .map(|(what, keys)| format!("{what}: {}", keys.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> ConfigValues {
        ConfigValues(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn changes_name_keys_never_values() {
        let old = values(&[("a", "1"), ("b", "secret-old"), ("c", "3")]);
        let new = values(&[("a", "1"), ("b", "secret-new"), ("d", "4")]);
        let text = describe_changes(&old, &new);
        assert_eq!(text, "added: d; changed: b; removed: c");
        assert!(!text.contains("secret"));
        assert_eq!(format!("{new:?}"), r#"{"a", "b", "d"}"#);
    }

    #[test]
    fn flags_win_over_the_file() {
        let merged = ConfigValues::merged(
            &values(&[("a", "file"), ("b", "file")]),
            &values(&[("a", "flag")]),
        );
        assert_eq!(merged, values(&[("a", "flag"), ("b", "file")]));
    }
}
