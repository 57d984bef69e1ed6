//! The settings at the edge of the host: the listener's TLS certificates and the traces it
//! sends out.

use crate::cli::ServeArgs;
use crate::config::TlsPair;
use crate::config::defaults::{
    DEFAULT_OTEL_QUEUE_SIZE, DEFAULT_OTEL_SAMPLER, DEFAULT_OTEL_SERVICE_NAME, DEFAULT_OTEL_TIMEOUT,
};
use crate::config::file::{FileConfig, Loaded};
use crate::telemetry::traces::{
    SamplerChoice, TraceSettings, check_url, parse_resource_attributes, traces_url,
};
use anyhow::{Context, Result, bail, ensure};
use std::path::Path;

/// The certificates of the listener: `--tls-cert`/`--tls-key` (or `[server.tls]`'s), then each
/// `[[server.tls.certificate]]`; paths in the file are relative to it.
pub(super) fn tls(args: &ServeArgs, f: &FileConfig, l: Option<&Loaded>) -> Result<Vec<TlsPair>> {
    let resolve = |p: &Path| l.map(|l| l.resolve(p)).unwrap_or_else(|| p.to_path_buf());
    let section = f.server.tls.as_ref();
    let first = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsPair {
            cert: super::absolute(cert)?,
            key: super::absolute(key)?,
        }),
        _ => match section.map(|s| (&s.cert, &s.key)) {
            Some((Some(cert), Some(key))) => Some(TlsPair {
                cert: resolve(cert),
                key: resolve(key),
            }),
            Some((Some(_), None) | (None, Some(_))) => bail!(
                "`server.tls` in `{}` needs both `cert` and `key`",
                l.map(|l| l.path.display().to_string()).unwrap_or_default()
            ),
            _ => None,
        },
    };
    let more = section
        .map(|s| s.certificate.as_slice())
        .unwrap_or_default();
    ensure!(
        first.is_some() || more.is_empty(),
        "`[[server.tls.certificate]]` adds certificates for other names: give the first one with \
         `--tls-cert`/`--tls-key` or `server.tls.cert`/`key`"
    );
    Ok(first
        .into_iter()
        .chain(more.iter().map(|p| TlsPair {
            cert: resolve(&p.cert),
            key: resolve(&p.key),
        }))
        .collect())
}

/// Traces, if an endpoint is set, as the OpenTelemetry variables, the flags and `[otel]` say
/// (`OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn them off).
pub(super) fn traces(args: &ServeArgs, f: &FileConfig) -> Result<Option<TraceSettings>> {
    traces_with(args, f, |name| {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    })
}

