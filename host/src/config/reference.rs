//! `REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST]`, read the way Docker and the OCI distribution
//! spec read it: the first path segment is the registry when it has a `.` or a `:` or is
//! `localhost`, otherwise the reference is on Docker Hub; a reference with neither tag nor
//! digest means `:latest`.

use std::fmt;

/// Docker Hub, as written in references.
const DOCKER_HUB: &str = "docker.io";
/// Docker Hub's API host (what `docker.io` resolves to).
const DOCKER_HUB_API: &str = "index.docker.io";
/// Longest repository name (the distribution spec's limit).
const MAX_REPOSITORY_LEN: usize = 255;
/// Longest tag.
const MAX_TAG_LEN: usize = 128;

/// A parsed registry reference. Every part is checked against the grammar, so each can go into
/// a URL path or a file name as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl Reference {
    /// Parses `REGISTRY/REPOSITORY[:TAG][@sha256:HEX]`.
    pub fn parse(text: &str) -> Result<Reference, String> {
        let (name, digest) = match text.split_once('@') {
            Some((name, digest)) => {
                check_digest(digest)?;
                (name, Some(digest.to_string()))
            }
            None => (text, None),
        };
        // A tag follows the last `:` after the last `/` (an earlier `:` is a registry's port).
        let last_segment = name.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name[last_segment..].rfind(':') {
            Some(i) => (
                &name[..last_segment + i],
                Some(&name[last_segment + i + 1..]),
            ),
            None => (name, None),
        };
        if let Some(tag) = tag {
            check_tag(tag)?;
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                check_registry(first)?;
                (first.to_string(), rest.to_string())
            }
            Some(_) => (DOCKER_HUB.to_string(), name.to_string()),
            None => (DOCKER_HUB.to_string(), format!("library/{name}")),
        };
        check_repository(&repository)?;
        let tag = match (tag, &digest) {
            (None, None) => Some("latest".to_string()),
            (tag, _) => tag.map(str::to_string),
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The registry as written (`HOST[:PORT]`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host the registry API is on (`docker.io` → `index.docker.io`).
    pub fn api_host(&self) -> &str {
        match self.registry.as_str() {
            DOCKER_HUB => DOCKER_HUB_API,
            other => other,
        }
    }

    /// The repository (`apps/hello`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if the reference has one (`latest` when it names neither tag nor digest).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest (`sha256:…`), if the reference pins one.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Whether `digest` is `sha256:` and 64 lower-case hex digits: the only digests the host can
/// check, and safe in a URL path and a file name.
pub fn is_sha256_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

fn check_digest(digest: &str) -> Result<(), String> {
    if is_sha256_digest(digest) {
        Ok(())
    } else {
        Err(format!(
            "the digest `{digest}` is not `sha256:` and 64 lower-case hex digits"
        ))
    }
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn check_tag(tag: &str) -> Result<(), String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let ok = tag.len() <= MAX_TAG_LEN
        && tag.bytes().next().is_some_and(word)
        && tag.bytes().all(|b| word(b) || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the tag `{tag}` is not a valid tag (letters, digits, `_`, `.` and `-`, at most \
             {MAX_TAG_LEN}, not starting with `.` or `-`)"
        ))
    }
}

/// Host names (`a.b-c.d`) with an optional port.
fn check_registry(registry: &str) -> Result<(), String> {
    let (host, port) = match registry.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (registry, None),
    };
    let label_ok = |label: &str| {
        !label.is_empty()
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if host.split('.').all(label_ok) && port_ok {
        Ok(())
    } else {
        Err(format!(
            "the registry `{registry}` is not a host name with an optional port"
        ))
    }
}

