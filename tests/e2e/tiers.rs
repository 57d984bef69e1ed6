//! Compiler tiers: a large component never seen before serves from a Winch build at once and
//! tiers up to its Cranelift build as the same generation, with no failed request; `--tier`
//! picks one compiler outright. (The whole suite also runs with `HOTSWAP_TIER=fast`; see
//! `scripts/test.sh`. Every test here names its tier, so that does not change them.)

use hotswap_tests::admin::status;
use hotswap_tests::guests::{self, GUEST_EXAMPLE};
use hotswap_tests::metrics::{scrape, value};
use hotswap_tests::waits::LOG_WAIT;
use hotswap_tests::{Server, deploy_atomic, eventually, get, with_custom_section};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long a Cranelift build of guest-example may take in the background on a busy machine.
const TIER_UP_WAIT: Duration = Duration::from_secs(120);
/// How long a test waits to be sure that something does not happen.
const QUIET: Duration = Duration::from_secs(2);

/// guest-example padded past `--tier auto`'s size threshold (2 MiB) with a custom section: it
/// behaves as guest-example, and auto mode compiles it with Winch first.
fn large_guest() -> Vec<u8> {
    with_custom_section(
        &guests::bytes(GUEST_EXAMPLE),
        "padding",
        &vec![0u8; 3 << 20],
    )
}

