//! Which outbound HTTP requests a guest may make, checked by name and then by address.
//!
//! Outbound HTTP is denied unless `--allow-outbound` names the destination. The check looks at
//! the authority of the request the guest built (never at the incoming request's `Host` header,
//! and guests cannot set `Host` themselves: wasi:http forbids that header), so a client cannot
//! steer a guest's outbound call somewhere the operator did not allow.
//!
//! A name is not an address: whoever owns `api.example.com` decides what it resolves to, and
//! can point it at `127.0.0.1` (the admin listener, a sidecar) or at `169.254.169.254` (a cloud
//! metadata service). So the host resolves the name itself, checks every address it got, and
//! connects to an address it checked (`send`), never looking the name up twice. Loopback,
//! link-local, unspecified, multicast and broadcast addresses are refused unless the rule that
//! allowed the request names that address, or `localhost`, literally (`--allow-outbound
//! localhost:3000` keeps a dev loop working). Private ranges (10/8, 172.16/12, 192.168/16,
//! fc00::/7) stay reachable through an allowed name: that is how in-cluster services are
//! called.
//!
//! Ports: `HOST` allows the scheme's default port only (80 for `http`, 443 for `https`),
//! `HOST:PORT` that port, `HOST:*` any port.

mod send;

use crate::telemetry::traces::TraceContext;
use anyhow::{Result, bail, ensure};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

/// Which host names or addresses a rule allows.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    /// One name, lower case (`localhost` included).
    Name(String),
    /// One address, as an IP literal.
    Address(IpAddr),
    /// `*.example.com`: every name under `example.com` (`a.example.com`, `a.b.example.com`),
    /// not `example.com` itself.
    Subdomains(String),
}

/// Which ports a rule allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ports {
    /// The scheme's default port: 80 for `http`, 443 for `https`.
    Default,
    /// This port.
    Only(u16),
    /// `HOST:*`.
    Any,
}

/// One allowed destination, as the operator wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    host: Host,
    ports: Ports,
    /// The rule as written, for messages.
    text: String,
}

impl Rule {
    fn allows_name(&self, host: &Destination) -> bool {
        let host_ok = match (&self.host, &host.ip) {
            (Host::Address(allowed), Some(ip)) => allowed == ip,
            (Host::Address(_), None) => false,
            (Host::Name(name), _) => *name == host.name,
            (Host::Subdomains(suffix), None) => host
                .name
                .strip_suffix(suffix.as_str())
                .is_some_and(|rest| rest.ends_with('.') && rest.len() > 1),
            (Host::Subdomains(_), Some(_)) => false,
        };
        let port_ok = match self.ports {
            Ports::Default => host.port == host.default_port,
            Ports::Only(port) => host.port == port,
            Ports::Any => true,
        };
        host_ok && port_ok
    }

    /// Whether this rule, which allowed the request by its name, allows connecting to `ip`.
    fn allows_address(&self, ip: IpAddr) -> Result<(), &'static str> {
        let Some(kind) = special(ip) else {
            return Ok(());
        };
        match &self.host {
            Host::Address(allowed) if *allowed == ip => Ok(()),
            Host::Name(name) if name == "localhost" && is_loopback(ip) => Ok(()),
            _ => Err(kind),
        }
    }
}

/// What kind of address `ip` is, if it is one a guest may reach only through a rule naming it:
/// loopback, link-local, unspecified, multicast or broadcast (IPv4-mapped IPv6 addresses are
/// judged as the IPv4 address they carry).
fn special(ip: IpAddr) -> Option<&'static str> {
    let ip = match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) if v4.is_loopback() => Some("a loopback address"),
        IpAddr::V4(v4) if v4.is_link_local() => {
            Some("a link-local address (cloud metadata services live there)")
        }
        // 0.0.0.0/8 is "this network": connecting to it reaches the host itself.
        IpAddr::V4(v4) if v4.octets()[0] == 0 => Some("an unspecified address"),
        IpAddr::V4(v4) if v4.is_multicast() => Some("a multicast address"),
        IpAddr::V4(v4) if v4 == Ipv4Addr::BROADCAST => Some("a broadcast address"),
        IpAddr::V6(v6) if v6.is_loopback() => Some("a loopback address"),
        IpAddr::V6(v6) if v6.is_unspecified() => Some("an unspecified address"),
        IpAddr::V6(v6) if v6.is_unicast_link_local() => {
            Some("a link-local address (cloud metadata services live there)")
        }
        IpAddr::V6(v6) if v6.is_multicast() => Some("a multicast address"),
        _ => None,
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Where a guest's request goes, as its URI says.
#[derive(Debug, Clone)]
struct Destination {
    /// Lower-case host name, or the IP literal without brackets.
    name: String,
    /// The host, when it is an IP literal.
    ip: Option<IpAddr>,
    port: u16,
    default_port: u16,
}

impl Destination {
    fn of(uri: &http::Uri) -> Option<Destination> {
        let host = uri.host()?;
        let name = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let default_port = if https { 443 } else { 80 };
        Some(Destination {
            ip: name.parse().ok(),
            name,
            port: uri.port_u16().unwrap_or(default_port),
            default_port,
        })
    }

