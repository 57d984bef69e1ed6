//! A native watch: OS file events, read against the chain of links of what is watched, on a
//! thread of the watch's own, debounced.

use super::chain::Chain;
use super::{FileWatcher, NativeWatch, classify, is_change};
use anyhow::{Context, Result};
use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher};
use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What one native watch covers.
pub(super) enum Target {
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
    pub(super) fn path(&self) -> &Path {
        match self {
            Target::File(file) => file,
            Target::Dir { dir, .. } => dir,
        }
    }
}
/// What reaches a watch's thread.
pub(super) enum Message {
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

/// Starts watching `target` on a thread of its own.
pub(super) fn start(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watcher::chain::tests::volume;
    use std::os::unix::fs::symlink;

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
