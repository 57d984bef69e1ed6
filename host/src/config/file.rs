//! `hotswap.toml`: the file form of every setting, in sections.
//!
//! Values are typed as the file is read: durations (`"30s"`) by humantime and sizes
//! (`"128MiB"`) by bytesize, the parsers the flags use ([`de`]). An error names the key, the
//! value and the file; unknown keys are errors. `[limits]` and every `[[route]]` share the keys
//! of a route's guest limits ([`GuestLimitKeys`]): serde takes what the two sections leave over
//! (`flatten`), and [`load`] types it as its own table, so that a bad value there is named by
//! its own key too (`route[1].max_memory`).

use crate::cli::{LogFormat, Mode, TierMode, WatchMode};
use crate::wasi::config_store::ConfigValues;
use anyhow::{Context, Result};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The name looked for in the working directory when `--config` is not given.
pub const DEFAULT_FILE: &str = "hotswap.toml";

/// Typed values in the file, parsed as their flags are.
pub mod de {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    /// `"30s"`, `"150ms"`, `"2m"`.
    pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = String::deserialize(d)?;
        crate::cli::parse_duration(&text)
            .map(Some)
            .map_err(serde::de::Error::custom)
    }

    /// `"128MiB"`, `"64KiB"`, `"10MB"`, or a number of bytes.
    pub fn size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Size {
            Bytes(u64),
            Text(String),
        }
        match Size::deserialize(d)? {
            Size::Bytes(bytes) => Ok(Some(bytes)),
            Size::Text(text) => crate::cli::parse_size(&text)
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }
}

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
    /// `[otel]`: OpenTelemetry traces.
    #[serde(default)]
    pub otel: OtelSection,
    /// `[canary]`: every route's canary policy (`[route.canary]` overrides it per key).
    #[serde(default)]
    pub canary: super::canary::CanaryKeys,
}

/// The limits of a route's guests, as `[limits]` sets them for every route and a `[[route]]`
/// for itself alone. Unset keys take the value from the level above (a route's from
/// `[limits]`, `[limits]`'s from the defaults).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestLimitKeys {
    /// `request_timeout = "30s"`
    #[serde(default, deserialize_with = "de::duration")]
    pub request_timeout: Option<Duration>,
    /// `max_memory = "128MiB"`
    #[serde(default, deserialize_with = "de::size")]
    pub max_memory: Option<u64>,
    /// `max_concurrency = 100`
    pub max_concurrency: Option<usize>,
    /// `queue_timeout = "1s"`
    #[serde(default, deserialize_with = "de::duration")]
    pub queue_timeout: Option<Duration>,
    /// `instance_reuse = 1` (requests per WASI 0.3 instance; 1: a fresh one each)
    pub instance_reuse: Option<usize>,
    /// `instance_reuse_concurrency = 16`
    pub instance_reuse_concurrency: Option<usize>,
    /// `tier = "auto"` (or `"fast"`: Winch, `"optimized"`: Cranelift)
    pub tier: Option<TierMode>,
    /// `max_body_size = "10MiB"`
    #[serde(default, deserialize_with = "de::size")]
    pub max_body_size: Option<u64>,
    /// `max_guest_output = "1MiB"` (per request, stdout and stderr together)
    #[serde(default, deserialize_with = "de::size")]
    pub max_guest_output: Option<u64>,
    /// `allow_outbound = ["api.example.com"]`
    pub allow_outbound: Option<Vec<String>>,
}

/// `[[route]]`: one component served under a path prefix, with optional overrides of the
/// global `[component]` and `[limits]` settings, and a build of its own.
#[derive(Debug, Default, Deserialize)]
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
    /// `keyvalue_namespace = "api"` (default: the component file's stem)
    pub keyvalue_namespace: Option<String>,
    /// `[route.build]`: this route's own rebuild on save
    pub build: Option<BuildSection>,
    /// `[route.canary]`: this route's canary policy, key by key over `[canary]`
    #[serde(default)]
    pub canary: super::canary::CanaryKeys,
    /// Every other key: this route's guest limits, typed by [`load`] into `limits`.
    #[serde(flatten)]
    rest: toml::Table,
    /// This route's guest limits.
    #[serde(skip)]
    pub limits: GuestLimitKeys,
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
    #[serde(default, deserialize_with = "de::duration")]
    pub poll_interval: Option<Duration>,
    /// `pull_timeout = "5m"`: deadline of one poll, a new digest's pull included
    #[serde(default, deserialize_with = "de::duration")]
    pub pull_timeout: Option<Duration>,
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
    pub addr: Option<std::net::SocketAddr>,
    /// `mode = "dev" | "prod"`
    pub mode: Option<Mode>,
    /// `shutdown_timeout = "30s"`
    #[serde(default, deserialize_with = "de::duration")]
    pub shutdown_timeout: Option<Duration>,
    /// `upgrade_timeout = "2m"`: time the new process of a binary upgrade gets to be ready
    #[serde(default, deserialize_with = "de::duration")]
    pub upgrade_timeout: Option<Duration>,
    /// `[server.tls]`: serve HTTPS
    pub tls: Option<TlsSection>,
    /// `events_path = "/_hotswap/events"` (dev mode; `"off"`: no event stream)
    pub events_path: Option<String>,
    /// `live_reload = true` (dev mode: pages reload when their route's code changes)
    pub live_reload: Option<bool>,
}

