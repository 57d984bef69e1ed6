//! Which outbound HTTP requests a guest may make.
//!
//! Outbound HTTP is denied unless `--allow-outbound` names the destination. The check looks at
//! the authority of the request the guest built (never at the incoming request's `Host` header,
//! and guests cannot set `Host` themselves: wasi:http forbids that header), so a client cannot
//! steer a guest's outbound call somewhere the operator did not allow.

use anyhow::{Result, bail, ensure};
use std::sync::Arc;
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

/// One allowed destination.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    /// Lower-case host name or IP literal; for wildcard rules, the suffix after `*.`.
    host: String,
    /// `*.example.com` matches `a.example.com` and `a.b.example.com`, not `example.com`.
    wildcard: bool,
    /// `None` allows any port.
    port: Option<u16>,
}

/// The set of outbound destinations guests may reach. Empty means none.
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    rules: Arc<Vec<Rule>>,
}

impl OutboundPolicy {
    /// Parses `--allow-outbound` values (`HOST`, `HOST:PORT`, `*.DOMAIN[:PORT]`, `[IPV6]:PORT`).
    pub fn parse(specs: &[String]) -> Result<OutboundPolicy> {
        let rules = specs
            .iter()
            .map(|s| parse_rule(s))
            .collect::<Result<Vec<_>>>()?;
        Ok(OutboundPolicy {
            rules: Arc::new(rules),
        })
    }

    /// Whether a request to `host` on `port` is allowed.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        self.rules.iter().any(|rule| {
            let host_ok = if rule.wildcard {
                host.strip_suffix(&rule.host)
                    .is_some_and(|rest| rest.ends_with('.') && rest.len() > 1)
            } else {
                host == rule.host
            };
            host_ok && rule.port.is_none_or(|p| p == port)
        })
    }
}

fn parse_rule(spec: &str) -> Result<Rule> {
    let bad = || {
        format!("invalid `--allow-outbound {spec}`: expected HOST, HOST:PORT or *.DOMAIN[:PORT]")
    };
    let spec_trim = spec.trim();
    ensure!(!spec_trim.is_empty(), bad());
    let (host, port) = if let Some(rest) = spec_trim.strip_prefix('[') {
        let Some((ip, after)) = rest.split_once(']') else {
            bail!(bad())
        };
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse::<u16>().map_err(|_| anyhow::anyhow!(bad()))?),
            None if after.is_empty() => None,
            None => bail!(bad()),
        };
        (ip.to_string(), port)
    } else {
        match spec_trim.rsplit_once(':') {
            Some((h, p)) => (
                h.to_string(),
                Some(p.parse::<u16>().map_err(|_| anyhow::anyhow!(bad()))?),
            ),
            None => (spec_trim.to_string(), None),
        }
    };
    let (host, wildcard) = match host.strip_prefix("*.") {
        Some(suffix) => (suffix.to_string(), true),
        None => (host, false),
    };
    ensure!(
        !host.is_empty() && !host.contains(['*', '/', ' ', '@']),
        bad()
    );
    Ok(Rule {
        host: host.to_ascii_lowercase(),
        wildcard,
        port,
    })
}

/// Per-request wasi:http hooks: enforces the [`OutboundPolicy`] before any connection is made.
pub struct OutboundHooks {
    policy: OutboundPolicy,
    generation: u64,
    route: Option<crate::metrics::RouteName>,
}

impl OutboundHooks {
    /// Hooks for one request of `route` (`None` for a validation) served by `generation`.
    pub fn new(
        policy: OutboundPolicy,
        generation: u64,
        route: Option<crate::metrics::RouteName>,
    ) -> Self {
        OutboundHooks {
            policy,
            generation,
            route,
        }
    }
}

type SendFuture = Box<
    dyn Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<WasiBody>,
                Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for OutboundHooks {
    /// The default list, checked in place: wasmtime-wasi-http's default builds (allocates) a
    /// filter closure on every call, once per header of every request and response.
    fn is_forbidden_header(&mut self, name: &http::HeaderName) -> bool {
        wasmtime_wasi_http::DEFAULT_FORBIDDEN_HEADERS.contains(name)
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> SendFuture {
        let uri = request.uri();
        let host = uri.host().unwrap_or_default().to_string();
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        if !self.policy.allows(&host, port) {
            tracing::warn!(
                route = self.route.as_deref(),
                generation = self.generation,
                host = %host,
                port,
                "outbound request denied: host not allowed by --allow-outbound"
            );
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        tracing::debug!(route = self.route.as_deref(), generation = self.generation, host = %host, port, "outbound request allowed");
        Box::new(async move {
            use http_body_util::BodyExt;
            let (res, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                res.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(specs: &[&str]) -> OutboundPolicy {
        OutboundPolicy::parse(&specs.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn hop_by_hop_and_host_headers_stay_forbidden() {
        let mut hooks = OutboundHooks::new(policy(&[]), 1, None);
        for name in &wasmtime_wasi_http::DEFAULT_FORBIDDEN_HEADERS {
            assert!(hooks.is_forbidden_header(name), "{name}");
        }
        for name in ["host", "connection", "transfer-encoding", "upgrade"] {
            let name = http::HeaderName::from_static(name);
            assert!(hooks.is_forbidden_header(&name), "{name}");
        }
        assert!(!hooks.is_forbidden_header(&http::header::CONTENT_TYPE));
    }

    #[test]
    fn empty_policy_denies_everything() {
        assert!(!policy(&[]).allows("example.com", 80));
    }

    #[test]
    fn exact_hosts_match_any_port_unless_one_is_given() {
        let p = policy(&["api.example.com", "127.0.0.1:9000"]);
        assert!(p.allows("api.example.com", 443));
        assert!(p.allows("API.example.com", 80));
        assert!(p.allows("127.0.0.1", 9000));
        assert!(!p.allows("127.0.0.1", 9001));
        assert!(!p.allows("example.com", 443));
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        let p = policy(&["*.example.com"]);
        assert!(p.allows("a.example.com", 443));
        assert!(p.allows("a.b.example.com", 443));
        assert!(!p.allows("example.com", 443));
        assert!(!p.allows("badexample.com", 443));
    }

    #[test]
    fn ipv6_literals_with_ports() {
        let p = policy(&["[::1]:8080"]);
        assert!(p.allows("[::1]", 8080));
        assert!(!p.allows("[::1]", 8081));
    }

    #[test]
    fn malformed_rules_are_rejected_with_the_value() {
        for bad in ["", "host:notaport", "*", "a/b", "[::1"] {
            let err = OutboundPolicy::parse(&[bad.to_string()])
                .unwrap_err()
                .to_string();
            assert!(err.contains("--allow-outbound"), "{bad}: {err}");
        }
    }
}
