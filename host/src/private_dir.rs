//! Directories only this user may write: the compile cache and what lives under it.
//!
//! Whoever can write the compile cache can run native code as the host (an entry is machine
//! code that wasmtime maps executable). So the host creates its cache directories mode 0700,
//! and refuses to use one that another user owns or that others may write; the caller then
//! runs without it and says why, once.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;

/// Why a directory is not private.
#[derive(Debug, thiserror::Error)]
pub enum NotPrivate {
    /// It could not be created or read.
    #[error("cannot create or read `{path}`: {source}")]
    Io {
        /// The directory.
        path: String,
        /// What failed.
        source: io::Error,
    },
    /// Another user owns it.
    #[error("`{path}` is owned by user {owner}, not by this process's user {me}")]
    Owner {
        /// The directory.
        path: String,
        /// Its owner's uid.
        owner: u32,
        /// Ours.
        me: u32,
    },
    /// Its group or others may write it.
    #[error("`{path}` is writable by others (mode {mode:o}); make it 0700")]
    Writable {
        /// The directory.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
}

/// Creates `dir` (and its missing parents) mode 0700 if it does not exist, then checks that it
/// is a directory this user owns and nobody else may write.
pub fn ensure(dir: &Path) -> Result<(), NotPrivate> {
    let path = || dir.display().to_string();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| NotPrivate::Io {
            path: path(),
            source,
        })?;
    let meta = std::fs::metadata(dir).map_err(|source| NotPrivate::Io {
        path: path(),
        source,
    })?;
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(NotPrivate::Owner {
            path: path(),
            owner: meta.uid(),
            me,
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(NotPrivate::Writable { path: path(), mode });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_new_directory_is_private_and_a_shared_one_is_refused() {
        let dir = crate::test_dir("private-dir");
        let deep = dir.join("a/b");
        ensure(&deep).unwrap();
        for made in [&dir, &dir.join("a"), &deep] {
            let mode = std::fs::metadata(made).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", made.display());
        }
        std::fs::set_permissions(&deep, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = ensure(&deep).unwrap_err().to_string();
        assert!(
            err.contains("writable by others") && err.contains("777"),
            "{err}"
        );
        std::fs::set_permissions(&deep, std::fs::Permissions::from_mode(0o750)).unwrap();
        ensure(&deep).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
