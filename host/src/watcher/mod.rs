//! "This file may have changed" events (the component, an apps directory, or `hotswap.toml` for
//! its config values), from the operating system's file events or from polling.
//!
//! **What is watched.** Never the file itself: deploying by atomic rename replaces the inode,
//! and a watch on the old inode would never fire again. The watch is on the file's directory,
//! filtered to its name; reads (including our own) are ignored. Real volumes add two twists,
//! and both are followed:
//! - *Symbolic links on the way.* A Kubernetes ConfigMap, Secret or projected volume publishes
//!   `app.wasm -> ..data/app.wasm` with `..data -> ..2026_12_07_…`, and delivers a new version
//!   by renaming a new `..data` link over the old one: `app.wasm` itself never changes. So the
//!   path is resolved link by link (`Chain`), the directory of every link on the way and of
//!   the file it ends at is watched, and a change to any of them fires; the chain is resolved
//!   again after each change, so the next version's directory is watched in turn.
//! - *Directories that go away.* The parent of the file's directory is watched too, for that
//!   directory's name: a directory deleted and made again is watched again (and fires).
//!
//! **When it fires.** At once on the events after which a file is in a final state (a rename
//! into place, the close of a file opened for writing, a removal, any change to a link on the
//! way), and once a burst of other changes has been quiet for the debounce delay. The reloader
//! skips content it already serves, so firing twice for one deploy costs one read.
//!
//! **When events were lost.** The kernel's event queue can overflow; notify then reports a
//! rescan, and every file the watch covers fires.

mod chain;
mod native;

use anyhow::{Context, Result};
use native::{Message, Target};
use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

/// A running watch; dropping it stops watching.
pub enum FileWatcher {
    /// OS file events, handled on a thread of the watch's own.
    Native(NativeWatch),
    /// A scan of the directory every interval.
    Poll(notify::PollWatcher),
}

/// The thread of a native watch; dropping it stops the thread.
pub struct NativeWatch {
    stop: mpsc::Sender<Message>,
}

impl Drop for NativeWatch {
    fn drop(&mut self) {
        let _ = self.stop.send(Message::Stop);
    }
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

/// Watches `file` (following symbolic links on its way) and calls `on_change` after each
/// change to it (for the component: send [`crate::reload::Trigger::FileChanged`]).
pub fn watch(
    file: &Path,
    delay: Duration,
    on_change: impl Fn() + Send + Sync + 'static,
) -> Result<FileWatcher> {
    let file = std::path::absolute(file)
        .with_context(|| format!("cannot resolve `{}`", file.display()))?;
    split(&file)?;
    let target = Target::File(file);
    native::start(target, delay, Arc::new(move |_: &Path| on_change()))
}

/// Watches every file of `dir` that `wanted` accepts (an apps directory); `on_change` gets the
/// file's path, once per file per burst. A change to a link or directory inside `dir` (the
/// `..data` swap of a mounted volume) fires every wanted file in it.
pub fn watch_dir(
    dir: &Path,
    delay: Duration,
    wanted: impl Fn(&Path) -> bool + Send + Sync + 'static,
    on_change: impl Fn(&Path) + Send + Sync + 'static,
) -> Result<FileWatcher> {
    let dir =
        std::path::absolute(dir).with_context(|| format!("cannot resolve `{}`", dir.display()))?;
    let target = Target::Dir {
        dir,
        wanted: Box::new(wanted),
    };
    native::start(target, delay, Arc::new(on_change))
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
