//! The admin listener: health, readiness, status, metrics, and the calls that change what is
//! served (reload, rollback, upload), which need the bearer token.
//!
//! It takes connections through the same accept loop as the public listener
//! ([`crate::http::server::accept`]): the same header read timeout, header limits, write timeout and
//! idle timeout, and at most [`MAX_CONNECTIONS`] open at once. Every call has a deadline
//! (`--admin-timeout`): one still running then (an upload trickling in, a reload waiting for a
//! long compile) is answered 503, and a reload it started goes on and is logged.
//!
//! | call | answer |
//! |---|---|
//! | `GET /healthz` | 200 while the process runs |
//! | `GET /readyz` | 200 when every route the host started with has a generation, else 503 naming those without |
//! | `GET /routes` | JSON: each route's name, prefix, source, generation |
//! | `GET /routes/{name}/status` | JSON: the route's current generation, history, in-flight requests |
//! | `POST /routes/{name}/reload` | re-read the route's component now; JSON report |
//! | `POST /routes/{name}/rollback[?generation=N]` | serve a kept generation again, until the file changes |
//! | `PUT /routes/{name}/component` | upload a component: validated, swapped in, written to the path |
//! | `GET /status` | every route's status (with one route, its fields at the top level too) |
//! | `GET /metrics` | Prometheus text |
//! | `POST /reload` | reload every route |
//! | `POST /rollback`, `PUT /component` | the route's call, when there is exactly one route |
//! | `GET /routes/{name}/canary` | JSON: the route's canary policy, the candidate, both sides' numbers (`admin/canary.rs`) |
//! | `POST /routes/{name}/canary/promote`, `…/abort` | the operator's verdict on the running canary |
//! | `POST /upgrade` | start the binary anew and hand it the listeners ([`crate::process`]); JSON: the new PID, or why this process serves on |

mod canary;

use crate::config::ConnLimits;
use crate::guest::body::{ResponseBody, full};
use crate::guest::respond::plain;
use crate::guest::slot::Generation;
use crate::http::handler::check_head;
use crate::metrics::Metrics;
use crate::process::Identity;
use crate::process::upgrade::Upgrades;
use crate::reload::{Outcome, Report, Trigger};
use crate::route::{Route, RouteTable};
use crate::wasi::config_store::GuestConfig;
use anyhow::{Context, Result};
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Most connections the admin listener keeps open at once; more are closed as they arrive.
pub const MAX_CONNECTIONS: usize = 64;

/// Everything the admin calls read or drive.
pub struct Admin {
    /// The routes served.
    pub routes: Arc<RouteTable>,
    /// The `wasi:config` values, re-read by every reload call (once, however many routes).
    pub guest_config: Arc<GuestConfig>,
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
    /// Bearer token for mutating calls.
    pub token: Option<String>,
    /// Largest upload accepted.
    pub max_component_size: u64,
    /// Limits on the requests' heads (as for the public listener).
    pub limits: ConnLimits,
    /// Deadline of one call.
    pub timeout: Duration,
    /// Serve HTTPS, requiring client certificates (`--admin-client-ca`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The public listener's certificates, if it serves HTTPS: shown in `/status`, reloaded by
    /// `POST /reload`.
    pub certificates: Option<Arc<crate::http::tls::Certificates>>,
    /// This process: its PID and binary, shown in `/status`.
    pub process: Identity,
    /// Where `POST /upgrade` asks for a binary upgrade.
    pub upgrades: Upgrades,
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

/// Serves admin calls on `listener` until `stop` resolves (the process stops, or an upgrade
/// hands the listener over), leaving the connections still open to `connections`.
pub async fn serve(
    listener: TcpListener,
    admin: Arc<Admin>,
    connections: crate::http::server::Connections,
    stop: impl Future<Output = ()>,
) {
    let accept = crate::http::server::Accept {
        limits: admin.limits.clone(),
        max_connections: Some(MAX_CONNECTIONS),
        name: "admin",
        tls: admin.tls.clone(),
    };
    crate::http::server::accept(listener, admin, accept, connections, stop).await;
}

impl crate::http::server::Handler for Admin {
    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<ResponseBody> {
        let (method, path) = (req.method().clone(), req.uri().path().to_string());
        if let Some(refusal) = check_head(&req, &self.limits) {
            return refusal;
        }
        match tokio::time::timeout(self.timeout, self.call(req)).await {
            Ok(response) => response,
            Err(_) => {
                tracing::warn!(%method, %path, timeout = ?self.timeout, "admin call cut at its deadline (`--admin-timeout`); a reload it started goes on and is logged");
                let mut response = plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "the admin call did not finish within {:?} (`--admin-timeout`); a reload it started goes on: see the log\n",
                        self.timeout
                    ),
                );
                response
                    .headers_mut()
                    .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
                response
            }
        }
    }
}

