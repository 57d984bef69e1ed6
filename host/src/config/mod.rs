//! The one validated, typed configuration of a running host.
//!
//! Settings come from flags, `HOTSWAP_*` environment variables (clap reads both; a flag wins)
//! and `hotswap.toml`, in that order of precedence, then defaults. Every check that can fail on
//! user input happens in [`Config::from_args`], before any socket is bound or any file is
//! watched, so a wrong setting is an error message and exit code 1.

use crate::cli::{LogFormat, Mode, ServeArgs, parse_duration, parse_size};
use crate::config_file::{self, BuildSection, Loaded};
use crate::guest_config::ConfigValues;
use crate::keyvalue::{self, KvSettings, StoreSpec};
use crate::outbound::OutboundPolicy;
use anyhow::{Context, Result, bail, ensure};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default address the HTTP listener binds to.
pub const DEFAULT_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8080);
/// Default quiet period after the last file event before a reload is attempted.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(150);
/// Default wall-clock deadline for one request, guest execution and body streaming included.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default limit on one guest linear memory.
pub const DEFAULT_MAX_MEMORY: u64 = 128 << 20;
/// Default number of requests served at the same time.
pub const DEFAULT_MAX_CONCURRENCY: usize = 100;
/// Default time a request waits for a free slot before it is answered 503.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(1);
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
/// Default time in-flight requests get to finish after SIGTERM or SIGINT.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// Default number of good generations kept compiled.
pub const DEFAULT_KEEP_GENERATIONS: usize = 3;
/// Default quiet period after a source change before a build starts.
pub const DEFAULT_BUILD_DELAY: Duration = Duration::from_millis(300);
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
    /// Absolute path of the component file that is served and watched.
    pub component: PathBuf,
    /// Address the HTTP listener binds to.
    pub addr: SocketAddr,
    /// Fail at startup when no valid component can be loaded.
    pub require_component: bool,
    /// Watch the component file for changes.
    pub watch: bool,
    /// Quiet period after the last file event before a reload.
    pub debounce: Duration,
    /// Bounds on guests and clients.
    pub limits: Limits,
    /// Which outbound HTTP requests guests may make.
    pub outbound: OutboundPolicy,
    /// The guest's whole environment.
    pub guest_env: Vec<(String, String)>,
    /// Time in-flight requests get to finish on shutdown.
    pub shutdown_timeout: Duration,
    /// Log line format.
    pub log_format: LogFormat,
    /// On-disk compile cache directory, if caching is on.
    pub cache_dir: Option<PathBuf>,
    /// Good generations kept compiled for rollback.
    pub keep_generations: usize,
    /// The admin listener, if enabled.
    pub admin: Option<AdminConfig>,
    /// Rebuild on save, if configured (dev mode only).
    pub build: Option<BuildConfig>,
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

/// Bounds on what one guest or one client may use.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Wall-clock deadline of one request.
    pub request_timeout: Duration,
    /// Bytes each guest linear memory may grow to.
    pub max_memory: u64,
    /// Requests served at the same time.
    pub max_concurrency: usize,
    /// Time a request waits for a free slot.
    pub queue_timeout: Duration,
    /// Bytes of request body accepted.
    pub max_body_size: u64,
    /// Number of request header fields accepted.
    pub max_headers: usize,
    /// Bytes of request header section accepted.
    pub max_header_bytes: u64,
    /// Time a client has to send its request headers.
    pub header_read_timeout: Duration,
    /// Time a client may accept none of a response's bytes before it is disconnected.
    pub write_timeout: Duration,
}

