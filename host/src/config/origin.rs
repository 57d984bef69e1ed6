//! Where a route's component comes from: a file, or a reference to a component in an OCI
//! registry (`oci://REGISTRY/REPO:TAG` or `…@sha256:DIGEST`), checked when the configuration is
//! read so that a bad reference is a configuration error.

use super::reference::Reference;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the component comes from.
#[derive(Debug, Clone)]
pub enum ComponentOrigin {
    /// A file, by absolute path.
    File(PathBuf),
    /// A registry reference (`oci://…`).
    Registry(OciSpec),
}

impl ComponentOrigin {
    /// The path or the `oci://` reference, for messages.
    pub fn display(&self) -> String {
        match self {
            ComponentOrigin::File(path) => path.display().to_string(),
            ComponentOrigin::Registry(spec) => format!("{SCHEME}{}", spec.reference),
        }
    }

    /// The file, for a file component.
    pub fn file(&self) -> Option<&Path> {
        match self {
            ComponentOrigin::File(path) => Some(path),
            ComponentOrigin::Registry(_) => None,
        }
    }
}

/// The scheme of a registry component reference.
pub const SCHEME: &str = "oci://";
/// Where a component comes from, as configured.
#[derive(Clone)]
pub struct OciSpec {
    /// The reference without `oci://`.
    pub reference: String,
    /// Registries (`HOST[:PORT]`) reached over plain HTTP.
    pub insecure: Vec<String>,
    /// Time between two polls of a tag.
    pub poll_interval: Duration,
    /// Deadline of one poll, the pull of a new digest included.
    pub pull_timeout: Duration,
    /// Basic-auth user name, if given.
    pub username: Option<String>,
    /// Basic-auth password, if given.
    pub password: Option<String>,
}

impl fmt::Debug for OciSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OciSpec")
            .field("reference", &self.reference)
            .field("insecure", &self.insecure)
            .field("poll_interval", &self.poll_interval)
            .field("pull_timeout", &self.pull_timeout)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Parses `oci://REGISTRY/REPO[:TAG][@sha256:…]`; `None` if `s` is not an `oci://` reference.
pub fn parse(s: &str) -> Option<Result<Reference, String>> {
    let rest = s.strip_prefix(SCHEME)?;
    Some(parse_reference(rest))
}

/// Parses `REGISTRY/REPO[:TAG][@sha256:…]` (a reference without `oci://`), naming what is wrong.
pub fn parse_reference(rest: &str) -> Result<Reference, String> {
    if !rest.contains('/') {
        return Err(format!(
            "`{SCHEME}{rest}` needs a registry and a repository, e.g. `{SCHEME}registry.example.com/app:v1`"
        ));
    }
    Reference::parse(rest).map_err(|e| format!("invalid OCI reference `{SCHEME}{rest}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_and_name_what_is_missing() {
        let r = parse("oci://127.0.0.1:5000/apps/hello:v1")
            .unwrap()
            .unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "apps/hello");
        assert_eq!(r.tag(), Some("v1"));
        let pinned = format!("oci://ghcr.io/org/app@sha256:{}", "a".repeat(64));
        assert!(parse(&pinned).unwrap().unwrap().digest().is_some());
        assert!(parse("app.wasm").is_none());
        let err = parse("oci://app").unwrap().unwrap_err();
        assert!(err.contains("needs a registry and a repository"), "{err}");
        assert!(parse("oci://host/UPPER:case").unwrap().is_err());
    }
}
