//! The one validated, typed configuration of a running host.
//!
//! Settings come from flags, `HOTSWAP_*` environment variables (clap reads both; a flag wins)
//! and `hotswap.toml`, in that order of precedence, then defaults. Every check that can fail on
//! user input happens in [`Config::from_args`], before any socket is bound or any file is
//! watched, so a wrong setting is an error message and exit code 1.

pub mod file;
mod limits;
mod parts;
mod routes;

pub use limits::{ConnLimits, GuestLimits};

pub use routes::{AppsConfig, DEFAULT_MAX_APPS, INDEX, RouteConfig, RouteDefaults, app_name};

use crate::cli::{LogFormat, Mode, ServeArgs, TierMode, WatchMode, parse_duration, parse_size};
use crate::config::file::{self as config_file, Loaded};
use crate::wasi::config_store::ConfigValues;
use crate::wasi::keyvalue::KvSettings;
use crate::component::oci::{self, OciSpec};
use crate::wasi::outbound::OutboundPolicy;
use anyhow::{Context, Result, bail, ensure};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default address the HTTP listener binds to.
pub const DEFAULT_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8080);
/// Default time between two checks of a component file under `--watch poll`.
pub const DEFAULT_FILE_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Default quiet period after the last file event before a reload is attempted.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(150);
/// Default wall-clock deadline for one request, guest execution and body streaming included.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default limit on one guest linear memory.
pub const DEFAULT_MAX_MEMORY: u64 = 128 << 20;
/// Default size limit of the incremental compilation cache.
pub const DEFAULT_INCREMENTAL_CACHE_SIZE: u64 = 1 << 30;
/// Default number of requests served at the same time.
pub const DEFAULT_MAX_CONCURRENCY: usize = 100;
/// Default time a request waits for a free slot before it is answered 503.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(1);
/// Requests one reused WASI 0.3 instance serves at once, as in `wasmtime serve` and Spin.
pub const DEFAULT_INSTANCE_REUSE_CONCURRENCY: usize = 16;
/// Default limit on a request body.
pub const DEFAULT_MAX_BODY_SIZE: u64 = 10 << 20;
/// Default limit on the number of request header fields.
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// Default limit on the total size of the request header section.
pub const DEFAULT_MAX_HEADER_BYTES: u64 = 64 << 10;
/// Default time a client has to send its request headers.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a client may accept none of a response's bytes before it is disconnected.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time a connection with no request in progress stays open.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default bytes of guest stdout and stderr logged per request.
pub const DEFAULT_MAX_GUEST_OUTPUT: u64 = 1 << 20;
/// Default deadline of one admin call.
pub const DEFAULT_ADMIN_TIMEOUT: Duration = Duration::from_secs(120);
/// Default time in-flight requests get to finish after SIGTERM or SIGINT.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// Default number of good generations kept compiled.
pub const DEFAULT_KEEP_GENERATIONS: usize = 3;
/// Default quiet period after a source change before a build starts. An editor's save is a
/// burst of a few milliseconds (write, or write a temporary file and rename it), so this adds
/// little to save → serving; a change landing during a build queues one more build.
pub const DEFAULT_BUILD_DELAY: Duration = Duration::from_millis(20);
/// Default limit on one build's run time.
pub const DEFAULT_BUILD_TIMEOUT: Duration = Duration::from_secs(600);
/// Source file extensions that trigger a build by default.
pub const DEFAULT_BUILD_EXTENSIONS: [&str; 4] = ["rs", "toml", "lock", "wit"];
/// Largest accepted `--max-concurrency`; each slot reserves address space for an instance.
pub const MAX_CONCURRENCY_LIMIT: usize = 10_000;
/// Smallest accepted `--max-memory`: one wasm page.
pub const MIN_MEMORY: u64 = 64 << 10;
/// Largest accepted `--max-memory`: a 32-bit linear memory cannot grow past 4 GiB.
pub const MAX_MEMORY: u64 = 4 << 30;

