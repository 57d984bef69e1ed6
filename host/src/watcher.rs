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

use anyhow::{Context, Result};
use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher};
use std::collections::{BTreeSet, HashSet};
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Most symbolic links followed when resolving a watched path (as the kernel's own limit).
const MAX_LINKS: usize = 40;

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
    start(target, delay, Arc::new(move |_: &Path| on_change()))
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
    start(target, delay, Arc::new(on_change))
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

/// What one native watch covers.
enum Target {
    /// One file, by the path it was named by.
    File(PathBuf),
    /// The files of a directory that a filter accepts.
    Dir {
        dir: PathBuf,
        wanted: Box<dyn Fn(&Path) -> bool + Send + Sync>,
    },
}

impl Target {
    /// The path whose chain of links decides what is watched.
    fn path(&self) -> &Path {
        match self {
            Target::File(file) => file,
            Target::Dir { dir, .. } => dir,
        }
    }
}

/// How a path resolves, link by link: every `(directory, name)` on the way that is a symbolic
/// link, and the `(directory, name)` the path finally names.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Chain {
    links: Vec<(PathBuf, OsString)>,
    end: (PathBuf, OsString),
}

impl Chain {
    /// Resolves `path` (absolute), following at most [`MAX_LINKS`] links. A part that does not
    /// exist ends the resolution there: what is named so far is watched, and the chain is
    /// resolved again when it changes.
    fn resolve(path: &Path) -> Chain {
        let mut links = Vec::new();
        let mut todo: Vec<OsString> = components(path);
        todo.reverse();
        let mut resolved = PathBuf::from("/");
        let mut last = None;
        while let Some(part) = todo.pop() {
            if part == ".." {
                resolved.pop();
                continue;
            }
            let candidate = resolved.join(&part);
            let is_link =
                std::fs::symlink_metadata(&candidate).is_ok_and(|m| m.file_type().is_symlink());
            if is_link && links.len() < MAX_LINKS {
                links.push((resolved.clone(), part.clone()));
                if let Ok(target) = std::fs::read_link(&candidate) {
                    if target.is_absolute() {
                        resolved = PathBuf::from("/");
                    }
                    let mut more = components(&target);
                    more.reverse();
                    todo.extend(more);
                    continue;
                }
            }
            last = Some((resolved.clone(), part));
            resolved = candidate;
        }
        let end = last.unwrap_or_else(|| (PathBuf::from("/"), OsString::new()));
        Chain { links, end }
    }

    /// The directories to watch: the directory of every link and of the end, and the parent
    /// of the end's directory (to see that directory deleted and made again).
    fn dirs(&self) -> BTreeSet<PathBuf> {
        let mut dirs: BTreeSet<PathBuf> = self.links.iter().map(|(d, _)| d.clone()).collect();
        dirs.insert(self.end.0.clone());
        if let Some(parent) = self.end.0.parent() {
            dirs.insert(parent.to_path_buf());
        }
        dirs
    }

    /// Whether `(dir, name)` is a link on the way, or the end's directory itself.
    fn is_on_the_way(&self, dir: &Path, name: &OsString) -> bool {
        self.links.iter().any(|(d, n)| d == dir && n == name)
            || (self.end.0.parent() == Some(dir) && self.end.0.file_name() == Some(name))
    }
}

