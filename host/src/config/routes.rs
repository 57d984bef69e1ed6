//! The routes of [`super::Config`]: which component serves which path prefix, each with its
//! own limits and build, from `COMPONENT`, `--route`, `[[route]]` or `--apps`.

use super::{
    BuildConfig, ComponentOrigin, DEFAULT_MAX_APPS, GuestLimits, MAX_CONCURRENCY_LIMIT, in_file,
    parts,
};
use crate::cli::{Mode, ServeArgs};
use crate::config::file::{FileConfig, Loaded, RouteSection};
use crate::wasi::outbound::OutboundPolicy;
use anyhow::{Result, bail, ensure};
use std::path::{Path, PathBuf};

/// Name of the route at `/`, and the file of the app served there.
pub const INDEX: &str = "index";

/// One component served under a path prefix.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Names the route in the admin API, metrics and logs.
    pub name: String,
    /// The path prefix it serves: `/` or `/segment[/segment…]`, no trailing `/`.
    pub prefix: String,
    /// Where its component comes from.
    pub origin: ComponentOrigin,
    /// Bounds on its guests.
    pub limits: GuestLimits,
    /// Which outbound HTTP requests its guests may make.
    pub outbound: OutboundPolicy,
    /// Its guests' whole environment.
    pub guest_env: Vec<(String, String)>,
    /// The namespace of its key-value buckets.
    pub keyvalue_namespace: String,
    /// Its rebuild on save, if any (dev mode only).
    pub build: Option<BuildConfig>,
    /// Its canary policy, if any: new generations serve beside the current one first.
    pub canary: Option<super::canary::CanaryPolicy>,
}

/// What a route gets when nothing more specific is set: the global settings.
#[derive(Debug, Clone)]
pub struct RouteDefaults {
    /// Bounds on guests.
    pub limits: GuestLimits,
    /// Outbound HTTP allow-list.
    pub outbound: OutboundPolicy,
    /// Guest environment.
    pub guest_env: Vec<(String, String)>,
    /// `--keyvalue-namespace` or `keyvalue.namespace`, if set.
    pub keyvalue_namespace: Option<String>,
    /// The canary keys of `[canary]` and the `--canary-*` flags.
    pub canary: super::canary::CanaryKeys,
    /// The policy they make.
    pub canary_policy: Option<super::canary::CanaryPolicy>,
}

/// A drop-in directory of components (`--apps`).
#[derive(Debug, Clone)]
pub struct AppsConfig {
    /// The directory, absolute.
    pub dir: PathBuf,
    /// Most apps served.
    pub max_apps: usize,
}

impl RouteConfig {
    /// The route of app `name` (a file `NAME.wasm` in the apps directory) with the defaults.
    pub fn app(name: &str, file: PathBuf, defaults: &RouteDefaults) -> RouteConfig {
        let prefix = if name == INDEX {
            "/".to_string()
        } else {
            format!("/{name}")
        };
        RouteConfig::with_defaults(name, prefix, ComponentOrigin::File(file), defaults, None)
    }

    /// A route that overrides none of the defaults.
    fn with_defaults(
        name: &str,
        prefix: String,
        origin: ComponentOrigin,
        defaults: &RouteDefaults,
        build: Option<BuildConfig>,
    ) -> RouteConfig {
        RouteConfig {
            name: name.to_string(),
            prefix,
            keyvalue_namespace: parts::namespace(defaults.keyvalue_namespace.as_deref(), &origin),
            origin,
            limits: defaults.limits.clone(),
            outbound: defaults.outbound.clone(),
            guest_env: defaults.guest_env.clone(),
            build,
            canary: defaults.canary_policy.clone(),
        }
    }
}

/// The app name of a file in the apps directory: `NAME.wasm` with a valid name and not hidden.
pub fn app_name(file: &Path) -> Option<String> {
    let name = file.file_name()?.to_str()?;
    let stem = name.strip_suffix(".wasm")?;
    (!stem.starts_with('.') && check_name(stem).is_ok()).then(|| stem.to_string())
}

