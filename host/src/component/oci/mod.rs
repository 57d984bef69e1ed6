//! Components from an OCI registry: `oci://REGISTRY/REPOSITORY:TAG` or `…@sha256:DIGEST`.
//!
//! The artifact is the one `wkg oci push` and `oras` make for a wasm component: a manifest whose
//! config has the media type `application/vnd.wasm.config.v0+json` and whose one layer is the
//! component (`application/wasm`). A tag is polled with a `HEAD` on its manifest (one request
//! per poll); only a new manifest digest is pulled. The layer's bytes are checked against the
//! descriptor (size and sha256) before they go to the loader, like a file's bytes.
//!
//! Every read from a registry is bounded (`client`): a manifest by 4 MiB, an error body or a
//! token by 64 KiB, a layer by its descriptor's size (itself at most `--max-component-size`),
//! streamed and hashed as it arrives; and a whole poll by `--registry-pull-timeout`. A registry
//! that sends without end or trickles costs that much memory and time, then the poll fails with
//! the reason and the last good generation serves on.
//!
//! Pulled manifests and layers are kept under the cache directory (`oci/`, see `store`), with
//! the digest each reference last served, so a host restarted while the registry is down still
//! serves the last good component it pulled; each copy is re-hashed before it is used.
//!
//! Credentials: `--registry-username`/`--registry-password` (`HOTSWAP_REGISTRY_*`), else the
//! docker config file (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`, `auths` entries),
//! else anonymous; sent as Basic auth, or for a token when the registry asks for a Bearer token.
//! HTTPS unless the registry is on loopback or named by `--insecure-registry`.

mod access;
mod client;
mod manifest;
mod store;

pub use crate::config::reference::{Reference, is_sha256_digest};
pub use crate::config::{OciSpec, SCHEME};

use access::{Credentials, docker_config_auth};
use client::Client;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;
use store::{Store, Unusable};

/// The config media type of a wasm component artifact.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The media type of the component layer.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";

/// Why a poll or a pull failed. The serving generation is never touched by one.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No connection, or no answer in time.
    #[error("cannot reach the registry `{registry}`: {detail}")]
    Unreachable {
        /// The registry.
        registry: String,
        /// What failed.
        detail: String,
    },
    /// 401/403: no or wrong credentials.
    #[error(
        "the registry `{registry}` refused access ({detail}); set HOTSWAP_REGISTRY_USERNAME and \
         HOTSWAP_REGISTRY_PASSWORD, or add the registry to the docker config file"
    )]
    Auth {
        /// The registry.
        registry: String,
        /// What it said.
        detail: String,
    },
    /// The repository, tag or digest does not exist.
    #[error("`{reference}` was not found in the registry: {detail}")]
    NotFound {
        /// The reference.
        reference: String,
        /// What the registry said.
        detail: String,
    },
    /// The manifest is not a wasm component artifact.
    #[error("`{reference}` is not a wasm component artifact: {detail}")]
    NotWasm {
        /// The reference.
        reference: String,
        /// Which part is wrong.
        detail: String,
    },
    /// The layer's bytes do not hash to its descriptor's digest (or have another size), or the
    /// manifest's bytes to the digest the tag resolved to.
    #[error("the {what} of `{reference}` does not match its digest: {detail}")]
    DigestMismatch {
        /// The reference.
        reference: String,
        /// `layer` or `manifest`.
        what: &'static str,
        /// Expected and actual.
        detail: String,
    },
    /// The layer is larger than `--max-component-size`, the registry sent more of it than its
    /// descriptor says, or the manifest is over the manifest limit.
    #[error("the {what} of `{reference}` is too large: {detail}")]
    TooLarge {
        /// The reference.
        reference: String,
        /// `layer` or `manifest`.
        what: &'static str,
        /// By how much, and against which limit.
        detail: String,
    },
    /// The poll (the pull of a new digest included) ran past `--registry-pull-timeout`: a
    /// registry that answers, but too slowly.
    #[error(
        "pulling `{reference}` did not finish within {limit} (`--registry-pull-timeout`); cut \
         while {stage}"
    )]
    Timeout {
        /// The reference.
        reference: String,
        /// The deadline, e.g. `5m`.
        limit: String,
        /// What was under way, e.g. `reading the layer`.
        stage: &'static str,
    },
    /// Anything else the registry or the client reported.
    #[error("registry `{registry}`: {detail}")]
    Other {
        /// The registry.
        registry: String,
        /// What failed.
        detail: String,
    },
}