fn serve_large(dir: &Path, tier: &str) -> Server {
    let app = dir.join("app.wasm");
    if !app.exists() {
        std::fs::write(&app, large_guest()).unwrap();
    }
    Server::launch(
        &[
            app.to_str().unwrap(),
            "--tier",
            tier,
            "--cache-dir",
            dir.join("cache").to_str().unwrap(),
            "--admin-addr",
            "127.0.0.1:0",
        ],
        &[],
        None,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_new_component_serves_from_winch_then_tiers_up_without_a_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_large(dir.path(), "auto");
    server
        .expect_log("loaded generation 1 (wasi:http@0.2, Winch", LOG_WAIT)
        .await;

    // Four clients from the moment it serves until well after the tier-up.
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (addr, stop) = (server.addr, stop.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let reply = get(addr, "/").await;
                    seen.push(reply.map(|r| (r.status.as_u16(), r.generation())));
                }
                seen
            })
        })
        .collect();
    server
        .expect_log("tiered up generation 1", TIER_UP_WAIT)
        .await;
    let after_tier_up = eventually(LOG_WAIT, || async {
        let current = status(&server).await["current"].clone();
        (current["tier"] == "optimized").then_some(current)
    })
    .await
    .expect("/status never said the optimised tier serves");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut replies = Vec::new();
    for client in clients {
        replies.extend(client.await.unwrap());
    }
    assert!(replies.len() > 20, "only {} requests ran", replies.len());
    let bad: Vec<_> = replies
        .iter()
        .filter(|r| !matches!(r, Ok((200, Some(1)))))
        .collect();
    assert!(
        bad.is_empty(),
        "{} of {} requests failed or came from another generation: {:?}",
        bad.len(),
        replies.len(),
        &bad[..bad.len().min(5)]
    );

    // The same generation, now Cranelift's, and only one kept.
    assert_eq!(after_tier_up["generation"], 1, "{after_tier_up}");
    assert_eq!(after_tier_up["compiler"], "Cranelift", "{after_tier_up}");
    let kept = status(&server).await["history"].clone();
    assert_eq!(kept.as_array().map(Vec::len), Some(1), "{kept}");
    let samples = scrape(&server).await;
    assert_eq!(
        value(
            &samples,
            "hotswap_serving_tier",
            "index",
            &[("tier", "optimized")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &samples,
            "hotswap_serving_tier",
            "index",
            &[("tier", "fast")]
        ),
        None,
        "the Winch tier still reported as serving"
    );
    assert_eq!(
        value(
            &samples,
            "hotswap_tier_ups_total",
            "index",
            &[("result", "serving")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&samples, "hotswap_generation", "index", &[]),
        Some(1.0)
    );
    drop(server);

    // A restart finds the Cranelift build in the compile cache: no Winch build, no tier-up.
    let server = serve_large(dir.path(), "auto");
    server
        .expect_log("loaded generation 1 (wasi:http@0.2, Cranelift, ", LOG_WAIT)
        .await;
    assert_eq!(status(&server).await["current"]["tier"], "optimized");
    tokio::time::sleep(QUIET).await;
    assert_eq!(server.log_count("tiered up"), 0, "{}", server.log());
}

/// A large build never seen before whose code was compiled with Cranelift before (a script
/// edit of a JS or Python guest: the same engine's functions, other data) is compiled with
/// Cranelift at once under `auto`: its functions come from the incremental cache, untranslated,
/// which is faster than a Winch compile, and no tier-up follows.
#[tokio::test(flavor = "multi_thread")]
async fn a_large_build_of_code_compiled_before_goes_straight_to_cranelift() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_large(dir.path(), "auto");
    server
        .expect_log("tiered up generation 1", TIER_UP_WAIT)
        .await;
    // The same code in other bytes: the compile cache has never seen this build.
    let app = dir.path().join("app.wasm");
    deploy_atomic(&with_custom_section(&large_guest(), "build", b"2"), &app);
    server
        .expect_log(
            "loaded generation 2 (wasi:http@0.2, Cranelift, ",
            TIER_UP_WAIT,
        )
        .await;
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("loaded generation 2 "))
        .unwrap();
    assert!(
        line.contains("untranslated") && !line.contains("(0 untranslated)"),
        "{line}"
    );
    assert_eq!(status(&server).await["current"]["tier"], "optimized");
    tokio::time::sleep(QUIET).await;
    assert_eq!(server.log_count("(wasi:http@0.2, Winch, "), 1, "{log}");
    assert_eq!(server.log_count("tiered up"), 1, "{}", server.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tier_flag_picks_one_compiler() {
    // fast: Winch, and it stays so.
    let dir = tempfile::tempdir().unwrap();
    let server = serve_large(dir.path(), "fast");
    assert_eq!(get(server.addr, "/").await.unwrap().status, 200);
    let current = status(&server).await["current"].clone();
    assert_eq!(current["tier"], "fast", "{current}");
    assert_eq!(current["compiler"], "Winch", "{current}");
    tokio::time::sleep(QUIET).await;
    assert_eq!(status(&server).await["current"]["tier"], "fast");
    assert_eq!(server.log_count("tiered up"), 0, "{}", server.log());
    drop(server);

    // optimized: Cranelift at once, however large.
    let dir = tempfile::tempdir().unwrap();
    let server = serve_large(dir.path(), "optimized");
    let current = status(&server).await["current"].clone();
    assert_eq!(current["tier"], "optimized", "{current}");
    assert_eq!(server.log_count("Winch"), 0, "{}", server.log());
    drop(server);

    // auto, below the size threshold: Cranelift at once.
    let server = Server::start(
        Path::new(GUEST_EXAMPLE),
        &["--tier", "auto", "--admin-addr", "127.0.0.1:0"],
    );
    let current = status(&server).await["current"].clone();
    assert_eq!(current["tier"], "optimized", "{current}");
    assert_eq!(server.log_count("Winch"), 0, "{}", server.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_tier_is_refused_before_anything_binds() {
    let out = hotswap_tests::server::run_to_exit(
        &[
            "serve",
            GUEST_EXAMPLE,
            "--addr",
            "127.0.0.1:0",
            "--tier",
            "fastest",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("fastest"), "{}", out.stderr);
    assert!(
        out.stderr.contains("auto") && out.stderr.contains("optimized"),
        "the error does not list the tiers: {}",
        out.stderr
    );
    assert!(!out.stdout.contains("Serving HTTP on"), "{}", out.stdout);
}

/// A component (≥ 2 MiB) whose one core module uses a tail call, a proposal Cranelift compiles
/// and Winch does not; it exports no HTTP handler, so even compiled it is refused.
fn tail_calling_component() -> Vec<u8> {
    use wasm_encoder::{
        CodeSection, Component, Function, FunctionSection, Instruction, Module, ModuleSection,
        TypeSection,
    };
    let mut types = TypeSection::new();
    types.ty().function([], []);
    let mut functions = FunctionSection::new();
    functions.function(0);
    let mut body = Function::new([]);
    body.instruction(&Instruction::ReturnCall(0));
    body.instruction(&Instruction::End);
    let mut code = CodeSection::new();
    code.function(&body);
    let mut module = Module::new();
    module.section(&types).section(&functions).section(&code);
    let mut component = Component::new();
    component.section(&ModuleSection(&module));
    with_custom_section(&component.finish(), "padding", &vec![0u8; 3 << 20])
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_winch_cannot_compile_goes_straight_to_cranelift() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app.wasm");
    std::fs::write(&app, tail_calling_component()).unwrap();
    for (tier, expected) in [
        // auto: Winch refuses it, Cranelift compiles it, and linking says what is wrong.
        ("auto", "exports no HTTP handler"),
        // fast: Winch's refusal is the reason.
        ("fast", "failed to compile the component"),
    ] {
        let server = Server::launch(
            &[app.to_str().unwrap(), "--tier", tier, "--no-cache"],
            &[],
            None,
        );
        let reply = get(server.addr, "/").await.unwrap();
        assert_eq!(reply.status, 503, "{tier}: {}", reply.text());
        assert!(
            reply.text().contains(expected),
            "{tier}: the reason is not {expected:?}: {}",
            reply.text()
        );
        assert_eq!(
            server.log_count("Winch cannot compile the component"),
            usize::from(tier == "auto"),
            "{tier}: {}",
            server.log()
        );
    }
}
