//! TLS for the listeners, with certificates that reload like components.
//!
//! The certificates are pairs of PEM files (a certificate chain and its private key): one pair
//! (`--tls-cert`, `--tls-key`) or several (`[[server.tls.certificate]]`), chosen per connection by the
//! name the client asks for (SNI), the first pair when it asks for none or for a name no pair
//! has. rustls on the ring provider; ALPN `h2` and `http/1.1`; TLS 1.2 and 1.3.
//!
//! **Reload.** When a certificate or key file changes (also through a symbolic link on its way:
//! the `..data` swap of a Kubernetes Secret), on SIGHUP and on `POST /reload`, every pair is
//! read again and checked: the certificates parse, the key parses and matches the first
//! certificate's public key, and that certificate is valid now (not before its `notBefore`,
//! not after its `notAfter`). Only if every pair passes do the new ones serve: new handshakes use
//! them, connections already open keep theirs. A pair that fails leaves all the current ones
//! serving, and is logged with the file and the reason and counted
//! (`hotswap_tls_reloads_total{result="failed"}`).

pub use crate::config::TlsPair as Pair;
use crate::metrics::Metrics;
use crate::watcher::{self, FileWatcher};
use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Largest certificate or key file read, in bytes.
const MAX_PEM_BYTES: u64 = 1 << 20;

/// What `/status` and the metrics say of one certificate that serves.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CertInfo {
    /// Its certificate file.
    pub file: String,
    /// Its subject, as an RFC 4514 string.
    pub subject: String,
    /// The DNS names it is valid for (subject alternative names).
    pub names: Vec<String>,
    /// Its `notAfter`, in seconds since the Unix epoch.
    pub not_after_unix: i64,
}

/// The pairs that serve now, by name.
struct Serving {
    /// The first pair: for clients that send no name, or one no pair has.
    default: Arc<CertifiedKey>,
    /// Each name of each pair (lower case; `*.example.com` for a wildcard).
    by_name: HashMap<String, Arc<CertifiedKey>>,
    infos: Vec<CertInfo>,
}

/// The host's certificates: what new handshakes use, swapped whole on a reload.
pub struct Certificates {
    pairs: Vec<Pair>,
    serving: ArcSwap<Serving>,
    provider: Arc<CryptoProvider>,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates")
            .field("pairs", &self.pairs)
            .finish()
    }
}

/// rustls on ring, the provider the host uses everywhere.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Certificates {
    /// Loads and checks every pair; an error names the file and what is wrong (a startup
    /// error: nothing is served with a certificate that does not check out).
    pub fn load(pairs: Vec<Pair>) -> Result<Arc<Certificates>> {
        let provider = provider();
        let serving = read_all(&pairs, &provider).map_err(anyhow::Error::msg)?;
        Ok(Arc::new(Certificates {
            pairs,
            serving: ArcSwap::from_pointee(serving),
            provider,
        }))
    }

    /// Reads every pair again; serves the new ones if every one of them checks out, else
    /// keeps the current ones and says why.
    pub fn reload(&self) -> Result<Vec<CertInfo>, String> {
        let serving = read_all(&self.pairs, &self.provider)?;
        let infos = serving.infos.clone();
        self.serving.store(Arc::new(serving));
        Ok(infos)
    }

    /// The certificates that serve now.
    pub fn infos(&self) -> Vec<CertInfo> {
        self.serving.load().infos.clone()
    }

    /// The files to watch: every certificate and key.
    pub fn files(&self) -> Vec<PathBuf> {
        self.pairs
            .iter()
            .flat_map(|p| [p.cert.clone(), p.key.clone()])
            .collect()
    }

    /// The server configuration of a listener that serves these certificates (and, with
    /// `client_ca`, accepts only clients with a certificate signed by that authority).
    pub fn server_config(
        self: &Arc<Self>,
        client_ca: Option<&Path>,
    ) -> Result<Arc<rustls::ServerConfig>> {
        let builder = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .context("the TLS provider supports no protocol version")?;
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in read_certs(ca)? {
                    roots.add(cert).with_context(|| {
                        format!("a certificate in `{}` is not a CA", ca.display())
                    })?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    self.provider.clone(),
                )
                .build()
                .with_context(|| {
                    format!("cannot verify clients with the CA of `{}`", ca.display())
                })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let serving = self.serving.load();
        let Some(name) = hello.server_name() else {
            return Some(serving.default.clone());
        };
        let name = name.to_ascii_lowercase();
        let wildcard = name.split_once('.').map(|(_, rest)| format!("*.{rest}"));
        serving
            .by_name
            .get(&name)
            .or_else(|| wildcard.and_then(|w| serving.by_name.get(&w)))
            .cloned()
            .or_else(|| Some(serving.default.clone()))
    }
}

/// Every pair, checked; the first failure says which file and why.
fn read_all(pairs: &[Pair], provider: &CryptoProvider) -> Result<Serving, String> {
    let mut by_name = HashMap::new();
    let mut infos = Vec::new();
    let mut default = None;
    for pair in pairs {
        let (key, info) = read_pair(pair, provider)?;
        let key = Arc::new(key);
        for name in &info.names {
            by_name.entry(name.clone()).or_insert_with(|| key.clone());
        }
        default.get_or_insert_with(|| key.clone());
        infos.push(info);
    }
    let default = default.ok_or_else(|| "no certificate is configured".to_string())?;
    Ok(Serving {
        default,
        by_name,
        infos,
    })
}