/// Path segments of `[a-z0-9]+` joined by `.`, `_`, `__` or dashes, separated by `/`.
fn check_repository(repository: &str) -> Result<(), String> {
    let segment_ok = |s: &str| {
        let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        let bytes = s.as_bytes();
        if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
            return false;
        }
        // Between two runs of letters and digits: `.`, `_`, `__` or any number of `-`.
        s.split(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            .all(|sep| matches!(sep, "" | "." | "_" | "__") || sep.bytes().all(|b| b == b'-'))
    };
    if repository.len() > MAX_REPOSITORY_LEN {
        return Err(format!(
            "the repository name is longer than {MAX_REPOSITORY_LEN} characters"
        ));
    }
    if repository.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!("the repository `{repository}` must be lower case"));
    }
    if repository.split('/').all(segment_ok) {
        Ok(())
    } else {
        Err(format!(
            "the repository `{repository}` is not valid (lower-case letters and digits, \
             separated by `.`, `_`, `__`, `-` or `/`)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(text: &str) -> (String, String, Option<String>, Option<String>) {
        let r = Reference::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        (
            r.registry().into(),
            r.repository().into(),
            r.tag().map(Into::into),
            r.digest().map(Into::into),
        )
    }

    #[test]
    fn references_split_into_registry_repository_tag_and_digest() {
        let hex = "a".repeat(64);
        let s = |v: &str| v.to_string();
        assert_eq!(
            parts("127.0.0.1:5000/apps/hello:v1"),
            (s("127.0.0.1:5000"), s("apps/hello"), Some(s("v1")), None)
        );
        assert_eq!(
            parts("localhost/app"),
            (s("localhost"), s("app"), Some(s("latest")), None)
        );
        assert_eq!(
            parts(&format!("ghcr.io/org/app@sha256:{hex}")),
            (
                s("ghcr.io"),
                s("org/app"),
                None,
                Some(format!("sha256:{hex}"))
            )
        );
        assert_eq!(
            parts(&format!("ghcr.io/org/app:v2@sha256:{hex}")),
            (
                s("ghcr.io"),
                s("org/app"),
                Some(s("v2")),
                Some(format!("sha256:{hex}"))
            )
        );
        // The first segment is a registry only with a `.`, a `:` or `localhost`.
        assert_eq!(
            parts("myorg/app:1.0"),
            (s("docker.io"), s("myorg/app"), Some(s("1.0")), None)
        );
        assert_eq!(
            parts("a-b.example.com/x__y/z--w.v:T_1"),
            (s("a-b.example.com"), s("x__y/z--w.v"), Some(s("T_1")), None)
        );
        let hub = Reference::parse("docker.io/library/hello").unwrap();
        assert_eq!(hub.api_host(), "index.docker.io");
        assert_eq!(hub.to_string(), "docker.io/library/hello:latest");
    }

    #[test]
    fn bad_references_are_refused_with_the_part_named() {
        let err = |text: &str| Reference::parse(text).unwrap_err();
        assert!(err("host/UPPER:case").contains("lower case"));
        assert!(err("ghcr.io/app@sha256:abc").contains("64 lower-case hex"));
        assert!(err("ghcr.io/app@sha512:abc").contains("sha256"));
        assert!(err("ghcr.io/app:-x").contains("tag"));
        assert!(err("ghcr.io/app:").contains("tag"));
        assert!(err("ghcr.io/a..b").contains("repository"));
        assert!(err("ghcr.io/a/../b").contains("repository"));
        assert!(err("ghcr.io/a-_-b").contains("repository"));
        assert!(err("ghcr.io//b").contains("repository"));
        assert!(err("bad_host.io/app").contains("registry"));
        assert!(err("ghcr.io:x/app").contains("registry"));
        assert!(err(&format!("ghcr.io/{}", "a".repeat(256))).contains("longer"));
    }

    #[test]
    fn only_sha256_digests_in_lower_case_hex_are_digests() {
        assert!(is_sha256_digest(&format!("sha256:{}", "0f".repeat(32))));
        assert!(!is_sha256_digest(&format!("sha256:{}", "0F".repeat(32))));
        assert!(!is_sha256_digest(&format!("sha256:{}/..", "0f".repeat(31))));
        assert!(!is_sha256_digest("sha256:"));
        assert!(!is_sha256_digest(&format!("sha512:{}", "0f".repeat(64))));
    }
}
