//! `--apps DIR`: every `NAME.wasm` in a directory is served at `/NAME` (`index.wasm` at `/`),
//! deploy by dropping a file.
//!
//! Strategy: one watch on the directory (not one per app: inotify instances are a per-user
//! limit) sends the path of every changed `NAME.wasm` into a channel; one task drains it. A name
//! with a route already gets a file-change trigger on that route's reloader, so replacing,
//! breaking or deleting the file follows the rules of a single component (a deleted or bad file
//! leaves the last good generation serving). A new name gets a route of its own, started and
//! added to the table while every other route keeps serving. Names starting with `.` are
//! ignored: write `.NAME.wasm.tmp`, then rename it into place.

use super::{FirstLoad, Host, RouteTable, start};
use crate::cli::WatchMode;
use crate::config::{AppsConfig, RouteConfig, RouteDefaults, app_name};
use crate::reload::Trigger;
use crate::watcher::{self, FileWatcher};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::mpsc;

/// The running watch of an apps directory; dropping it stops adding and swapping apps.
pub struct AppsWatcher {
    _watcher: Option<FileWatcher>,
    first_loads: Vec<FirstLoad>,
}

impl AppsWatcher {
    /// The first loads of the apps found at startup (see [`RouteTasks::first_load`]).
    ///
    /// [`RouteTasks::first_load`]: super::RouteTasks::first_load
    pub fn take_first_loads(&mut self) -> Vec<FirstLoad> {
        std::mem::take(&mut self.first_loads)
    }
}

/// Serves every app in `apps.dir` now and every one dropped in later, as routes of `table`.
/// An app that cannot load at startup is an error only with `--require-component`; one dropped
/// in later never stops the host.
pub async fn serve(
    host: Arc<Host>,
    apps: &AppsConfig,
    defaults: RouteDefaults,
    table: Arc<RouteTable>,
) -> Result<AppsWatcher> {
    let (tx, mut rx) = mpsc::unbounded_channel::<PathBuf>();
    // Watch before the first scan, so a file landing in between is not missed.
    let watch = match (host.watch, host.watch_mode) {
        (false, _) => None,
        (true, mode) => {
            let wanted = |p: &Path| app_name(p).is_some();
            let changed = move |p: &Path| {
                let _ = tx.send(p.to_path_buf());
            };
            Some(match mode {
                WatchMode::Native => watcher::watch_dir(&apps.dir, host.debounce, wanted, changed)?,
                WatchMode::Poll => {
                    watcher::poll_dir(&apps.dir, host.file_poll_interval, wanted, changed)?
                }
            })
        }
    };
    let mut apps_dir = Apps {
        host,
        defaults,
        table,
        max_apps: apps.max_apps,
        refused: Vec::new(),
        first_loads: Vec::new(),
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&apps.dir)
        .with_context(|| format!("cannot read the apps directory `{}`", apps.dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| app_name(p).is_some() && p.is_file())
        .collect();
    files.sort();
    let require = apps_dir.host.require_component;
    for file in files {
        apps_dir.add_or_reload(&file, require, true).await?;
    }
    if apps_dir.table.all().is_empty() {
        tracing::warn!(dir = %apps.dir.display(), "no app in the apps directory yet; requests get 404 until a NAME.wasm lands");
    }
    let first_loads = std::mem::take(&mut apps_dir.first_loads);
    tokio::spawn(async move {
        while let Some(file) = rx.recv().await {
            // An app dropped in later never stops the host.
            let _ = apps_dir.add_or_reload(&file, false, false).await;
        }
    });
    Ok(AppsWatcher {
        _watcher: watch,
        first_loads,
    })
}

struct Apps {
    host: Arc<Host>,
    defaults: RouteDefaults,
    table: Arc<RouteTable>,
    max_apps: usize,
    /// Names refused for lack of room, so each is logged once.
    refused: Vec<String>,
    /// The first loads of the apps found at startup, which run while the host listens.
    first_loads: Vec<FirstLoad>,
}

impl Apps {
    /// Reloads the route of `file`'s app, or starts one for a new app. An app found at
    /// `startup` is served (503 until it loads) while it loads; one dropped in later once its
    /// first load has ended.
    async fn add_or_reload(&mut self, file: &Path, require: bool, startup: bool) -> Result<()> {
        let Some(name) = app_name(file) else {
            return Ok(());
        };
        if let Some(route) = self.table.get(&name) {
            route.triggers.send(Trigger::FileChanged);
            return Ok(());
        }
        // A file created and removed again before we got here adds nothing.
        if !file.is_file() {
            return Ok(());
        }
        if self.table.all().len() >= self.max_apps {
            if !self.refused.contains(&name) {
                tracing::warn!(app = %name, file = %file.display(), max_apps = self.max_apps, "the apps directory already serves `--max-apps` apps; not serving this one");
                self.refused.push(name);
            }
            return Ok(());
        }
        let config = RouteConfig::app(&name, file.to_path_buf(), &self.defaults);
        let host = Host {
            require_component: require,
            ..(*self.host).clone()
        };
        match start(&host, &config, false, startup).await {
            Ok((route, mut tasks)) => {
                let loaded = tasks.first_load();
                if startup {
                    self.first_loads.push(loaded);
                } else {
                    loaded.await;
                }
                let prefix = route.prefix.clone();
                match self.table.insert(route) {
                    Ok(()) => {
                        tracing::info!(route = %name, %prefix, file = %file.display(), "serving a new app at {prefix}")
                    }
                    Err(reason) => tracing::warn!(route = %name, "not adding the app: {reason}"),
                }
                Ok(())
            }
            Err(err) => {
                tracing::warn!(route = %name, file = %file.display(), error = %format!("{err:#}"), "cannot serve the app");
                Err(err)
            }
        }
    }
}