/// One pair, checked: the certificates parse, the key parses and matches the first
/// certificate, and that certificate is valid now.
fn read_pair(pair: &Pair, provider: &CryptoProvider) -> Result<(CertifiedKey, CertInfo), String> {
    let certs = read_certs(&pair.cert).map_err(|e| format!("{e:#}"))?;
    let key_pem = read_capped(&pair.key).map_err(|e| format!("{e:#}"))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        format!(
            "`{}` holds no private key this host can read ({e})",
            pair.key.display()
        )
    })?;
    let info = describe(&pair.cert, &certs[0])?;
    let signing = provider.key_provider.load_private_key(key).map_err(|e| {
        format!(
            "the private key in `{}` cannot be used: {e}",
            pair.key.display()
        )
    })?;
    let certified = CertifiedKey::new(certs, signing);
    certified.keys_match().map_err(|e| {
        format!(
            "the private key in `{}` does not match the certificate in `{}` ({e})",
            pair.key.display(),
            pair.cert.display()
        )
    })?;
    Ok((certified, info))
}

/// The certificates of a PEM file, at least one.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = read_capped(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("`{}` is not a PEM certificate file", path.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "`{}` holds no PEM certificate",
        path.display()
    );
    Ok(certs)
}

/// A file's bytes, refusing a file over [`MAX_PEM_BYTES`]. The read itself stops there, so a
/// file that grows after it is opened costs no more.
fn read_capped(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_PEM_BYTES + 1).read_to_end(&mut bytes))
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    let len = bytes.len();
    anyhow::ensure!(
        len as u64 <= MAX_PEM_BYTES,
        "`{}` is more than {MAX_PEM_BYTES} bytes, more than a PEM file of certificates or a key needs",
        path.display()
    );
    Ok(bytes)
}

/// The subject, names and expiry of the server's certificate, which must be valid now.
fn describe(file: &Path, cert: &CertificateDer<'_>) -> Result<CertInfo, String> {
    use x509_parser::prelude::*;
    let (_, parsed) = X509Certificate::from_der(cert.as_ref()).map_err(|e| {
        format!(
            "the first certificate in `{}` does not parse: {e}",
            file.display()
        )
    })?;
    let validity = parsed.validity();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let not_after = validity.not_after.timestamp();
    if now > not_after {
        return Err(format!(
            "the certificate in `{}` expired on {}",
            file.display(),
            validity.not_after
        ));
    }
    if now < validity.not_before.timestamp() {
        return Err(format!(
            "the certificate in `{}` is not valid before {}",
            file.display(),
            validity.not_before
        ));
    }
    let mut names: Vec<String> = parsed
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(dns) => Some(dns.to_ascii_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty()
        && let Some(cn) = parsed
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
    {
        names.push(cn.to_ascii_lowercase());
    }
    Ok(CertInfo {
        file: file.display().to_string(),
        subject: parsed.subject().to_string(),
        names,
        not_after_unix: not_after,
    })
}

impl Certificates {
    /// Reloads the certificates ([`Certificates::reload`]) because of `trigger`, and says what
    /// happened: the log (one line), `hotswap_tls_reloads_total` and, when new ones serve, the
    /// expiry gauge.
    pub fn reload_and_log(&self, trigger: &str, metrics: &Metrics) {
        match self.reload() {
            Ok(infos) => {
                metrics.tls_reload("loaded");
                record(&infos, metrics);
                for info in &infos {
                    tracing::info!(trigger, file = %info.file, subject = %info.subject, names = ?info.names, not_after_unix = info.not_after_unix, "TLS certificate serving; new handshakes use it");
                }
            }
            Err(reason) => {
                metrics.tls_reload("failed");
                tracing::warn!(
                    trigger,
                    "TLS certificates not reloaded: {reason}; the current ones keep serving"
                );
            }
        }
    }

    /// Watches every certificate and key file (following links: a mounted Secret's `..data`
    /// swap); changes that come together (a certificate and its key) reload once, when they
    /// have been quiet for `debounce`.
    pub fn watch(
        self: &Arc<Self>,
        debounce: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<Vec<FileWatcher>> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let mut watchers = Vec::new();
        for file in self.files() {
            let tx = tx.clone();
            watchers.push(watcher::watch(&file, debounce, move || {
                let _ = tx.send(());
            })?);
        }
        let certificates = Arc::downgrade(self);
        tokio::spawn(async move {
            while rx.recv().await.is_some() {
                // Let the rest of one update (the key after the certificate) land first.
                loop {
                    match tokio::time::timeout(debounce, rx.recv()).await {
                        Ok(Some(())) => continue,
                        Ok(None) => return,
                        Err(_) => break,
                    }
                }
                let Some(certificates) = certificates.upgrade() else {
                    return;
                };
                certificates.reload_and_log("file change", &metrics);
            }
        });
        Ok(watchers)
    }
}

/// Records the certificates that serve in the metrics.
pub fn record(infos: &[CertInfo], metrics: &Metrics) {
    let rows: Vec<(String, String, i64)> = infos
        .iter()
        .map(|i| (i.file.clone(), i.subject.clone(), i.not_after_unix))
        .collect();
    metrics.tls_certificates(&rows);
}