/// The admin listener's settings.
#[derive(Clone)]
pub struct AdminConfig {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Bearer token for mutating calls; `None` refuses them all.
    pub token: Option<String>,
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
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
fn file_duration(
    loaded: Option<&Loaded>,
    key: &str,
    value: Option<&String>,
) -> Result<Option<Duration>> {
    value
        .map(|v| parse_duration(v).map_err(|e| in_file(loaded, key, e)))
        .transpose()
}

/// Parses a size written in the file, naming the key and file on error.
fn file_size(loaded: Option<&Loaded>, key: &str, value: Option<&String>) -> Result<Option<u64>> {
    value
        .map(|v| parse_size(v).map_err(|e| in_file(loaded, key, e)))
        .transpose()
}

fn in_file(loaded: Option<&Loaded>, key: &str, msg: String) -> anyhow::Error {
    let file = loaded
        .map(|l| l.path.display().to_string())
        .unwrap_or_default();
    anyhow::anyhow!("`{key}` in `{file}`: {msg}")
}

impl Config {
    /// Validates `serve` arguments, merged with the configuration file, into a [`Config`].
    pub fn from_args(args: ServeArgs) -> Result<Config> {
        let loaded = config_file::load(args.config.as_deref())?;
        let l = loaded.as_ref();
        let empty = config_file::FileConfig::default();
        let f = l.map(|l| &l.file).unwrap_or(&empty);

        let mode = args.mode.or(f.server.mode).unwrap_or(Mode::Dev);
        let component = match (&args.component, &f.component.path) {
            (Some(p), _) => absolute(p)?,
            (None, Some(p)) => l.map(|l| l.resolve(p)).unwrap_or_else(|| p.clone()),
            (None, None) => bail!(
                "no component given: pass `hotswap serve COMPONENT.wasm`, or set `component.path` in {}",
                config_file::DEFAULT_FILE
            ),
        };

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
        let limits = Limits {
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
            max_body_size: args
                .max_body_size
                .or(file_size(
                    l,
                    "limits.max_body_size",
                    fl.max_body_size.as_ref(),
                )?)
                .unwrap_or(DEFAULT_MAX_BODY_SIZE),
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
        };
        limits.validate()?;

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
        let admin = admin_addr.map(|addr| AdminConfig { addr, token });

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
        let keyvalue = keyvalue_settings(&args, &f.keyvalue, l, &component)?;

        let mut notes = Vec::new();
        let build = build_config(&args, f.build.as_ref(), l, mode, &mut notes)?;
        // A build creates the component's directory; without one it must already exist.
        check_component_path(&component, build.is_some())?;

        Ok(Config {
            mode,
            component,
            addr,
            require_component,
            watch,
            debounce,
            limits,
            outbound,
            guest_env,
            shutdown_timeout,
            log_format,
            cache_dir,
            keep_generations,
            admin,
            build,
            config_values,
            config_overrides,
            config_file: l.map(|l| l.path.clone()),
            keyvalue,
            notes,
        })
    }
}

fn keyvalue_settings(
    args: &ServeArgs,
    file: &config_file::KeyValueSection,
    l: Option<&Loaded>,
    component: &Path,
) -> Result<KvSettings> {
    let store = match (&args.keyvalue, &file.store) {
        (Some(s), _) => StoreSpec::parse(s).map_err(|e| anyhow::anyhow!("`--keyvalue`: {e}"))?,
        (None, Some(s)) => {
            match StoreSpec::parse(s).map_err(|e| in_file(l, "keyvalue.store", e))? {
                // A relative path in the file is relative to the file.
                StoreSpec::Sqlite(_) if s.starts_with("sqlite:") => {
                    let path = Path::new(&s["sqlite:".len()..]);
                    StoreSpec::Sqlite(
                        l.map(|l| l.resolve(path))
                            .unwrap_or_else(|| path.to_path_buf()),
                    )
                }
                other => other,
            }
        }
        (None, None) => StoreSpec::parse("sqlite").map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    let namespace = match args.keyvalue_namespace.clone().or(file.namespace.clone()) {
        Some(ns) => ns,
        // The component's stem, made a valid name (`my app.wasm` → `my_app`).
        None => component
            .file_stem()
            .map(|s| {
                s.to_string_lossy()
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                            c
                        } else {
                            '_'
                        }
                    })
                    .take(64)
                    .collect::<String>()
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".into()),
    };
    keyvalue::check_name(&namespace).map_err(|e| anyhow::anyhow!("`--keyvalue-namespace`: {e}"))?;
    let max_value_size = args
        .keyvalue_max_value_size
        .or(file_size(
            l,
            "keyvalue.max_value_size",
            file.max_value_size.as_ref(),
        )?)
        .unwrap_or(keyvalue::DEFAULT_MAX_VALUE_SIZE);
    let max_keys = args
        .keyvalue_max_keys
        .or(file.max_keys)
        .unwrap_or(keyvalue::DEFAULT_MAX_KEYS);
    ensure!(max_keys >= 1, "`--keyvalue-max-keys` must be at least 1");
    ensure!(
        max_value_size <= 64 << 20,
        "`--keyvalue-max-value-size` must be at most 64MiB, got `{max_value_size}` bytes"
    );
    Ok(KvSettings {
        store,
        namespace,
        max_value_size,
        max_keys,
    })
}

impl Limits {
    fn validate(&self) -> Result<()> {
        ensure!(
            !self.request_timeout.is_zero(),
            "`--request-timeout` must be greater than zero"
        );
        ensure!(
            (1..=MAX_CONCURRENCY_LIMIT).contains(&self.max_concurrency),
            "`--max-concurrency` must be between 1 and {MAX_CONCURRENCY_LIMIT}, got `{}`",
            self.max_concurrency
        );
        ensure!(
            (MIN_MEMORY..=MAX_MEMORY).contains(&self.max_memory),
            "`--max-memory` must be between 64KiB and 4GiB, got `{}` bytes",
            self.max_memory
        );
        ensure!(self.max_headers >= 1, "`--max-headers` must be at least 1");
        ensure!(
            self.max_header_bytes >= 1024,
            "`--max-header-bytes` must be at least 1KiB, got `{}` bytes",
            self.max_header_bytes
        );
        ensure!(
            !self.header_read_timeout.is_zero(),
            "`--header-read-timeout` must be greater than zero"
        );
        ensure!(
            !self.write_timeout.is_zero(),
            "`--write-timeout` must be greater than zero"
        );
        Ok(())
    }
}

fn build_config(
    args: &ServeArgs,
    file: Option<&BuildSection>,
    l: Option<&Loaded>,
    mode: Mode,
    notes: &mut Vec<String>,
) -> Result<Option<BuildConfig>> {
    let cmd = args.build_cmd.clone().or(file.and_then(|b| b.cmd.clone()));
    let Some(cmd) = cmd.filter(|c| !c.trim().is_empty()) else {
        return Ok(None);
    };
    if mode == Mode::Prod {
        notes.push(
            "a build command is configured but builds are off in prod mode; ignoring it".into(),
        );
        return Ok(None);
    }
    let resolve = |p: &Path| l.map(|l| l.resolve(p)).unwrap_or_else(|| p.to_path_buf());
    let dir = match file.and_then(|b| b.dir.as_ref()) {
        Some(d) => resolve(d),
        None => l.map(|l| l.dir.clone()).unwrap_or(std::env::current_dir()?),
    };
    ensure!(
        dir.is_dir(),
        "the build directory `{}` does not exist",
        dir.display()
    );
    let watch = match file.and_then(|b| b.watch.as_ref()) {
        Some(paths) => paths.iter().map(|p| resolve(p)).collect(),
        None => vec![dir.clone()],
    };
    for p in &watch {
        ensure!(
            p.exists(),
            "the build watch path `{}` does not exist",
            p.display()
        );
    }
    let include_ext = file.and_then(|b| b.include_ext.clone()).unwrap_or_else(|| {
        DEFAULT_BUILD_EXTENSIONS
            .iter()
            .map(|s| s.to_string())
            .collect()
    });
    let mut exclude_dir = file.and_then(|b| b.exclude_dir.clone()).unwrap_or_default();
    if !exclude_dir.iter().any(|d| d == "target") {
        exclude_dir.push("target".into());
    }
    let delay = file_duration(l, "build.delay", file.and_then(|b| b.delay.as_ref()))?
        .unwrap_or(DEFAULT_BUILD_DELAY);
    let timeout = file_duration(l, "build.timeout", file.and_then(|b| b.timeout.as_ref()))?
        .unwrap_or(DEFAULT_BUILD_TIMEOUT);
    Ok(Some(BuildConfig {
        cmd,
        dir,
        watch,
        include_ext,
        exclude_dir,
        delay,
        timeout,
    }))
}

fn check_component_path(component: &Path, built: bool) -> Result<()> {
    let parent = component.parent().with_context(|| {
        format!(
            "component path `{}` has no parent directory",
            component.display()
        )
    })?;
    if built && !parent.exists() {
        std::fs::create_dir_all(parent).with_context(|| {
            format!(
                "cannot create the component's directory `{}`",
                parent.display()
            )
        })?;
    }
    ensure!(
        parent.is_dir(),
        "the directory of the component, `{}`, does not exist",
        parent.display()
    );
    ensure!(
        component.file_name().is_some(),
        "component path `{}` does not name a file",
        component.display()
    );
    if component.is_dir() {
        bail!(
            "component path `{}` is a directory, not a file",
            component.display()
        );
    }
    Ok(())
}

fn absolute(path: &Path) -> Result<PathBuf> {
    ensure!(!path.as_os_str().is_empty(), "the component path is empty");
    std::path::absolute(path).with_context(|| format!("cannot resolve `{}`", path.display()))
}

fn expand_home(p: &Path) -> PathBuf {
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