    /// `name:port`, with brackets around an IPv6 literal.
    fn authority(&self) -> String {
        match self.ip {
            Some(IpAddr::V6(_)) => format!("[{}]:{}", self.name, self.port),
            _ => format!("{}:{}", self.name, self.port),
        }
    }
}

/// The set of outbound destinations guests may reach. Empty means none.
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    rules: Arc<Vec<Rule>>,
    /// A shadow candidate's: every request is denied, whatever the rules.
    shadow: bool,
}

impl OutboundPolicy {
    /// Parses `--allow-outbound` values (`HOST`, `HOST:PORT`, `HOST:*`, `*.DOMAIN[:PORT|:*]`,
    /// `IP[:PORT|:*]`, `[IPV6][:PORT|:*]`).
    pub fn parse(specs: &[String]) -> Result<OutboundPolicy> {
        let rules = specs
            .iter()
            .map(|s| parse_rule(s))
            .collect::<Result<Vec<_>>>()?;
        Ok(OutboundPolicy {
            rules: Arc::new(rules),
            shadow: false,
        })
    }

    /// A shadow candidate's policy: no outbound request at all, so that a copy of a request
    /// never acts on the world a second time.
    pub fn shadow() -> OutboundPolicy {
        OutboundPolicy {
            rules: Arc::default(),
            shadow: true,
        }
    }

    /// The first rule that allows a request to `uri` by its host and port, if any.
    fn rule_for(&self, destination: &Destination) -> Option<&Rule> {
        self.rules.iter().find(|rule| rule.allows_name(destination))
    }

    /// Whether a request to `uri` is allowed by its host and port (before any address is
    /// checked).
    pub fn allows(&self, uri: &http::Uri) -> bool {
        Destination::of(uri).is_some_and(|d| self.rule_for(&d).is_some())
    }
}

fn parse_rule(spec: &str) -> Result<Rule> {
    let bad = || {
        format!(
            "invalid `--allow-outbound {spec}`: expected HOST, HOST:PORT, HOST:*, *.DOMAIN[:PORT] \
             or [IPV6]:PORT"
        )
    };
    let text = spec.trim();
    ensure!(!text.is_empty(), bad());
    let port = |p: &str| -> Result<Ports> {
        match p {
            "*" => Ok(Ports::Any),
            p => Ok(Ports::Only(
                p.parse::<u16>().map_err(|_| anyhow::anyhow!(bad()))?,
            )),
        }
    };
    let (host, ports) = if let Some(rest) = text.strip_prefix('[') {
        let Some((ip, after)) = rest.split_once(']') else {
            bail!(bad())
        };
        let ports = match after.strip_prefix(':') {
            Some(p) => port(p)?,
            None if after.is_empty() => Ports::Default,
            None => bail!(bad()),
        };
        let ip: Ipv6Addr = ip.parse().map_err(|_| anyhow::anyhow!(bad()))?;
        (Host::Address(IpAddr::V6(ip)), ports)
    } else {
        let (host, ports) = match text.rsplit_once(':') {
            Some((h, p)) => (h, port(p)?),
            None => (text, Ports::Default),
        };
        ensure!(
            !host.is_empty() && !host.contains(['/', ' ', '@', ':', '[', ']']),
            bad()
        );
        let host = host.to_ascii_lowercase();
        let host = match host.strip_prefix("*.") {
            Some(suffix) => {
                ensure!(!suffix.is_empty() && !suffix.contains('*'), bad());
                Host::Subdomains(suffix.to_string())
            }
            None => {
                ensure!(!host.contains('*'), bad());
                match host.parse::<Ipv4Addr>() {
                    Ok(ip) => Host::Address(IpAddr::V4(ip)),
                    Err(_) => Host::Name(host),
                }
            }
        };
        (host, ports)
    };
    Ok(Rule {
        host,
        ports,
        text: text.to_string(),
    })
}