/// Everything the host needs to run, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// `dev` or `prod`.
    pub mode: Mode,
    /// What is served under which path prefix; empty when `apps` says it.
    pub routes: Vec<RouteConfig>,
    /// A drop-in directory of components, one route each (`--apps`).
    pub apps: Option<AppsConfig>,
    /// The settings of a route that sets none of its own (the apps' settings).
    pub defaults: RouteDefaults,
    /// Address the HTTP listener binds to.
    pub addr: SocketAddr,
    /// Fail at startup when no valid component can be loaded.
    pub require_component: bool,
    /// Watch the component file for changes.
    pub watch: bool,
    /// How the file is watched: OS events, or polling (network filesystems).
    pub watch_mode: WatchMode,
    /// How often a polled file is checked.
    pub file_poll_interval: Duration,
    /// Largest component (file, upload or registry layer) accepted.
    pub max_component_size: u64,
    /// Quiet period after the last file event before a reload.
    pub debounce: Duration,
    /// Bounds on clients and connections (every route's).
    pub conn: ConnLimits,
    /// Time in-flight requests get to finish on shutdown.
    pub shutdown_timeout: Duration,
    /// Log line format.
    pub log_format: LogFormat,
    /// On-disk compile cache directory, if caching is on.
    pub cache_dir: Option<PathBuf>,
    /// Good generations kept compiled for rollback.
    pub keep_generations: usize,
    /// Size limit of the incremental compilation cache under the cache directory (0: off).
    pub incremental_cache_size: u64,
    /// The admin listener, if enabled.
    pub admin: Option<AdminConfig>,
    /// Values served through `wasi:config/store`, from the file (re-read on reload).
    pub config_values: ConfigValues,
    /// `--config-var` values, on top of the file's.
    pub config_overrides: ConfigValues,
    /// The configuration file, if one was read (config values are re-read from it).
    pub config_file: Option<PathBuf>,
    /// The store behind `wasi:keyvalue`.
    pub keyvalue: KvSettings,
    /// Warnings found while merging the settings, logged once logging is up.
    pub notes: Vec<String>,
}

/// Where the component comes from.
#[derive(Debug, Clone)]
pub enum ComponentOrigin {
    /// A file, by absolute path.
    File(PathBuf),
    /// A registry reference (`oci://…`).
    Registry(OciSpec),
}

impl ComponentOrigin {
    /// The path or the `oci://` reference, for messages.
    pub fn display(&self) -> String {
        match self {
            ComponentOrigin::File(path) => path.display().to_string(),
            ComponentOrigin::Registry(spec) => format!("{}{}", oci::SCHEME, spec.reference),
        }
    }

    /// The file, for a file component.
    pub fn file(&self) -> Option<&Path> {
        match self {
            ComponentOrigin::File(path) => Some(path),
            ComponentOrigin::Registry(_) => None,
        }
    }
}