/// `[server.tls]`: the listener's certificate and key, and more for other names.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// `cert = "tls/server.pem"`: the PEM certificate chain (relative to the file); the first
    /// pair, for clients that ask for no name or for one no pair has
    pub cert: Option<PathBuf>,
    /// `key = "tls/server.key"`: its PEM private key
    pub key: Option<PathBuf>,
    /// `[[server.tls.certificate]]`: another pair (`cert`, `key`), chosen for the names it is
    /// valid for (SNI)
    #[serde(default)]
    pub certificate: Vec<TlsPairSection>,
}

/// `[[server.tls.certificate]]`: one more certificate and key.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsPairSection {
    /// `cert = "tls/other.pem"`
    pub cert: PathBuf,
    /// `key = "tls/other.key"`
    pub key: PathBuf,
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
    #[serde(default, deserialize_with = "de::size")]
    pub max_value_size: Option<u64>,
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
    #[serde(default, deserialize_with = "de::duration")]
    pub debounce: Option<Duration>,
    /// `mode = "native" | "poll"` (poll: for network filesystems, which send no events)
    pub mode: Option<WatchMode>,
    /// `poll_interval = "1s"` (with `mode = "poll"`)
    #[serde(default, deserialize_with = "de::duration")]
    pub poll_interval: Option<Duration>,
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
    #[serde(default, deserialize_with = "de::duration")]
    pub delay: Option<Duration>,
    /// `timeout = "10m"`
    #[serde(default, deserialize_with = "de::duration")]
    pub timeout: Option<Duration>,
}

/// `[limits]`: bounds on guests (every route's, unless it sets its own) and on clients.
#[derive(Debug, Default, Deserialize)]
pub struct LimitsSection {
    /// `max_headers = 100`
    pub max_headers: Option<usize>,
    /// `max_header_bytes = "64KiB"`
    #[serde(default, deserialize_with = "de::size")]
    pub max_header_bytes: Option<u64>,
    /// `header_read_timeout = "10s"`
    #[serde(default, deserialize_with = "de::duration")]
    pub header_read_timeout: Option<Duration>,
    /// `write_timeout = "30s"`
    #[serde(default, deserialize_with = "de::duration")]
    pub write_timeout: Option<Duration>,
    /// `idle_timeout = "60s"`
    #[serde(default, deserialize_with = "de::duration")]
    pub idle_timeout: Option<Duration>,
    /// `max_component_size = "256MiB"` (files, uploads and registry layers)
    #[serde(default, deserialize_with = "de::size")]
    pub max_component_size: Option<u64>,
    /// Every other key: the guest limits of every route, typed by [`load`] into `guest`.
    #[serde(flatten)]
    rest: toml::Table,
    /// The guest limits of every route.
    #[serde(skip)]
    pub guest: GuestLimitKeys,
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
    #[serde(default, deserialize_with = "de::size")]
    pub incremental_size: Option<u64>,
}

/// `[admin]`: the admin listener.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// `addr = "127.0.0.1:9090"`
    pub addr: Option<std::net::SocketAddr>,
    /// `token = "…"` (prefer `HOTSWAP_ADMIN_TOKEN`)
    pub token: Option<String>,
    /// `timeout = "120s"`: the deadline of one admin call
    #[serde(default, deserialize_with = "de::duration")]
    pub timeout: Option<Duration>,
    /// `client_ca = "tls/clients-ca.pem"`: accept only admin clients with a certificate signed
    /// by this CA (the admin listener then serves TLS with `[server.tls]`'s certificates)
    pub client_ca: Option<PathBuf>,
}

/// `[log]`: log output.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// `format = "pretty" | "json"`
    pub format: Option<LogFormat>,
}

/// `[otel]`: OpenTelemetry traces, off unless `endpoint` is set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtelSection {
    /// `endpoint = "http://collector:4318"`: the OTLP/HTTP collector's base URL
    pub endpoint: Option<String>,
    /// `service_name = "shop"`
    pub service_name: Option<String>,
    /// `sampler = "parentbased_traceidratio"`
    pub sampler: Option<String>,
    /// `sampler_arg = 0.1`
    pub sampler_arg: Option<f64>,
    /// `[otel.resource]`: more resource attributes, `key = "value"`
    #[serde(default)]
    pub resource: std::collections::BTreeMap<String, String>,
    /// `queue_size = 2048`: spans waiting for export at most
    pub queue_size: Option<usize>,
    /// `timeout = "10s"`: deadline of one export
    #[serde(default, deserialize_with = "de::duration")]
    pub timeout: Option<Duration>,
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
    let file = parse(&text).map_err(|e| in_file(&path, &e))?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok(Some(Loaded { file, path, dir }))
}

