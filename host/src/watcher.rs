//! "This file may have changed" events (the component, or `hotswap.toml` for its config
//! values), from notify with debouncing.
//!
//! The watch is on the file's parent directory, not the file: deploying by atomic rename
//! replaces the inode, and a watch on the old inode would never fire again. Events are filtered
//! to the component's file name, and reads (including our own) are ignored.

use anyhow::{Context, Result};
use notify::Watcher;
use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A running watch; dropping it stops watching.
pub enum FileWatcher {
    /// OS file events: a debounced watch and an immediate one.
    Native {
        /// Fires once a burst of changes has been quiet for the debounce delay.
        _debouncer: Debouncer<notify::RecommendedWatcher, RecommendedCache>,
        /// Fires at once on the events after which the file is complete.
        _immediate: notify::RecommendedWatcher,
    },
    /// A scan of the directory every interval.
    Poll(notify::PollWatcher),
}

/// Watches `file` by scanning its directory every `interval`, comparing each file's metadata
/// and content, for filesystems that send no events (NFS, SMB, many container volumes). Calls
/// `on_change` after a scan that saw the file created, changed or removed.
pub fn poll(
    file: &Path,
    interval: Duration,
    on_change: impl Fn() + Send + Sync + 'static,
) -> Result<FileWatcher> {
    let (dir, name) = split(file)?;
    poll_dir(
        &dir,
        interval,
        move |p: &Path| p.file_name() == Some(name.as_os_str()),
        move |_: &Path| on_change(),
    )
}

/// [`poll`] for every file of `dir` that `wanted` accepts; `on_change` gets the file's path.
pub fn poll_dir(
    dir: &Path,
    interval: Duration,
    wanted: impl Fn(&Path) -> bool + Send + Sync + 'static,
    on_change: impl Fn(&Path) + Send + Sync + 'static,
) -> Result<FileWatcher> {
    let config = notify::Config::default()
        .with_poll_interval(interval)
        .with_compare_contents(true);
    let mut watcher = notify::PollWatcher::new(
        move |result: notify::Result<notify::Event>| match result {
            Ok(event) if is_change(&event.kind) => {
                for path in event.paths.iter().filter(|p| wanted(p)) {
                    on_change(path);
                }
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(error = %error, "file poll error; still serving the current generation");
            }
        },
        config,
    )
    .map_err(|source| classify(dir, source))?;
    watcher
        .watch(dir, RecursiveMode::NonRecursive)
        .map_err(|source| classify(dir, source))?;
    tracing::debug!(dir = %dir.display(), ?interval, "polling for changes");
    Ok(FileWatcher::Poll(watcher))
}

fn split(file: &Path) -> Result<(PathBuf, OsString)> {
    let dir = file
        .parent()
        .context("the watched path has no parent directory")?
        .to_path_buf();
    let name = file
        .file_name()
        .context("the watched path has no file name")?
        .to_owned();
    Ok((dir, name))
}

/// Why the watch could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The OS limit on inotify watches or instances is reached.
    #[error(
        "the operating system's limit on file watches is reached; raise \
         `fs.inotify.max_user_watches` / `fs.inotify.max_user_instances`, or run with \
         `--no-watch` and reload with SIGHUP"
    )]
    TooManyWatches,
    /// Any other watcher failure.
    #[error("cannot watch `{path}`: {source}")]
    Other {
        /// The directory that could not be watched.
        path: PathBuf,
        /// What notify said.
        source: notify::Error,
    },
}

/// Starts watching `file` and calls `on_change` after each debounced burst of changes to it
/// (for the component: send [`crate::reload::Trigger::FileChanged`]).
///
/// Two watches run side by side. The debounced one sees every kind of change and fires once a
/// burst has been quiet for `delay`. The immediate one fires at once on the events after which
/// the file is in a final state: a rename into place (the recommended way to deploy), the close
/// of a file opened for writing, and removal. Debouncing those would only add latency to a swap
/// (the later debounced trigger then finds the content unchanged and does nothing), and the
/// debouncer drops a creation and a removal that fall in one window as if neither happened, so
/// a file deployed and deleted again quickly would never be reported as gone.
pub fn watch(
    file: &Path,
    delay: Duration,
    on_change: impl Fn() + Send + Sync + 'static,
) -> Result<FileWatcher> {
    let (dir, name) = split(file)?;
    watch_dir(
        &dir,
        delay,
        move |p: &Path| p.file_name() == Some(name.as_os_str()),
        move |_: &Path| on_change(),
    )
}

/// [`watch`] for every file of `dir` that `wanted` accepts (an apps directory); `on_change`
/// gets the file's path, once per file per burst.
pub fn watch_dir(
    dir: &Path,
    delay: Duration,
    wanted: impl Fn(&Path) -> bool + Send + Sync + 'static,
    on_change: impl Fn(&Path) + Send + Sync + 'static,
) -> Result<FileWatcher> {
    let wanted = Arc::new(wanted);
    let on_change = Arc::new(on_change);
    let (immediate_wanted, immediate_change) = (wanted.clone(), on_change.clone());
    let mut immediate =
        notify::recommended_watcher(move |result: notify::Result<notify::Event>| {
            if let Ok(event) = result
                && is_complete(&event.kind)
            {
                for path in event.paths.iter().filter(|p| immediate_wanted(p)) {
                    immediate_change(path);
                }
            }
        })
        .map_err(|source| classify(dir, source))?;
    immediate
        .watch(dir, RecursiveMode::NonRecursive)
        .map_err(|source| classify(dir, source))?;

    let mut debouncer = new_debouncer(delay, None, move |result: DebounceEventResult| match result {
        Ok(events) => {
            let mut changed: Vec<&PathBuf> = events
                .iter()
                .filter(|event| is_change(&event.kind))
                .flat_map(|event| event.paths.iter())
                .filter(|p| wanted(p))
                .collect();
            changed.sort();
            changed.dedup();
            for path in changed {
                on_change(path);
            }
        }
        Err(errors) => {
            for error in errors {
                tracing::warn!(error = %error, "file watcher error; still serving the current generation");
            }
        }
    })
    .map_err(|source| classify(dir, source))?;
    debouncer
        .watch(dir, RecursiveMode::NonRecursive)
        .map_err(|source| classify(dir, source))?;
    tracing::debug!(dir = %dir.display(), "watching for changes");
    Ok(FileWatcher::Native {
        _debouncer: debouncer,
        _immediate: immediate,
    })
}

/// Events after which the file is in a final state: new content renamed into place or closed by
/// a writer, or the file removed. (Creation is not one: `cp` creates the file before writing
/// it.)
fn is_complete(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Access(AccessKind::Close(AccessMode::Write))
            | EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both))
            | EventKind::Remove(_)
    )
}

/// Events that can mean new content: creation, modification, rename, removal, and the end of a
/// write. Opening or reading the file (which the host itself does on reload) is not a change.
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

fn classify(dir: &Path, source: notify::Error) -> WatchError {
    match &source.kind {
        notify::ErrorKind::MaxFilesWatch => WatchError::TooManyWatches,
        notify::ErrorKind::Io(io)
            if io.raw_os_error() == Some(24) || io.raw_os_error() == Some(28) =>
        {
            WatchError::TooManyWatches
        }
        _ => WatchError::Other {
            path: dir.to_path_buf(),
            source,
        },
    }
}