/// Per-request wasi:http hooks: enforces the [`OutboundPolicy`] by name, then by address, and
/// sends allowed requests to the address it checked.
pub struct OutboundHooks {
    policy: OutboundPolicy,
    generation: u64,
    route: Option<crate::metrics::RouteName>,
    trace: TraceContext,
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
            trace: TraceContext::default(),
        }
    }

    /// The same hooks, sending each allowed request as a client span under `trace` and with
    /// its `traceparent` (when traces are on).
    pub fn traced(self, trace: TraceContext) -> Self {
        OutboundHooks { trace, ..self }
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
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> SendFuture {
        let route = self.route.clone();
        let generation = self.generation;
        let Some(destination) = Destination::of(request.uri()) else {
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestUriInvalid) });
        };
        if self.policy.shadow {
            // Expected of every shadow copy that calls out: not worth a warning each time.
            tracing::debug!(
                route = route.as_deref(),
                generation,
                host = %destination.name,
                "outbound request denied: a shadow candidate makes no outbound requests"
            );
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        let Some(rule) = self.policy.rule_for(&destination).cloned() else {
            tracing::warn!(
                route = route.as_deref(),
                generation,
                host = %destination.name,
                port = destination.port,
                "outbound request denied: no `--allow-outbound` rule allows `{}`",
                destination.authority()
            );
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        };
        // Allowed by name: the call is a span of the trace from here on, and carries it.
        let (method, uri) = (request.method().clone(), request.uri().clone());
        let span = self.trace.outbound(&method, &uri, request.headers_mut());
        Box::new(async move {
            let addresses = match send::resolve(&destination, &rule, options.as_ref()).await {
                Ok(addresses) => addresses,
                Err(denied) => {
                    denied.log(route.as_deref(), generation, &destination, &rule);
                    if let Some(span) = &span {
                        span.fail("denied by address");
                    }
                    return Err(denied.into_error());
                }
            };
            tracing::debug!(route = route.as_deref(), generation, host = %destination.name, ?addresses, rule = %rule.text, "outbound request allowed");
            let sent = send::send(request, &destination, &addresses, options).await;
            if let Some(span) = &span {
                match &sent {
                    Ok((response, _)) => span.respond(response.status().as_u16()),
                    Err(err) => span.fail(&format!("{err:?}")),
                }
            }
            sent
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(specs: &[&str]) -> OutboundPolicy {
        OutboundPolicy::parse(&specs.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn allows(policy: &OutboundPolicy, url: &str) -> bool {
        policy.allows(&url.parse().unwrap())
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
        assert!(!allows(&policy(&[]), "http://example.com/"));
    }

    #[test]
    fn a_rule_without_a_port_allows_the_schemes_default_port_only() {
        let p = policy(&["api.example.com", "127.0.0.1:9000", "any.example.com:*"]);
        assert!(allows(&p, "https://api.example.com/"));
        assert!(allows(&p, "http://API.example.com/x"));
        assert!(allows(&p, "http://api.example.com:80/"));
        assert!(!allows(&p, "http://api.example.com:9090/"));
        assert!(!allows(&p, "https://api.example.com:80/"));
        assert!(allows(&p, "http://127.0.0.1:9000/"));
        assert!(!allows(&p, "http://127.0.0.1:9001/"));
        assert!(allows(&p, "http://any.example.com:9090/"));
        assert!(allows(&p, "https://any.example.com/"));
        assert!(!allows(&p, "https://example.com/"));
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        let p = policy(&["*.example.com:*"]);
        assert!(allows(&p, "https://a.example.com/"));
        assert!(allows(&p, "https://a.b.example.com:8443/"));
        assert!(!allows(&p, "https://example.com/"));
        assert!(!allows(&p, "https://badexample.com/"));
        // A wildcard never matches an IP literal.
        assert!(!allows(&policy(&["*.0.0.1:*"]), "http://127.0.0.1/"));
    }

    #[test]
    fn ipv6_literals_with_ports() {
        let p = policy(&["[::1]:8080"]);
        assert!(allows(&p, "http://[::1]:8080/"));
        assert!(!allows(&p, "http://[::1]:8081/"));
    }

    #[test]
    fn special_addresses_need_a_rule_naming_them_or_localhost() {
        let by_name = parse_rule("api.example.com:9090").unwrap();
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        for ip in [
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "169.254.169.254",
            "fe80::1",
            "0.0.0.0",
            "::",
            "224.0.0.1",
            "ff02::1",
            "255.255.255.255",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(by_name.allows_address(ip).is_err(), "{ip}");
        }
        for ip in [
            "10.0.0.5",
            "192.168.1.1",
            "172.16.0.1",
            "fd00::1",
            "93.184.216.34",
        ] {
            assert!(by_name.allows_address(ip.parse().unwrap()).is_ok(), "{ip}");
        }
        assert!(
            parse_rule("127.0.0.1:9090")
                .unwrap()
                .allows_address(local)
                .is_ok()
        );
        assert!(
            parse_rule("localhost:3000")
                .unwrap()
                .allows_address(local)
                .is_ok()
        );
        assert!(
            parse_rule("localhost:3000")
                .unwrap()
                .allows_address("::1".parse().unwrap())
                .is_ok()
        );
        // `localhost` covers loopback only, and an address rule only its own address.
        assert!(
            parse_rule("localhost")
                .unwrap()
                .allows_address("169.254.169.254".parse().unwrap())
                .is_err()
        );
        assert!(
            parse_rule("127.0.0.2:9090")
                .unwrap()
                .allows_address(local)
                .is_err()
        );
    }

    #[test]
    fn malformed_rules_are_rejected_with_the_value() {
        for bad in [
            "",
            "host:notaport",
            "*",
            "a/b",
            "[::1",
            "*.",
            "a*b.com",
            "[::1]x",
            "h:1:2",
        ] {
            let err = OutboundPolicy::parse(&[bad.to_string()])
                .unwrap_err()
                .to_string();
            assert!(err.contains("--allow-outbound"), "{bad}: {err}");
        }
    }
}
