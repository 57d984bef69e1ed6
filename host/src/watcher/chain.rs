//! How a watched path resolves, link by link: the directories a watch must cover so that a
//! change anywhere on the way (a volume's `..data` swap) is seen.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// Most symbolic links followed when resolving a watched path (as the kernel's own limit).
const MAX_LINKS: usize = 40;
/// How a path resolves, link by link: every `(directory, name)` on the way that is a symbolic
/// link, and the `(directory, name)` the path finally names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Chain {
    /// Every link on the way, as its directory and name.
    pub(super) links: Vec<(PathBuf, OsString)>,
    /// The directory and name the path finally names.
    pub(super) end: (PathBuf, OsString),
}

impl Chain {
    /// Resolves `path` (absolute), following at most [`MAX_LINKS`] links. A part that does not
    /// exist ends the resolution there: what is named so far is watched, and the chain is
    /// resolved again when it changes.
    pub(super) fn resolve(path: &Path) -> Chain {
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
    pub(super) fn dirs(&self) -> BTreeSet<PathBuf> {
        let mut dirs: BTreeSet<PathBuf> = self.links.iter().map(|(d, _)| d.clone()).collect();
        dirs.insert(self.end.0.clone());
        if let Some(parent) = self.end.0.parent() {
            dirs.insert(parent.to_path_buf());
        }
        dirs
    }

    /// Whether `(dir, name)` is a link on the way, or the end's directory itself.
    pub(super) fn is_on_the_way(&self, dir: &Path, name: &OsString) -> bool {
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A Kubernetes volume: `app.wasm -> ..data/app.wasm`, `..data -> ..v1`.
    pub(in crate::watcher) fn volume(dir: &Path) {
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
}