/// The parts of a path, without the root.
fn components(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(part) => Some(part.to_owned()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// What reaches a watch's thread.
enum Message {
    /// An event (or error) from notify.
    Event(notify::Result<notify::Event>),
    /// The watch was dropped.
    Stop,
}

/// What an event means for a watch.
#[derive(Debug, PartialEq, Eq)]
enum Meaning {
    /// Nothing it covers.
    Nothing,
    /// These files changed; `now` when the change is complete (fire at once).
    Files { paths: Vec<PathBuf>, now: bool },
    /// A link, directory or lost events: resolve again and fire every file it covers.
    Everything,
}

/// The state of one native watch, owned by its thread.
struct Watch {
    target: Target,
    chain: Chain,
    /// Directories currently watched.
    watched: BTreeSet<PathBuf>,
    watcher: notify::RecommendedWatcher,
    on_change: Arc<dyn Fn(&Path) + Send + Sync>,
    delay: Duration,
    /// Files changed whose burst has not been quiet for `delay` yet.
    pending: BTreeSet<PathBuf>,
    /// When the pending files fire.
    due: Option<Instant>,
}

fn start(
    target: Target,
    delay: Duration,
    on_change: Arc<dyn Fn(&Path) + Send + Sync>,
) -> Result<FileWatcher> {
    let (tx, rx) = mpsc::channel();
    let events = tx.clone();
    let watcher = notify::recommended_watcher(move |event| {
        let _ = events.send(Message::Event(event));
    })
    .map_err(|source| classify(target.path(), source))?;
    let chain = Chain::resolve(target.path());
    let mut watch = Watch {
        target,
        chain,
        watched: BTreeSet::new(),
        watcher,
        on_change,
        delay,
        pending: BTreeSet::new(),
        due: None,
    };
    // The directory of the file (or the apps directory) must be watchable at startup; the
    // others on the way are watched as they can be.
    let first = match &watch.target {
        Target::File(_) => watch.chain.end.0.clone(),
        Target::Dir { .. } => watch.chain.end.0.join(&watch.chain.end.1),
    };
    watch
        .watcher
        .watch(&first, RecursiveMode::NonRecursive)
        .map_err(|source| classify(&first, source))?;
    watch.watched.insert(first);
    watch.rewatch();
    tracing::debug!(path = %watch.target.path().display(), dirs = ?watch.watched, "watching for changes");
    std::thread::Builder::new()
        .name("hotswap-watch".into())
        .spawn(move || watch.run(rx))
        .context("cannot start the file watch thread")?;
    Ok(FileWatcher::Native(NativeWatch { stop: tx }))
}

impl Watch {
    fn run(mut self, rx: mpsc::Receiver<Message>) {
        loop {
            let message = match self.due {
                Some(due) => match rx.recv_timeout(due.saturating_duration_since(Instant::now())) {
                    Ok(message) => message,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        self.fire_pending();
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                },
                None => match rx.recv() {
                    Ok(message) => message,
                    Err(_) => return,
                },
            };
            match message {
                Message::Stop => return,
                Message::Event(Ok(event)) => self.handle(&event),
                Message::Event(Err(error)) => {
                    tracing::warn!(error = %error, "file watcher error; still serving the current generation");
                }
            }
        }
    }

    fn handle(&mut self, event: &notify::Event) {
        match self.meaning(event) {
            Meaning::Nothing => {}
            Meaning::Files { paths, now } => {
                if now {
                    for path in &paths {
                        (self.on_change)(path);
                    }
                }
                self.pending.extend(paths);
                self.due = Some(Instant::now() + self.delay);
            }
            Meaning::Everything => {
                if event.need_rescan() {
                    tracing::info!(path = %self.target.path().display(), "file events were lost (the event queue overflowed); checking every watched file again");
                }
                self.rewatch();
                for path in self.covered() {
                    (self.on_change)(&path);
                }
            }
        }
    }

    /// What `event` means for this watch.
    fn meaning(&self, event: &notify::Event) -> Meaning {
        if event.need_rescan() {
            return Meaning::Everything;
        }
        if !is_change(&event.kind) {
            return Meaning::Nothing;
        }
        let mut paths = Vec::new();
        for path in &event.paths {
            let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
                continue;
            };
            let name = name.to_owned();
            if self.chain.is_on_the_way(dir, &name) {
                return Meaning::Everything;
            }
            match &self.target {
                Target::File(file) => {
                    let named = file.parent() == Some(dir) && file.file_name() == Some(&name);
                    let end = self.chain.end.0 == dir && self.chain.end.1 == name;
                    if named || end {
                        paths.push(file.clone());
                    }
                }
                Target::Dir { wanted, .. } => {
                    let in_dir = self.chain.end.0.join(&self.chain.end.1) == dir;
                    if !in_dir {
                        continue;
                    }
                    if wanted(path) {
                        paths.push(path.clone());
                    } else if std::fs::symlink_metadata(path)
                        .is_ok_and(|m| m.file_type().is_symlink() || m.is_dir())
                    {
                        // A link or directory inside the apps directory: a volume's `..data`
                        // swap, which changes every app behind it.
                        return Meaning::Everything;
                    }
                }
            }
        }
        if paths.is_empty() {
            return Meaning::Nothing;
        }
        paths.sort();
        paths.dedup();
        Meaning::Files {
            paths,
            now: is_complete(&event.kind),
        }
    }

    /// Every file this watch covers: the one file, or every wanted file of the directory.
    fn covered(&self) -> Vec<PathBuf> {
        match &self.target {
            Target::File(file) => vec![file.clone()],
            Target::Dir { dir, wanted } => {
                let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                    .map(|entries| {
                        entries
                            .filter_map(|e| e.ok().map(|e| e.path()))
                            .filter(|p| wanted(p))
                            .collect()
                    })
                    .unwrap_or_default();
                files.sort();
                files
            }
        }
    }

    /// Resolves the chain again and watches what it names now: directories no longer on the
    /// way are let go, new ones watched (those that do not exist yet are tried again on the
    /// next change).
    fn rewatch(&mut self) {
        self.chain = Chain::resolve(self.target.path());
        let mut wanted = self.chain.dirs();
        if let Target::Dir { .. } = &self.target {
            wanted.insert(self.chain.end.0.join(&self.chain.end.1));
        }
        let stale: Vec<PathBuf> = self.watched.difference(&wanted).cloned().collect();
        for dir in stale {
            let _ = self.watcher.unwatch(&dir);
            self.watched.remove(&dir);
        }
        let mut failed = HashSet::new();
        for dir in wanted {
            if self.watched.contains(&dir) {
                // A directory deleted and made again keeps its path but not its watch.
                let _ = self.watcher.unwatch(&dir);
            }
            match self.watcher.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.watched.insert(dir);
                }
                Err(_) => {
                    self.watched.remove(&dir);
                    failed.insert(dir);
                }
            }
        }
        if !failed.is_empty() {
            tracing::debug!(missing = ?failed, "not watching directories that do not exist (yet)");
        }
    }

    fn fire_pending(&mut self) {
        self.due = None;
        for path in std::mem::take(&mut self.pending) {
            (self.on_change)(&path);
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A Kubernetes volume: `app.wasm -> ..data/app.wasm`, `..data -> ..v1`.
    fn volume(dir: &Path) {
        std::fs::create_dir_all(dir.join("..v1")).unwrap();
        std::fs::write(dir.join("..v1/app.wasm"), b"v1").unwrap();
        symlink("..v1", dir.join("..data")).unwrap();
        symlink("..data/app.wasm", dir.join("app.wasm")).unwrap();
    }

    #[test]
    fn a_path_resolves_link_by_link() {
        let dir = crate::test_dir("watch-chain");
        volume(&dir);
        let chain = Chain::resolve(&dir.join("app.wasm"));
        assert_eq!(
            chain.links,
            [
                (dir.clone(), OsString::from("app.wasm")),
                (dir.clone(), OsString::from("..data")),
            ]
        );
        assert_eq!(chain.end, (dir.join("..v1"), OsString::from("app.wasm")));
        assert!(chain.dirs().contains(&dir));
        assert!(chain.dirs().contains(&dir.join("..v1")));
        assert!(chain.is_on_the_way(&dir, &OsString::from("..data")));
        assert!(chain.is_on_the_way(&dir, &OsString::from("..v1")));

        // A plain file: no link, its directory and that directory's parent.
        std::fs::write(dir.join("plain.wasm"), b"x").unwrap();
        let chain = Chain::resolve(&dir.join("plain.wasm"));
        assert!(chain.links.is_empty());
        assert_eq!(chain.end, (dir.clone(), OsString::from("plain.wasm")));
        assert_eq!(
            chain.dirs(),
            BTreeSet::from([dir.clone(), dir.parent().unwrap().to_path_buf()])
        );
        // A link loop ends after a bounded number of links.
        symlink("loop-b", dir.join("loop-a")).unwrap();
        symlink("loop-a", dir.join("loop-b")).unwrap();
        assert!(Chain::resolve(&dir.join("loop-a")).links.len() <= MAX_LINKS);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn test_watch(target: Target) -> (Watch, Arc<std::sync::Mutex<Vec<PathBuf>>>) {
        let fired = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = fired.clone();
        let chain = Chain::resolve(target.path());
        let watch = Watch {
            target,
            chain,
            watched: BTreeSet::new(),
            watcher: notify::recommended_watcher(|_| {}).unwrap(),
            on_change: Arc::new(move |p: &Path| log.lock().unwrap().push(p.to_path_buf())),
            delay: Duration::from_millis(10),
            pending: BTreeSet::new(),
            due: None,
        };
        (watch, fired)
    }

    #[test]
    fn events_are_read_against_the_chain() {
        let dir = crate::test_dir("watch-meaning");
        volume(&dir);
        let file = dir.join("app.wasm");
        let (watch, _) = test_watch(Target::File(file.clone()));
        let event = |kind, path: PathBuf| notify::Event::new(kind).add_path(path);
        let renamed = EventKind::Modify(ModifyKind::Name(RenameMode::To));
        // The `..data` swap.
        assert_eq!(
            watch.meaning(&event(renamed, dir.join("..data"))),
            Meaning::Everything
        );
        // A write into the real file, in place.
        assert_eq!(
            watch.meaning(&event(
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                dir.join("..v1/app.wasm")
            )),
            Meaning::Files {
                paths: vec![file.clone()],
                now: true
            }
        );
        // Another file of the directory, and a read of ours.
        assert_eq!(
            watch.meaning(&event(renamed, dir.join("other.wasm"))),
            Meaning::Nothing
        );
        assert_eq!(
            watch.meaning(&event(
                EventKind::Access(AccessKind::Open(notify::event::AccessMode::Any)),
                file.clone()
            )),
            Meaning::Nothing
        );
        // Lost events.
        let rescan = notify::Event::new(EventKind::Other).set_flag(notify::event::Flag::Rescan);
        assert_eq!(watch.meaning(&rescan), Meaning::Everything);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn lost_events_fire_every_file_an_apps_directory_covers() {
        let dir = crate::test_dir("watch-rescan");
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["a.wasm", "b.wasm", ".hidden.wasm", "notes.txt"] {
            std::fs::write(dir.join(name), b"x").unwrap();
        }
        let (mut watch, fired) = test_watch(Target::Dir {
            dir: dir.clone(),
            wanted: Box::new(|p: &Path| {
                p.extension().is_some_and(|e| e == "wasm")
                    && !p.file_name().unwrap().to_string_lossy().starts_with('.')
            }),
        });
        let rescan = notify::Event::new(EventKind::Other).set_flag(notify::event::Flag::Rescan);
        watch.handle(&rescan);
        assert_eq!(
            *fired.lock().unwrap(),
            [dir.join("a.wasm"), dir.join("b.wasm")]
        );
        // A link made inside the directory (a volume's `..data` swap) fires them all too.
        fired.lock().unwrap().clear();
        symlink(".", dir.join("..data")).unwrap();
        watch.handle(
            &notify::Event::new(EventKind::Modify(ModifyKind::Name(RenameMode::To)))
                .add_path(dir.join("..data")),
        );
        assert_eq!(fired.lock().unwrap().len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
