//! OpenTelemetry traces, received by an OTLP/HTTP receiver the test starts (support/otlp.rs):
//! a request's server span continuing the caller's `traceparent` with the guest's run inside
//! it; a trace that goes on through a guest's outbound call into a second host; the spans of
//! a swap, a registry pull, a build and a tier-up; and a collector that is down costing spans,
//! never requests.

use hotswap_tests::fake_registry::FakeRegistry;
use hotswap_tests::guests::{self, GUEST_EXAMPLE, MISBEHAVE};
use hotswap_tests::otlp::{OtlpReceiver, Span};
use hotswap_tests::{Client, Server, deploy_atomic, eventually, get, with_custom_section};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long spans may take to arrive (a batch waits half a second for company).
const SPANS_WAIT: Duration = Duration::from_secs(15);

/// The caller's trace context, as a W3C `traceparent` carries it.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
/// A vendor's `tracestate`, as the W3C example has it.
const TRACE_STATE: &str = "congo=t61rcWkgMzE";

fn traceparent() -> String {
    format!("00-{TRACE_ID}-{CALLER_SPAN}-01")
}

/// A host serving `component` and sending its traces to `receiver` as `service`.
fn traced(component: &Path, receiver: &OtlpReceiver, service: &str, extra: &[&str]) -> Server {
    let endpoint = receiver.endpoint();
    let mut args = vec![
        "--otel-endpoint",
        endpoint.as_str(),
        "--otel-service-name",
        service,
    ];
    args.extend_from_slice(extra);
    Server::start(component, &args)
}

