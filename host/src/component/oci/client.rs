//! The few registry calls the host makes, each read bounded: a `HEAD` that resolves a tag, a
//! `GET` of a manifest by digest, a `GET` of the component layer, and the token request of the
//! Bearer flow.
//!
//! What bounds what: a manifest is read up to [`manifest::MAX_BYTES`] and checked against its
//! digest; a layer is streamed, hashed as it arrives and cut as soon as it passes its
//! descriptor's size (which the caller has held to `--max-component-size`); an error body or a
//! token response is read up to [`MAX_SMALL_BODY`] and quoted shortened. Each request must
//! connect, and each read deliver, within [`REQUEST_TIMEOUT`]; the caller puts a deadline on a
//! whole poll, which cuts a registry that trickles.
//!
//! Auth: a request goes out anonymous; a `401` names what the registry wants. `Basic` gets the
//! configured credentials; `Bearer realm=…,service=…` gets a token from the realm for
//! `repository:REPO:pull` (with the credentials, if any), and the request is sent once more.
//! What worked is kept for the next requests, so a poll stays one `HEAD`.

use super::access::Credentials;
use super::{RegistryError, manifest, shorten};
use crate::config::reference::{Reference, is_sha256_digest};
use reqwest::header::{ACCEPT, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};
use sha2::{Digest, Sha256};
use std::sync::Mutex;
use std::time::Duration;

/// Connect deadline of one request, and longest wait for any one read of its answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest error body or token response read.
const MAX_SMALL_BODY: u64 = 64 << 10;

/// A client for one repository of one registry.
pub struct Client {
    http: reqwest::Client,
    /// `http://HOST[:PORT]` or `https://HOST[:PORT]`.
    base: String,
    repository: String,
    /// The registry as configured, for messages.
    registry: String,
    /// `oci://…` as configured, for messages.
    reference: String,
    credentials: Option<Credentials>,
    /// Registries reached over plain HTTP (a token realm on one of them may be too).
    insecure: Vec<String>,
    /// What the registry asked for last.
    auth: Mutex<Auth>,
}

/// What goes in the `Authorization` header.
#[derive(Clone)]
enum Auth {
    Anonymous,
    Basic,
    Bearer(String),
}

impl Client {
    /// A client for `reference` (shown as `display` in errors), over `scheme`.
    pub fn new(
        reference: &Reference,
        display: &str,
        scheme: &str,
        insecure: &[String],
        credentials: Option<Credentials>,
    ) -> anyhow::Result<Client> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("hotswap/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(REQUEST_TIMEOUT)
            .read_timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the registry client: {e}"))?;
        Ok(Client {
            http,
            base: format!("{scheme}://{}", reference.api_host()),
            repository: reference.repository().to_string(),
            registry: reference.registry().to_string(),
            reference: display.to_string(),
            credentials,
            insecure: insecure.to_vec(),
            auth: Mutex::new(Auth::Anonymous),
        })
    }

    /// The manifest digest `tag` resolves to: the `Docker-Content-Digest` of a `HEAD`, else
    /// the sha256 of the manifest a `GET` returns.
    pub async fn resolve(&self, tag: &str) -> Result<String, RegistryError> {
        let url = self.url("manifests", tag);
        let res = self
            .send(Method::HEAD, &url, Some(manifest::ACCEPT))
            .await?;
        let res = self.check(res).await?;
        let header = res
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .filter(|d| is_sha256_digest(d));
        if let Some(digest) = header {
            return Ok(digest.to_string());
        }
        let res = self.send(Method::GET, &url, Some(manifest::ACCEPT)).await?;
        let body = self.manifest_body(self.check(res).await?).await?;
        Ok(sha256_digest(&body))
    }

    /// The bytes of manifest `digest`, checked against it.
    pub async fn manifest(&self, digest: &str) -> Result<Vec<u8>, RegistryError> {
        let url = self.url("manifests", digest);
        let res = self.send(Method::GET, &url, Some(manifest::ACCEPT)).await?;
        let body = self.manifest_body(self.check(res).await?).await?;
        let actual = sha256_digest(&body);
        if actual != digest {
            return Err(RegistryError::DigestMismatch {
                reference: self.reference.clone(),
                what: "manifest",
                detail: format!("the registry sent bytes that hash to {actual}, not {digest}"),
            });
        }
        Ok(body)
    }

