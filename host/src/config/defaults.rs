//! Every default setting, written once: each is one constant, and that constant feeds the
//! configuration (what an unset flag, variable and key come to), `hotswap serve --help` (the
//! `[default: …]` after each flag, [`annotate`]) and `hotswap init`'s starter file
//! ([`starter`]).

use std::net::SocketAddr;
use std::time::Duration;

/// Default address the HTTP listener binds to.
pub const DEFAULT_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8080);
/// Default time between two checks of a component file under `--watch poll`.
pub const DEFAULT_FILE_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Default time between two polls of a registry tag.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(10);
/// Default deadline of one registry poll, the pull of a new digest included.
pub const DEFAULT_PULL_TIMEOUT: Duration = Duration::from_secs(300);
/// Default quiet period after the last file event before a reload is attempted.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(150);
/// Default wall-clock deadline for one request, guest execution and body streaming included.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default limit on one guest linear memory.
pub const DEFAULT_MAX_MEMORY: u64 = 128 << 20;
/// Default size limit of the incremental compilation cache.
pub const DEFAULT_INCREMENTAL_CACHE_SIZE: u64 = 1 << 30;
/// Default number of requests served at the same time, per route.
pub const DEFAULT_MAX_CONCURRENCY: usize = 100;
/// Default time a request waits for a free slot before it is answered 503.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(1);
/// Default number of requests one WASI 0.3 instance serves (1: a fresh instance each).
pub const DEFAULT_INSTANCE_REUSE: usize = 1;
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
/// Default largest component (file, upload or registry layer) the host will read.
pub const DEFAULT_MAX_COMPONENT_SIZE: u64 = 256 << 20;
/// Default time in-flight requests get to finish after SIGTERM or SIGINT.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time the new process of a binary upgrade gets to load its routes and be ready.
pub const DEFAULT_UPGRADE_TIMEOUT: Duration = Duration::from_secs(120);
/// Default number of good generations kept compiled.
pub const DEFAULT_KEEP_GENERATIONS: usize = 3;
/// Default number of routes `--apps` serves at most.
pub const DEFAULT_MAX_APPS: usize = 16;
/// Default quiet period after a source change before a build starts. An editor's save is a
/// burst of a few milliseconds (write, or write a temporary file and rename it), so this adds
/// little to save → serving; a change landing during a build queues one more build.
pub const DEFAULT_BUILD_DELAY: Duration = Duration::from_millis(20);
/// Default limit on one build's run time.
pub const DEFAULT_BUILD_TIMEOUT: Duration = Duration::from_secs(600);
/// Source file extensions that trigger a build by default.
pub const DEFAULT_BUILD_EXTENSIONS: [&str; 4] = ["rs", "toml", "lock", "wit"];
/// Default largest number of keys in one bucket.
pub use crate::wasi::keyvalue::DEFAULT_MAX_KEYS;
/// Default largest value a guest may store under one key.
pub use crate::wasi::keyvalue::DEFAULT_MAX_VALUE_SIZE;
/// Default `service.name` of the spans.
pub const DEFAULT_OTEL_SERVICE_NAME: &str = "hotswap";
/// Default sampler: every trace that starts here, and callers' decisions for the rest.
pub const DEFAULT_OTEL_SAMPLER: &str = "parentbased_always_on";
/// Default number of spans waiting for export at most (the OpenTelemetry batch processor's).
pub const DEFAULT_OTEL_QUEUE_SIZE: usize = 2048;
/// Default deadline of one export (OpenTelemetry's).
pub const DEFAULT_OTEL_TIMEOUT: Duration = Duration::from_secs(10);
/// Default path of the dev-mode event stream on the public listener.
pub const DEFAULT_EVENTS_PATH: &str = "/_hotswap/events";
/// Default mode.
pub const DEFAULT_MODE: crate::cli::Mode = crate::cli::Mode::Dev;
/// Default compiler tier mode.
pub const DEFAULT_TIER: crate::cli::TierMode = crate::cli::TierMode::Auto;
/// Default way of watching a file.
pub const DEFAULT_WATCH_MODE: crate::cli::WatchMode = crate::cli::WatchMode::Native;

/// One default as people read it.
pub struct Shown {
    /// The id of its flag among `hotswap serve`'s arguments (`None`: a file key only).
    pub arg: Option<&'static str>,
    /// Its key in `hotswap.toml`.
    pub key: &'static str,
    /// The default as `--help` shows it (`30s`, `128MiB`, `100`).
    pub text: String,
    /// The default as a TOML value (`"30s"`, `100`).
    pub toml: String,
}