/// The admin listener's settings.
#[derive(Clone)]
pub struct AdminConfig {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Bearer token for mutating calls; `None` refuses them all.
    pub token: Option<String>,
    /// Deadline of one call.
    pub timeout: std::time::Duration,
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Rebuild-on-save settings.
#[derive(Debug, Clone)]
pub struct BuildConfig {
    /// Shell command run with `sh -c`.
    pub cmd: String,
    /// Working directory of the command.
    pub dir: PathBuf,
    /// Files or directories whose changes trigger a build.
    pub watch: Vec<PathBuf>,
    /// File extensions that count (e.g. `rs`); file names such as `Cargo.lock` match by extension.
    pub include_ext: Vec<String>,
    /// Directory names never looked into (`target` always).
    pub exclude_dir: Vec<String>,
    /// Quiet period after the last source change.
    pub delay: Duration,
    /// A build running longer is stopped.
    pub timeout: Duration,
}

/// Parses a duration written in the file, naming the key and file on error.
pub(crate) fn file_duration(
    loaded: Option<&Loaded>,
    key: &str,
    value: Option<&String>,
) -> Result<Option<Duration>> {
    value
        .map(|v| parse_duration(v).map_err(|e| in_file(loaded, key, e)))
        .transpose()
}

/// Parses a size written in the file, naming the key and file on error.
pub(crate) fn file_size(
    loaded: Option<&Loaded>,
    key: &str,
    value: Option<&String>,
) -> Result<Option<u64>> {
    value
        .map(|v| parse_size(v).map_err(|e| in_file(loaded, key, e)))
        .transpose()
}

pub(crate) fn in_file(loaded: Option<&Loaded>, key: &str, msg: String) -> anyhow::Error {
    let file = loaded
        .map(|l| l.path.display().to_string())
        .unwrap_or_default();
    anyhow::anyhow!("`{key}` in `{file}`: {msg}")
}

impl Config {
    /// Validates `serve` arguments, merged with the configuration file, into a [`Config`].
    pub fn from_args(args: ServeArgs) -> Result<Config> {
        let mut notes = Vec::new();
        let loaded = parts::config_file(&args, &mut notes)?;
        let l = loaded.as_ref();
        let empty = config_file::FileConfig::default();
        let f = l.map(|l| &l.file).unwrap_or(&empty);

        let mode = args.mode.or(f.server.mode).unwrap_or(Mode::Dev);

        let addr = match (args.addr, &f.server.addr) {
            (Some(a), _) => a,
            (None, Some(a)) => a
                .parse()
                .map_err(|e| in_file(l, "server.addr", format!("invalid address `{a}`: {e}")))?,
            (None, None) => DEFAULT_ADDR,
        };
        let require_component =
            args.require_component || f.component.require.unwrap_or(false) || mode == Mode::Prod;
        let watch = !args.no_watch && f.watch.enabled.unwrap_or(true);
        let watch_mode = args.watch.or(f.watch.mode).unwrap_or(WatchMode::Native);
        let file_poll_interval = args
            .poll_interval
            .or(file_duration(
                l,
                "watch.poll_interval",
                f.watch.poll_interval.as_ref(),
            )?)
            .unwrap_or(DEFAULT_FILE_POLL_INTERVAL);
        ensure!(
            !file_poll_interval.is_zero(),
            "`--poll-interval` must be greater than zero"
        );
        let max_component_size = args
            .max_component_size
            .or(file_size(
                l,
                "limits.max_component_size",
                f.limits.max_component_size.as_ref(),
            )?)
            .unwrap_or(crate::reload::MAX_COMPONENT_BYTES);
        ensure!(
            max_component_size >= 8,
            "`--max-component-size` must be at least 8 bytes"
        );
        let debounce = args
            .debounce
            .or(file_duration(
                l,
                "watch.debounce",
                f.watch.debounce.as_ref(),
            )?)
            .unwrap_or(DEFAULT_DEBOUNCE);
        ensure!(
            !debounce.is_zero(),
            "`--debounce` must be greater than zero"
        );

        let fl = &f.limits;
        let limits = GuestLimits {
            request_timeout: args
                .request_timeout
                .or(file_duration(
                    l,
                    "limits.request_timeout",
                    fl.request_timeout.as_ref(),
                )?)
                .unwrap_or(DEFAULT_REQUEST_TIMEOUT),
            max_memory: args
                .max_memory
                .or(file_size(l, "limits.max_memory", fl.max_memory.as_ref())?)
                .unwrap_or(DEFAULT_MAX_MEMORY),
            max_concurrency: args
                .max_concurrency
                .or(fl.max_concurrency)
                .unwrap_or(DEFAULT_MAX_CONCURRENCY),
            queue_timeout: args
                .queue_timeout
                .or(file_duration(
                    l,
                    "limits.queue_timeout",
                    fl.queue_timeout.as_ref(),
                )?)
                .unwrap_or(DEFAULT_QUEUE_TIMEOUT),
            instance_reuse: args.instance_reuse.or(fl.instance_reuse).unwrap_or(1),
            tier: args.tier.or(fl.tier).unwrap_or(TierMode::Auto),
            instance_reuse_concurrency: args
                .instance_reuse_concurrency
                .or(fl.instance_reuse_concurrency)
                .unwrap_or(DEFAULT_INSTANCE_REUSE_CONCURRENCY),
            max_body_size: args
                .max_body_size
                .or(file_size(
                    l,
                    "limits.max_body_size",
                    fl.max_body_size.as_ref(),
                )?)
                .unwrap_or(DEFAULT_MAX_BODY_SIZE),
            max_guest_output: args
                .max_guest_output
                .or(file_size(
                    l,
                    "limits.max_guest_output",
                    fl.max_guest_output.as_ref(),
                )?)
                .unwrap_or(DEFAULT_MAX_GUEST_OUTPUT),
        };
        limits.validate()?;
        let mut conn = ConnLimits {
            max_headers: args
                .max_headers
                .or(fl.max_headers)
                .unwrap_or(DEFAULT_MAX_HEADERS),
            max_header_bytes: args
                .max_header_bytes
                .or(file_size(
                    l,
                    "limits.max_header_bytes",
                    fl.max_header_bytes.as_ref(),
                )?)
                .unwrap_or(DEFAULT_MAX_HEADER_BYTES),
            header_read_timeout: args
                .header_read_timeout
                .or(file_duration(
                    l,
                    "limits.header_read_timeout",
                    fl.header_read_timeout.as_ref(),
                )?)
                .unwrap_or(DEFAULT_HEADER_READ_TIMEOUT),
            write_timeout: args
                .write_timeout
                .or(file_duration(
                    l,
                    "limits.write_timeout",
                    fl.write_timeout.as_ref(),
                )?)
                .unwrap_or(DEFAULT_WRITE_TIMEOUT),
            idle_timeout: args
                .idle_timeout
                .or(file_duration(
                    l,
                    "limits.idle_timeout",
                    fl.idle_timeout.as_ref(),
                )?)
                .unwrap_or(DEFAULT_IDLE_TIMEOUT),
            max_streams: 0,
        };
        conn.validate()?;

        let allow = if args.allow_outbound.is_empty() {
            fl.allow_outbound.clone().unwrap_or_default()
        } else {
            args.allow_outbound.clone()
        };
        let outbound = OutboundPolicy::parse(&allow)?;
        let guest_env = if args.guest_env.is_empty() {
            f.component
                .env
                .as_ref()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default()
        } else {
            args.guest_env
                .iter()
                .map(|kv| parse_pair("--env", kv))
                .collect::<Result<Vec<_>>>()?
        };
        let shutdown_timeout = args
            .shutdown_timeout
            .or(file_duration(
                l,
                "server.shutdown_timeout",
                f.server.shutdown_timeout.as_ref(),
            )?)
            .unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT);
        let log_format = args.log_format.or(f.log.format).unwrap_or(match mode {
            Mode::Dev => LogFormat::Pretty,
            Mode::Prod => LogFormat::Json,
        });