    /// The blob `digest` of `size` bytes, read as it arrives and hashed on the way; the read
    /// stops as soon as the registry sends more than `size` bytes.
    pub async fn blob(&self, digest: &str, size: u64) -> Result<Vec<u8>, RegistryError> {
        let too_large = |detail: String| RegistryError::TooLarge {
            reference: self.reference.clone(),
            what: "layer",
            detail,
        };
        let url = self.url("blobs", digest);
        let res = self.send(Method::GET, &url, None).await?;
        let mut res = self.check(res).await?;
        if let Some(announced) = res.content_length()
            && announced > size
        {
            return Err(too_large(format!(
                "the registry announces {announced} bytes, its descriptor says {size}"
            )));
        }
        let capacity = usize::try_from(size).map_err(|_| too_large(format!("{size} bytes")))?;
        let mut bytes = Vec::with_capacity(capacity);
        let mut hasher = Sha256::new();
        while let Some(chunk) = res.chunk().await.map_err(|e| self.transport(&e))? {
            if bytes.len() + chunk.len() > capacity {
                return Err(too_large(format!(
                    "the registry sent more than the {size} bytes its descriptor says; \
                     stopped reading"
                )));
            }
            hasher.update(&chunk);
            bytes.extend_from_slice(&chunk);
        }
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        if actual != digest || bytes.len() != capacity {
            return Err(RegistryError::DigestMismatch {
                reference: self.reference.clone(),
                what: "layer",
                detail: format!(
                    "the descriptor says {digest} ({size} bytes), the bytes are {actual} ({} \
                     bytes)",
                    bytes.len()
                ),
            });
        }
        Ok(bytes)
    }

    fn url(&self, kind: &str, reference: &str) -> String {
        format!("{}/v2/{}/{kind}/{reference}", self.base, self.repository)
    }

    /// Sends a request with what the registry asked for last; on a `401`, answers the
    /// challenge (a token, or the credentials) and sends it once more.
    async fn send(
        &self,
        method: Method,
        url: &str,
        accept: Option<&str>,
    ) -> Result<Response, RegistryError> {
        let mut answered = false;
        loop {
            let mut request = self.http.request(method.clone(), url);
            if let Some(accept) = accept {
                request = request.header(ACCEPT, accept);
            }
            request = match (self.current_auth(), &self.credentials) {
                (Auth::Basic, Some(c)) => request.basic_auth(&c.user, Some(&c.password)),
                (Auth::Bearer(token), _) => request.bearer_auth(token),
                _ => request,
            };
            let res = request.send().await.map_err(|e| self.transport(&e))?;
            if res.status() != StatusCode::UNAUTHORIZED || answered {
                return Ok(res);
            }
            let challenge = res
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(Challenge::parse);
            let Some(next) = self.answer(challenge).await? else {
                return Ok(res);
            };
            *self.auth.lock().unwrap_or_else(|p| p.into_inner()) = next;
            answered = true;
        }
    }