/// A duration as humantime writes it.
fn duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// A size in the largest binary unit that divides it (`128MiB`), else in bytes.
fn size(bytes: u64) -> String {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// A value that is a string in TOML.
fn quoted(arg: Option<&'static str>, key: &'static str, text: String) -> Shown {
    Shown {
        arg,
        key,
        toml: format!("{text:?}"),
        text,
    }
}

/// A value that is a number in TOML.
fn number(arg: Option<&'static str>, key: &'static str, n: impl ToString) -> Shown {
    let text = n.to_string();
    Shown {
        arg,
        key,
        toml: text.clone(),
        text,
    }
}

/// Every default that `--help` and the starter file show.
pub fn shown() -> Vec<Shown> {
    use clap::ValueEnum;
    let name = |v: &dyn Fn() -> Option<clap::builder::PossibleValue>| {
        v().map(|p| p.get_name().to_string()).unwrap_or_default()
    };
    vec![
        quoted(Some("addr"), "server.addr", DEFAULT_ADDR.to_string()),
        quoted(
            Some("mode"),
            "server.mode",
            name(&|| DEFAULT_MODE.to_possible_value()),
        ),
        quoted(
            Some("events_path"),
            "server.events_path",
            DEFAULT_EVENTS_PATH.to_string(),
        ),
        quoted(
            Some("shutdown_timeout"),
            "server.shutdown_timeout",
            duration(DEFAULT_SHUTDOWN_TIMEOUT),
        ),
        quoted(
            Some("upgrade_timeout"),
            "server.upgrade_timeout",
            duration(DEFAULT_UPGRADE_TIMEOUT),
        ),
        quoted(
            Some("debounce"),
            "watch.debounce",
            duration(DEFAULT_DEBOUNCE),
        ),
        quoted(
            Some("watch"),
            "watch.mode",
            name(&|| DEFAULT_WATCH_MODE.to_possible_value()),
        ),
        quoted(
            None,
            "watch.poll_interval",
            duration(DEFAULT_FILE_POLL_INTERVAL),
        ),
        quoted(None, "build.delay", duration(DEFAULT_BUILD_DELAY)),
        quoted(None, "build.timeout", duration(DEFAULT_BUILD_TIMEOUT)),
        Shown {
            arg: None,
            key: "build.include_ext",
            text: DEFAULT_BUILD_EXTENSIONS.join(" "),
            toml: format!("{DEFAULT_BUILD_EXTENSIONS:?}"),
        },
        quoted(
            Some("request_timeout"),
            "limits.request_timeout",
            duration(DEFAULT_REQUEST_TIMEOUT),
        ),
        quoted(
            Some("max_memory"),
            "limits.max_memory",
            size(DEFAULT_MAX_MEMORY),
        ),
        number(
            Some("max_concurrency"),
            "limits.max_concurrency",
            DEFAULT_MAX_CONCURRENCY,
        ),
        quoted(
            Some("queue_timeout"),
            "limits.queue_timeout",
            duration(DEFAULT_QUEUE_TIMEOUT),
        ),
        number(
            Some("instance_reuse"),
            "limits.instance_reuse",
            DEFAULT_INSTANCE_REUSE,
        ),
        number(
            Some("instance_reuse_concurrency"),
            "limits.instance_reuse_concurrency",
            DEFAULT_INSTANCE_REUSE_CONCURRENCY,
        ),
        quoted(
            Some("tier"),
            "limits.tier",
            name(&|| DEFAULT_TIER.to_possible_value()),
        ),
        quoted(
            Some("max_body_size"),
            "limits.max_body_size",
            size(DEFAULT_MAX_BODY_SIZE),
        ),
        number(
            Some("max_headers"),
            "limits.max_headers",
            DEFAULT_MAX_HEADERS,
        ),
        quoted(
            Some("max_header_bytes"),
            "limits.max_header_bytes",
            size(DEFAULT_MAX_HEADER_BYTES),
        ),
        quoted(
            Some("header_read_timeout"),
            "limits.header_read_timeout",
            duration(DEFAULT_HEADER_READ_TIMEOUT),
        ),
        quoted(
            Some("write_timeout"),
            "limits.write_timeout",
            duration(DEFAULT_WRITE_TIMEOUT),
        ),
        quoted(
            Some("idle_timeout"),
            "limits.idle_timeout",
            duration(DEFAULT_IDLE_TIMEOUT),
        ),
        quoted(
            Some("max_guest_output"),
            "limits.max_guest_output",
            size(DEFAULT_MAX_GUEST_OUTPUT),
        ),
        quoted(
            Some("max_component_size"),
            "limits.max_component_size",
            size(DEFAULT_MAX_COMPONENT_SIZE),
        ),
        number(
            Some("keep_generations"),
            "cache.keep_generations",
            DEFAULT_KEEP_GENERATIONS,
        ),
        quoted(
            Some("incremental_cache_size"),
            "cache.incremental_size",
            size(DEFAULT_INCREMENTAL_CACHE_SIZE),
        ),
        quoted(
            Some("admin_timeout"),
            "admin.timeout",
            duration(DEFAULT_ADMIN_TIMEOUT),
        ),
        quoted(
            None,
            "registry.poll_interval",
            duration(DEFAULT_POLL_INTERVAL),
        ),
        quoted(
            Some("registry_pull_timeout"),
            "registry.pull_timeout",
            duration(DEFAULT_PULL_TIMEOUT),
        ),
        number(Some("max_apps"), "apps.max_apps", DEFAULT_MAX_APPS),
        quoted(
            Some("keyvalue_max_value_size"),
            "keyvalue.max_value_size",
            size(DEFAULT_MAX_VALUE_SIZE),
        ),
        number(
            Some("keyvalue_max_keys"),
            "keyvalue.max_keys",
            DEFAULT_MAX_KEYS,
        ),
        quoted(
            Some("otel_service_name"),
            "otel.service_name",
            DEFAULT_OTEL_SERVICE_NAME.to_string(),
        ),
        quoted(
            Some("otel_sampler"),
            "otel.sampler",
            DEFAULT_OTEL_SAMPLER.to_string(),
        ),
        number(
            Some("otel_queue_size"),
            "otel.queue_size",
            DEFAULT_OTEL_QUEUE_SIZE,
        ),
        quoted(
            Some("otel_timeout"),
            "otel.timeout",
            duration(DEFAULT_OTEL_TIMEOUT),
        ),
    ]
}

/// `serve`'s arguments in `cmd` with `[default: …]` after the help of every flag that has one
/// default.
pub fn annotate(cmd: clap::Command) -> clap::Command {
    cmd.mut_subcommand("serve", |mut serve| {
        for shown in shown() {
            let Some(arg) = shown.arg else { continue };
            let text = shown.text;
            serve = serve.mut_arg(arg, |a| {
                let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
                let long = a.get_long_help().map(|h| h.to_string());
                let a = a.help(format!("{help} [default: {text}]"));
                match long {
                    Some(long) => a.long_help(format!("{long} [default: {text}]")),
                    None => a,
                }
            });
        }
        serve
    })
}

/// The starter `hotswap.toml` that `hotswap init` writes, every default in it.
pub fn starter() -> String {
    let mut text = STARTER.to_string();
    for shown in shown() {
        text = text.replace(&format!("{{{}}}", shown.key), &shown.toml);
    }
    text
}

/// The starter file, with `{section.key}` where a default goes.
const STARTER: &str = r#"# hotswap.toml: settings for `hotswap serve`.
# Precedence: command-line flag > environment variable (HOTSWAP_*) > this file > default.
# Relative paths are relative to this file.

[server]
# addr = {server.addr}
# mode = {server.mode}  # dev | prod (prod: no builds, JSON logs, component required)
# shutdown_timeout = {server.shutdown_timeout} # time in-flight requests get after SIGTERM/SIGINT
# upgrade_timeout = {server.upgrade_timeout}  # time the new process of a SIGUSR2 upgrade gets to be ready
# events_path = {server.events_path}  # dev mode: server-sent events of builds and swaps ("off": none)
# live_reload = false        # dev mode: guests' HTML pages reload when their route's code changes

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
# debounce = {watch.debounce}
# mode = {watch.mode}  # native | poll (network filesystems send no file events)
# poll_interval = {watch.poll_interval}  # with mode = "poll"

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
# include_ext = {build.include_ext}
# exclude_dir = []           # target/ is always excluded
# delay = {build.delay}
# timeout = {build.timeout}

[limits]
# request_timeout = {limits.request_timeout}
# max_memory = {limits.max_memory}  # per guest linear memory
# max_concurrency = {limits.max_concurrency}
# queue_timeout = {limits.queue_timeout}
# instance_reuse = {limits.instance_reuse}  # requests per WASI 0.3 instance (1: a fresh instance each)
# instance_reuse_concurrency = {limits.instance_reuse_concurrency}  # at once per reused instance
# tier = {limits.tier}  # auto | fast (Winch) | optimized (Cranelift); see --tier
# max_body_size = {limits.max_body_size}
# max_headers = {limits.max_headers}
# max_header_bytes = {limits.max_header_bytes}
# header_read_timeout = {limits.header_read_timeout}
# write_timeout = {limits.write_timeout}  # a client that accepts no response bytes this long is cut
# idle_timeout = {limits.idle_timeout}  # a connection with no request in progress this long is closed
# max_guest_output = {limits.max_guest_output}  # per request, stdout and stderr together; the rest is dropped
# max_component_size = {limits.max_component_size}  # component files, uploads and registry layers
# allow_outbound = []        # e.g. ["api.example.com", "*.internal:8443"]

[cache]
# enabled = true
# dir = "~/.cache/hotswap"   # default: $XDG_CACHE_HOME/hotswap
# keep_generations = {cache.keep_generations}
# incremental_size = {cache.incremental_size}  # Cranelift's per-function cache under dir/incremental (0: off)

# HTTPS: reloaded when the files change (a renewed certificate, a Secret's ..data swap), on
# SIGHUP and on POST /reload; a pair that does not check out never replaces a good one.
# [server.tls]
# cert = "tls/server.pem"    # the chain, the server's certificate first
# key = "tls/server.key"
# [[server.tls.certificate]] # more pairs, chosen by the name a client asks for (SNI)
# cert = "tls/other.pem"
# key = "tls/other.key"

[admin]
# addr = "127.0.0.1:9090"    # off unless set
# token = "…"                # better: HOTSWAP_ADMIN_TOKEN
# timeout = {admin.timeout}  # deadline of one admin call (an upload: reading, compiling, saving)
# client_ca = "tls/admin-clients.pem"  # mutual TLS: only clients with a certificate it signed

[log]
# format = "pretty"          # pretty | json

# Following a registry tag (component.source = "oci://..."): polled with a HEAD per interval.
[registry]
# poll_interval = {registry.poll_interval}
# pull_timeout = {registry.pull_timeout}  # one poll, a new digest's manifest and layer included; a registry
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
# max_apps = {apps.max_apps}

# The store behind wasi:keyvalue; its state survives every swap and, but for memory, restarts.
[keyvalue]
# store = "sqlite"           # sqlite | sqlite:PATH | memory | redis://127.0.0.1:6379/0
#                            # (sqlite: $XDG_STATE_HOME/hotswap/keyvalue.sqlite3)
# namespace = "app"          # buckets are this app's alone; default: the component's file stem
# max_value_size = {keyvalue.max_value_size}
# max_keys = {keyvalue.max_keys}  # per bucket

# OpenTelemetry traces over OTLP/HTTP (protobuf), off unless an endpoint is set. The OTEL_*
# variables every SDK reads work too (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME, …).
[otel]
# endpoint = "http://127.0.0.1:4318"  # spans go to /v1/traces under it
# service_name = {otel.service_name}
# sampler = {otel.sampler}  # always_on | always_off | traceidratio | parentbased_…
# sampler_arg = 1.0          # the ratio, for the ratio samplers
# queue_size = {otel.queue_size}  # spans waiting for export; more are dropped and counted
# timeout = {otel.timeout}
# [otel.resource]
# "deployment.environment.name" = "prod"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_shows_in_the_help_and_the_starter() {
        use clap::CommandFactory;
        let mut cmd = annotate(crate::cli::Cli::command());
        let serve = cmd
            .find_subcommand_mut("serve")
            .expect("serve")
            .render_long_help()
            .to_string();
        let starter = starter();
        assert!(
            !starter.contains("{limits.") && !starter.contains("{server."),
            "a placeholder is left: {starter}"
        );
        for shown in shown() {
            if shown.arg.is_some() {
                assert!(
                    serve.contains(&format!("[default: {}]", shown.text)),
                    "`--help` does not show {}'s default {}",
                    shown.key,
                    shown.text
                );
            }
            let (_, key) = shown.key.split_once('.').unwrap();
            assert!(
                starter.contains(&format!("# {key} = {}", shown.toml)),
                "the starter does not show {} = {}",
                shown.key,
                shown.toml
            );
        }
    }

    #[test]
    fn sizes_and_durations_read_as_people_write_them() {
        assert_eq!(size(128 << 20), "128MiB");
        assert_eq!(size(1 << 30), "1GiB");
        assert_eq!(size(64 << 10), "64KiB");
        assert_eq!(size(1000), "1000");
        assert_eq!(duration(Duration::from_secs(600)), "10m");
        assert_eq!(duration(Duration::from_millis(150)), "150ms");
    }
}
