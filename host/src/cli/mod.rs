//! Command-line arguments, exactly as the user typed them.
//!
//! Nothing here is validated beyond what clap parses; [`crate::config::Config::from_args`]
//! turns these raw values into the one typed configuration the rest of the host uses.

mod canary;

pub use canary::{CanaryArgs, CanaryMode, OnTimeout};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// hotswap: serve a `wasi:http/proxy` WebAssembly component over HTTP and swap in new builds
/// of it without a restart and without dropping a request.
#[derive(Debug, Parser)]
#[command(name = "hotswap", version, about, long_about = None)]
pub struct Cli {
    /// What to do; without a subcommand, `serve` with the settings of `hotswap.toml`.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands of `hotswap`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a component over HTTP, reloading it whenever its file changes.
    Serve(Box<ServeArgs>),
    /// Write a commented starter `hotswap.toml`.
    Init(InitArgs),
}

/// Arguments of `hotswap init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to write the file.
    #[arg(long, value_name = "PATH", default_value = "hotswap.toml")]
    pub path: PathBuf,
    /// Overwrite an existing file.
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `hotswap serve`. Every setting can also come from `hotswap.toml` and from an
/// environment variable; a flag beats the environment, which beats the file. Defaults apply
/// when none of the three sets a value.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The component to serve (a `wasi:http/proxy` component, e.g. built with
    /// `cargo build --target wasm32-wasip2`). It need not exist yet: until a valid component
    /// lands at this path, requests are answered 503. Or `oci://REGISTRY/REPO:TAG` (or
    /// `@sha256:DIGEST`): a component artifact in an OCI registry, polled for new digests.
    /// File: `component.path` or `component.source`.
    #[arg(value_name = "COMPONENT.wasm", env = "HOTSWAP_COMPONENT")]
    pub component: Option<PathBuf>,

    /// Serve SOURCE (a component file or `oci://…` reference) under the path prefix PREFIX,
    /// e.g. `--route /api=api.wasm --route /=web.wasm`. Repeatable; each route is watched,
    /// swapped, rolled back and limited on its own. The longest prefix matching on segment
    /// boundaries wins (`/api` serves `/api` and `/api/x`, not `/apix`); a request that no route
    /// matches gets 404. The guest sees the full path. Replaces the file's `[[route]]` tables.
    /// File: `[[route]]` (`prefix`, `path` or `source`, and per-route overrides).
    #[arg(long = "route", value_name = "PREFIX=SOURCE")]
    pub routes: Vec<String>,

    /// Serve every `NAME.wasm` in DIR at `/NAME` (and `index.wasm` at `/`). A file dropped in
    /// adds its route at once, a replaced one is swapped in; names starting with `.` are
    /// ignored (write there, then rename). File: `apps.dir`.
    #[arg(long, value_name = "DIR", env = "HOTSWAP_APPS")]
    pub apps: Option<PathBuf>,

    /// Most routes `--apps` serves; the instance pool reserves room for this many apps, each
    /// with `--max-concurrency` slots. File: `apps.max_apps`.
    #[arg(long, value_name = "N", env = "HOTSWAP_MAX_APPS")]
    pub max_apps: Option<usize>,

    /// Configuration file. Default: `hotswap.toml` in the working directory, if present and no
    /// component is named on the command line (then the file is read only when named here).
    #[arg(long, value_name = "PATH", env = "HOTSWAP_CONFIG")]
    pub config: Option<PathBuf>,

    /// Read no configuration file, not even `./hotswap.toml`.
    #[arg(long, env = "HOTSWAP_NO_CONFIG")]
    pub no_config: bool,

    /// `dev`: builds and source watching allowed, trap details in 500 bodies, pretty logs.
    /// `prod`: no build command, trap details only in logs, JSON logs, `--require-component`.
    /// File: `server.mode`.
    #[arg(long, value_name = "MODE", env = "HOTSWAP_MODE")]
    pub mode: Option<Mode>,

    /// Where the public listener serves its server-sent events (dev mode): `serving` once a new
    /// generation serves, `build-failed` with the compiler's output, `refused` with the reason
    /// a component was not swapped in, and `hello`, every route's state, on connect. A path
    /// under `/_hotswap/`; `off` turns it off. Always off in prod mode (setting it there is an
    /// error). File: `server.events_path`.
    #[arg(long, value_name = "PATH", env = "HOTSWAP_EVENTS_PATH")]
    pub events_path: Option<String>,

    /// Dev mode: add a small script to guests' HTML pages that follows the event stream,
    /// reloads the page once a new generation of its route serves, and shows a failed build's
    /// compiler output over the page. Only `text/html` responses with a `Content-Length` and no
    /// `Content-Encoding` are touched; every other response is sent as the guest made it.
    /// Needs the event stream (`--events-path`); an error in prod mode.
    /// File: `server.live_reload = true`.
    #[arg(long, env = "HOTSWAP_LIVE_RELOAD")]
    pub live_reload: bool,

    /// Socket address to listen on. Port 0 picks a free port; the startup line
    /// `Serving HTTP on http://ADDR/` shows the real one.
    /// File: `server.addr`.
    #[arg(long, value_name = "ADDR", env = "HOTSWAP_ADDR")]
    pub addr: Option<SocketAddr>,

    /// Serve HTTPS with this PEM certificate chain (the server's certificate first), with
    /// `--tls-key`. Reloaded, without a restart, when the file changes (a Kubernetes Secret's
    /// `..data` swap included), on SIGHUP and on `POST /reload`; a pair that does not check
    /// out (parse, key matching the certificate, valid now) never replaces a good one. More
    /// pairs, chosen by the name a client asks for (SNI): `[[server.tls.certificate]]` in the
    /// file. File: `server.tls.cert`.
    #[arg(
        long,
        value_name = "PATH",
        env = "HOTSWAP_TLS_CERT",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of `--tls-cert` (PKCS#8, PKCS#1 or SEC1). File: `server.tls.key`.
    #[arg(
        long,
        value_name = "PATH",
        env = "HOTSWAP_TLS_KEY",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// Exit with an error at startup if the component is missing or invalid, instead of
    /// serving 503 until a valid one lands. File: `component.require`.
    #[arg(long, env = "HOTSWAP_REQUIRE_COMPONENT")]
    pub require_component: bool,

    /// Do not watch the component file; reload only on SIGHUP or the admin API.
    /// File: `watch.enabled = false`.
    #[arg(long, env = "HOTSWAP_NO_WATCH")]
    pub no_watch: bool,

    /// How the component file is watched: `native` (the OS's file events) or `poll` (read its
    /// metadata and content every `--poll-interval`: for network filesystems, which send no
    /// events). File: `watch.mode`.
    #[arg(long, value_name = "MODE", env = "HOTSWAP_WATCH")]
    pub watch: Option<WatchMode>,

    /// How often a registry tag is checked for a new digest (one `HEAD` request), or the
    /// component file under `--watch poll`. [default: 10s for a registry, 1s for a file].
    /// File: `registry.poll_interval`, `watch.poll_interval`.
    #[arg(long, value_name = "DURATION", env = "HOTSWAP_POLL_INTERVAL", value_parser = parse_duration)]
    pub poll_interval: Option<Duration>,

    /// Deadline of one registry poll: resolving the tag and, for a new digest, fetching its
    /// manifest and reading its whole layer. A registry that answers too slowly (trickles) is
    /// cut at this deadline; the poll fails, is logged, and the serving generation stays.
    /// Each request also has a 10s connect and a 10s read timeout.
    /// File: `registry.pull_timeout`.
    #[arg(long, value_name = "DURATION", env = "HOTSWAP_REGISTRY_PULL_TIMEOUT", value_parser = parse_duration)]
    pub registry_pull_timeout: Option<Duration>,

    /// A registry (`HOST[:PORT]`) reached over plain HTTP instead of HTTPS. Repeatable;
    /// loopback registries always are. Comma-separated in the environment variable.
    /// File: `registry.insecure` (a list).
    #[arg(
        long,
        value_name = "HOST[:PORT]",
        env = "HOTSWAP_INSECURE_REGISTRY",
        value_delimiter = ','
    )]
    pub insecure_registry: Vec<String>,

    /// User name for the registry (basic auth). Without one, the docker config file's `auths`
    /// entry for the registry is used, else none. File: `registry.username`.
    #[arg(long, value_name = "NAME", env = "HOTSWAP_REGISTRY_USERNAME")]
    pub registry_username: Option<String>,

    /// Password for the registry. Prefer the environment variable to the flag (flags show in
    /// `ps`). File: `registry.password`.
    #[arg(
        long,
        value_name = "PASSWORD",
        env = "HOTSWAP_REGISTRY_PASSWORD",
        hide_env_values = true
    )]
    pub registry_password: Option<String>,

    /// Largest component accepted, from a file, an upload or a registry layer (e.g. `64MiB`).
    /// File: `limits.max_component_size`.
    #[arg(long, value_name = "SIZE", env = "HOTSWAP_MAX_COMPONENT_SIZE", value_parser = parse_size)]
    pub max_component_size: Option<u64>,

    /// Quiet period after the last change to the component file before it is reloaded
    /// (e.g. `150ms`, `1s`). File: `watch.debounce`.
    #[arg(long, value_name = "DURATION", env = "HOTSWAP_DEBOUNCE", value_parser = parse_duration)]
    pub debounce: Option<Duration>,

    /// Deadline for one request, from arrival to the end of the response body. A guest still
    /// running then is stopped: 504 if no response was sent yet, otherwise the body is cut.
    /// File: `limits.request_timeout`.
    #[arg(long, value_name = "DURATION", env = "HOTSWAP_REQUEST_TIMEOUT", value_parser = parse_duration)]
    pub request_timeout: Option<Duration>,

    /// Limit on each linear memory of a guest instance (e.g. `128MiB`). A guest that grows past
    /// it fails its request with 500. File: `limits.max_memory`.
    #[arg(long, value_name = "SIZE", env = "HOTSWAP_MAX_MEMORY", value_parser = parse_size)]
    pub max_memory: Option<u64>,

    /// Number of requests served at the same time, per route (each route has a cap of its
    /// own); the instance pool is sized from the sum.
    /// File: `limits.max_concurrency`.
    #[arg(long, value_name = "N", env = "HOTSWAP_MAX_CONCURRENCY")]
    pub max_concurrency: Option<usize>,

    /// How long a request beyond `--max-concurrency` waits for a free slot before it is
    /// answered 503 with `Retry-After`. File: `limits.queue_timeout`.
    #[arg(long, value_name = "DURATION", env = "HOTSWAP_QUEUE_TIMEOUT", value_parser = parse_duration)]
    pub queue_timeout: Option<Duration>,

    /// Which compiler makes a new component's machine code: `optimized` (Cranelift, the
    /// fastest code), `fast` (Winch: compiles several times faster, runs slower), or `auto`:
    /// a component of 2 MiB or more that is not in the compile cache is served from a Winch
    /// build at once and swapped to its Cranelift build once that is ready (a tier-up).
    /// File: `limits.tier`, or `tier` in a `[[route]]`.
    #[arg(long, value_name = "TIER", env = "HOTSWAP_TIER")]
    pub tier: Option<TierMode>,

    /// Requests one instance of a WASI 0.3 guest may serve before it is dropped. 1 (the
    /// default) gives every request a fresh instance, as for 0.2 guests; more trades that
    /// isolation for speed: requests then share the guest's memory and globals, and a trap or
    /// deadline that ends the instance fails every request it holds. An instance never serves
    /// requests across generations. File: `limits.instance_reuse`.
    #[arg(long, value_name = "N", env = "HOTSWAP_INSTANCE_REUSE")]
    pub instance_reuse: Option<usize>,

    /// With `--instance-reuse` above 1: requests one 0.3 instance serves at the same time.
    /// File: `limits.instance_reuse_concurrency`.
    #[arg(long, value_name = "N", env = "HOTSWAP_INSTANCE_REUSE_CONCURRENCY")]
    pub instance_reuse_concurrency: Option<usize>,

    /// Limit on a request body (e.g. `10MiB`); larger requests get 413.
    /// File: `limits.max_body_size`.
    #[arg(long, value_name = "SIZE", env = "HOTSWAP_MAX_BODY_SIZE", value_parser = parse_size)]
    pub max_body_size: Option<u64>,

    /// Limit on the number of request header fields.
    /// File: `limits.max_headers`.
    #[arg(long, value_name = "N", env = "HOTSWAP_MAX_HEADERS")]
    pub max_headers: Option<usize>,

    /// Limit on the size of the request header section (e.g. `64KiB`).
    /// File: `limits.max_header_bytes`.
    #[arg(long, value_name = "SIZE", env = "HOTSWAP_MAX_HEADER_BYTES", value_parser = parse_size)]
    pub max_header_bytes: Option<u64>,

    /// Time a client has to send the request headers before the connection is closed.
    /// File: `limits.header_read_timeout`.
    #[arg(long, value_name = "DURATION", env = "HOTSWAP_HEADER_READ_TIMEOUT", value_parser = parse_duration)]
    pub header_read_timeout: Option<Duration>,

    /// Time a client may go without accepting any of a response's bytes (while the host has
    /// some to send) before the connection is closed.
    /// File: `limits.write_timeout`.
    #[arg(long, value_name = "DURATION", env = "HOTSWAP_WRITE_TIMEOUT", value_parser = parse_duration)]
    pub write_timeout: Option<Duration>,

    /// Time a connection may stay open with no request in progress (HTTP/1 keep-alive or
    /// HTTP/2) before it is closed. A request is in progress until its response is sent, however
    /// long its guest takes. File: `limits.idle_timeout`.
    #[arg(long, value_name = "DURATION", env = "HOTSWAP_IDLE_TIMEOUT", value_parser = parse_duration)]
    pub idle_timeout: Option<Duration>,

    /// Bytes of stdout and stderr one request's guest may log (e.g. `64KiB`); beyond it, output
    /// is counted and dropped, and one line says how much.
    /// File: `limits.max_guest_output`.
    #[arg(long, value_name = "SIZE", env = "HOTSWAP_MAX_GUEST_OUTPUT", value_parser = parse_size)]
    pub max_guest_output: Option<u64>,

    /// Allow guests outbound HTTP to this destination: `HOST` (its scheme's default port, 80 or
    /// 443), `HOST:PORT`, `HOST:*` (any port), `*.example.com[:PORT]` for subdomains, or an IP
    /// address. Repeatable; outbound HTTP is denied unless allowed here. The host name is
    /// resolved by the host, and loopback, link-local (cloud metadata), unspecified and
    /// multicast addresses are refused unless the rule names that address or `localhost`
    /// literally. Comma-separated in the environment variable. File: `limits.allow_outbound`
    /// (a list).
    #[arg(
        long,
        value_name = "HOST[:PORT]",
        env = "HOTSWAP_ALLOW_OUTBOUND",
        value_delimiter = ','
    )]
    pub allow_outbound: Vec<String>,

    /// An environment variable for the guest (`KEY=VALUE`). Repeatable; guests see no other
    /// environment. File: `component.env` (a table).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub guest_env: Vec<String>,

    /// A value guests read through `wasi:config/store` (`KEY=VALUE`). Repeatable; wins over
    /// the same key in the file. Values are never logged. File: `component.config` (a table,
    /// re-read on save in dev mode and on SIGHUP or `POST /reload`).
    #[arg(long = "config-var", value_name = "KEY=VALUE")]
    pub config_vars: Vec<String>,

    /// The store behind `wasi:keyvalue`: `sqlite` (a file under `$XDG_STATE_HOME/hotswap`),
    /// `sqlite:PATH`, `memory` (lost on exit) or `redis://[user:password@]HOST[:PORT][/DB]`
    /// (shared by replicas). Its state survives every swap. [default: sqlite].
    /// File: `keyvalue.store`.
    #[arg(
        long,
        value_name = "STORE",
        env = "HOTSWAP_KEYVALUE",
        hide_env_values = true
    )]
    pub keyvalue: Option<String>,

    /// The namespace of this app's key-value buckets: apps sharing a store see only their own.
    /// [default: the component file's stem]. File: `keyvalue.namespace`.
    #[arg(long, value_name = "NAME", env = "HOTSWAP_KEYVALUE_NAMESPACE")]
    pub keyvalue_namespace: Option<String>,

    /// Largest value a guest may store under one key (e.g. `1MiB`); a larger one is an error
    /// for the guest. File: `keyvalue.max_value_size`.
    #[arg(long, value_name = "SIZE", env = "HOTSWAP_KEYVALUE_MAX_VALUE_SIZE", value_parser = parse_size)]
    pub keyvalue_max_value_size: Option<u64>,

    /// Largest number of keys in one bucket; adding one more is an error for the guest.
    /// File: `keyvalue.max_keys`.
    #[arg(long, value_name = "N", env = "HOTSWAP_KEYVALUE_MAX_KEYS")]
    pub keyvalue_max_keys: Option<u64>,

    /// The `--canary-*` flags.
    #[command(flatten)]
    pub canary: CanaryArgs,

    /// Time in-flight requests get to finish after SIGTERM or SIGINT before they are cut.
    /// File: `server.shutdown_timeout`.
    #[arg(long, value_name = "DURATION", env = "HOTSWAP_SHUTDOWN_TIMEOUT", value_parser = parse_duration)]
    pub shutdown_timeout: Option<Duration>,

    /// Time the new process of a binary upgrade (`SIGUSR2` or `POST /upgrade`) gets to read its
    /// configuration, load its routes and say it is ready; past it, the new process is stopped
    /// and this one serves on. File: `server.upgrade_timeout`.
    #[arg(long, value_name = "DURATION", env = "HOTSWAP_UPGRADE_TIMEOUT", value_parser = parse_duration)]
    pub upgrade_timeout: Option<Duration>,

    /// Directory for compiled components. [default: `$XDG_CACHE_HOME/hotswap` or
    /// `~/.cache/hotswap`]. File: `cache.dir`.
    #[arg(long, value_name = "DIR", env = "HOTSWAP_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Do not cache compiled components on disk. File: `cache.enabled = false`.
    #[arg(long, env = "HOTSWAP_NO_CACHE")]
    pub no_cache: bool,

    /// Size limit of the incremental compilation cache (Cranelift's compiled functions, in
    /// `incremental/` under the cache directory), e.g. `1GiB`: a new build compiles only the
    /// functions no build before it had; the oldest entries go first. `0` turns it off.
    /// File: `cache.incremental_size`.
    #[arg(long, value_name = "SIZE", env = "HOTSWAP_INCREMENTAL_CACHE_SIZE", value_parser = parse_size)]
    pub incremental_cache_size: Option<u64>,

    /// Good generations kept compiled for rollback. File: `cache.keep_generations`.
    #[arg(long, value_name = "N", env = "HOTSWAP_KEEP_GENERATIONS")]
    pub keep_generations: Option<usize>,

    /// Address of the admin listener (health, status, reload, rollback, upload, metrics).
    /// Off unless set. File: `admin.addr`.
    #[arg(long, value_name = "ADDR", env = "HOTSWAP_ADMIN_ADDR")]
    pub admin_addr: Option<SocketAddr>,

    /// Bearer token required by mutating admin calls; without one they are refused.
    /// Prefer the environment variable to the flag (flags show in `ps`). File: `admin.token`.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "HOTSWAP_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,

    /// Accept only admin clients that present a certificate signed by the CA in this PEM file
    /// (mutual TLS): the admin listener then serves HTTPS with the `--tls-cert` certificates,
    /// and can leave loopback safely. File: `admin.client_ca`.
    #[arg(long, value_name = "PATH", env = "HOTSWAP_ADMIN_CLIENT_CA")]
    pub admin_client_ca: Option<PathBuf>,

    /// Deadline of one admin call, from its arrival to its answer (an upload: reading, compiling
    /// and saving it). A call past it is answered 503; a reload it started goes on and is
    /// logged. File: `admin.timeout`.
    #[arg(long, value_name = "DURATION", env = "HOTSWAP_ADMIN_TIMEOUT", value_parser = parse_duration)]
    pub admin_timeout: Option<Duration>,

    /// Shell command that builds the component (dev mode), run on start and when sources
    /// change. File: `build.cmd`.
    #[arg(long, value_name = "CMD", env = "HOTSWAP_BUILD_CMD")]
    pub build_cmd: Option<String>,

    /// Log format: `pretty` for people, `json` for log pipelines. [default: pretty in dev,
    /// json in prod]. File: `log.format`. Levels come from `HOTSWAP_LOG` (EnvFilter syntax).
    #[arg(long, value_name = "FORMAT", env = "HOTSWAP_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Send OpenTelemetry traces to this OTLP collector, over HTTP with protobuf (port 4318
    /// for the OpenTelemetry Collector): its base URL, as `http://collector:4318`; spans go
    /// to `/v1/traces` under it (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, if set, is used as
    /// written instead). Traces are off unless an endpoint is set. Headers for the collector
    /// (an API key) come from `OTEL_EXPORTER_OTLP_HEADERS`; `OTEL_SDK_DISABLED=true` or
    /// `OTEL_TRACES_EXPORTER=none` turns traces off. File: `otel.endpoint`.
    #[arg(long, value_name = "URL", env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otel_endpoint: Option<String>,

    /// `service.name` of the spans (else `service.name` from the resource attributes). File:
    /// `otel.service_name`.
    #[arg(long, value_name = "NAME", env = "OTEL_SERVICE_NAME")]
    pub otel_service_name: Option<String>,

    /// Which traces are recorded: `always_on`, `always_off`, `traceidratio`,
    /// `parentbased_always_on`, `parentbased_always_off` or `parentbased_traceidratio`
    /// (parent-based: a request that carries a `traceparent` follows its caller's decision).
    /// File: `otel.sampler`.
    #[arg(long, value_name = "SAMPLER", env = "OTEL_TRACES_SAMPLER")]
    pub otel_sampler: Option<String>,

    /// The ratio of traces the ratio samplers record, from 0 to 1 [default: 1]. File:
    /// `otel.sampler_arg`.
    #[arg(long, value_name = "RATIO", env = "OTEL_TRACES_SAMPLER_ARG")]
    pub otel_sampler_arg: Option<f64>,

    /// More attributes of the resource the spans come from, as `key=value,key=value`
    /// (`deployment.environment.name=prod`); values percent-encoded where they hold `,` or `=`.
    /// File: `[otel.resource]`, a table.
    #[arg(long, value_name = "KEY=VALUE,...", env = "OTEL_RESOURCE_ATTRIBUTES")]
    pub otel_resource_attributes: Option<String>,

    /// Spans waiting for export at most. A collector that is down or slow never slows a
    /// request: spans past this are dropped and counted in `hotswap_trace_spans_total`.
    /// File: `otel.queue_size`.
    #[arg(long, value_name = "N", env = "OTEL_BSP_MAX_QUEUE_SIZE")]
    pub otel_queue_size: Option<usize>,

    /// Deadline of one export to the collector (a bare number is
    /// milliseconds, as `OTEL_EXPORTER_OTLP_TIMEOUT` is written). File: `otel.timeout`.
    #[arg(long, value_name = "DURATION", env = "OTEL_EXPORTER_OTLP_TIMEOUT", value_parser = parse_millis_or_duration)]
    pub otel_timeout: Option<Duration>,
}

