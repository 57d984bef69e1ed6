//! The one validated, typed configuration of a running host.
//!
//! Settings come from flags, `HOTSWAP_*` environment variables (clap reads both; a flag wins)
//! and `hotswap.toml`, in that order of precedence, then defaults. Every check that can fail on
//! user input happens in [`Config::from_args`], before any socket is bound or any file is
//! watched, so a wrong setting is an error message and exit code 1.

pub mod canary;
pub mod defaults;
pub mod dev;
mod edge;
pub mod file;
mod limits;
pub mod origin;
mod parts;
pub mod reference;
mod routes;

pub use defaults::*;
pub use dev::DevEvents;
pub use limits::{ConnLimits, GuestLimits};
pub use origin::{ComponentOrigin, OciSpec, SCHEME};

pub use routes::{AppsConfig, INDEX, RouteConfig, RouteDefaults, app_name};

use crate::cli::{LogFormat, Mode, ServeArgs, WatchMode};
use crate::config::file::{self as config_file, FileConfig, GuestLimitKeys, Loaded};
use crate::telemetry::traces::TraceSettings;
use crate::wasi::config_store::ConfigValues;
use crate::wasi::keyvalue::KvSettings;
use crate::wasi::outbound::OutboundPolicy;
use anyhow::{Context, Result, bail, ensure};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    /// The certificates the listener serves HTTPS with, the default one first (empty: plain
    /// HTTP).
    pub tls: Vec<TlsPair>,
    /// OpenTelemetry traces, if an endpoint is configured.
    pub traces: Option<TraceSettings>,
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
    /// Time the new process of a binary upgrade gets to be ready.
    pub upgrade_timeout: Duration,
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
    /// The admin settings for an admin socket that systemd passes when no admin address is
    /// configured: the socket unit decides the address (its `addr` is unspecified).
    pub passed_admin: AdminConfig,
    /// The dev-mode event stream and live reload, if on.
    pub dev_events: Option<DevEvents>,
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

/// The admin listener's settings.
#[derive(Clone)]
pub struct AdminConfig {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Bearer token for mutating calls; `None` refuses them all.
    pub token: Option<String>,
    /// Deadline of one call.
    pub timeout: std::time::Duration,
    /// Accept only clients with a certificate signed by this CA (the listener serves TLS).
    pub client_ca: Option<PathBuf>,
}

/// One certificate and its key, by their files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPair {
    /// The PEM certificate chain, the server's certificate first.
    pub cert: PathBuf,
    /// The PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("client_ca", &self.client_ca)
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

pub(crate) fn in_file(loaded: Option<&Loaded>, key: &str, msg: String) -> anyhow::Error {
    let file = loaded
        .map(|l| l.path.display().to_string())
        .unwrap_or_default();
    anyhow::anyhow!("`{key}` in `{file}`: {msg}")
}