impl RegistryError {
    /// A short name for metrics: `unreachable`, `auth`, `not_found`, `not_wasm`,
    /// `digest_mismatch`, `too_large`, `timeout`, `other`.
    pub fn kind(&self) -> &'static str {
        match self {
            RegistryError::Unreachable { .. } => "unreachable",
            RegistryError::Auth { .. } => "auth",
            RegistryError::NotFound { .. } => "not_found",
            RegistryError::NotWasm { .. } => "not_wasm",
            RegistryError::DigestMismatch { .. } => "digest_mismatch",
            RegistryError::TooLarge { .. } => "too_large",
            RegistryError::Timeout { .. } => "timeout",
            RegistryError::Other { .. } => "other",
        }
    }

    /// Whether the registry itself failed (worth backing off), rather than what it holds.
    pub fn is_registry_failure(&self) -> bool {
        matches!(
            self,
            RegistryError::Unreachable { .. }
                | RegistryError::Timeout { .. }
                | RegistryError::Other { .. }
        )
    }

    /// Whether the manifest's content is at fault: pulling the same digest again cannot help.
    pub fn is_content_error(&self) -> bool {
        matches!(
            self,
            RegistryError::NotWasm { .. }
                | RegistryError::DigestMismatch { .. }
                | RegistryError::TooLarge { .. }
        )
    }
}

/// A component pulled from the registry (or from the local copy of an earlier pull).
pub struct Pulled {
    /// The manifest digest (`sha256:…`), what the replica serves.
    pub digest: String,
    /// The component's bytes, checked against the layer descriptor.
    pub bytes: Vec<u8>,
}

/// What a poll found.
pub enum Poll {
    /// The reference still resolves to this manifest digest.
    Unchanged(String),
    /// The reference resolves to a manifest refused before (its content was not a wasm
    /// artifact, too large or not matching its digest, or its component failed validation):
    /// a poll does not pull it again until the reference moves.
    StillBad(String),
    /// A new manifest, pulled.
    New(Pulled),
}

/// One registry reference the host follows.
pub struct Registry {
    reference: Reference,
    display: String,
    client: Client,
    /// `CACHE/oci`, where manifests, layers and resolved digests are kept.
    store: Option<Store>,
    max_bytes: u64,
    poll_interval: Duration,
    pull_timeout: Duration,
    /// The manifest digest refused last (see [`Poll::StillBad`]).
    refused: Mutex<Option<String>>,
    /// What the poll under way is doing, for the message of one cut by its deadline.
    stage: Mutex<&'static str>,
    /// Why the local copy was last found unusable, so a repeat is not warned about again.
    copy_complaint: Mutex<Option<String>>,
}

impl Registry {
    /// A client for `spec`, keeping pulled layers under `cache_dir/oci` (if caching is on) and
    /// refusing layers over `max_bytes`.
    pub fn new(spec: &OciSpec, cache_dir: Option<&Path>, max_bytes: u64) -> anyhow::Result<Self> {
        // One TLS provider for the process; a second install (another route) is a no-op.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let reference =
            crate::config::origin::parse_reference(&spec.reference).map_err(anyhow::Error::msg)?;
        let host = reference.api_host().to_string();
        let credentials = match (&spec.username, &spec.password) {
            (Some(user), Some(password)) => Some(Credentials {
                user: user.clone(),
                password: password.clone(),
            }),
            (Some(_), None) | (None, Some(_)) => anyhow::bail!(
                "a registry user name needs a password and a password needs a user name"
            ),
            (None, None) => docker_config_auth(&host),
        };
        let display = format!("{SCHEME}{}", spec.reference);
        let scheme = access::scheme(&host, &spec.insecure);
        let client = Client::new(&reference, &display, scheme, &spec.insecure, credentials)?;
        Ok(Registry {
            display,
            reference,
            client,
            store: cache_dir.map(|d| Store::new(d.join("oci"))),
            max_bytes,
            poll_interval: spec.poll_interval,
            pull_timeout: spec.pull_timeout,
            refused: Mutex::new(None),
            stage: Mutex::new("resolving the tag"),
            copy_complaint: Mutex::new(None),
        })
    }

    /// `oci://…` as configured.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// Whether the reference names a digest: it never changes, so it is never polled.
    pub fn pinned(&self) -> bool {
        self.reference.digest().is_some()
    }

    /// Time between two polls.
    pub fn poll_interval(&self) -> Duration {
        self.poll_interval
    }

    /// Resolves the reference (a `HEAD` on the manifest) and pulls it unless it resolves to
    /// `known`, or (with `skip_refused`) to the digest refused last; all of it within the pull
    /// deadline.
    pub async fn poll(
        &self,
        known: Option<&str>,
        skip_refused: bool,
    ) -> Result<Poll, RegistryError> {
        self.set_stage("resolving the tag");
        match tokio::time::timeout(self.pull_timeout, self.poll_now(known, skip_refused)).await {
            Ok(result) => result,
            Err(_) => Err(RegistryError::Timeout {
                reference: self.display.clone(),
                limit: humantime::format_duration(self.pull_timeout).to_string(),
                stage: *self.stage.lock().unwrap_or_else(|p| p.into_inner()),
            }),
        }
    }