/// [`traces`] with the environment read through `env`.
fn traces_with(
    args: &ServeArgs,
    f: &FileConfig,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<TraceSettings>> {
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    match env("OTEL_TRACES_EXPORTER").map(|v| v.trim().to_ascii_lowercase()) {
        Some(none) if none == "none" => return Ok(None),
        Some(otlp) if otlp == "otlp" => {}
        None => {}
        Some(other) => bail!(
            "OTEL_TRACES_EXPORTER=`{other}`: hotswap sends traces over OTLP only (`otlp`), or \
             none (`none`)"
        ),
    }
    let endpoint = match (
        env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        &args.otel_endpoint,
        &f.otel.endpoint,
    ) {
        (Some(url), _, _) => check_url(&url).context("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")?,
        (None, Some(base), _) => {
            traces_url(base).context("`--otel-endpoint` (OTEL_EXPORTER_OTLP_ENDPOINT)")?
        }
        (None, None, Some(base)) => traces_url(base).context("`otel.endpoint`")?,
        (None, None, None) => return Ok(None),
    };
    for var in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Some(protocol) = env(var) {
            ensure!(
                protocol.trim() == "http/protobuf",
                "{var}=`{protocol}`: hotswap sends OTLP over HTTP with protobuf \
                 (`http/protobuf`); point it at the collector's OTLP/HTTP port (4318)"
            );
            break;
        }
    }
    let sampler = SamplerChoice::parse(
        args.otel_sampler
            .as_deref()
            .or(f.otel.sampler.as_deref())
            .unwrap_or(DEFAULT_OTEL_SAMPLER),
        args.otel_sampler_arg.or(f.otel.sampler_arg),
    )
    .context("`--otel-sampler` (OTEL_TRACES_SAMPLER) or `otel.sampler`")?;
    let mut resource: Vec<(String, String)> = f
        .otel
        .resource
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(text) = &args.otel_resource_attributes {
        resource.extend(
            parse_resource_attributes(text)
                .context("`--otel-resource-attributes` (OTEL_RESOURCE_ATTRIBUTES)")?,
        );
    }
    let service_name = args
        .otel_service_name
        .clone()
        .or(f.otel.service_name.clone())
        .or_else(|| {
            resource
                .iter()
                .rev()
                .find(|(k, _)| k == "service.name")
                .map(|(_, v)| v.clone())
        })
        .unwrap_or_else(|| DEFAULT_OTEL_SERVICE_NAME.to_string());
    let queue_size = args
        .otel_queue_size
        .or(f.otel.queue_size)
        .unwrap_or(DEFAULT_OTEL_QUEUE_SIZE);
    ensure!(
        queue_size > 0,
        "`--otel-queue-size` must be greater than zero"
    );
    let headers = match env("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
        .map(|v| ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", v))
        .or_else(|| env("OTEL_EXPORTER_OTLP_HEADERS").map(|v| ("OTEL_EXPORTER_OTLP_HEADERS", v)))
    {
        Some((var, text)) => {
            let headers = parse_resource_attributes(&text).context(var)?;
            for (name, value) in &headers {
                ensure!(
                    http::HeaderName::from_bytes(name.as_bytes()).is_ok()
                        && http::HeaderValue::from_str(value).is_ok(),
                    "{var}: `{name}` is not a valid header"
                );
            }
            headers
        }
        None => Vec::new(),
    };
    let export_timeout = args
        .otel_timeout
        .or(f.otel.timeout)
        .unwrap_or(DEFAULT_OTEL_TIMEOUT);
    ensure!(
        !export_timeout.is_zero(),
        "`--otel-timeout` must be greater than zero"
    );
    Ok(Some(TraceSettings {
        endpoint,
        service_name,
        sampler,
        resource,
        queue_size,
        export_timeout,
        headers,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> ServeArgs {
        let cli =
            crate::cli::Cli::try_parse_from([&["hotswap", "serve", "app.wasm"], extra].concat())
                .unwrap();
        match cli.command {
            Some(crate::cli::Command::Serve(args)) => *args,
            _ => unreachable!(),
        }
    }

    fn settings(extra: &[&str], env: &[(&str, &str)]) -> Result<Option<TraceSettings>> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        traces_with(&args(extra), &FileConfig::default(), |name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn traces_are_off_without_an_endpoint_and_when_disabled() {
        assert_eq!(settings(&[], &[]).unwrap(), None);
        let on = ["--otel-endpoint", "http://127.0.0.1:4318"];
        assert!(settings(&on, &[]).unwrap().is_some());
        assert_eq!(
            settings(&on, &[("OTEL_SDK_DISABLED", "true")]).unwrap(),
            None
        );
        assert_eq!(
            settings(&on, &[("OTEL_TRACES_EXPORTER", "none")]).unwrap(),
            None
        );
        let err = settings(&on, &[("OTEL_TRACES_EXPORTER", "zipkin")]).unwrap_err();
        assert!(format!("{err:#}").contains("OTLP only"), "{err:#}");
    }

    #[test]
    fn the_settings_follow_the_specification() {
        let s = settings(
            &[
                "--otel-endpoint",
                "http://collector:4318/",
                "--otel-sampler",
                "parentbased_traceidratio",
                "--otel-sampler-arg",
                "0.5",
                "--otel-resource-attributes",
                "service.name=shop,deployment.environment.name=prod",
                "--otel-timeout",
                "2500",
            ],
            &[],
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(s.sampler, SamplerChoice::ParentBasedRatio(0.5));
        assert_eq!(s.service_name, "shop");
        assert_eq!(s.export_timeout, std::time::Duration::from_millis(2500));
        assert_eq!(s.queue_size, DEFAULT_OTEL_QUEUE_SIZE);
        let s = settings(
            &["--otel-endpoint", "http://collector:4318"],
            &[(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://other:4318/custom",
            )],
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.endpoint, "http://other:4318/custom");
        assert_eq!(s.service_name, DEFAULT_OTEL_SERVICE_NAME);
    }

    #[test]
    fn what_cannot_work_is_refused_with_its_name() {
        let on = ["--otel-endpoint", "http://127.0.0.1:4318"];
        let err = settings(&on, &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).unwrap_err();
        assert!(format!("{err:#}").contains("4318"), "{err:#}");
        let err = settings(&[&on[..], &["--otel-sampler", "sometimes"]].concat(), &[]).unwrap_err();
        assert!(
            format!("{err:#}").contains("OTEL_TRACES_SAMPLER"),
            "{err:#}"
        );
        let err = settings(&["--otel-endpoint", "collector:4318"], &[]).unwrap_err();
        assert!(format!("{err:#}").contains("--otel-endpoint"), "{err:#}");
        let err = settings(&[&on[..], &["--otel-queue-size", "0"]].concat(), &[]).unwrap_err();
        assert!(format!("{err:#}").contains("queue-size"), "{err:#}");
    }
}