/// The routes and the apps directory the arguments and file describe. Exactly one of
/// `COMPONENT` (or `component.path`/`source`), `--route`/`[[route]]` and `--apps`/`[apps]`.
pub(super) fn assemble(
    args: &ServeArgs,
    f: &FileConfig,
    l: Option<&Loaded>,
    mode: Mode,
    defaults: &RouteDefaults,
    notes: &mut Vec<String>,
) -> Result<(Vec<RouteConfig>, Option<AppsConfig>)> {
    let named_component = args.component.is_some();
    ensure!(
        !named_component || args.routes.is_empty(),
        "a component and `--route` both say what to serve; pass `--route /=COMPONENT` for it instead"
    );
    ensure!(
        !(args.apps.is_some() && (named_component || !args.routes.is_empty())),
        "`--apps` serves a whole directory; it cannot be combined with a component or `--route`"
    );
    if let Some(apps) = apps(args, f, l, defaults)? {
        return Ok((Vec::new(), Some(apps)));
    }
    let routes = if !args.routes.is_empty() {
        ensure!(
            args.build_cmd.is_none(),
            "`--build-cmd` builds one component; with `--route`, give each route a `[route.build]` in the file"
        );
        args.routes
            .iter()
            .map(|spec| from_flag(spec, args, f, defaults))
            .collect::<Result<Vec<_>>>()?
    } else if !f.route.is_empty() && !named_component {
        from_sections(args, f, l, mode, defaults, notes)?
    } else {
        // One component at `/`: what `hotswap serve COMPONENT` has always been.
        let origin = parts::origin(args, f, l)?;
        let build = parts::build_config(args.build_cmd.as_ref(), f.build.as_ref(), l, mode, notes)?;
        vec![RouteConfig::with_defaults(
            INDEX,
            "/".to_string(),
            origin,
            defaults,
            build,
        )]
    };
    check_unique(&routes)?;
    for route in &routes {
        match &route.origin {
            // A build creates the component's directory; without one it must already exist.
            ComponentOrigin::File(path) => {
                parts::check_component_path(path, route.build.is_some())?
            }
            ComponentOrigin::Registry(_) => ensure!(
                route.build.is_none(),
                "a build command needs a component file to build into, not `{}`",
                route.origin.display()
            ),
        }
    }
    check_pool(routes.iter().map(|r| r.limits.max_concurrency).sum())?;
    Ok((routes, None))
}

/// The apps directory, if `--apps` or `apps.dir` (and nothing else) says what to serve.
fn apps(
    args: &ServeArgs,
    f: &FileConfig,
    l: Option<&Loaded>,
    defaults: &RouteDefaults,
) -> Result<Option<AppsConfig>> {
    let named_component = args.component.is_some();
    let file_component = f.component.path.is_some() || f.component.source.is_some();
    let dir = match (&args.apps, &f.apps.dir) {
        (Some(dir), _) => super::absolute(dir)?,
        (None, Some(dir)) if !named_component && args.routes.is_empty() => {
            l.map(|l| l.resolve(dir)).unwrap_or_else(|| dir.clone())
        }
        (None, _) => return Ok(None),
    };
    ensure!(
        args.apps.is_some() || !file_component && f.route.is_empty(),
        "`apps.dir` and a component (`component.path`, `component.source` or `[[route]]`) in `{}` both say what to serve; keep one",
        l.map(|l| l.path.display().to_string()).unwrap_or_default()
    );
    ensure!(
        dir.is_dir(),
        "the apps directory `{}` does not exist",
        dir.display()
    );
    ensure!(
        args.build_cmd.is_none() && f.build.is_none(),
        "a build command needs a single component to build into; `--apps` serves a directory"
    );
    let max_apps = args
        .max_apps
        .or(f.apps.max_apps)
        .unwrap_or(DEFAULT_MAX_APPS);
    ensure!(max_apps >= 1, "`--max-apps` must be at least 1");
    check_pool(max_apps.saturating_mul(defaults.limits.max_concurrency))?;
    Ok(Some(AppsConfig { dir, max_apps }))
}

/// The file's `[[route]]` tables.
fn from_sections(
    args: &ServeArgs,
    f: &FileConfig,
    l: Option<&Loaded>,
    mode: Mode,
    defaults: &RouteDefaults,
    notes: &mut Vec<String>,
) -> Result<Vec<RouteConfig>> {
    let file_name = || l.map(|l| l.path.display().to_string()).unwrap_or_default();
    ensure!(
        f.component.path.is_none() && f.component.source.is_none(),
        "`[[route]]` and `component.path`/`component.source` in `{}` both say what to serve; keep one (a `[[route]]` with `prefix = \"/\"` for the component)",
        file_name()
    );
    ensure!(
        f.build.is_none(),
        "`[build]` in `{}` builds one component; with `[[route]]`, give each route its own `[route.build]`",
        file_name()
    );
    ensure!(
        args.build_cmd.is_none(),
        "`--build-cmd` builds one component; with `[[route]]`, give each route a `[route.build]`"
    );
    f.route
        .iter()
        .enumerate()
        .map(|(i, section)| from_section(i, section, args, f, l, mode, defaults, notes))
        .collect()
}

