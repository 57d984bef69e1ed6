//! `hotswap.toml`: the file form of every setting, in sections.
//!
//! Values are kept as written (durations and sizes as strings) and checked when merged in
//! [`crate::config`], so an error can name both the key and the file. Unknown keys are errors.

use crate::wasi::config_store::ConfigValues;
use anyhow::{Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The name looked for in the working directory when `--config` is not given.
pub const DEFAULT_FILE: &str = "hotswap.toml";

/// A parsed configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `[server]`
    #[serde(default)]
    pub server: ServerSection,
    /// `[component]`
    #[serde(default)]
    pub component: ComponentSection,
    /// `[watch]`
    #[serde(default)]
    pub watch: WatchSection,
    /// `[build]`
    pub build: Option<BuildSection>,
    /// `[limits]`
    #[serde(default)]
    pub limits: LimitsSection,
    /// `[cache]`
    #[serde(default)]
    pub cache: CacheSection,
    /// `[admin]`
    #[serde(default)]
    pub admin: AdminSection,
    /// `[log]`
    #[serde(default)]
    pub log: LogSection,
    /// `[keyvalue]`
    #[serde(default)]
    pub keyvalue: KeyValueSection,
    /// `[registry]`
    #[serde(default)]
    pub registry: RegistrySection,
    /// `[[route]]`: one table per route (instead of `component.path`).
    #[serde(default)]
    pub route: Vec<RouteSection>,
    /// `[apps]`: a drop-in directory of components, one route each.
    #[serde(default)]
    pub apps: AppsSection,
}

/// `[[route]]`: one component served under a path prefix, with optional overrides of the
/// global `[component]` and `[limits]` settings, and a build of its own.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    /// `prefix = "/api"`
    pub prefix: Option<String>,
    /// `name = "api"` (default: from the prefix; `/` is `index`)
    pub name: Option<String>,
    /// `path = "api.wasm"` (relative to the file)
    pub path: Option<PathBuf>,
    /// `source = "oci://registry.example.com/api:v1"`
    pub source: Option<String>,
    /// `env = { KEY = "value" }`: this route's guest environment
    pub env: Option<BTreeMap<String, String>>,
    /// `allow_outbound = ["api.example.com"]`
    pub allow_outbound: Option<Vec<String>>,
    /// `request_timeout = "30s"`
    pub request_timeout: Option<String>,
    /// `max_memory = "128MiB"`
    pub max_memory: Option<String>,
    /// `max_concurrency = 100`
    pub max_concurrency: Option<usize>,
    /// `queue_timeout = "1s"`
    pub queue_timeout: Option<String>,
    /// `instance_reuse = 1` (requests per WASI 0.3 instance; 1: a fresh one each)
    pub instance_reuse: Option<usize>,
    /// `instance_reuse_concurrency = 16`
    pub instance_reuse_concurrency: Option<usize>,
    /// `tier = "auto"` (or `"fast"`: Winch, `"optimized"`: Cranelift)
    pub tier: Option<crate::cli::TierMode>,
    /// `max_body_size = "10MiB"`
    pub max_body_size: Option<String>,
    /// `max_guest_output = "1MiB"`
    pub max_guest_output: Option<String>,
    /// `keyvalue_namespace = "api"` (default: the component file's stem)
    pub keyvalue_namespace: Option<String>,
    /// `[route.build]`: this route's own rebuild on save
    pub build: Option<BuildSection>,
}

/// `[apps]`: serve every `NAME.wasm` of a directory at `/NAME` (`index.wasm` at `/`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppsSection {
    /// `dir = "apps"` (relative to the file)
    pub dir: Option<PathBuf>,
    /// `max_apps = 16`
    pub max_apps: Option<usize>,
}

/// `[registry]`: following a component in an OCI registry (`component.source = "oci://…"`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySection {
    /// `poll_interval = "10s"`
    pub poll_interval: Option<String>,
    /// `pull_timeout = "5m"`: deadline of one poll, a new digest's pull included
    pub pull_timeout: Option<String>,
    /// `insecure = ["registry.local:5000"]`: plain HTTP (loopback registries always are)
    pub insecure: Option<Vec<String>>,
    /// `username = "…"`
    pub username: Option<String>,
    /// `password = "…"` (prefer `HOTSWAP_REGISTRY_PASSWORD`)
    pub password: Option<String>,
}

