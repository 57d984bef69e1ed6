//! What tracing is configured with, read the way every OpenTelemetry SDK reads it
//! (`OTEL_TRACES_SAMPLER` names, `OTEL_RESOURCE_ATTRIBUTES` syntax), and checked before the
//! host binds anything.

use anyhow::{Result, bail, ensure};
use std::time::Duration;

/// Where spans go and which are kept.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSettings {
    /// The OTLP/HTTP URL spans are posted to, signal path included (`…/v1/traces`).
    pub endpoint: String,
    /// `service.name` of every span.
    pub service_name: String,
    /// Which traces are recorded.
    pub sampler: SamplerChoice,
    /// More resource attributes (`deployment.environment.name=prod`, …), in order.
    pub resource: Vec<(String, String)>,
    /// Spans waiting for export at most; more are dropped and counted.
    pub queue_size: usize,
    /// Deadline of one export.
    pub export_timeout: Duration,
    /// Headers every export carries (`OTEL_EXPORTER_OTLP_HEADERS`: an API key), in order.
    pub headers: Vec<(String, String)>,
}

/// A sampler, as `OTEL_TRACES_SAMPLER` names them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SamplerChoice {
    /// `always_on`: every trace.
    AlwaysOn,
    /// `always_off`: none.
    AlwaysOff,
    /// `traceidratio`: this fraction of traces, by trace id.
    Ratio(f64),
    /// `parentbased_always_on` (the default): as the caller's `traceparent` says, every trace
    /// that starts here.
    ParentBasedAlwaysOn,
    /// `parentbased_always_off`: as the caller says, none that start here.
    ParentBasedAlwaysOff,
    /// `parentbased_traceidratio`: as the caller says, this fraction of those that start here.
    ParentBasedRatio(f64),
}

/// The sampler names `OTEL_TRACES_SAMPLER` takes (the Jaeger remote sampler is not built in).
pub const SAMPLER_NAMES: &[&str] = &[
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
];

impl SamplerChoice {
    /// The sampler `name` (one of [`SAMPLER_NAMES`]) with its argument, the ratio of the two
    /// ratio samplers (0 to 1; 1 when absent, as the specification says).
    pub fn parse(name: &str, arg: Option<f64>) -> Result<SamplerChoice> {
        let ratio = || -> Result<f64> {
            let ratio = arg.unwrap_or(1.0);
            ensure!(
                (0.0..=1.0).contains(&ratio),
                "the sampler argument `{ratio}` is not a ratio between 0 and 1"
            );
            Ok(ratio)
        };
        Ok(match name.trim().to_ascii_lowercase().as_str() {
            "always_on" => SamplerChoice::AlwaysOn,
            "always_off" => SamplerChoice::AlwaysOff,
            "traceidratio" => SamplerChoice::Ratio(ratio()?),
            "parentbased_always_on" => SamplerChoice::ParentBasedAlwaysOn,
            "parentbased_always_off" => SamplerChoice::ParentBasedAlwaysOff,
            "parentbased_traceidratio" => SamplerChoice::ParentBasedRatio(ratio()?),
            other => bail!(
                "unknown sampler `{other}`; expected one of {}",
                SAMPLER_NAMES.join(", ")
            ),
        })
    }

    /// Whether a trace is recorded: `parent` is the caller's context, if it sent one, and
    /// `trace_id` the trace's id. The ratio samplers keep a trace when the last 8 bytes of its
    /// id, read as a number, fall below the ratio of their range (so every host that sees a
    /// trace decides alike).
    pub fn sample(self, parent: Option<&super::span::SpanContext>, trace_id: &[u8; 16]) -> bool {
        let ratio = |r: f64| {
            let n = u64::from_be_bytes(trace_id[8..].try_into().expect("8 bytes")) >> 1;
            (n as f64) < r * (1u64 << 63) as f64
        };
        match (self, parent) {
            (SamplerChoice::AlwaysOn, _) => true,
            (SamplerChoice::AlwaysOff, _) => false,
            (SamplerChoice::Ratio(r), _) => ratio(r),
            (
                SamplerChoice::ParentBasedAlwaysOn
                | SamplerChoice::ParentBasedAlwaysOff
                | SamplerChoice::ParentBasedRatio(_),
                Some(parent),
            ) => parent.sampled,
            (SamplerChoice::ParentBasedAlwaysOn, None) => true,
            (SamplerChoice::ParentBasedAlwaysOff, None) => false,
            (SamplerChoice::ParentBasedRatio(r), None) => ratio(r),
        }
    }
}