/// `--route PREFIX=SOURCE`.
fn from_flag(
    spec: &str,
    args: &ServeArgs,
    f: &FileConfig,
    defaults: &RouteDefaults,
) -> Result<RouteConfig> {
    let Some((prefix, source)) = spec.split_once('=') else {
        bail!("`--route` takes PREFIX=COMPONENT (e.g. `/api=api.wasm`); got `{spec}`");
    };
    ensure!(
        !source.is_empty(),
        "`--route {spec}` names no component after `=`"
    );
    let prefix = normalize_prefix(prefix).map_err(|e| anyhow::anyhow!("`--route {spec}`: {e}"))?;
    let origin = parts::source(source, args, f, |p| p.to_path_buf())?;
    Ok(RouteConfig::with_defaults(
        &name_of(&prefix),
        prefix,
        origin,
        defaults,
        None,
    ))
}

/// One `[[route]]` table (the `index`th), its overrides applied over the defaults.
#[expect(
    clippy::too_many_arguments,
    reason = "the pieces of one merge, each used once"
)]
fn from_section(
    index: usize,
    section: &RouteSection,
    args: &ServeArgs,
    f: &FileConfig,
    l: Option<&Loaded>,
    mode: Mode,
    defaults: &RouteDefaults,
    notes: &mut Vec<String>,
) -> Result<RouteConfig> {
    let key = |k: &str| format!("route[{index}].{k}");
    let Some(prefix) = &section.prefix else {
        return Err(in_file(
            l,
            &key("prefix"),
            "every `[[route]]` needs a `prefix` (e.g. `prefix = \"/api\"`)".into(),
        ));
    };
    let prefix = normalize_prefix(prefix).map_err(|e| in_file(l, &key("prefix"), e))?;
    let name = match &section.name {
        Some(name) => {
            check_name(name).map_err(|e| in_file(l, &key("name"), e))?;
            name.clone()
        }
        None => name_of(&prefix),
    };
    let origin = section_origin(index, section, &prefix, args, f, l)?;
    let limits = defaults.limits.with(&section.limits);
    limits
        .validate()
        .map_err(|e| in_file(l, &format!("route[{index}]"), format!("{e:#}")))?;
    let outbound = match &section.limits.allow_outbound {
        Some(allow) => OutboundPolicy::parse(allow)
            .map_err(|e| in_file(l, &key("allow_outbound"), format!("{e:#}")))?,
        None => defaults.outbound.clone(),
    };
    let guest_env = match &section.env {
        Some(env) => env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        None => defaults.guest_env.clone(),
    };
    let namespace = match &section.keyvalue_namespace {
        Some(ns) => {
            crate::wasi::keyvalue::check_name(ns)
                .map_err(|e| in_file(l, &key("keyvalue_namespace"), e))?;
            ns.clone()
        }
        None => parts::namespace(defaults.keyvalue_namespace.as_deref(), &origin),
    };
    let build = parts::build_config(None, section.build.as_ref(), l, mode, notes)?;
    let canary = defaults
        .canary
        .with(&section.canary)
        .policy()
        .map_err(|e| in_file(l, &key("canary"), format!("{e:#}")))?;
    Ok(RouteConfig {
        name,
        prefix,
        origin,
        limits,
        outbound,
        guest_env,
        keyvalue_namespace: namespace,
        build,
        canary,
    })
}

/// Where `[[route]]` number `index` (prefix `prefix`) takes its component from: its `path`
/// (relative to the file) or its `oci://` `source`, exactly one of them.
fn section_origin(
    index: usize,
    section: &RouteSection,
    prefix: &str,
    args: &ServeArgs,
    f: &FileConfig,
    l: Option<&Loaded>,
) -> Result<ComponentOrigin> {
    let key = |k: &str| format!("route[{index}].{k}");
    let resolve = |p: &Path| l.map(|l| l.resolve(p)).unwrap_or_else(|| p.to_path_buf());
    match (&section.path, &section.source) {
        (Some(path), None) => Ok(ComponentOrigin::File(super::absolute(&resolve(path))?)),
        (None, Some(source)) => {
            ensure!(
                super::origin::parse(source).is_some(),
                "{}",
                in_file(
                    l,
                    &key("source"),
                    format!("`{source}` is not an `oci://` reference (a file goes in `path`)")
                )
            );
            parts::source(source, args, f, resolve)
        }
        (Some(_), Some(_)) => Err(in_file(
            l,
            &key("path"),
            "`path` and `source` both name a component; keep one".into(),
        )),
        (None, None) => Err(in_file(
            l,
            &key("path"),
            format!("route `{prefix}` names no component: set `path` or `source`"),
        )),
    }
}

