//! The admin listener: health, readiness, status, metrics, and the calls that change what is
//! served (reload, rollback, upload), which need the bearer token.
//!
//! | call | answer |
//! |---|---|
//! | `GET /healthz` | 200 while the process runs |
//! | `GET /readyz` | 200 when a component is loaded, else 503 |
//! | `GET /status` | JSON: current generation, history, in-flight requests per generation |
//! | `GET /metrics` | Prometheus text |
//! | `POST /reload` | re-read the component file now; JSON report |
//! | `POST /rollback[?generation=N]` | serve a kept generation again, until the file changes |
//! | `PUT /component` | upload a component: validated, swapped in, written to the path |

use crate::body::{ResponseBody, full};
use crate::handler::plain;
use crate::metrics::Metrics;
use crate::reload::{Report, Trigger, TriggerSender};
use crate::slot::{Generation, Slot};
use anyhow::{Context, Result};
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::UNIX_EPOCH;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Everything the admin calls read or drive.
pub struct Admin {
    /// The swap slot.
    pub slot: Arc<Slot>,
    /// Where reloads and uploads are sent.
    pub triggers: TriggerSender,
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
    /// Bearer token for mutating calls.
    pub token: Option<String>,
    /// Largest upload accepted.
    pub max_component_size: u64,
}

/// Binds the admin listener (before anything is served, so a bad address fails startup).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "the admin listener is reachable from other hosts");
    }
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("failed to bind the admin listener on `{addr}`"))
}

/// Serves admin calls on `listener` until the process ends.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(err) => {
                tracing::warn!(error = %err, "admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(admin.handle(req).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

impl Admin {
    async fn handle(&self, req: Request<Incoming>) -> Response<ResponseBody> {
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        match (&method, path.as_str()) {
            (&Method::GET, "/healthz") => plain(StatusCode::OK, "ok\n"),
            (&Method::GET, "/readyz") => match self.slot.current() {
                Some(g) => plain(StatusCode::OK, format!("ready: generation {}\n", g.number)),
                None => plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("{}\n", self.slot.unavailable_reason()),
                ),
            },
            (&Method::GET, "/status") => json(StatusCode::OK, &self.status()),
            (&Method::GET, "/metrics") => {
                let mut resp = Response::new(full(self.metrics.encode()));
                resp.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                resp
            }
            (&Method::POST, "/reload")
            | (&Method::POST, "/rollback")
            | (&Method::PUT, "/component") => {
                if let Some(refusal) = self.refuse_unauthorized(&req) {
                    return refusal;
                }
                match path.as_str() {
                    "/reload" => self.reload().await,
                    "/rollback" => self.rollback(req.uri().query()),
                    _ => self.upload(req).await,
                }
            }
            (
                _,
                "/healthz" | "/readyz" | "/status" | "/metrics" | "/reload" | "/rollback"
                | "/component",
            ) => plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
            _ => plain(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    /// The refusal to send when `req` lacks the admin token, or `None` when it may proceed.
    fn refuse_unauthorized(&self, req: &Request<Incoming>) -> Option<Response<ResponseBody>> {
        let Some(token) = &self.token else {
            return Some(plain(
                StatusCode::FORBIDDEN,
                "mutating admin calls are disabled: no admin token is configured (HOTSWAP_ADMIN_TOKEN)\n",
            ));
        };
        let given = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
            None
        } else {
            let mut resp = plain(
                StatusCode::UNAUTHORIZED,
                "a valid bearer token is required\n",
            );
            resp.headers_mut()
                .insert("www-authenticate", HeaderValue::from_static("Bearer"));
            Some(resp)
        }
    }

    async fn reload(&self) -> Response<ResponseBody> {
        let (tx, rx) = oneshot::channel();
        self.run(Trigger::Admin(tx), rx).await
    }

    async fn upload(&self, req: Request<Incoming>) -> Response<ResponseBody> {
        let limit = usize::try_from(self.max_component_size).unwrap_or(usize::MAX);
        let bytes = match Limited::new(req.into_body(), limit).collect().await {
            Ok(collected) => collected.to_bytes().to_vec(),
            Err(err) => {
                return plain(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("cannot read the upload: {err}\n"),
                );
            }
        };
        let (tx, rx) = oneshot::channel();
        self.run(Trigger::Upload(bytes, tx), rx).await
    }

    async fn run(&self, trigger: Trigger, rx: oneshot::Receiver<Report>) -> Response<ResponseBody> {
        if !self.triggers.request(trigger).await {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "the reload pipeline is not running\n",
            );
        }
        match rx.await {
            Ok(report) => {
                let status = if report.result == "failed" {
                    StatusCode::UNPROCESSABLE_ENTITY
                } else {
                    StatusCode::OK
                };
                json(status, &report)
            }
            Err(_) => plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the reload pipeline dropped the request\n",
            ),
        }
    }

    fn rollback(&self, query: Option<&str>) -> Response<ResponseBody> {
        let target =
            match query.and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("generation="))) {
                Some(n) => match n.parse::<u64>() {
                    Ok(n) => Some(n),
                    Err(_) => {
                        return plain(
                            StatusCode::BAD_REQUEST,
                            format!("invalid generation `{n}`\n"),
                        );
                    }
                },
                None => None,
            };
        match self.slot.rollback(target) {
            Ok(generation) => {
                self.metrics.serving(&generation);
                tracing::info!(generation = generation.number, sha256 = %generation.short_hash(), "rolled back to generation {}", generation.number);
                json(
                    StatusCode::OK,
                    &serde_json::json!({ "result": "rolled back", "generation": generation.number }),
                )
            }
            Err(reason) => json(
                StatusCode::CONFLICT,
                &serde_json::json!({ "result": "failed", "error": reason }),
            ),
        }
    }

    fn status(&self) -> serde_json::Value {
        let current = self.slot.current();
        serde_json::json!({
            "current": current.as_deref().map(describe),
            "unavailable_reason": if current.is_none() { Some(self.slot.unavailable_reason().to_string()) } else { None },
            "history": self.slot.history().iter().map(|g| describe(g)).collect::<Vec<_>>(),
        })
    }
}

fn describe(g: &Generation) -> serde_json::Value {
    serde_json::json!({
        "generation": g.number,
        "sha256": hex::encode(g.sha256),
        "source": g.origin,
        "digest": g.digest,
        "size": g.size,
        "loaded_at_unix_ms": g.loaded_at.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
        "compile_ms": g.compile_time.as_secs_f64() * 1000.0,
        "cache_hit": g.code_source.cache_hit(),
        "in_flight": g.in_flight(),
    })
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<ResponseBody> {
    let mut body = serde_json::to_vec_pretty(value)
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}").into_bytes());
    body.push(b'\n');
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
