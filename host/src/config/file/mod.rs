//! `hotswap.toml`: the file form of every setting, in sections.
//!
//! Values are typed as the file is read: durations (`"30s"`) by humantime and sizes
//! (`"128MiB"`) by bytesize, the parsers the flags use ([`de`]). An error names the key, the
//! value and the file; unknown keys are errors. `[limits]` and every `[[route]]` share the keys
//! of a route's guest limits ([`GuestLimitKeys`]): serde takes what the two sections leave over
//! (`flatten`), and [`load`] types it as its own table, so that a bad value there is named by
//! its own key too (`route[1].max_memory`).

mod load;

pub use load::{Loaded, ParseError, config_values, load, parse, values_of};

use crate::cli::{LogFormat, Mode, TierMode, WatchMode};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
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