/// `/api/` → `/api`; `/` stays; anything not starting with `/`, or with an empty, `.` or `..`
/// segment, is refused.
pub fn normalize_prefix(prefix: &str) -> Result<String, String> {
    if !prefix.starts_with('/') {
        return Err(format!("the prefix `{prefix}` must start with `/`"));
    }
    let trimmed = prefix.trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok("/".to_string());
    }
    for segment in trimmed[1..].split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(format!(
                "the prefix `{prefix}` has an empty, `.` or `..` segment"
            ));
        }
        if segment.contains(['?', '#', '%', ' ']) {
            return Err(format!(
                "the prefix `{prefix}` may not contain `?`, `#`, `%` or spaces"
            ));
        }
    }
    Ok(trimmed.to_string())
}

/// The default name of the route at `prefix`: `/` is `index`, `/api/v1` is `api-v1`.
pub fn name_of(prefix: &str) -> String {
    let name = crate::names::name_chars(prefix.trim_matches('/'), '-');
    if name.is_empty() {
        INDEX.to_string()
    } else {
        name
    }
}

/// A route name: 1 to 64 of `A-Z a-z 0-9 _ . -`.
pub fn check_name(name: &str) -> Result<(), String> {
    crate::wasi::keyvalue::check_name(name).map_err(|e| e.replace("name", "route name"))
}

/// Two routes may share neither a prefix nor a name.
fn check_unique(routes: &[RouteConfig]) -> Result<()> {
    for (i, a) in routes.iter().enumerate() {
        for b in &routes[i + 1..] {
            ensure!(
                a.prefix != b.prefix,
                "routes `{}` ({}) and `{}` ({}) both serve the prefix `{}`; give each its own",
                a.name,
                a.origin.display(),
                b.name,
                b.origin.display(),
                a.prefix
            );
            ensure!(
                a.name != b.name,
                "routes `{}` and `{}` are both named `{}`; set `name` on one of them",
                a.prefix,
                b.prefix,
                a.name
            );
        }
    }
    Ok(())
}

/// The instance pool holds a slot per concurrent request of every route.
fn check_pool(slots: usize) -> Result<()> {
    ensure!(
        slots <= MAX_CONCURRENCY_LIMIT,
        "the routes' concurrency caps add up to {slots}, more than the {MAX_CONCURRENCY_LIMIT} \
         instance slots one host reserves; lower `max_concurrency` (or `--max-apps`)"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_normalized_or_refused() {
        assert_eq!(normalize_prefix("/").unwrap(), "/");
        assert_eq!(normalize_prefix("///").unwrap(), "/");
        assert_eq!(normalize_prefix("/api/").unwrap(), "/api");
        assert_eq!(normalize_prefix("/api/v1").unwrap(), "/api/v1");
        assert!(
            normalize_prefix("api")
                .unwrap_err()
                .contains("must start with `/`")
        );
        assert!(normalize_prefix("/a//b").is_err());
        assert!(normalize_prefix("/a/../b").is_err());
        assert!(normalize_prefix("/a?b").is_err());
    }

    #[test]
    fn names_come_from_prefixes() {
        assert_eq!(name_of("/"), "index");
        assert_eq!(name_of("/api"), "api");
        assert_eq!(name_of("/api/v1"), "api-v1");
    }

    #[test]
    fn app_names_skip_hidden_and_other_files() {
        assert_eq!(app_name(Path::new("/d/api.wasm")).as_deref(), Some("api"));
        assert_eq!(
            app_name(Path::new("/d/index.wasm")).as_deref(),
            Some("index")
        );
        assert_eq!(app_name(Path::new("/d/.api.wasm.tmp")), None);
        assert_eq!(app_name(Path::new("/d/.api.wasm")), None);
        assert_eq!(app_name(Path::new("/d/notes.txt")), None);
        assert_eq!(app_name(Path::new("/d/a b.wasm")), None);
    }
}