        let cache_on = !args.no_cache && f.cache.enabled.unwrap_or(true);
        let cache_dir = if cache_on {
            Some(match (&args.cache_dir, &f.cache.dir) {
                (Some(d), _) => absolute(d)?,
                (None, Some(d)) => l
                    .map(|l| l.resolve(&expand_home(d)))
                    .unwrap_or_else(|| d.clone()),
                (None, None) => default_cache_dir()?,
            })
        } else {
            None
        };
        let incremental_cache_size = args
            .incremental_cache_size
            .or(file_size(
                l,
                "cache.incremental_size",
                f.cache.incremental_size.as_ref(),
            )?)
            .unwrap_or(DEFAULT_INCREMENTAL_CACHE_SIZE);
        let keep_generations = args
            .keep_generations
            .or(f.cache.keep_generations)
            .unwrap_or(DEFAULT_KEEP_GENERATIONS);
        ensure!(
            keep_generations >= 1,
            "`--keep-generations` must be at least 1"
        );

        let admin_addr = match (args.admin_addr, &f.admin.addr) {
            (Some(a), _) => Some(a),
            (None, Some(a)) => Some(
                a.parse()
                    .map_err(|e| in_file(l, "admin.addr", format!("invalid address `{a}`: {e}")))?,
            ),
            (None, None) => None,
        };
        let token = args
            .admin_token
            .clone()
            .or(f.admin.token.clone())
            .filter(|t| !t.is_empty());
        let admin_timeout = args
            .admin_timeout
            .or(file_duration(l, "admin.timeout", f.admin.timeout.as_ref())?)
            .unwrap_or(DEFAULT_ADMIN_TIMEOUT);
        ensure!(
            !admin_timeout.is_zero(),
            "`--admin-timeout` must be greater than zero"
        );
        let admin = admin_addr.map(|addr| AdminConfig {
            addr,
            token,
            timeout: admin_timeout,
        });

