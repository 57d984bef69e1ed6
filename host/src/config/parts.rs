//! The parts of [`super::Config::from_args`] that need more than a line: where the component
//! comes from, the key-value store, the build.

use super::origin::{self as oci, OciSpec};
use super::{
    BuildConfig, ComponentOrigin, DEFAULT_BUILD_DELAY, DEFAULT_BUILD_EXTENSIONS,
    DEFAULT_BUILD_TIMEOUT, absolute, in_file,
};
use crate::cli::{Mode, ServeArgs};
use crate::config::file::{self as config_file, BuildSection, FileConfig, Loaded};
use crate::wasi::keyvalue::{self, KvSettings, StoreSpec};
use anyhow::{Context, Result, bail, ensure};
use std::path::Path;

/// The configuration file to read, if any. `--config PATH` reads PATH; `--no-config` reads none;
/// otherwise `./hotswap.toml` is read only when no component is named (by `COMPONENT`,
/// `HOTSWAP_COMPONENT`, `--route` or `--apps`): `hotswap serve app.wasm` in a directory that happens to hold a project's
/// `hotswap.toml` must not pick up that project's build command and admin listener.
pub(super) fn config_file(args: &ServeArgs, notes: &mut Vec<String>) -> Result<Option<Loaded>> {
    match (&args.config, args.no_config) {
        (Some(_), true) => bail!("`--config` and `--no-config` contradict each other; pass one"),
        (Some(path), false) => config_file::load(Some(path)),
        (None, true) => Ok(None),
        (None, false)
            if args.component.is_some() || !args.routes.is_empty() || args.apps.is_some() =>
        {
            if Path::new(config_file::DEFAULT_FILE).is_file() {
                notes.push(format!(
                    "not reading ./{0}: a component was named on the command line (pass \
                     `--config {0}` to use the file, or `--no-config` to silence this)",
                    config_file::DEFAULT_FILE
                ));
            }
            Ok(None)
        }
        (None, false) => config_file::load(None),
    }
}

/// The component's origin: `COMPONENT` (a path or `oci://…`), else `component.path` or
/// `component.source` in the file.
pub(super) fn origin(
    args: &ServeArgs,
    f: &FileConfig,
    l: Option<&Loaded>,
) -> Result<ComponentOrigin> {
    match (&args.component, &f.component.path, &f.component.source) {
        (Some(arg), _, _) => source(&arg.to_string_lossy(), args, f, Path::to_path_buf),
        (None, Some(_), Some(_)) => bail!(
            "`component.path` and `component.source` in `{}` both name a component; keep one",
            l.map(|l| l.path.display().to_string()).unwrap_or_default()
        ),
        (None, Some(p), None) => Ok(ComponentOrigin::File(
            l.map(|l| l.resolve(p)).unwrap_or_else(|| p.clone()),
        )),
        (None, None, Some(text)) => match oci::parse(text) {
            Some(_) => source(text, args, f, Path::to_path_buf)
                .map_err(|e| in_file(l, "component.source", format!("{e:#}"))),
            None => Err(in_file(
                l,
                "component.source",
                format!("`{text}` is not an `oci://` reference (a file goes in `component.path`)"),
            )),
        },
        (None, None, None) => bail!(
            "no component given: pass `hotswap serve COMPONENT.wasm` (or `oci://REGISTRY/REPO:TAG`, \
             or `--route PREFIX=COMPONENT`, or `--apps DIR`), or set `component.path` in {}",
            config_file::DEFAULT_FILE
        ),
    }
}

/// A component named by `text`: an `oci://` reference (with the registry settings of the
/// flags and the file), else a file path, made absolute after `resolve`.
pub(super) fn source(
    text: &str,
    args: &ServeArgs,
    f: &FileConfig,
    resolve: impl Fn(&Path) -> std::path::PathBuf,
) -> Result<ComponentOrigin> {
    match oci::parse(text) {
        Some(parsed) => parsed.map_err(anyhow::Error::msg)?,
        None => return Ok(ComponentOrigin::File(absolute(&resolve(Path::new(text)))?)),
    };
    let r = &f.registry;
    let poll_interval = args
        .poll_interval
        .or(r.poll_interval)
        .unwrap_or(super::DEFAULT_POLL_INTERVAL);
    ensure!(
        !poll_interval.is_zero(),
        "`--poll-interval` must be greater than zero"
    );
    let pull_timeout = args
        .registry_pull_timeout
        .or(r.pull_timeout)
        .unwrap_or(super::DEFAULT_PULL_TIMEOUT);
    ensure!(
        !pull_timeout.is_zero(),
        "`--registry-pull-timeout` must be greater than zero"
    );
    let insecure = if args.insecure_registry.is_empty() {
        r.insecure.clone().unwrap_or_default()
    } else {
        args.insecure_registry.clone()
    };
    Ok(ComponentOrigin::Registry(OciSpec {
        reference: text[oci::SCHEME.len()..].to_string(),
        insecure,
        poll_interval,
        pull_timeout,
        username: args.registry_username.clone().or(r.username.clone()),
        password: args.registry_password.clone().or(r.password.clone()),
    }))
}

/// A route's key-value namespace: `explicit` if set, else the component's stem (or the
/// repository's last segment), made a valid name (`my app.wasm` → `my_app`).
pub(super) fn namespace(explicit: Option<&str>, origin: &ComponentOrigin) -> String {
    if let Some(ns) = explicit {
        return ns.to_string();
    }
    match origin {
        ComponentOrigin::File(path) => path.file_stem().map(|s| s.to_string_lossy().into_owned()),
        ComponentOrigin::Registry(spec) => spec
            .reference
            .split(['@', ':'])
            .next()
            .and_then(|repo| repo.rsplit('/').next())
            .map(str::to_string),
    }
    .map(|s| {
        crate::names::name_chars(&s, '_')
            .chars()
            .take(64)
            .collect::<String>()
    })
    .filter(|s| !s.is_empty())
    .unwrap_or_else(|| "default".into())
}

pub(super) fn keyvalue_settings(
    args: &ServeArgs,
    file: &config_file::KeyValueSection,
    l: Option<&Loaded>,
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
        (None, None) => StoreSpec::SqliteDefault,
    };
    // The namespace of every route that sets none of its own (default: each component's stem).
    let namespace = args
        .keyvalue_namespace
        .clone()
        .or(file.namespace.clone())
        .unwrap_or_else(|| "default".into());
    keyvalue::check_name(&namespace).map_err(|e| anyhow::anyhow!("`--keyvalue-namespace`: {e}"))?;
    let max_value_size = args
        .keyvalue_max_value_size
        .or(file.max_value_size)
        .unwrap_or(super::DEFAULT_MAX_VALUE_SIZE);
    let max_keys = args
        .keyvalue_max_keys
        .or(file.max_keys)
        .unwrap_or(super::DEFAULT_MAX_KEYS);
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

/// A build from `cmd_flag` (`--build-cmd`) or the `[build]`-shaped table `file` (`[build]` or a
/// `[route.build]`).
pub(super) fn build_config(
    cmd_flag: Option<&String>,
    file: Option<&BuildSection>,
    l: Option<&Loaded>,
    mode: Mode,
    notes: &mut Vec<String>,
) -> Result<Option<BuildConfig>> {
    let cmd = cmd_flag.cloned().or(file.and_then(|b| b.cmd.clone()));
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
    let delay = file.and_then(|b| b.delay).unwrap_or(DEFAULT_BUILD_DELAY);
    let timeout = file
        .and_then(|b| b.timeout)
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

pub(super) fn check_component_path(component: &Path, built: bool) -> Result<()> {
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