/// Development or production behaviour; see `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Builds allowed, trap details in responses, pretty logs.
    Dev,
    /// No builds, trap details only in logs, JSON logs, component required.
    Prod,
}

/// Which compiler makes a new generation's code; see `--tier`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TierMode {
    /// Winch first for a large component not in the compile cache, then Cranelift.
    Auto,
    /// Winch only: the quickest compile, slower code.
    Fast,
    /// Cranelift only: the slowest compile, the fastest code.
    Optimized,
}

/// How the component file is watched; see `--watch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WatchMode {
    /// The operating system's file events (inotify).
    Native,
    /// Periodic scans: network filesystems send no events.
    Poll,
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Parses a human duration such as `150ms`, `30s` or `2m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("invalid duration `{s}`: {e}"))
}

/// Parses a duration such as `10s`, or a bare number of milliseconds (OpenTelemetry's
/// variables write timeouts so).
pub fn parse_millis_or_duration(s: &str) -> Result<Duration, String> {
    match s.trim().parse::<u64>() {
        Ok(ms) => Ok(Duration::from_millis(ms)),
        Err(_) => parse_duration(s),
    }
}

/// Parses a byte size such as `128MiB`, `64KiB`, `10MB` or `4096`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("invalid size `{s}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_size("128MiB"), Ok(128 << 20));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn durations_parse_and_name_the_bad_value() {
        assert_eq!(parse_duration("150ms"), Ok(Duration::from_millis(150)));
        let err = parse_duration("soon").unwrap_err();
        assert!(err.contains("`soon`"), "{err}");
    }
}