        let config_values = match l {
            Some(loaded) => config_file::config_values(loaded)?,
            None => ConfigValues::default(),
        };
        let config_overrides = ConfigValues(
            args.config_vars
                .iter()
                .map(|kv| parse_pair("--config-var", kv))
                .collect::<Result<_>>()?,
        );
        let keyvalue = parts::keyvalue_settings(&args, &f.keyvalue, l)?;
        let defaults = RouteDefaults {
            limits,
            outbound,
            guest_env,
            keyvalue_namespace: args
                .keyvalue_namespace
                .clone()
                .or(f.keyvalue.namespace.clone()),
        };
        let (routes, apps) = routes::assemble(&args, f, l, mode, &defaults, &mut notes)?;
        conn.max_streams = routes
            .iter()
            .map(|r| r.limits.max_concurrency)
            .chain([defaults.limits.max_concurrency])
            .max()
            .unwrap_or(DEFAULT_MAX_CONCURRENCY);

        Ok(Config {
            mode,
            routes,
            apps,
            defaults,
            addr,
            require_component,
            watch,
            watch_mode,
            file_poll_interval,
            max_component_size,
            debounce,
            conn,
            shutdown_timeout,
            log_format,
            cache_dir,
            keep_generations,
            incremental_cache_size,
            admin,
            config_values,
            config_overrides,
            config_file: l.map(|l| l.path.clone()),
            keyvalue,
            notes,
        })
    }
}

impl Config {
    /// The instance slots the pool needs: every route's concurrency cap (every app's, for
    /// `--apps`).
    pub fn pool_slots(&self) -> usize {
        match &self.apps {
            Some(apps) => apps.max_apps * self.defaults.limits.max_concurrency,
            None => self.routes.iter().map(|r| r.limits.max_concurrency).sum(),
        }
    }

    /// The largest memory any route's guest may grow to.
    pub fn max_memory(&self) -> u64 {
        self.routes
            .iter()
            .map(|r| r.limits.max_memory)
            .chain([self.defaults.limits.max_memory])
            .max()
            .unwrap_or(DEFAULT_MAX_MEMORY)
    }
}

pub(crate) fn absolute(path: &Path) -> Result<PathBuf> {
    ensure!(!path.as_os_str().is_empty(), "the component path is empty");
    std::path::absolute(path).with_context(|| format!("cannot resolve `{}`", path.display()))
}

/// `s` with every character but `A-Z a-z 0-9 _ . -` replaced by `replacement`: a name for a
/// route, a key-value namespace or a file.
pub(crate) fn name_chars(s: &str, replacement: char) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                replacement
            }
        })
        .collect()
}

pub(crate) fn expand_home(p: &Path) -> PathBuf {
    match (p.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => p.to_path_buf(),
    }
}

fn default_cache_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("hotswap"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .context("neither XDG_CACHE_HOME nor HOME is set; pass `--cache-dir` or `--no-cache`")?;
    Ok(PathBuf::from(home).join(".cache").join("hotswap"))
}

/// Splits `flag`'s `KEY=VALUE` on the first `=`. Errors name the key only: a value may be a
/// secret.
fn parse_pair(flag: &str, kv: &str) -> Result<(String, String)> {
    let Some((key, value)) = kv.split_once('=') else {
        bail!("`{flag}` takes KEY=VALUE; got a value without `=`");
    };
    ensure!(!key.is_empty(), "`{flag}` has an empty key (`=VALUE`)");
    Ok((key.to_string(), value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_pairs_split_on_the_first_equals_sign() {
        assert_eq!(
            parse_pair("--env", "A=b=c").unwrap(),
            ("A".into(), "b=c".into())
        );
        assert_eq!(
            parse_pair("--env", "EMPTY=").unwrap(),
            ("EMPTY".into(), String::new())
        );
        assert!(parse_pair("--env", "novalue").is_err());
        let err = parse_pair("--config-var", "=hunter2")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--config-var") && !err.contains("hunter2"),
            "{err}"
        );
    }

    #[test]
    fn home_is_expanded_in_file_paths() {
        if let Some(home) = std::env::var_os("HOME") {
            assert_eq!(expand_home(Path::new("~/x")), PathBuf::from(home).join("x"));
        }
        assert_eq!(expand_home(Path::new("/abs")), PathBuf::from("/abs"));
    }
}