    async fn poll_now(
        &self,
        known: Option<&str>,
        skip_refused: bool,
    ) -> Result<Poll, RegistryError> {
        let digest = match (self.reference.digest(), self.reference.tag()) {
            (Some(pinned), _) => pinned.to_string(),
            (None, tag) => self.client.resolve(tag.unwrap_or("latest")).await?,
        };
        if known == Some(digest.as_str()) {
            return Ok(Poll::Unchanged(digest));
        }
        if skip_refused && self.last_refused().as_deref() == Some(digest.as_str()) {
            return Ok(Poll::StillBad(digest));
        }
        if let Some(bytes) = self.stored(&digest) {
            return Ok(Poll::New(Pulled { digest, bytes }));
        }
        match self.pull(&digest).await {
            Ok(pulled) => Ok(Poll::New(pulled)),
            Err(err) => {
                if err.is_content_error() {
                    self.refuse(&digest);
                }
                Err(err)
            }
        }
    }

    /// Records that manifest `digest` was refused: polls skip it until the reference moves.
    pub fn refuse(&self, digest: &str) {
        *self.last_refused() = Some(digest.to_string());
    }

    /// Records that manifest `digest` now serves: a restart that cannot reach the registry
    /// starts from it ([`Registry::last_pulled`]).
    pub fn served(&self, digest: &str) {
        *self.last_refused() = None;
        if let Some(store) = &self.store
            && let Err(err) = store.record_served(&self.ref_name(), digest)
        {
            tracing::warn!(reference = %self.display, error = %err, "cannot record the digest the reference resolved to");
        }
    }

    fn last_refused(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.refused.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_stage(&self, stage: &'static str) {
        *self.stage.lock().unwrap_or_else(|p| p.into_inner()) = stage;
    }

    /// The component this reference last served, from the local copy.
    pub fn last_pulled(&self) -> Option<Pulled> {
        let digest = self.store.as_ref()?.last_served(&self.ref_name())?;
        let bytes = self.stored(&digest)?;
        Some(Pulled { digest, bytes })
    }

    /// Pulls manifest `digest` and its layer, checks them and keeps a copy.
    async fn pull(&self, digest: &str) -> Result<Pulled, RegistryError> {
        self.set_stage("fetching the manifest");
        let manifest = self.client.manifest(digest).await?;
        let layer = manifest::component_layer(&manifest, &self.display, self.max_bytes)?;
        self.set_stage("reading the layer");
        let bytes = self.client.blob(&layer.digest, layer.size).await?;
        if let Some(store) = &self.store
            && let Err(err) = store.save(digest, &manifest, &layer, &bytes)
        {
            tracing::warn!(reference = %self.display, error = %err, "cannot keep a local copy of the pulled component");
        }
        Ok(Pulled {
            digest: digest.to_string(),
            bytes,
        })
    }

    /// The component of manifest `digest` from the local copy, if there is one that still
    /// hashes to its digests; one that does not is discarded and logged.
    fn stored(&self, digest: &str) -> Option<Vec<u8>> {
        match self
            .store
            .as_ref()?
            .load(digest, &self.display, self.max_bytes)
        {
            Ok(bytes) => bytes,
            Err(unusable) => {
                let message = match unusable {
                    Unusable::Mismatch(why) => {
                        format!("discarding the local copy of {digest}: {why}")
                    }
                    Unusable::Refused(why) => {
                        format!("not using the local copy of {digest}: {why}")
                    }
                };
                // Looked up again at every poll while the registry is down and nothing serves:
                // a warning the first time, like the reloader's own failures.
                let mut last = self
                    .copy_complaint
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if last.as_deref() == Some(message.as_str()) {
                    tracing::debug!(reference = %self.display, %digest, "{message}");
                } else {
                    tracing::warn!(reference = %self.display, %digest, "{message}");
                    *last = Some(message);
                }
                None
            }
        }
    }

    /// The file name of this reference's record of the digest it last served.
    fn ref_name(&self) -> String {
        crate::names::name_chars(self.display.trim_start_matches(SCHEME), '_')
    }
}

/// `text` on one line and at most 200 characters: what a registry said, quoted in an error.
fn shorten(text: &str) -> String {
    const MAX_CHARS: usize = 200;
    let mut chars = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c });
    let mut short: String = chars.by_ref().take(MAX_CHARS).collect();
    if chars.next().is_some() {
        short.push('…');
    }
    short
}

/// An error and its causes, `a: b: c` (reqwest's own `Display` leaves the cause out).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_registry_said_is_quoted_on_one_line_and_short() {
        assert_eq!(shorten("  not\nfound\r\n"), "not found");
        let long = shorten(&"é".repeat(1000));
        assert_eq!(long.chars().count(), 201);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn a_cut_poll_names_its_deadline_and_what_was_under_way() {
        let err = RegistryError::Timeout {
            reference: "oci://r/a:v1".into(),
            limit: humantime::format_duration(Duration::from_secs(2)).to_string(),
            stage: "reading the layer",
        };
        assert_eq!(err.kind(), "timeout");
        assert!(err.is_registry_failure() && !err.is_content_error());
        assert_eq!(
            err.to_string(),
            "pulling `oci://r/a:v1` did not finish within 2s (`--registry-pull-timeout`); cut \
             while reading the layer"
        );
    }
}