/// `[server]`: the HTTP listener.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// `addr = "127.0.0.1:8080"`
    pub addr: Option<String>,
    /// `mode = "dev" | "prod"`
    pub mode: Option<crate::cli::Mode>,
    /// `shutdown_timeout = "30s"`
    pub shutdown_timeout: Option<String>,
}

/// `[component]`: what is served.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentSection {
    /// `path = "app.wasm"` (relative to the file)
    pub path: Option<PathBuf>,
    /// `source = "oci://registry.example.com/app:v1"`: a registry component instead of a file
    pub source: Option<String>,
    /// `require = true`
    pub require: Option<bool>,
    /// `env = { KEY = "value" }`
    pub env: Option<BTreeMap<String, String>>,
    /// `[component.config]`: values guests read through `wasi:config/store` (strings, numbers
    /// or booleans; re-read without a restart).
    pub config: Option<BTreeMap<String, toml::Value>>,
}

/// `[keyvalue]`: the store behind `wasi:keyvalue`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyValueSection {
    /// `store = "sqlite" | "sqlite:PATH" | "memory" | "redis://HOST:PORT/DB"`
    pub store: Option<String>,
    /// `namespace = "app"` (default: the component file's stem)
    pub namespace: Option<String>,
    /// `max_value_size = "1MiB"`
    pub max_value_size: Option<String>,
    /// `max_keys = 100000` (per bucket)
    pub max_keys: Option<u64>,
}

/// `[watch]`: the component file watch.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchSection {
    /// `enabled = false`
    pub enabled: Option<bool>,
    /// `debounce = "150ms"`
    pub debounce: Option<String>,
    /// `mode = "native" | "poll"` (poll: for network filesystems, which send no events)
    pub mode: Option<crate::cli::WatchMode>,
    /// `poll_interval = "1s"` (with `mode = "poll"`)
    pub poll_interval: Option<String>,
}

/// `[build]`: rebuild on save (dev mode).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildSection {
    /// `cmd = "cargo build --profile iterate --target wasm32-wasip2"`
    pub cmd: Option<String>,
    /// `dir = "guest-example"` (relative to the file)
    pub dir: Option<PathBuf>,
    /// `watch = ["src", "Cargo.toml"]` (relative to the file)
    pub watch: Option<Vec<PathBuf>>,
    /// `include_ext = ["rs", "toml", "wit"]`
    pub include_ext: Option<Vec<String>>,
    /// `exclude_dir = ["node_modules"]` (`target` is always excluded)
    pub exclude_dir: Option<Vec<String>>,
    /// `delay = "20ms"`
    pub delay: Option<String>,
    /// `timeout = "10m"`
    pub timeout: Option<String>,
}

/// `[limits]`: bounds on guests and clients.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// `request_timeout = "30s"`
    pub request_timeout: Option<String>,
    /// `max_memory = "128MiB"`
    pub max_memory: Option<String>,
    /// `max_concurrency = 100`
    pub max_concurrency: Option<usize>,
    /// `queue_timeout = "1s"`
    pub queue_timeout: Option<String>,
    /// `instance_reuse = 1` (requests per WASI 0.3 instance; 1: a fresh one each)
    pub instance_reuse: Option<usize>,
    /// `instance_reuse_concurrency = 16`
    pub instance_reuse_concurrency: Option<usize>,
    /// `tier = "auto"` (or `"fast"`: Winch, `"optimized"`: Cranelift)
    pub tier: Option<crate::cli::TierMode>,
    /// `max_body_size = "10MiB"`
    pub max_body_size: Option<String>,
    /// `max_headers = 100`
    pub max_headers: Option<usize>,
    /// `max_header_bytes = "64KiB"`
    pub max_header_bytes: Option<String>,
    /// `header_read_timeout = "10s"`
    pub header_read_timeout: Option<String>,
    /// `write_timeout = "30s"`
    pub write_timeout: Option<String>,
    /// `idle_timeout = "60s"`
    pub idle_timeout: Option<String>,
    /// `max_guest_output = "1MiB"` (per request, stdout and stderr together)
    pub max_guest_output: Option<String>,
    /// `max_component_size = "256MiB"` (files, uploads and registry layers)
    pub max_component_size: Option<String>,
    /// `allow_outbound = ["api.example.com"]`
    pub allow_outbound: Option<Vec<String>>,
}

/// `[cache]`: compiled-component cache and kept generations.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSection {
    /// `enabled = true`
    pub enabled: Option<bool>,
    /// `dir = "/var/cache/hotswap"` (relative to the file)
    pub dir: Option<PathBuf>,
    /// `keep_generations = 3`
    pub keep_generations: Option<usize>,
    /// `incremental_size = "1GiB"` (0: no incremental compilation cache)
    pub incremental_size: Option<String>,
}