impl Admin {
    async fn call(&self, req: Request<Incoming>) -> Response<ResponseBody> {
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        if let Some(rest) = path.strip_prefix("/routes/") {
            return self.route_call(req, &method, rest).await;
        }
        match (&method, path.as_str()) {
            (&Method::GET, "/healthz") => plain(StatusCode::OK, "ok\n"),
            (&Method::GET, "/readyz") => self.readyz(),
            (&Method::GET, "/status") => json(StatusCode::OK, &self.status()),
            (&Method::GET, "/routes") => json(StatusCode::OK, &self.routes()),
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
                let routes = self.routes.all();
                if path == "/reload" && routes.len() != 1 {
                    return self.reload_all(&routes).await;
                }
                let [route] = routes.as_slice() else {
                    let names: Vec<&str> = routes.iter().map(|r| &*r.name).collect();
                    return plain(
                        StatusCode::CONFLICT,
                        format!(
                            "{} routes are served ({}); use /routes/{{name}}{path}\n",
                            routes.len(),
                            names.join(", ")
                        ),
                    );
                };
                self.change(route, &path[1..], req).await
            }
            (&Method::POST, "/upgrade") => {
                if let Some(refusal) = self.refuse_unauthorized(&req) {
                    return refusal;
                }
                self.upgrade().await
            }
            (
                _,
                "/healthz" | "/readyz" | "/status" | "/routes" | "/metrics" | "/reload"
                | "/rollback" | "/component" | "/upgrade",
            ) => plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
            _ => plain(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    /// `/routes/{name}/{call}`.
    async fn route_call(
        &self,
        req: Request<Incoming>,
        method: &Method,
        rest: &str,
    ) -> Response<ResponseBody> {
        let Some((name, call)) = rest.split_once('/') else {
            return plain(
                StatusCode::NOT_FOUND,
                "not found: use /routes/{name}/status, reload, rollback or component\n",
            );
        };
        let Some(route) = self.routes.get(name) else {
            return plain(
                StatusCode::NOT_FOUND,
                format!("no route is named `{name}`\n"),
            );
        };
        match (method, call) {
            (&Method::GET, "status") => json(StatusCode::OK, &route_status(&route)),
            (&Method::GET, "canary") => canary::status(&route),
            (&Method::POST, "canary/promote" | "canary/abort") => {
                if let Some(refusal) = self.refuse_unauthorized(&req) {
                    return refusal;
                }
                let decision = match call {
                    "canary/promote" => crate::guest::canary::Decision::Promote,
                    _ => crate::guest::canary::Decision::Rollback,
                };
                canary::decide(&route, decision)
            }
            (_, "canary" | "canary/promote" | "canary/abort") => {
                plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
            }
            (&Method::POST, "reload" | "rollback") | (&Method::PUT, "component") => {
                if let Some(refusal) = self.refuse_unauthorized(&req) {
                    return refusal;
                }
                self.change(&route, call, req).await
            }
            (_, "status" | "reload" | "rollback" | "component") => {
                plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
            }
            _ => plain(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    /// The calls that change what `route` serves (`reload`, `rollback`, `component`), once
    /// authorized; the same whether named by route or by the single-route path.
    async fn change(
        &self,
        route: &Route,
        call: &str,
        req: Request<Incoming>,
    ) -> Response<ResponseBody> {
        match call {
            "reload" => {
                self.guest_config.reload("admin reload");
                self.reload_certificates();
                reload(route).await
            }
            "rollback" => self.rollback(route, req.uri().query()).await,
            _ => self.upload(route, req).await,
        }
    }

    /// Ready when every route the host started with serves a generation. Apps dropped into
    /// `--apps` later do not count: one that cannot load answers 503 on its own prefix and
    /// shows in `/status`, but must not take every other app on the host out of its Service.
    fn readyz(&self) -> Response<ResponseBody> {
        let all = self.routes.all();
        let routes: Vec<&Arc<Route>> = all.iter().filter(|r| r.startup).collect();
        if routes.is_empty() && all.is_empty() {
            return plain(StatusCode::SERVICE_UNAVAILABLE, "no route is served yet\n");
        }
        let waiting: Vec<String> = routes
            .iter()
            .filter(|r| r.slot.current().is_none())
            .map(|r| {
                format!(
                    "route `{}` ({}): {}",
                    r.name,
                    r.prefix,
                    r.slot.unavailable_reason()
                )
            })
            .collect();
        if !waiting.is_empty() {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready:\n{}\n", waiting.join("\n")),
            );
        }
        let serving: Vec<String> = all
            .iter()
            .filter_map(|r| {
                r.slot
                    .current()
                    .map(|g| format!("route `{}`: generation {}", r.name, g.number))
            })
            .collect();
        plain(StatusCode::OK, format!("ready: {}\n", serving.join(", ")))
    }

    /// `POST /reload` also reloads the TLS certificates, if the host serves HTTPS.
    fn reload_certificates(&self) {
        if let Some(certificates) = &self.certificates {
            certificates.reload_and_log("admin reload", &self.metrics);
        }
    }

    async fn reload_all(&self, routes: &[Arc<Route>]) -> Response<ResponseBody> {
        self.guest_config.reload("admin reload");
        self.reload_certificates();
        let mut reports = serde_json::Map::new();
        let mut failed = false;
        for route in routes {
            let (tx, rx) = oneshot::channel();
            let report = match run(route, Trigger::Admin(tx), rx).await {
                Ok(report) => {
                    failed |= report.result == Outcome::Failed;
                    serde_json::to_value(report).unwrap_or_default()
                }
                Err(reason) => {
                    failed = true;
                    serde_json::json!({ "result": "failed", "error": reason })
                }
            };
            reports.insert(route.name.to_string(), report);
        }
        let status = if failed {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        };
        json(status, &serde_json::json!({ "routes": reports }))
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

    async fn upload(&self, route: &Route, req: Request<Incoming>) -> Response<ResponseBody> {
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
        report_response(run(route, Trigger::Upload(bytes, tx), rx).await)
    }

    async fn rollback(&self, route: &Route, query: Option<&str>) -> Response<ResponseBody> {
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
        // A rollback is a trigger of the route's reloader like any other: it installs the
        // kept generation the way every generation starts serving.
        let (tx, rx) = oneshot::channel();
        match run(route, Trigger::Rollback(target, tx), rx).await {
            Ok(report) if report.result == Outcome::RolledBack => json(
                StatusCode::OK,
                &serde_json::json!({ "result": report.result, "route": &*route.name, "generation": report.generation, "canary": report.canary }),
            ),
            Ok(report) => json(
                StatusCode::CONFLICT,
                &serde_json::json!({ "result": report.result, "route": &*route.name, "error": report.error, "canary": report.canary }),
            ),
            Err(reason) => plain(StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
        }
    }

    /// `POST /upgrade`: the new process's PID once it serves (this one then drains and exits),
    /// or why this process serves on.
    async fn upgrade(&self) -> Response<ResponseBody> {
        match self.upgrades.run("admin").await {
            Ok(upgraded) => json(
                StatusCode::OK,
                &serde_json::json!({ "upgraded": true, "pid": upgraded.pid, "previous_pid": self.process.pid }),
            ),
            Err(reason) => json(
                StatusCode::CONFLICT,
                &serde_json::json!({ "upgraded": false, "pid": self.process.pid, "error": reason }),
            ),
        }
    }

    fn status(&self) -> serde_json::Value {
        let routes = self.routes.all();
        let statuses: Vec<serde_json::Value> = routes.iter().map(|r| route_status(r)).collect();
        let mut value = match statuses.as_slice() {
            // One route: its fields at the top level too, as before routes existed.
            [only] => {
                let mut value = only.clone();
                if let Some(map) = value.as_object_mut() {
                    map.insert("routes".into(), serde_json::json!(statuses));
                }
                value
            }
            _ => serde_json::json!({ "routes": statuses }),
        };
        if let (Some(certificates), Some(map)) = (&self.certificates, value.as_object_mut()) {
            map.insert("tls".into(), serde_json::json!(certificates.infos()));
        }
        if let Some(map) = value.as_object_mut() {
            map.insert("process".into(), process_status(&self.process));
        }
        value
    }

    fn routes(&self) -> serde_json::Value {
        let routes: Vec<serde_json::Value> = self
            .routes
            .all()
            .iter()
            .map(|r| {
                let current = r.slot.current();
                serde_json::json!({
                    "name": &*r.name,
                    "prefix": r.prefix,
                    "source": r.source,
                    "generation": current.as_ref().map(|g| g.number),
                    "ready": current.is_some(),
                    "in_flight": r.in_flight(),
                })
            })
            .collect();
        serde_json::json!({ "routes": routes })
    }
}

/// The `process` object of `/status`: which binary and PID serve.
fn process_status(process: &Identity) -> serde_json::Value {
    let unix = |t: std::time::SystemTime| t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs());
    serde_json::json!({
        "pid": process.pid,
        "version": process.version,
        "binary": process.binary.display().to_string(),
        "binary_modified_unix": process.binary_modified.and_then(unix),
        "started_unix": unix(process.started),
        "upgraded_from": process.upgraded_from,
    })
}

/// `POST …/reload` of one route.
async fn reload(route: &Route) -> Response<ResponseBody> {
    let (tx, rx) = oneshot::channel();
    report_response(run(route, Trigger::Admin(tx), rx).await)
}

/// Sends `trigger` to the route's reloader and waits for its report.
async fn run(
    route: &Route,
    trigger: Trigger,
    rx: oneshot::Receiver<Report>,
) -> Result<Report, &'static str> {
    if !route.triggers.request(trigger).await {
        return Err("the reload pipeline is not running");
    }
    rx.await
        .map_err(|_| "the reload pipeline dropped the request")
}

fn report_response(report: Result<Report, &'static str>) -> Response<ResponseBody> {
    match report {
        Ok(report) => {
            let status = if report.not_saved {
                StatusCode::INSUFFICIENT_STORAGE
            } else if report.result == Outcome::Failed {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                StatusCode::OK
            };
            json(status, &report)
        }
        Err(reason) => plain(StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
    }
}

/// One route's status: its current generation, the kept ones, or why none serves.
fn route_status(route: &Route) -> serde_json::Value {
    let current = route.slot.current();
    serde_json::json!({
        "name": &*route.name,
        "prefix": route.prefix,
        "source": route.source,
        "current": current.as_deref().map(describe),
        "unavailable_reason": if current.is_none() { Some(route.slot.unavailable_reason().to_string()) } else { None },
        "history": route.slot.history().iter().map(|g| describe(g)).collect::<Vec<_>>(),
        "in_flight": route.in_flight(),
        "canary": canary::describe(route),
    })
}

fn describe(g: &Generation) -> serde_json::Value {
    serde_json::json!({
        "generation": g.number,
        "world": g.world().as_str(),
        "tier": g.tier.as_str(),
        "compiler": g.tier.compiler(),
        "sha256": hex::encode(g.sha256),
        "source": g.origin,
        "digest": g.digest,
        "size": g.size,
        "loaded_at_unix_ms": g.loaded_at.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
        "compile_ms": g.compile_time.as_secs_f64() * 1000.0,
        "cache_hit": g.code_source.cache_hit(),
        "incremental_hits": g.incremental.map(|c| c.hits),
        "incremental_misses": g.incremental.map(|c| c.misses),
        "incremental_untranslated": g.incremental.map(|c| c.untranslated),
        "in_flight": g.in_flight(),
        "reused_instances": g.reused_instances(),
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