impl Config {
    /// Validates `serve` arguments, merged with the configuration file, into a [`Config`].
    /// Each part reads its flag (or environment variable: clap gives them as one), else its
    /// key in the file, else its default ([`defaults`]).
    pub fn from_args(args: ServeArgs) -> Result<Config> {
        let mut notes = Vec::new();
        let loaded = parts::config_file(&args, &mut notes)?;
        let l = loaded.as_ref();
        let empty = config_file::FileConfig::default();
        let f = l.map(|l| &l.file).unwrap_or(&empty);

        let mode = args.mode.or(f.server.mode).unwrap_or(DEFAULT_MODE);
        let watching = Watching::from(&args, f)?;
        let defaults = route_defaults(&args, f)?;
        let mut conn = conn_limits(&args, f)?;
        let (routes, apps) = routes::assemble(&args, f, l, mode, &defaults, &mut notes)?;
        conn.max_streams = routes
            .iter()
            .map(|r| r.limits.max_concurrency)
            .chain([defaults.limits.max_concurrency])
            .max()
            .unwrap_or(DEFAULT_MAX_CONCURRENCY);
        let (cache_dir, keep_generations, incremental_cache_size) = cache(&args, f, l)?;
        let tls = edge::tls(&args, f, l)?;
        let traces = edge::traces(&args, f)?;
        let (admin, passed_admin) = admin(&args, f, l)?;
        let dev_events = dev::dev_events(&args, f, mode)?;
        ensure!(
            !tls.is_empty() || admin.as_ref().is_none_or(|a| a.client_ca.is_none()),
            "`--admin-client-ca` makes the admin listener serve HTTPS: give it the certificate \
             with `--tls-cert` and `--tls-key` (or `server.tls`)"
        );
        let max_component_size = args
            .max_component_size
            .or(f.limits.max_component_size)
            .unwrap_or(DEFAULT_MAX_COMPONENT_SIZE);
        ensure!(
            max_component_size >= 8,
            "`--max-component-size` must be at least 8 bytes"
        );
        Ok(Config {
            mode,
            routes,
            apps,
            defaults,
            addr: args.addr.or(f.server.addr).unwrap_or(DEFAULT_ADDR),
            tls,
            traces,
            require_component: args.require_component
                || f.component.require.unwrap_or(false)
                || mode == Mode::Prod,
            watch: watching.enabled,
            watch_mode: watching.mode,
            file_poll_interval: watching.poll_interval,
            max_component_size,
            debounce: watching.debounce,
            conn,
            shutdown_timeout: args
                .shutdown_timeout
                .or(f.server.shutdown_timeout)
                .unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT),
            upgrade_timeout: upgrade_timeout(&args, f)?,
            log_format: args.log_format.or(f.log.format).unwrap_or(match mode {
                Mode::Dev => LogFormat::Pretty,
                Mode::Prod => LogFormat::Json,
            }),
            cache_dir,
            keep_generations,
            incremental_cache_size,
            admin,
            passed_admin,
            dev_events,
            config_values: match l {
                Some(loaded) => config_file::config_values(loaded)?,
                None => ConfigValues::default(),
            },
            config_overrides: ConfigValues(
                args.config_vars
                    .iter()
                    .map(|kv| parse_pair("--config-var", kv))
                    .collect::<Result<_>>()?,
            ),
            config_file: l.map(|l| l.path.clone()),
            keyvalue: parts::keyvalue_settings(&args, &f.keyvalue, l)?,
            notes,
        })
    }
}

/// `--upgrade-timeout`: more than zero.
fn upgrade_timeout(args: &ServeArgs, f: &FileConfig) -> Result<Duration> {
    let timeout = args
        .upgrade_timeout
        .or(f.server.upgrade_timeout)
        .unwrap_or(DEFAULT_UPGRADE_TIMEOUT);
    ensure!(
        !timeout.is_zero(),
        "`--upgrade-timeout` must be greater than zero"
    );
    Ok(timeout)
}

/// How component files are watched.
struct Watching {
    enabled: bool,
    mode: WatchMode,
    poll_interval: Duration,
    debounce: Duration,
}

impl Watching {
    fn from(args: &ServeArgs, f: &FileConfig) -> Result<Watching> {
        let poll_interval = args
            .poll_interval
            .or(f.watch.poll_interval)
            .unwrap_or(DEFAULT_FILE_POLL_INTERVAL);
        ensure!(
            !poll_interval.is_zero(),
            "`--poll-interval` must be greater than zero"
        );
        let debounce = args
            .debounce
            .or(f.watch.debounce)
            .unwrap_or(DEFAULT_DEBOUNCE);
        ensure!(
            !debounce.is_zero(),
            "`--debounce` must be greater than zero"
        );
        Ok(Watching {
            enabled: !args.no_watch && f.watch.enabled.unwrap_or(true),
            mode: args.watch.or(f.watch.mode).unwrap_or(DEFAULT_WATCH_MODE),
            poll_interval,
            debounce,
        })
    }
}

/// What a route that sets none of its own gets: the flags' guest limits over `[limits]`'s over
/// the defaults, outbound rules, environment and key-value namespace.
fn route_defaults(args: &ServeArgs, f: &FileConfig) -> Result<RouteDefaults> {
    let flags = GuestLimitKeys {
        request_timeout: args.request_timeout,
        max_memory: args.max_memory,
        max_concurrency: args.max_concurrency,
        queue_timeout: args.queue_timeout,
        instance_reuse: args.instance_reuse,
        instance_reuse_concurrency: args.instance_reuse_concurrency,
        tier: args.tier,
        max_body_size: args.max_body_size,
        max_guest_output: args.max_guest_output,
        allow_outbound: None,
    };
    let limits = GuestLimits::DEFAULT.with(&f.limits.guest).with(&flags);
    limits.validate()?;
    let allow = if args.allow_outbound.is_empty() {
        f.limits.guest.allow_outbound.clone().unwrap_or_default()
    } else {
        args.allow_outbound.clone()
    };
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
    let flags = &args.canary;
    let canary = f.canary.with(&canary::CanaryKeys {
        weight: flags.weight,
        min_requests: flags.min_requests,
        max_duration: flags.max_duration,
        on_timeout: flags.on_timeout,
        max_error_increase: flags.max_error_increase,
        max_p99_ratio: flags.max_p99_ratio,
        p99_slack: flags.p99_slack,
        min_failures: flags.min_failures,
        sticky: flags.sticky.clone(),
        mode: flags.mode,
        deterministic: flags.deterministic,
        shadow_body_limit: flags.shadow_body_limit,
    });
    let canary_policy = canary.policy()?;
    Ok(RouteDefaults {
        limits,
        outbound: OutboundPolicy::parse(&allow)?,
        guest_env,
        keyvalue_namespace: args
            .keyvalue_namespace
            .clone()
            .or(f.keyvalue.namespace.clone()),
        canary,
        canary_policy,
    })
}