/// `[admin]`: the admin listener.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// `addr = "127.0.0.1:9090"`
    pub addr: Option<String>,
    /// `token = "…"` (prefer `HOTSWAP_ADMIN_TOKEN`)
    pub token: Option<String>,
    /// `timeout = "120s"`: the deadline of one admin call
    pub timeout: Option<String>,
}

/// `[log]`: log output.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// `format = "pretty" | "json"`
    pub format: Option<crate::cli::LogFormat>,
}

/// A configuration file and where it was read from.
pub struct Loaded {
    /// The parsed settings.
    pub file: FileConfig,
    /// The file's path, for error messages.
    pub path: PathBuf,
    /// Its directory: relative paths in the file are relative to it.
    pub dir: PathBuf,
}

impl Loaded {
    /// Resolves a path written in the file against the file's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }
}

/// Reads `explicit`, or `hotswap.toml` in the working directory if it exists.
pub fn load(explicit: Option<&Path>) -> Result<Option<Loaded>> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => {
            let p = PathBuf::from(DEFAULT_FILE);
            if !p.is_file() {
                return Ok(None);
            }
            p
        }
    };
    let path = std::path::absolute(&path)
        .with_context(|| format!("cannot resolve `{}`", path.display()))?;
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("failed to read the configuration file `{}`", path.display()))?;
    let file: FileConfig = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("invalid configuration file `{}`: {e}", path.display()))?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok(Some(Loaded { file, path, dir }))
}

/// The `[component.config]` values of a loaded file, as strings.
pub fn config_values(loaded: &Loaded) -> Result<ConfigValues> {
    let Some(table) = &loaded.file.component.config else {
        return Ok(ConfigValues::default());
    };
    let mut values = BTreeMap::new();
    for (key, value) in table {
        let text = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            _ => anyhow::bail!(
                "`component.config.{key}` in `{}` must be a string, a number or a boolean",
                loaded.path.display()
            ),
        };
        values.insert(key.clone(), text);
    }
    Ok(ConfigValues(values))
}

/// The starter file `hotswap init` writes.
pub const STARTER: &str = r#"# hotswap.toml: settings for `hotswap serve`.
# Precedence: command-line flag > environment variable (HOTSWAP_*) > this file > default.
# Relative paths are relative to this file.

[server]
# addr = "127.0.0.1:8080"
# mode = "dev"               # dev | prod (prod: no builds, JSON logs, component required)
# shutdown_timeout = "30s"   # time in-flight requests get after SIGTERM/SIGINT

[component]
path = "app.wasm"            # the wasi:http/proxy component to serve and watch
# source = "oci://registry.example.com/app:v1"   # or follow a registry tag instead of a file
# require = false            # fail at startup if it is missing or invalid
# env = { GREETING = "hi" }  # the guest's whole environment

# Values guests read with wasi:config/store (re-read on save in dev mode, on SIGHUP or
# POST /reload in prod; --config-var KEY=VALUE wins). Never logged.
# [component.config]
# greeting = "hello"

[watch]
# enabled = true
# debounce = "150ms"
# mode = "native"            # native | poll (network filesystems send no file events)
# poll_interval = "1s"       # with mode = "poll"

# Rebuild on save (dev mode): source changes run `cmd`; its output lands at component.path.
# For fast rebuilds, build with a profile made for iteration (no LTO, incremental; about half
# a second for a small change) by adding it to the guest's Cargo.toml:
#   [profile.iterate]
#   inherits = "release"
#   opt-level = 1
#   lto = false
#   codegen-units = 256
#   incremental = true
# and point component.path at target/wasm32-wasip2/iterate/NAME.wasm.
# [build]
# cmd = "cargo build --profile iterate --target wasm32-wasip2"
# dir = "."
# watch = ["src", "Cargo.toml", "wit"]
# include_ext = ["rs", "toml", "lock", "wit"]
# exclude_dir = []           # target/ is always excluded
# delay = "20ms"
# timeout = "10m"