/// `OTEL_RESOURCE_ATTRIBUTES`' syntax: `key=value` pairs separated by commas, values
/// percent-encoded where they hold a comma, an equals sign or a space.
pub fn parse_resource_attributes(text: &str) -> Result<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((key, value)) = item.split_once('=') else {
            bail!("`{item}` is not `key=value`");
        };
        let key = key.trim();
        ensure!(!key.is_empty(), "`{item}` has no key");
        pairs.push((key.to_string(), percent_decode(value.trim())?));
    }
    Ok(pairs)
}

/// `%XX` escapes decoded (UTF-8).
fn percent_decode(text: &str) -> Result<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3).unwrap_or("");
            let Ok(byte) = u8::from_str_radix(hex, 16) else {
                bail!("`{text}` has a `%` not followed by two hex digits");
            };
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| anyhow::anyhow!("`{text}` decodes to invalid UTF-8"))
}

/// The traces URL for an `OTEL_EXPORTER_OTLP_ENDPOINT` base: `/v1/traces` appended to its
/// path. Only `http` and `https` endpoints are accepted.
pub fn traces_url(base: &str) -> Result<String> {
    let url = base.trim();
    ensure!(
        url.starts_with("http://") || url.starts_with("https://"),
        "the OTLP endpoint `{url}` is not an http:// or https:// URL"
    );
    let parsed: http::Uri = url
        .parse()
        .map_err(|e| anyhow::anyhow!("the OTLP endpoint `{url}` is not a URL: {e}"))?;
    ensure!(
        parsed.host().is_some_and(|h| !h.is_empty()),
        "the OTLP endpoint `{url}` has no host"
    );
    Ok(format!("{}/v1/traces", url.trim_end_matches('/')))
}

/// Checks a signal URL given whole (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`): used as written.
pub fn check_url(url: &str) -> Result<String> {
    traces_url(url)?;
    Ok(url.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samplers_read_as_the_specification_names_them() {
        assert_eq!(
            SamplerChoice::parse("parentbased_traceidratio", Some(0.25)).unwrap(),
            SamplerChoice::ParentBasedRatio(0.25)
        );
        assert_eq!(
            SamplerChoice::parse("traceidratio", None).unwrap(),
            SamplerChoice::Ratio(1.0)
        );
        assert_eq!(
            SamplerChoice::parse("ALWAYS_ON", None).unwrap(),
            SamplerChoice::AlwaysOn
        );
        let err = SamplerChoice::parse("jaeger_remote", None).unwrap_err();
        assert!(err.to_string().contains("parentbased_always_on"), "{err}");
        let err = SamplerChoice::parse("traceidratio", Some(1.5)).unwrap_err();
        assert!(err.to_string().contains("between 0 and 1"), "{err}");
    }

    #[test]
    fn resource_attributes_are_pairs_with_percent_escapes() {
        assert_eq!(
            parse_resource_attributes("deployment.environment.name=prod, team=a%2Cb%3Dc ,")
                .unwrap(),
            vec![
                ("deployment.environment.name".into(), "prod".into()),
                ("team".into(), "a,b=c".into())
            ]
        );
        assert!(parse_resource_attributes("novalue").is_err());
        assert!(parse_resource_attributes("=x").is_err());
        assert!(parse_resource_attributes("k=%zz").is_err());
    }

    #[test]
    fn the_traces_path_is_appended_to_a_base_endpoint() {
        assert_eq!(
            traces_url("http://collector:4318").unwrap(),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("https://otel.example.com/prefix/").unwrap(),
            "https://otel.example.com/prefix/v1/traces"
        );
        assert!(traces_url("collector:4318").is_err());
        assert!(traces_url("grpc://collector:4317").is_err());
        assert_eq!(
            check_url("http://c:4318/custom").unwrap(),
            "http://c:4318/custom"
        );
    }
}
