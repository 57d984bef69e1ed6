//! "The browser follows the code" (dev mode): the event stream (`serving` only once the new
//! generation answers, `build-failed` with the compiler's output, `refused` with the reason,
//! `hello` with every route's state), `--live-reload`'s script in HTML pages and nowhere else,
//! both off in prod, and a real headless Chromium that shows an edit, a broken build's error
//! and its fix without the test navigating.

use crate::dev_loop::{BUILD_WAIT, copy_guest_sources, edit_greeting};
use hotswap_tests::browser::Browser;
use hotswap_tests::guests::{GUEST_EXAMPLE, GUEST_TARGET_DIR, MISBEHAVE};
use hotswap_tests::server::run_to_exit;
use hotswap_tests::sse::EventReader;
use hotswap_tests::waits::{LOG_WAIT, SWAP_WAIT};
use hotswap_tests::{Reply, Server, eventually, get};
use std::path::Path;
use std::time::Duration;

/// The event stream's default path.
const EVENTS: &str = "/_hotswap/events";

/// How long an event that is already due may take to arrive.
const EVENT_WAIT: Duration = Duration::from_secs(10);

/// A copy of guest-example's sources in `dir`, built on save with the `iterate` profile into a
/// target directory of the test's own (`name`, kept between runs: only the first build
/// compiles the dependencies; not shared with another test, whose builds would overwrite the
/// component this one serves).
fn guest_project(dir: &Path, name: &str) {
    copy_guest_sources(dir);
    let target = Path::new(GUEST_TARGET_DIR).join(name);
    let config = format!(
        "[component]\npath = \"{out}\"\n\n[build]\ncmd = \"cargo build --profile iterate --target wasm32-wasip2 --target-dir {target}\"\n\
         dir = \"guest-example\"\nwatch = [\"guest-example\", \"wit\"]\ndelay = \"100ms\"\n",
        out = target
            .join("wasm32-wasip2/iterate/guest_example.wasm")
            .display(),
        target = target.display(),
    );
    std::fs::write(dir.join("hotswap.toml"), config).unwrap();
}

/// `GET path` once it answers 200.
async fn served(server: &Server, path: &str) -> Reply {
    eventually(BUILD_WAIT, || async {
        get(server.addr, path)
            .await
            .ok()
            .filter(|r| r.status == 200)
    })
    .await
    .unwrap_or_else(|| panic!("{path} never answered 200; log:\n{}", server.log()))
}

/// Writes a syntax error into the copied guest; returns the good source.
fn break_guest(dir: &Path) -> String {
    let lib = dir.join("guest-example/src/lib.rs");
    let good = std::fs::read_to_string(&lib).unwrap();
    std::fs::write(&lib, format!("{good}\nfn broken( {{\n")).unwrap();
    good
}