[limits]
# request_timeout = "30s"
# max_memory = "128MiB"      # per guest linear memory
# max_concurrency = 100
# queue_timeout = "1s"
# instance_reuse = 1         # requests per WASI 0.3 instance (1: a fresh instance each)
# instance_reuse_concurrency = 16  # at once per reused instance
# tier = "auto"              # auto | fast (Winch) | optimized (Cranelift); see --tier
# max_body_size = "10MiB"
# max_headers = 100
# max_header_bytes = "64KiB"
# header_read_timeout = "10s"
# write_timeout = "30s"      # a client that accepts no response bytes this long is cut
# idle_timeout = "60s"       # a connection with no request in progress this long is closed
# max_guest_output = "1MiB"  # per request, stdout and stderr together; the rest is dropped
# max_component_size = "256MiB"  # component files, uploads and registry layers
# allow_outbound = []        # e.g. ["api.example.com", "*.internal:8443"]

[cache]
# enabled = true
# dir = "~/.cache/hotswap"   # default: $XDG_CACHE_HOME/hotswap
# keep_generations = 3
# incremental_size = "1GiB" # Cranelift's per-function cache under dir/incremental (0: off)

[admin]
# addr = "127.0.0.1:9090"    # off unless set
# token = "…"                # better: HOTSWAP_ADMIN_TOKEN
# timeout = "120s"           # deadline of one admin call (an upload: reading, compiling, saving)

[log]
# format = "pretty"          # pretty | json

# Following a registry tag (component.source = "oci://..."): polled with a HEAD per interval.
[registry]
# poll_interval = "10s"
# pull_timeout = "5m"        # one poll, a new digest's manifest and layer included; a registry
#                            # that answers slower is cut, and the serving generation stays
# insecure = []              # registries reached over plain HTTP (loopback ones always are)
# username = "..."           # better: HOTSWAP_REGISTRY_USERNAME / HOTSWAP_REGISTRY_PASSWORD,
#                            # or an `auths` entry in ~/.docker/config.json

# Several components on one host: a [[route]] table each, instead of component.path. The
# longest matching prefix wins (on segment boundaries: /api matches /api/x, not /apix); a
# request no route matches gets 404. Each route has its own watcher, generations, rollback,
# concurrency cap and build; the keys below override the global ones for that route alone.
# [[route]]
# prefix = "/api"
# path = "api.wasm"          # or source = "oci://..."
# name = "api"               # default: from the prefix (`/` is `index`)
# env = { MODE = "api" }
# allow_outbound = []
# request_timeout = "5s"
# max_memory = "64MiB"
# max_concurrency = 20
# queue_timeout = "1s"
# instance_reuse = 1
# tier = "auto"
# max_body_size = "1MiB"
# max_guest_output = "64KiB"
# keyvalue_namespace = "api"
# [route.build]              # same keys as [build]
# cmd = "cargo build --profile iterate --target wasm32-wasip2"

# Or a drop-in directory: every NAME.wasm in it is served at /NAME, index.wasm at /.
# [apps]
# dir = "apps"
# max_apps = 16

# The store behind wasi:keyvalue; its state survives every swap and, but for memory, restarts.
[keyvalue]
# store = "sqlite"           # sqlite | sqlite:PATH | memory | redis://127.0.0.1:6379/0
#                            # (sqlite: $XDG_STATE_HOME/hotswap/keyvalue.sqlite3)
# namespace = "app"          # buckets are this app's alone; default: the component's file stem
# max_value_size = "1MiB"
# max_keys = 100000          # per bucket
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starter_file_parses() {
        let file: FileConfig = toml::from_str(STARTER).unwrap();
        assert_eq!(file.component.path.as_deref(), Some(Path::new("app.wasm")));
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = toml::from_str::<FileConfig>("[limits]\nmax_memroy = \"1MiB\"\n").unwrap_err();
        assert!(err.to_string().contains("max_memroy"), "{err}");
        let err = toml::from_str::<FileConfig>("[servr]\n").unwrap_err();
        assert!(err.to_string().contains("servr"), "{err}");
    }

    #[test]
    fn config_values_are_strings_numbers_or_booleans() {
        let loaded = |text: &str| Loaded {
            file: toml::from_str(text).unwrap(),
            path: PathBuf::from("/x/hotswap.toml"),
            dir: PathBuf::from("/x"),
        };
        let values = config_values(&loaded(
            "[component.config]\nname = \"a\"\nport = 8080\nratio = 0.5\non = true\n",
        ))
        .unwrap();
        let pairs: Vec<(&str, &str)> = values
            .0
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("name", "a"),
                ("on", "true"),
                ("port", "8080"),
                ("ratio", "0.5")
            ]
        );
        let err = config_values(&loaded("[component.config]\nlist = [1]\n")).unwrap_err();
        assert!(err.to_string().contains("component.config.list"), "{err}");
    }
}
