//! How the host reaches a registry: over HTTPS unless it is on loopback or named by
//! `--insecure-registry`, with the credentials of the docker config file when none are given.

use std::fmt;
use std::path::PathBuf;

/// A user name and password for Basic auth (to the registry, or to its token service).
#[derive(Clone)]
pub(super) struct Credentials {
    pub user: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// `https`, but `http` for a registry (`HOST[:PORT]`) on loopback or named in `insecure`.
pub(super) fn scheme(registry: &str, insecure: &[String]) -> &'static str {
    if is_loopback(registry) || insecure.iter().any(|i| i == registry) {
        "http"
    } else {
        "https"
    }
}

/// Whether `registry` (`HOST[:PORT]`) is `localhost` or a loopback address.
fn is_loopback(registry: &str) -> bool {
    let host = match registry.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => registry,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Credentials for `registry` from the docker config file, if it has an `auths` entry for it.
pub(super) fn docker_config_auth(registry: &str) -> Option<Credentials> {
    let path = match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => PathBuf::from(dir).join("config.json"),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".docker/config.json"),
    };
    let text = std::fs::read_to_string(&path).ok()?;
    let config: serde_json::Value = match serde_json::from_str(&text) {
        Ok(config) => config,
        Err(err) => {
            tracing::warn!(path = %path.display(), error = %err, "cannot parse the docker config file; pulling anonymously");
            return None;
        }
    };
    let auths = config.get("auths")?.as_object()?;
    let entry = auths.iter().find_map(|(key, value)| {
        let host = key
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/');
        let host = host
            .strip_suffix("/v1")
            .or(host.strip_suffix("/v2"))
            .unwrap_or(host);
        (host == registry).then_some(value)
    })?;
    if let (Some(user), Some(password)) = (
        entry.get("username").and_then(|v| v.as_str()),
        entry.get("password").and_then(|v| v.as_str()),
    ) {
        return Some(Credentials {
            user: user.into(),
            password: password.into(),
        });
    }
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(entry.get("auth")?.as_str()?)
        .ok()?;
    let (user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some(Credentials {
        user: user.into(),
        password: password.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_are_https_unless_on_loopback_or_named_insecure() {
        let scheme = |registry: &str, insecure: &[&str]| {
            let insecure: Vec<String> = insecure.iter().map(|s| s.to_string()).collect();
            scheme(registry, &insecure)
        };
        assert_eq!(scheme("registry.example.com", &[]), "https");
        assert_eq!(scheme("10.0.0.5:5000", &[]), "https");
        assert_eq!(scheme("10.0.0.5:5000", &["10.0.0.5:5000"]), "http");
        assert_eq!(scheme("127.0.0.1:5000", &[]), "http");
        assert_eq!(scheme("localhost:5000", &[]), "http");
    }

    #[test]
    fn loopback_registries_are_recognised() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("registry.example.com"));
        assert!(!is_loopback("10.0.0.1:5000"));
    }
}