/// The bounds on clients and connections (`max_streams` is set once the routes are known).
fn conn_limits(args: &ServeArgs, f: &FileConfig) -> Result<ConnLimits> {
    let fl = &f.limits;
    let conn = ConnLimits {
        max_headers: args
            .max_headers
            .or(fl.max_headers)
            .unwrap_or(DEFAULT_MAX_HEADERS),
        max_header_bytes: args
            .max_header_bytes
            .or(fl.max_header_bytes)
            .unwrap_or(DEFAULT_MAX_HEADER_BYTES),
        header_read_timeout: args
            .header_read_timeout
            .or(fl.header_read_timeout)
            .unwrap_or(DEFAULT_HEADER_READ_TIMEOUT),
        write_timeout: args
            .write_timeout
            .or(fl.write_timeout)
            .unwrap_or(DEFAULT_WRITE_TIMEOUT),
        idle_timeout: args
            .idle_timeout
            .or(fl.idle_timeout)
            .unwrap_or(DEFAULT_IDLE_TIMEOUT),
        max_streams: 0,
    };
    conn.validate()?;
    Ok(conn)
}

/// The compile cache directory (if caching is on), the generations kept, and the incremental
/// cache's size limit.
fn cache(
    args: &ServeArgs,
    f: &FileConfig,
    l: Option<&Loaded>,
) -> Result<(Option<PathBuf>, usize, u64)> {
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
    let keep_generations = args
        .keep_generations
        .or(f.cache.keep_generations)
        .unwrap_or(DEFAULT_KEEP_GENERATIONS);
    ensure!(
        keep_generations >= 1,
        "`--keep-generations` must be at least 1"
    );
    let incremental = args
        .incremental_cache_size
        .or(f.cache.incremental_size)
        .unwrap_or(DEFAULT_INCREMENTAL_CACHE_SIZE);
    Ok((cache_dir, keep_generations, incremental))
}

/// The admin listener's settings, if it is on.
/// The admin listener's settings if an address is configured, and the same settings for an
/// admin socket passed by systemd.
fn admin(
    args: &ServeArgs,
    f: &FileConfig,
    l: Option<&Loaded>,
) -> Result<(Option<AdminConfig>, AdminConfig)> {
    let addr = args.admin_addr.or(f.admin.addr);
    let timeout = args
        .admin_timeout
        .or(f.admin.timeout)
        .unwrap_or(DEFAULT_ADMIN_TIMEOUT);
    ensure!(
        !timeout.is_zero(),
        "`--admin-timeout` must be greater than zero"
    );
    let token = args
        .admin_token
        .clone()
        .or(f.admin.token.clone())
        .filter(|t| !t.is_empty());
    let client_ca = match (&args.admin_client_ca, &f.admin.client_ca) {
        (Some(ca), _) => Some(absolute(ca)?),
        (None, Some(ca)) => Some(l.map(|l| l.resolve(ca)).unwrap_or_else(|| ca.clone())),
        (None, None) => None,
    };
    let settings = AdminConfig {
        addr: addr.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
        token,
        timeout,
        client_ca,
    };
    Ok((addr.map(|_| settings.clone()), settings))
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

    /// Whether any route (or app) has a canary policy, and so serves two generations at once
    /// for a while.
    pub fn any_canary(&self) -> bool {
        match &self.apps {
            Some(_) => self.defaults.canary_policy.is_some(),
            None => self.routes.iter().any(|r| r.canary.is_some()),
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