fn one<'a>(spans: &'a [Span], what: &str, pick: impl Fn(&Span) -> bool) -> &'a Span {
    let found: Vec<&Span> = spans.iter().filter(|s| pick(s)).collect();
    assert_eq!(found.len(), 1, "expected one {what}; spans: {spans:#?}");
    found[0]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_is_a_server_span_continuing_the_callers_trace_with_the_guest_inside() {
    let receiver = OtlpReceiver::start().await;
    // The tier is named: the span says which compiler's code ran (`HOTSWAP_TIER` may differ).
    let server = traced(
        Path::new(GUEST_EXAMPLE),
        &receiver,
        "front",
        &["--tier", "optimized"],
    );
    let mut client = Client::connect(server.addr).await.unwrap();
    let reply = client
        .send_with("GET", "/", &[("traceparent", &traceparent())], "")
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    // A request without a traceparent starts a trace of its own.
    assert_eq!(client.get("/").await.unwrap().status, 200);

    let spans = receiver
        .wait_for(SPANS_WAIT, |spans| {
            spans.iter().filter(|s| s.name == "guest").count() == 2
                && spans.iter().filter(|s| s.kind == "server").count() == 2
        })
        .await
        .unwrap_or_else(|| panic!("spans: {:#?}\nlog:\n{}", receiver.spans(), server.log()));
    let server_span = one(&spans, "server span of the traced request", |s| {
        s.kind == "server" && s.trace_id == TRACE_ID
    });
    assert_eq!(server_span.parent, CALLER_SPAN, "{server_span:#?}");
    assert_eq!(server_span.name, "GET /");
    assert_eq!(server_span.service, "front");
    assert_eq!(server_span.attr("http.response.status_code"), Some("200"));
    assert_eq!(server_span.attr("http.request.method"), Some("GET"));
    assert_eq!(server_span.attr("hotswap.generation"), Some("1"));
    assert_eq!(server_span.attr("hotswap.route"), Some("index"));
    assert!(!server_span.error);
    let guest = one(&spans, "guest span of the traced request", |s| {
        s.name == "guest" && s.trace_id == TRACE_ID
    });
    assert_eq!(guest.parent, server_span.span_id);
    assert_eq!(guest.attr("hotswap.world"), Some("wasi:http@0.2"));
    assert_eq!(guest.attr("hotswap.tier"), Some("optimized"));
    assert!(guest.start_ns >= server_span.start_ns && guest.end_ns <= server_span.end_ns);
    // The other request: a root span of a trace of its own, the guest under it.
    let root = one(&spans, "server span of the untraced request", |s| {
        s.kind == "server" && s.trace_id != TRACE_ID
    });
    assert!(root.parent.is_empty(), "{root:#?}");
    let guest = one(&spans, "its guest span", |s| {
        s.name == "guest" && s.trace_id == root.trace_id
    });
    assert_eq!(guest.parent, root.span_id);
    // The first load is a trace too: the reload and its steps.
    let load = one(&spans, "startup load", |s| s.name == "hotswap.reload");
    assert_eq!(load.attr("hotswap.trigger"), Some("startup"));
    assert_eq!(load.attr("hotswap.outcome"), Some("loaded"));
    // (`cache` in place of `compile` when the compile cache had the code.)
    for step in ["read", "compile|cache", "validate", "install"] {
        let step = one(&spans, step, |s| {
            step.split('|').any(|name| s.name == name) && s.trace_id == load.trace_id
        });
        assert_eq!(step.parent, load.span_id, "{step:#?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trace_goes_on_through_a_guests_outbound_call_into_the_next_host() {
    let receiver = OtlpReceiver::start().await;
    let back = traced(Path::new(GUEST_EXAMPLE), &receiver, "back", &[]);
    let allowed = format!("127.0.0.1:{}", back.addr.port());
    let front = traced(
        Path::new(MISBEHAVE),
        &receiver,
        "front",
        &["--allow-outbound", &allowed],
    );
    let path = format!("/outbound?url=http://{}/", back.addr);
    let reply = Client::connect(front.addr)
        .await
        .unwrap()
        .send_with(
            "GET",
            &path,
            &[("traceparent", &traceparent()), ("tracestate", TRACE_STATE)],
            "",
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.text().contains("status 200"), "{}", reply.text());

    let in_trace = |s: &Span| s.trace_id == TRACE_ID;
    let spans = receiver
        .wait_for(SPANS_WAIT, |spans| {
            spans.iter().filter(|s| in_trace(s)).count() >= 5
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "spans: {:#?}\nfront log:\n{}\nback log:\n{}",
                receiver.spans(),
                front.log(),
                back.log()
            )
        });
    // caller → front's server span → its guest → the guest's outbound call (client) → back's
    // server span → its guest: one trace, each the child of the one before.
    let front_server = one(&spans, "front's server span", |s| {
        in_trace(s) && s.service == "front" && s.kind == "server"
    });
    assert_eq!(front_server.parent, CALLER_SPAN);
    let front_guest = one(&spans, "front's guest span", |s| {
        in_trace(s) && s.service == "front" && s.name == "guest"
    });
    assert_eq!(front_guest.parent, front_server.span_id);
    let call = one(&spans, "front's outbound call", |s| {
        in_trace(s) && s.service == "front" && s.kind == "client"
    });
    assert_eq!(call.parent, front_guest.span_id);
    assert_eq!(call.attr("http.response.status_code"), Some("200"));
    assert_eq!(
        call.attr("server.port"),
        Some(back.addr.port().to_string().as_str())
    );
    let back_server = one(&spans, "back's server span", |s| {
        in_trace(s) && s.service == "back" && s.kind == "server"
    });
    assert_eq!(
        back_server.parent, call.span_id,
        "the call did not carry its context"
    );
    // The vendors' `tracestate` went along, unchanged, to every span of the trace.
    for span in [front_server, front_guest, call, back_server] {
        assert_eq!(span.trace_state, TRACE_STATE, "{span:#?}");
    }
    let back_guest = one(&spans, "back's guest span", |s| {
        in_trace(s) && s.service == "back" && s.name == "guest"
    });
    assert_eq!(back_guest.parent, back_server.span_id);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_swap_and_a_refused_build_are_traced_with_their_steps() {
    let receiver = OtlpReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.wasm");
    std::fs::write(&path, guests::bytes(GUEST_EXAMPLE)).unwrap();
    let server = traced(&path, &receiver, "swapper", &["--debounce", "50ms"]);
    deploy_atomic(&guests::bytes(MISBEHAVE), &path);
    let swapped = eventually(Duration::from_secs(30), || async {
        get(server.addr, "/ok")
            .await
            .ok()
            .filter(|r| r.generation() == Some(2))
    })
    .await;
    assert!(swapped.is_some(), "no swap; log:\n{}", server.log());
    deploy_atomic(b"\0asm not really", &path);
    server
        .expect_log("reload failed", Duration::from_secs(30))
        .await;

    let reloads = |spans: &[Span]| -> Vec<Span> {
        spans
            .iter()
            .filter(|s| {
                s.name == "hotswap.reload" && s.attr("hotswap.trigger") == Some("file change")
            })
            .cloned()
            .collect()
    };
    let spans = receiver
        .wait_for(SPANS_WAIT, |spans| reloads(spans).len() >= 2)
        .await
        .unwrap_or_else(|| panic!("spans: {:#?}\nlog:\n{}", receiver.spans(), server.log()));
    let swap = reloads(&spans)
        .into_iter()
        .find(|s| s.attr("hotswap.outcome") == Some("loaded"))
        .unwrap_or_else(|| panic!("no traced swap: {spans:#?}"));
    assert_eq!(swap.attr("hotswap.generation"), Some("2"));
    assert!(!swap.error);
    let steps: Vec<&str> = spans
        .iter()
        .filter(|s| s.parent == swap.span_id)
        .map(|s| s.name.as_str())
        .collect();
    for step in ["read", "compile|cache", "validate", "install"] {
        assert!(
            step.split('|').any(|name| steps.contains(&name)),
            "no `{step}` step under the swap: {steps:?}"
        );
    }
    for s in spans.iter().filter(|s| s.parent == swap.span_id) {
        assert!(
            s.start_ns >= swap.start_ns && s.end_ns <= swap.end_ns,
            "{s:#?} outside {swap:#?}"
        );
    }
    let refused = reloads(&spans)
        .into_iter()
        .find(|s| s.attr("hotswap.outcome") == Some("failed"))
        .unwrap_or_else(|| panic!("no traced refusal: {spans:#?}"));
    assert!(refused.error, "{refused:#?}");
    assert_eq!(
        refused.attr("hotswap.generation"),
        Some("2"),
        "the serving one"
    );
}

/// The steps under `root`, by name, each inside its time.
fn steps_of<'a>(spans: &'a [Span], root: &Span) -> Vec<&'a str> {
    let steps: Vec<&Span> = spans.iter().filter(|s| s.parent == root.span_id).collect();
    for step in &steps {
        assert_eq!(step.trace_id, root.trace_id);
        assert!(
            step.start_ns >= root.start_ns && step.end_ns <= root.end_ns,
            "{step:#?} outside {root:#?}"
        );
    }
    steps.iter().map(|s| s.name.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_pull_is_a_step_of_the_load_it_feeds() {
    let receiver = OtlpReceiver::start().await;
    let fake = FakeRegistry::start().await;
    let digest = fake.push("app:v1", &guests::bytes(GUEST_EXAMPLE));
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let server = traced(
        Path::new(&fake.reference("app:v1")),
        &receiver,
        "puller",
        &["--cache-dir", cache.to_str().unwrap()],
    );
    assert_eq!(get(server.addr, "/").await.unwrap().status, 200);
    let spans = receiver
        .wait_for(SPANS_WAIT, |spans| {
            spans.iter().any(|s| s.name == "hotswap.reload")
                && spans.iter().any(|s| s.name == "pull")
        })
        .await
        .unwrap_or_else(|| panic!("spans: {:#?}\nlog:\n{}", receiver.spans(), server.log()));
    let load = one(&spans, "the startup load", |s| s.name == "hotswap.reload");
    assert_eq!(load.attr("hotswap.outcome"), Some("loaded"));
    assert_eq!(
        load.attr("hotswap.origin"),
        Some(fake.reference("app:v1").as_str())
    );
    let steps = steps_of(&spans, load);
    assert!(steps.contains(&"pull"), "{steps:?}");
    let pull = one(&spans, "the pull", |s| s.name == "pull");
    assert_eq!(pull.attr("hotswap.digest"), Some(digest.as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_build_and_a_tier_up_are_traced_with_their_steps() {
    let receiver = OtlpReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    // A component past `--tier auto`'s size threshold, so that it serves from Winch first and
    // tiers up; the build command copies it into place.
    let large = dir.path().join("large.wasm");
    std::fs::write(
        &large,
        with_custom_section(
            &guests::bytes(GUEST_EXAMPLE),
            "padding",
            &vec![0u8; 3 << 20],
        ),
    )
    .unwrap();
    let app = dir.path().join("app.wasm");
    let cmd = format!("cp {} {}", large.display(), app.display());
    let cache = dir.path().join("cache");
    let server = traced(
        &app,
        &receiver,
        "builder",
        &[
            "--build-cmd",
            &cmd,
            "--tier",
            "auto",
            "--cache-dir",
            cache.to_str().unwrap(),
        ],
    );
    server
        .expect_log("tiered up generation 1", Duration::from_secs(120))
        .await;
    let spans = receiver
        .wait_for(SPANS_WAIT, |spans| {
            spans.iter().any(|s| s.name == "hotswap.build")
                && spans.iter().any(|s| s.name == "hotswap.tier_up")
        })
        .await
        .unwrap_or_else(|| panic!("spans: {:#?}\nlog:\n{}", receiver.spans(), server.log()));
    let build = one(&spans, "the build", |s| s.name == "hotswap.build");
    assert_eq!(build.attr("hotswap.outcome"), Some("ok"));
    assert_eq!(steps_of(&spans, build), ["run"]);
    let tier_up = one(&spans, "the tier-up", |s| s.name == "hotswap.tier_up");
    assert_eq!(tier_up.attr("hotswap.generation"), Some("1"));
    assert!(!tier_up.error, "{tier_up:#?}");
    let steps = steps_of(&spans, tier_up);
    for step in ["compile", "validate", "install"] {
        assert!(steps.contains(&step), "no `{step}` in {steps:?}");
    }
}

/// 4 connections × 500 requests to `server`, each answered 200; the slowest one's time.
async fn load(server: &Server) -> Duration {
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..4 {
        let addr = server.addr;
        workers.push(tokio::spawn(async move {
            let mut client = Client::connect(addr).await.unwrap();
            let mut slowest = Duration::ZERO;
            for _ in 0..500 {
                let sent = Instant::now();
                let reply = client.get("/").await.unwrap();
                assert_eq!(reply.status, 200);
                slowest = slowest.max(sent.elapsed());
            }
            slowest
        }));
    }
    let mut slowest = Duration::ZERO;
    for worker in workers {
        slowest = slowest.max(worker.await.unwrap());
    }
    eprintln!(
        "2000 requests in {:?}, slowest {slowest:?}",
        started.elapsed()
    );
    slowest
}

/// Waits until `server`'s metrics count spans dropped or failed.
async fn assert_spans_lost(server: &Server) {
    let admin = server.admin.unwrap();
    let lost = eventually(SPANS_WAIT, || async {
        let text = get(admin, "/metrics").await.ok()?.text();
        let lost: f64 = hotswap_tests::metrics::parse(&text)
            .iter()
            .filter(|s| s.name == "hotswap_trace_spans_total")
            .filter(|s| matches!(s.label("result"), Some("dropped" | "failed")))
            .map(|s| s.value)
            .sum();
        (lost > 0.0).then_some(lost)
    })
    .await;
    assert!(
        lost.is_some(),
        "no span counted as lost; log:\n{}",
        server.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_collector_that_takes_connections_and_never_answers_costs_spans_not_requests() {
    // A collector that accepts and reads but never answers: each export runs into its 1 s
    // deadline, and the requests go on as if it were not there.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            open.push(stream);
        }
    });
    let server = exporting_to(&endpoint, "1s");
    let slowest = load(&server).await;
    assert!(
        slowest < Duration::from_millis(900),
        "a request took {slowest:?} while the collector did not answer"
    );
    server.expect_log("trace export failed", SPANS_WAIT).await;
    assert_spans_lost(&server).await;
    held.abort();
}

/// A host on guest-example sending its spans to `endpoint` (a queue of 64, `timeout` per
/// export), with the admin API to read its span counts from.
fn exporting_to(endpoint: &str, timeout: &str) -> Server {
    Server::start(
        Path::new(GUEST_EXAMPLE),
        &[
            "--otel-endpoint",
            endpoint,
            "--otel-queue-size",
            "64",
            "--otel-timeout",
            timeout,
            "--admin-addr",
            "127.0.0.1:0",
        ],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_collector_that_is_down_costs_spans_not_requests() {
    // A port nothing listens on, until the receiver starts on it later.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = dead.local_addr().unwrap();
    drop(dead);
    let endpoint = format!("http://{addr}");
    let server = exporting_to(&endpoint, "2s");
    // Load while exports fail: every request answered, none slowed by the exporter (one that
    // waited on an export would take its 2 s timeout).
    let slowest = load(&server).await;
    assert!(
        slowest < Duration::from_secs(1),
        "a request took {slowest:?} while the collector was down"
    );
    server.expect_log("trace export failed", SPANS_WAIT).await;
    assert_spans_lost(&server).await;

    // The collector comes up: exports recover, said once, and new spans arrive.
    let receiver = OtlpReceiver::start_on(addr).await;
    let recovered = eventually(Duration::from_secs(30), || async {
        let _ = get(server.addr, "/").await;
        server
            .log()
            .contains("trace export recovered")
            .then_some(())
    })
    .await;
    assert!(
        recovered.is_some(),
        "never recovered; log:\n{}",
        server.log()
    );
    assert!(
        receiver
            .wait_for(SPANS_WAIT, |spans| spans.iter().any(|s| s.kind == "server"))
            .await
            .is_some()
    );
    assert_eq!(
        server.log_count("trace export failed"),
        1,
        "{}",
        server.log()
    );
    assert_eq!(
        server.log_count("trace export recovered"),
        1,
        "{}",
        server.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_trace_settings_stop_the_host_before_it_binds() {
    for (args, says) in [
        (vec!["--otel-endpoint", "collector:4318"], "--otel-endpoint"),
        (
            vec![
                "--otel-endpoint",
                "http://127.0.0.1:4318",
                "--otel-sampler",
                "sometimes",
            ],
            "unknown sampler",
        ),
    ] {
        let mut all = vec!["serve", GUEST_EXAMPLE];
        all.extend(args);
        all.extend(["--addr", "127.0.0.1:0"]);
        let exited = hotswap_tests::server::run_to_exit(&all, Duration::from_secs(30));
        assert!(!exited.status.success());
        assert!(exited.stderr.contains(says), "{}", exited.stderr);
        assert!(!exited.stdout.contains("Serving HTTP"), "{}", exited.stdout);
    }
}
