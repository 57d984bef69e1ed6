//! Per-route metrics and log fields, and SIGHUP reloading every route.

use super::*;

// ----- metrics and logs ---------------------------------------------------------------------

/// The metric families that carry a `route` label, and the names their samples go by.
const ROUTED_FAMILIES: [&str; 7] = [
    "hotswap_requests_total",
    "hotswap_request_duration_seconds",
    "hotswap_requests_in_flight",
    "hotswap_guest_traps_total",
    "hotswap_reloads_total",
    "hotswap_reload_duration_seconds",
    "hotswap_generation",
];

fn family_of(sample: &str) -> Option<&'static str> {
    ROUTED_FAMILIES.iter().copied().find(|f| {
        sample == *f
            || ["_bucket", "_count", "_sum", "_created"]
                .iter()
                .any(|suffix| sample.strip_suffix(suffix) == Some(f))
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_carry_the_route_label_first() {
    let _shared = QUIET.read().await;
    let dir = tempfile::tempdir().unwrap();
    let index = write(dir.path(), "index.wasm", &guests::example_version("v1"));
    let trap = write(dir.path(), "trap.wasm", &guests::bytes(MISBEHAVE));
    let server = serve_routes(
        &[("/", &index), ("/trap-before", &trap)],
        &["--debounce", "50ms"],
    );
    for _ in 0..3 {
        assert_eq!(expect_served(&server, "/", "index", 1).await.status, 200);
    }
    let reply = fetch(&server, "/trap-before").await;
    assert_eq!(reply.status, 500, "{}", reply.text());
    deploy_atomic(&guests::example_version("v2"), &index);
    wait_served(&server, "/", "index", 2).await;

    let samples = scrape(&server).await;
    for family in ROUTED_FAMILIES {
        assert!(
            samples.iter().any(|s| family_of(&s.name) == Some(family)),
            "no {family} samples: {samples:#?}"
        );
    }
    for sample in samples.iter().filter(|s| family_of(&s.name).is_some()) {
        // A histogram bucket's `le` is the exposition format's, not the family's: the client
        // library writes it before the family's labels, so `route` comes first after it.
        let own = match sample.labels.first() {
            Some((k, _)) if k == "le" && sample.name.ends_with("_bucket") => &sample.labels[1..],
            _ => &sample.labels[..],
        };
        assert_eq!(
            own.first().map(|(k, _)| k.as_str()),
            Some("route"),
            "`route` is not the first label of {sample:?}"
        );
    }
    let requests = |route, class, generation| {
        value(
            &samples,
            "hotswap_requests_total",
            route,
            &[("status_class", class), ("generation", generation)],
        )
    };
    assert!(
        requests("index", "2xx", "1").unwrap_or(0.0) >= 3.0,
        "{samples:#?}"
    );
    assert_eq!(
        requests("trap-before", "5xx", "1"),
        Some(1.0),
        "{samples:#?}"
    );
    assert_eq!(
        value(
            &samples,
            "hotswap_guest_traps_total",
            "trap-before",
            &[("kind", "trap")]
        ),
        Some(1.0),
        "{samples:#?}"
    );
    assert_eq!(
        value(
            &samples,
            "hotswap_guest_traps_total",
            "index",
            &[("kind", "trap")]
        )
        .unwrap_or(0.0),
        0.0
    );
    let loaded = |route| {
        value(
            &samples,
            "hotswap_reloads_total",
            route,
            &[("result", "loaded")],
        )
    };
    assert_eq!(loaded("index"), Some(2.0), "{samples:#?}");
    assert_eq!(loaded("trap-before"), Some(1.0), "{samples:#?}");
    assert_eq!(
        value(&samples, "hotswap_generation", "index", &[]),
        Some(2.0)
    );
    assert_eq!(
        value(&samples, "hotswap_generation", "trap-before", &[]),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_carry_the_route_on_failures_and_loads() {
    let _shared = QUIET.read().await;
    let dir = tempfile::tempdir().unwrap();
    let index = write(dir.path(), "index.wasm", &guests::bytes(GUEST_EXAMPLE));
    let trap = write(dir.path(), "trap.wasm", &guests::bytes(MISBEHAVE));
    let server = serve_routes(
        &[("/", &index), ("/trap-before", &trap)],
        &["--log-format", "json"],
    );
    let reply = fetch(&server, "/trap-before").await;
    assert_eq!(reply.status, 500, "{}", reply.text());
    server.expect_log("guest trapped", LOG_WAIT).await;

    let lines = json_lines(&server);
    let message = |l: &Value| l["message"].as_str().unwrap_or_default().to_string();
    let trap_line = lines
        .iter()
        .find(|l| message(l).contains("guest trapped"))
        .unwrap_or_else(|| panic!("no JSON trap line; log:\n{}", server.log()));
    assert_eq!(trap_line["route"], "trap-before", "{trap_line}");
    assert_eq!(trap_line["path"], "/trap-before", "{trap_line}");
    for route in ["index", "trap-before"] {
        let load = lines
            .iter()
            .find(|l| message(l).starts_with("loaded generation 1") && l["route"] == route);
        assert!(
            load.is_some(),
            "no `loaded generation 1` line with \"route\":\"{route}\"; log:\n{}",
            server.log()
        );
    }
}

// ----- signals ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_every_route() {
    let _shared = QUIET.read().await;
    let dir = tempfile::tempdir().unwrap();
    let (server, api, index) = two_routes(dir.path(), &["--no-watch"]);
    expect_served(&server, "/api", "api", 1).await;
    expect_served(&server, "/", "index", 1).await;

    let v1 = guests::example_version("v1");
    deploy_in_place(&with_custom_section(&v1, "n", b"api-2"), &api);
    deploy_in_place(&guests::example_version("v2"), &index);
    // Not watched: nothing changes on its own.
    tokio::time::sleep(SETTLE).await;
    expect_served(&server, "/api", "api", 1).await;
    expect_served(&server, "/", "index", 1).await;

    server.signal(libc::SIGHUP);
    wait_served(&server, "/api", "api", 2).await;
    let reply = wait_served(&server, "/", "index", 2).await;
    assert!(reply.text().contains("version v2"), "{}", reply.text());
}