#[tokio::test(flavor = "multi_thread")]
async fn serving_comes_once_the_new_code_answers_and_a_failed_build_brings_the_compiler_output() {
    let dir = tempfile::tempdir().unwrap();
    guest_project(dir.path(), "live-reload-events");
    let server = Server::launch(&["--debounce", "100ms"], &[], Some(dir.path()));
    let first = served(&server, "/").await;
    let route = first.header("x-hotswap-route").unwrap().to_string();
    let first_generation = first.generation().unwrap();

    let mut stream = EventReader::open(server.addr, EVENTS).await.unwrap();
    assert_eq!(stream.status, 200);
    assert_eq!(stream.header("content-type"), Some("text/event-stream"));
    let hello = stream
        .next(EVENT_WAIT)
        .await
        .expect("a snapshot on connect");
    assert_eq!(hello.name, "hello");
    let state = &hello.data["routes"][0];
    assert_eq!(state["route"], route.as_str(), "{}", hello.data);
    assert_eq!(state["generation"], first_generation, "{}", hello.data);
    assert!(state["build_failed"].is_null(), "{}", hello.data);

    // A good edit: `serving` comes once a request gets the new code, not at build start.
    edit_greeting(
        dir.path(),
        "format!(\"hello from hotswap",
        "format!(\"howdy from hotswap",
    );
    let (serving, before) = stream.next_named("serving", BUILD_WAIT).await;
    let serving =
        serving.unwrap_or_else(|| panic!("no serving event ({before:?}); log:\n{}", server.log()));
    let reply = get(server.addr, "/").await.unwrap();
    let generation = serving.data["generation"].as_u64().unwrap();
    assert!(generation > first_generation, "{}", serving.data);
    assert_eq!(reply.generation(), Some(generation), "{}", reply.text());
    assert!(reply.text().starts_with("howdy"), "{}", reply.text());
    assert_eq!(serving.data["route"], route.as_str());
    // The finished build asks for the reload; the file watcher may see the new file first.
    let trigger = serving.data["trigger"].as_str().unwrap();
    assert!(["build", "file change"].contains(&trigger), "{trigger}");
    // The short hash the logs show.
    let sha256 = serving.data["sha256"].as_str().unwrap();
    server.expect_log(sha256, LOG_WAIT).await;

    // A broken edit: `build-failed` with the compiler's error, and nothing else serves.
    let good = break_guest(dir.path());
    let (failed, before) = stream.next_named("build-failed", BUILD_WAIT).await;
    let failed = failed
        .unwrap_or_else(|| panic!("no build-failed event ({before:?}); log:\n{}", server.log()));
    assert!(
        before.iter().all(|e| e.name != "serving"),
        "a broken build served: {before:?}"
    );
    let output = failed.data["output"].as_str().unwrap();
    assert!(output.contains("error"), "{output}");
    assert!(
        output.contains("fn broken("),
        "the compiler's snippet: {output}"
    );
    assert_eq!(failed.data["exit_code"], 101, "{}", failed.data);
    assert_eq!(failed.data["route"], route.as_str());
    assert_eq!(
        get(server.addr, "/").await.unwrap().generation(),
        Some(generation)
    );

    // A page that connects now learns of the failure, and of the generation that serves.
    let mut late = EventReader::open(server.addr, &format!("{EVENTS}?route={route}"))
        .await
        .unwrap();
    let hello = late.next(EVENT_WAIT).await.expect("a snapshot on connect");
    let state = &hello.data["routes"][0];
    assert_eq!(state["generation"], generation, "{}", hello.data);
    let outstanding = state["build_failed"]["output"].as_str().unwrap_or_default();
    assert!(outstanding.contains("fn broken("), "{}", hello.data);

    // Undoing the break builds the code that serves already: no new generation, but `built`,
    // and the failure is no longer outstanding.
    std::fs::write(dir.path().join("guest-example/src/lib.rs"), good).unwrap();
    let (built, before) = late.next_named("built", BUILD_WAIT).await;
    assert!(
        built.is_some(),
        "the fix never built ({before:?}); log:\n{}",
        server.log()
    );
    let mut again = EventReader::open(server.addr, EVENTS).await.unwrap();
    let hello = again.next(EVENT_WAIT).await.unwrap();
    assert!(
        hello.data["routes"][0]["build_failed"].is_null(),
        "{}",
        hello.data
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_component_is_an_event_that_names_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app.wasm");
    std::fs::copy(GUEST_EXAMPLE, &app).unwrap();
    let server = Server::start(&app, &["--debounce", "100ms"]);
    let first = served(&server, "/").await;
    let route = first.header("x-hotswap-route").unwrap().to_string();
    let mut stream = EventReader::open(server.addr, &format!("{EVENTS}?route={route}"))
        .await
        .unwrap();
    assert_eq!(stream.next(EVENT_WAIT).await.unwrap().name, "hello");

    hotswap_tests::deploy_atomic(b"\0asm this is not a component", &app);
    let (refused, before) = stream.next_named("refused", SWAP_WAIT).await;
    let refused =
        refused.unwrap_or_else(|| panic!("no refused event ({before:?}); log:\n{}", server.log()));
    assert_eq!(refused.data["route"], route.as_str());
    let reason = refused.data["reason"].as_str().unwrap();
    assert!(!reason.is_empty());
    // The reason the log gives for the same refusal.
    server.expect_log(reason, LOG_WAIT).await;
    let reply = get(server.addr, "/").await.unwrap();
    assert_eq!(
        reply.generation(),
        first.generation(),
        "the old one serves on"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stream_is_absent_in_prod_and_asking_for_it_there_is_a_config_error() {
    let prod = Server::start(Path::new(GUEST_EXAMPLE), &["--mode", "prod"]);
    let reply = get(prod.addr, EVENTS).await.unwrap();
    assert_eq!(reply.status, 404, "{}", reply.text());
    assert_ne!(reply.header("content-type"), Some("text/event-stream"));
    drop(prod);
    // The same host in dev mode streams (the contrast that makes the 404 mean something).
    let dev = Server::start(Path::new(GUEST_EXAMPLE), &[]);
    let stream = EventReader::open(dev.addr, EVENTS).await.unwrap();
    assert_eq!(stream.status, 200);
    drop(dev);

    for (args, says) in [
        (&["--live-reload"][..], "--live-reload"),
        (&["--events-path", "/_hotswap/events"], "--events-path"),
    ] {
        let mut all = vec!["serve", GUEST_EXAMPLE, "--mode", "prod"];
        all.extend_from_slice(args);
        let out = run_to_exit(&all, Duration::from_secs(30));
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains(says) && out.stderr.contains("prod"),
            "{args:?}: {}",
            out.stderr
        );
    }
    let out = run_to_exit(
        &[
            "serve",
            GUEST_EXAMPLE,
            "--live-reload",
            "--events-path",
            "off",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("needs the event stream"),
        "{}",
        out.stderr
    );
}

/// The header fields that say what a body is.
const FRAMING: [&str; 4] = [
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
];

#[tokio::test(flavor = "multi_thread")]
async fn only_html_with_a_length_gets_the_script_and_every_other_response_is_untouched() {
    let plain = Server::start(Path::new(MISBEHAVE), &[]);
    let live = Server::start(Path::new(MISBEHAVE), &["--live-reload"]);

    let original = get(plain.addr, "/shaped").await.unwrap();
    let page = get(live.addr, "/shaped").await.unwrap();
    assert_eq!(page.status, 200);
    assert!(
        original.text().contains("<p>shaped</p>"),
        "{}",
        original.text()
    );
    assert_eq!(
        original.header("content-length"),
        Some(original.body.len().to_string().as_str())
    );
    assert!(page.body.starts_with(&original.body), "{}", page.text());
    let script = String::from_utf8_lossy(&page.body[original.body.len()..]).into_owned();
    assert!(
        script.starts_with("<script data-hotswap-live-reload>"),
        "{script}"
    );
    assert!(script.ends_with("</script>\n"), "{script}");
    assert!(
        script.contains(EVENTS) && script.contains("generation=1"),
        "{script}"
    );
    assert_eq!(
        page.header("content-length"),
        Some(page.body.len().to_string().as_str()),
        "the new length counts the script"
    );

    for path in [
        "/shaped?type=plain",
        "/shaped?encoding=gzip",
        "/shaped?length=no",
        "/ok",
        "/no-such-path",
    ] {
        let sent = get(plain.addr, path).await.unwrap();
        let got = get(live.addr, path).await.unwrap();
        assert_eq!(got.status, sent.status, "{path}");
        assert_eq!(got.body, sent.body, "{path}: {}", got.text());
        for name in FRAMING {
            assert_eq!(got.header(name), sent.header(name), "{path}: {name}");
        }
        assert!(!got.text().contains("<script"), "{path}: {}", got.text());
    }
    // The page without a length really was a stream.
    let streamed = get(live.addr, "/shaped?length=no").await.unwrap();
    assert_eq!(streamed.header("content-length"), None);
    assert_eq!(streamed.header("transfer-encoding"), Some("chunked"));
}

/// Polls `check` against the browser (every 50 ms, `eventually`) for up to `timeout`.
async fn in_browser<T>(
    browser: &Browser,
    timeout: Duration,
    check: impl Fn(&Browser) -> Option<T>,
) -> Option<T> {
    eventually(timeout, || async { check(browser) }).await
}

/// The overlay's text, if the page shows it.
fn overlay(browser: &Browser) -> Option<String> {
    browser
        .eval("var o = document.getElementById('hotswap-overlay'); return o ? o.innerText : null;")
        .ok()?
        .as_str()
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_shows_an_edit_a_broken_builds_error_and_the_fix_without_navigating() {
    if let Err(why) = Browser::available() {
        eprintln!("skipped: no headless browser: {why}");
        return;
    }
    let browser = Browser::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    guest_project(dir.path(), "live-reload-browser");
    let server = Server::launch(
        &["--debounce", "100ms", "--live-reload"],
        &[],
        Some(dir.path()),
    );
    served(&server, "/page").await;
    browser.goto(&server.url("/page")).unwrap();
    let text = browser.text().unwrap();
    assert!(text.contains("hello from hotswap"), "{text}");

    // A good edit: the page shows it, the test never navigates.
    edit_greeting(
        dir.path(),
        "format!(\"hello from hotswap",
        "format!(\"howdy from hotswap",
    );
    let shown = in_browser(&browser, BUILD_WAIT, |b| {
        b.text().ok().filter(|t| t.contains("howdy from hotswap"))
    })
    .await;
    assert!(
        shown.is_some(),
        "the edit never showed; log:\n{}",
        server.log()
    );

    // A broken edit: the compiler's error over the page.
    let good = break_guest(dir.path());
    let error = in_browser(&browser, BUILD_WAIT, overlay).await;
    let error = error.unwrap_or_else(|| panic!("no overlay; log:\n{}", server.log()));
    assert!(error.contains("fn broken("), "{error}");
    assert!(error.contains("failed"), "{error}");

    // The fix: the overlay goes, the fixed text shows.
    std::fs::write(
        dir.path().join("guest-example/src/lib.rs"),
        good.replacen(
            "format!(\"howdy from hotswap",
            "format!(\"hi again from hotswap",
            1,
        ),
    )
    .unwrap();
    let fixed = in_browser(&browser, BUILD_WAIT, |b| {
        let text = b.text().ok()?;
        (text.contains("hi again from hotswap") && overlay(b).is_none()).then_some(text)
    })
    .await;
    assert!(
        fixed.is_some(),
        "the fix never showed; log:\n{}",
        server.log()
    );
}