/// Why a file does not parse: the key of a bad value (when one is to blame) and what is wrong.
#[derive(Debug)]
pub struct ParseError {
    key: Option<String>,
    message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.key {
            Some(key) => write!(f, "`{key}`: {}", self.message),
            None => write!(f, "{}", self.message),
        }
    }
}

/// `error` as said of the file at `path`.
fn in_file(path: &Path, error: &ParseError) -> anyhow::Error {
    match &error.key {
        Some(key) => anyhow::anyhow!("`{key}` in `{}`: {}", path.display(), error.message),
        None => anyhow::anyhow!(
            "invalid configuration file `{}`: {}",
            path.display(),
            error.message
        ),
    }
}

/// Parses a configuration file's text, every value typed.
pub fn parse(text: &str) -> Result<FileConfig, ParseError> {
    let deserializer = toml::Deserializer::parse(text).map_err(|e| ParseError {
        key: None,
        message: e.to_string(),
    })?;
    let mut file: FileConfig =
        serde_path_to_error::deserialize(deserializer).map_err(|e| ParseError {
            key: Some(e.path().to_string()).filter(|p| p != "." && !p.is_empty()),
            message: e.inner().to_string(),
        })?;
    file.limits.guest = typed("limits", std::mem::take(&mut file.limits.rest))?;
    for (i, route) in file.route.iter_mut().enumerate() {
        route.limits = typed(&format!("route[{i}]"), std::mem::take(&mut route.rest))?;
    }
    Ok(file)
}

/// The keys of `table` (the section named `section`) as a `T`, each bad value named by its key.
fn typed<T: DeserializeOwned>(section: &str, table: toml::Table) -> Result<T, ParseError> {
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let path = e.path().to_string();
        let key = if path == "." || path.is_empty() {
            section.to_string()
        } else {
            format!("{section}.{path}")
        };
        ParseError {
            key: Some(key),
            message: e.inner().to_string(),
        }
    })
}

/// The `[component.config]` values of the file at `path`, read again (on save in dev mode, on
/// SIGHUP or `POST /reload`).
pub fn values_of(path: &Path) -> Result<ConfigValues> {
    let loaded = load(Some(path))?.ok_or_else(|| anyhow::anyhow!("the file is gone"))?;
    config_values(&loaded)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_starter_file_parses() {
        let file = parse(&super::super::defaults::starter()).unwrap();
        assert_eq!(file.component.path.as_deref(), Some(Path::new("app.wasm")));
    }

    #[test]
    fn unknown_keys_are_named() {
        for (text, named) in [
            ("[limits]\nmax_memroy = \"1MiB\"\n", "max_memroy"),
            ("[servr]\n", "servr"),
            (
                "[[route]]\nprefix = \"/\"\npath = \"a.wasm\"\nmax_memroy = 1\n",
                "max_memroy",
            ),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(named), "{text}: {err}");
        }
    }

    #[test]
    fn bad_values_are_named_by_their_key_and_typed_at_parse_time() {
        for (text, key, says) in [
            (
                "[limits]\nmax_memory = \"lots\"\n",
                "limits.max_memory",
                "invalid size `lots`",
            ),
            (
                "[watch]\ndebounce = \"soon\"\n",
                "watch.debounce",
                "invalid duration `soon`",
            ),
            (
                "[[route]]\nprefix = \"/\"\npath = \"a.wasm\"\n[[route]]\nprefix = \"/b\"\npath = \"b.wasm\"\nrequest_timeout = \"never\"\n",
                "route[1].request_timeout",
                "invalid duration `never`",
            ),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains(says), "{text}: {err}");
        }
        let file = parse(
            "[limits]\nmax_memory = \"64MiB\"\nmax_body_size = 4096\nrequest_timeout = \"5s\"\n\
             header_read_timeout = \"3s\"\n",
        )
        .unwrap();
        assert_eq!(file.limits.guest.max_memory, Some(64 << 20));
        assert_eq!(file.limits.guest.max_body_size, Some(4096));
        assert_eq!(
            file.limits.guest.request_timeout,
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            file.limits.header_read_timeout,
            Some(Duration::from_secs(3))
        );
    }

    #[test]
    fn config_values_are_strings_numbers_or_booleans() {
        let loaded = |text: &str| Loaded {
            file: parse(text).unwrap(),
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