    fn current_auth(&self) -> Auth {
        self.auth.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// What to send after a `401` with `challenge`, or `None` when there is nothing new to
    /// try (no credentials, or the ones just sent were refused).
    async fn answer(&self, challenge: Option<Challenge>) -> Result<Option<Auth>, RegistryError> {
        let Some(challenge) = challenge else {
            return Ok(None);
        };
        match challenge.scheme.as_str() {
            "basic" if self.credentials.is_some() => Ok(match self.current_auth() {
                Auth::Basic => None,
                _ => Some(Auth::Basic),
            }),
            "bearer" => self.token(&challenge).await.map(|t| Some(Auth::Bearer(t))),
            _ => Ok(None),
        }
    }

    /// A token for pulling from the repository, from the realm the challenge names.
    async fn token(&self, challenge: &Challenge) -> Result<String, RegistryError> {
        let refused = |detail: String| RegistryError::Auth {
            registry: self.registry.clone(),
            detail,
        };
        let realm = challenge
            .param("realm")
            .ok_or_else(|| refused("it asked for a bearer token but named no realm".into()))?;
        let mut url = reqwest::Url::parse(realm)
            .map_err(|e| refused(format!("its token realm `{}`: {e}", shorten(realm))))?;
        let host = match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_string(),
            (None, _) => String::new(),
        };
        let plain_ok = super::access::scheme(&host, &self.insecure) == "http";
        if !(url.scheme() == "https" || (url.scheme() == "http" && plain_ok)) {
            return Err(refused(format!(
                "its token realm `{}` is not HTTPS (name it with `--insecure-registry` to allow \
                 plain HTTP)",
                shorten(realm)
            )));
        }
        url.query_pairs_mut()
            .append_pair("scope", &format!("repository:{}:pull", self.repository));
        if let Some(service) = challenge.param("service") {
            url.query_pairs_mut().append_pair("service", service);
        }
        let mut request = self.http.get(url);
        if let Some(c) = &self.credentials {
            request = request.basic_auth(&c.user, Some(&c.password));
        }
        let res = request.send().await.map_err(|e| self.transport(&e))?;
        let res = self.check(res).await?;
        let (body, complete) = read_limited(res, MAX_SMALL_BODY)
            .await
            .map_err(|e| self.transport(&e))?;
        if !complete {
            return Err(refused(format!(
                "its token response is larger than {MAX_SMALL_BODY} bytes"
            )));
        }
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
        }
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| refused(format!("its token response is not JSON: {e}")))?;
        parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| refused("its token response has no `token`".into()))
    }

    /// `res` if it succeeded; otherwise the error its status and (shortened) body say.
    async fn check(&self, res: Response) -> Result<Response, RegistryError> {
        let status = res.status();
        if status.is_success() {
            return Ok(res);
        }
        let body = read_limited(res, MAX_SMALL_BODY)
            .await
            .map(|(body, _)| body)
            .unwrap_or_default();
        let (detail, codes) = describe(status, &body);
        let any = |names: &[&str]| codes.iter().any(|c| names.contains(&c.as_str()));
        Err(
            if matches!(status.as_u16(), 401 | 403) || any(&["UNAUTHORIZED", "DENIED"]) {
                RegistryError::Auth {
                    registry: self.registry.clone(),
                    detail,
                }
            } else if status == StatusCode::NOT_FOUND
                || any(&["MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UNKNOWN"])
            {
                RegistryError::NotFound {
                    reference: self.reference.clone(),
                    detail,
                }
            } else {
                RegistryError::Other {
                    registry: self.registry.clone(),
                    detail,
                }
            },
        )
    }

    /// A manifest's bytes, refused past [`manifest::MAX_BYTES`].
    async fn manifest_body(&self, res: Response) -> Result<Vec<u8>, RegistryError> {
        let too_large = || RegistryError::TooLarge {
            reference: self.reference.clone(),
            what: "manifest",
            detail: format!("more than {} bytes; stopped reading", manifest::MAX_BYTES),
        };
        if res
            .content_length()
            .is_some_and(|n| n > manifest::MAX_BYTES)
        {
            return Err(too_large());
        }
        match read_limited(res, manifest::MAX_BYTES).await {
            Ok((body, true)) => Ok(body),
            Ok((_, false)) => Err(too_large()),
            Err(e) => Err(self.transport(&e)),
        }
    }

    fn transport(&self, err: &reqwest::Error) -> RegistryError {
        let registry = self.registry.clone();
        let detail = super::error_chain(err);
        if err.is_connect() || err.is_timeout() {
            RegistryError::Unreachable { registry, detail }
        } else {
            RegistryError::Other { registry, detail }
        }
    }
}

/// Reads `res`'s body up to `max` bytes: the bytes, and whether that was all of it.
async fn read_limited(mut res: Response, max: u64) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await? {
        if body.len() + chunk.len() > max {
            let room = max - body.len();
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, false));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, true))
}

fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// `404 Not Found: MANIFEST_UNKNOWN: manifest unknown`, from a status and an error body (the
/// distribution spec's `{"errors": [{"code", "message"}]}`, else its text shortened); and the
/// error codes.
fn describe(status: StatusCode, body: &[u8]) -> (String, Vec<String>) {
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        code: Option<String>,
        message: Option<String>,
    }
    let mut detail = status.to_string();
    let mut codes = Vec::new();
    if let Ok(envelope) = serde_json::from_slice::<Envelope>(body)
        && !envelope.errors.is_empty()
    {
        let entries: Vec<String> = envelope
            .errors
            .into_iter()
            .map(|e| {
                let code = e.code.unwrap_or_default();
                let text = match e.message {
                    Some(m) if !code.is_empty() => format!("{code}: {m}"),
                    Some(m) => m,
                    None => code.clone(),
                };
                codes.push(code);
                text
            })
            .collect();
        detail = format!("{detail}: {}", shorten(&entries.join("; ")));
    } else {
        let text = String::from_utf8_lossy(body);
        if !text.trim().is_empty() {
            detail = format!("{detail}: {}", shorten(&text));
        }
    }
    (detail, codes)
}

/// One `WWW-Authenticate` challenge: `Bearer realm="…",service="…"`.
#[derive(Debug, PartialEq)]
struct Challenge {
    /// Lower case.
    scheme: String,
    params: Vec<(String, String)>,
}

impl Challenge {
    /// The first challenge of a header value.
    fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim_start();
        let (scheme, mut rest) = header.split_once(' ').unwrap_or((header, ""));
        if scheme.is_empty() {
            return None;
        }
        let mut params = Vec::new();
        loop {
            rest = rest.trim_start_matches([' ', ',']);
            let Some((key, after)) = rest.split_once('=') else {
                break;
            };
            let key = key.trim();
            if key.is_empty() || key.contains([' ', ',']) {
                break; // the next challenge's scheme
            }
            let after = after.trim_start();
            let (value, next) = match after.strip_prefix('"') {
                Some(quoted) => {
                    let mut value = String::new();
                    let mut chars = quoted.char_indices();
                    let mut end = quoted.len();
                    while let Some((i, c)) = chars.next() {
                        match c {
                            '\\' => value.extend(chars.next().map(|(_, c)| c)),
                            '"' => {
                                end = i + 1;
                                break;
                            }
                            c => value.push(c),
                        }
                    }
                    (value, &quoted[end..])
                }
                None => {
                    let end = after.find(',').unwrap_or(after.len());
                    (after[..end].trim().to_string(), &after[end..])
                }
            };
            params.push((key.to_ascii_lowercase(), value));
            rest = next;
        }
        Some(Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params,
        })
    }

    fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_give_their_scheme_and_parameters() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.param("realm"), Some("https://auth.example.com/token"));
        assert_eq!(c.param("service"), Some("registry.example.com"));
        assert_eq!(c.param("scope"), Some("repository:a/b:pull,push"));

        let c = Challenge::parse(r#"Basic realm="hotswap-test""#).unwrap();
        assert_eq!(
            (c.scheme.as_str(), c.param("realm")),
            ("basic", Some("hotswap-test"))
        );
        let c = Challenge::parse(r#"bearer realm=http://x/t, service = "a \"b\"""#).unwrap();
        assert_eq!(c.param("realm"), Some("http://x/t"));
        assert_eq!(c.param("service"), Some(r#"a "b""#));
        assert_eq!(Challenge::parse("Basic").unwrap().params, vec![]);
        assert!(Challenge::parse("").is_none());
        // An unterminated quote ends the value, and nothing panics.
        let c = Challenge::parse(r#"Bearer realm="https://x"#).unwrap();
        assert_eq!(c.param("realm"), Some("https://x"));
    }

    #[test]
    fn error_bodies_are_described_shortened_with_their_codes() {
        let (detail, codes) = describe(
            StatusCode::NOT_FOUND,
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#,
        );
        assert_eq!(detail, "404 Not Found: MANIFEST_UNKNOWN: manifest unknown");
        assert_eq!(codes, ["MANIFEST_UNKNOWN"]);
        let long = "x".repeat(10_000);
        let (detail, codes) = describe(StatusCode::BAD_GATEWAY, long.as_bytes());
        assert!(detail.starts_with("502 Bad Gateway: xxx"), "{detail}");
        assert!(detail.len() < 300, "{}", detail.len());
        assert!(codes.is_empty());
        let (detail, _) = describe(StatusCode::UNAUTHORIZED, b"");
        assert_eq!(detail, "401 Unauthorized");
    }
}
