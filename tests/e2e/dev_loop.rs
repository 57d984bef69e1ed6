//! The developer loop: configuration file and its precedence, `hotswap init`, rebuild on save,
//! and the compile cache across restarts.

use hotswap_tests::guests::{self, GUEST_EXAMPLE, GUEST_TARGET_DIR, ROOT};
use hotswap_tests::server::run_to_exit;
use hotswap_tests::start::start_v1;
use hotswap_tests::waits::{LOG_WAIT, wait_for_generation};
use hotswap_tests::{Server, eventually, get, post};
use std::path::Path;
use std::time::Duration;

/// How long a rebuild of guest-example may take on a busy 2-core machine.
pub(crate) const BUILD_WAIT: Duration = Duration::from_secs(240);

#[tokio::test(flavor = "multi_thread")]
async fn settings_come_from_file_then_env_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(GUEST_EXAMPLE, dir.path().join("app.wasm")).unwrap();
    std::fs::write(
        dir.path().join("hotswap.toml"),
        "[component]\npath = \"app.wasm\"\n\n[limits]\nmax_body_size = \"1KiB\"\n",
    )
    .unwrap();
    // Status of POST /echo with an n-byte body.
    let echo =
        |addr, n: usize| async move { post(addr, "/echo", vec![b'x'; n]).await.unwrap().status };

    // The file alone: the component path and a 1 KiB body limit come from hotswap.toml.
    let server = Server::launch(&[], &[], Some(dir.path()));
    assert_eq!(echo(server.addr, 1500).await, 413);
    assert_eq!(echo(server.addr, 500).await, 200);
    drop(server);

    // The environment beats the file.
    let server = Server::launch(&[], &[("HOTSWAP_MAX_BODY_SIZE", "2KiB")], Some(dir.path()));
    assert_eq!(echo(server.addr, 1500).await, 200);
    assert_eq!(echo(server.addr, 3000).await, 413);
    drop(server);

    // A flag beats the environment.
    let server = Server::launch(
        &["--max-body-size", "4KiB"],
        &[("HOTSWAP_MAX_BODY_SIZE", "2KiB")],
        Some(dir.path()),
    );
    assert_eq!(echo(server.addr, 3000).await, 200);
    assert_eq!(echo(server.addr, 5000).await, 413);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_working_directorys_file_applies_only_when_no_component_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(GUEST_EXAMPLE, dir.path().join("app.wasm")).unwrap();
    std::fs::write(
        dir.path().join("hotswap.toml"),
        "[component]\npath = \"app.wasm\"\n\n[limits]\nmax_body_size = \"1KiB\"\n\n\
         [admin]\naddr = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let echo =
        |addr, n: usize| async move { post(addr, "/echo", vec![b'x'; n]).await.unwrap().status };

    // A component named on the command line: the file is not read, and the log says so.
    let server = Server::launch(&["app.wasm"], &[], Some(dir.path()));
    assert_eq!(
        echo(server.addr, 1500).await,
        200,
        "the file's body limit must not apply"
    );
    assert!(
        server.admin.is_none(),
        "the file's admin listener must not open"
    );
    server
        .expect_log("not reading ./hotswap.toml", LOG_WAIT)
        .await;
    drop(server);

    // Named with --config, it is read.
    let server = Server::launch(
        &["app.wasm", "--config", "hotswap.toml"],
        &[],
        Some(dir.path()),
    );
    assert_eq!(echo(server.addr, 1500).await, 413);
    assert!(server.admin.is_some());
    drop(server);

    // No component named: the working directory's file is the configuration.
    let server = Server::launch(&[], &[], Some(dir.path()));
    assert_eq!(echo(server.addr, 1500).await, 413);
    drop(server);

    // --no-config reads nothing, so the component must come from the command line.
    let out = run_to_exit_in(dir.path(), &["serve", "--no-config"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("no component given"), "{}", out.stderr);
    let out = run_to_exit_in(
        dir.path(),
        &["serve", "--no-config", "--config", "hotswap.toml"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("contradict"), "{}", out.stderr);
}

/// `hotswap ARGS…` run to its exit in `dir`.
fn run_to_exit_in(dir: &Path, args: &[&str]) -> hotswap_tests::server::Exited {
    let out = std::process::Command::new(hotswap_tests::server::hotswap_bin())
        .args(args)
        .current_dir(dir)
        .env("RUST_BACKTRACE", "0")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run hotswap");
    hotswap_tests::server::Exited {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn unknown_keys_and_bad_values_name_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hotswap.toml");
    std::fs::write(&file, "[limits]\nmax_memroy = \"1MiB\"\n").unwrap();
    let out = run_to_exit(
        &["serve", GUEST_EXAMPLE, "--config", file.to_str().unwrap()],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("max_memroy"), "{}", out.stderr);
    assert!(
        out.stderr.contains(file.to_str().unwrap()),
        "{}",
        out.stderr
    );

    std::fs::write(&file, "[limits]\nmax_memory = \"lots\"\n").unwrap();
    let out = run_to_exit(
        &["serve", GUEST_EXAMPLE, "--config", file.to_str().unwrap()],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("limits.max_memory"), "{}", out.stderr);
    assert!(out.stderr.contains("invalid size `lots`"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn init_writes_a_starter_file_that_serve_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hotswap.toml");
    let out = run_to_exit(
        &["init", "--path", file.to_str().unwrap()],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    let text = std::fs::read_to_string(&file).unwrap();
    for section in [
        "[server]",
        "[component]",
        "[watch]",
        "[limits]",
        "[cache]",
        "[admin]",
        "[log]",
        "[build]",
    ] {
        assert!(text.contains(section), "starter file lacks {section}");
    }
    let again = run_to_exit(
        &["init", "--path", file.to_str().unwrap()],
        Duration::from_secs(30),
    );
    assert_eq!(again.status.code(), Some(1));
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);

    // The starter names `app.wasm` next to it; serve picks the file up from the directory.
    std::fs::copy(GUEST_EXAMPLE, dir.path().join("app.wasm")).unwrap();
    let server = Server::launch(&[], &[], Some(dir.path()));
    assert_eq!(get(server.addr, "/").await.unwrap().status, 200);
}

/// Copies guest-example and the WIT it builds against into `dir`.
pub(crate) fn copy_guest_sources(dir: &Path) {
    let root = Path::new(ROOT);
    let guest = dir.join("guest-example");
    std::fs::create_dir_all(guest.join("src")).unwrap();
    for file in ["Cargo.toml", "Cargo.lock"] {
        std::fs::copy(root.join("guest-example").join(file), guest.join(file)).unwrap();
    }
    for entry in std::fs::read_dir(root.join("guest-example/src")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), guest.join("src").join(entry.file_name())).unwrap();
    }
    std::fs::create_dir_all(dir.join("wit/deps")).unwrap();
    std::fs::copy(root.join("wit/world.wit"), dir.join("wit/world.wit")).unwrap();
    for entry in std::fs::read_dir(root.join("wit/deps")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join("wit/deps").join(entry.file_name())).unwrap();
    }
}

/// Rewrites the greeting in the copied guest's source.
pub(crate) fn edit_greeting(dir: &Path, from: &str, to: &str) {
    let lib = dir.join("guest-example/src/lib.rs");
    let text = std::fs::read_to_string(&lib).unwrap();
    assert!(
        text.contains(from),
        "guest source no longer contains {from:?}"
    );
    std::fs::write(&lib, text.replacen(from, to, 1)).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn rebuild_on_save_swaps_good_builds_and_survives_broken_ones() {
    let dir = tempfile::tempdir().unwrap();
    copy_guest_sources(dir.path());
    // A target directory kept between runs, so only the first build compiles dependencies.
    let target = Path::new(GUEST_TARGET_DIR).join("dev-loop");
    let config = format!(
        "[component]\npath = \"{out}\"\n\n[build]\ncmd = \"cargo build --release --target wasm32-wasip2 --target-dir {target}\"\n\
         dir = \"guest-example\"\nwatch = [\"guest-example\", \"wit\"]\ndelay = \"200ms\"\n",
        out = target
            .join("wasm32-wasip2/release/guest_example.wasm")
            .display(),
        target = target.display(),
    );
    std::fs::write(dir.path().join("hotswap.toml"), config).unwrap();

    let server = Server::launch(&["--debounce", "100ms"], &[], Some(dir.path()));
    let first = get(server.addr, "/").await.unwrap();
    assert_eq!(first.status, 200, "{}", first.text());
    assert!(
        first.text().starts_with("hello from hotswap"),
        "{}",
        first.text()
    );
    let start_generation = first.generation().unwrap();

    // A good edit is rebuilt and served.
    edit_greeting(
        dir.path(),
        "format!(\"hello from hotswap",
        "format!(\"howdy from hotswap",
    );
    let reply = eventually(BUILD_WAIT, || async {
        get(server.addr, "/")
            .await
            .ok()
            .filter(|r| r.text().starts_with("howdy"))
    })
    .await
    .unwrap_or_else(|| panic!("edited guest never served; log:\n{}", server.log()));
    let edited_generation = reply.generation().unwrap();
    assert!(edited_generation > start_generation);

    // A syntax error: the build fails, the compiler's error is in the log, the old one serves.
    let failures = server.log_count("build failed");
    let lib = dir.path().join("guest-example/src/lib.rs");
    let good = std::fs::read_to_string(&lib).unwrap();
    std::fs::write(&lib, format!("{good}\nfn broken( {{\n")).unwrap();
    let failed = eventually(BUILD_WAIT, || async {
        (server.log_count("build failed") > failures).then_some(())
    })
    .await;
    assert!(
        failed.is_some(),
        "no build failure logged; log:\n{}",
        server.log()
    );
    server
        .expect_log("build: error", Duration::from_secs(10))
        .await;
    let reply = get(server.addr, "/").await.unwrap();
    assert!(reply.text().starts_with("howdy"), "{}", reply.text());
    assert_eq!(reply.generation(), Some(edited_generation));

    // Fixing it serves the fix.
    std::fs::write(
        &lib,
        good.replacen(
            "format!(\"howdy from hotswap",
            "format!(\"hi again from hotswap",
            1,
        ),
    )
    .unwrap();
    let fixed = eventually(BUILD_WAIT, || async {
        get(server.addr, "/")
            .await
            .ok()
            .filter(|r| r.text().starts_with("hi again"))
    })
    .await;
    assert!(
        fixed.is_some(),
        "fixed guest never served; log:\n{}",
        server.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_hits_the_compile_cache_and_survives_a_corrupt_entry() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let app = dir.path().join("app.wasm");
    std::fs::write(&app, guests::bytes(GUEST_EXAMPLE)).unwrap();
    let cache_arg = cache.to_str().unwrap();

    let server = Server::start(&app, &["--cache-dir", cache_arg]);
    server.expect_log("compiled in", LOG_WAIT).await;
    drop(server);

    let server = Server::start(&app, &["--cache-dir", cache_arg]);
    server.expect_log("cache hit", LOG_WAIT).await;
    assert!(!server.log().contains("compiled in"), "{}", server.log());
    assert_eq!(get(server.addr, "/").await.unwrap().status, 200);
    drop(server);

    // Flip bytes in the middle of every entry: the next start recompiles and still serves.
    // (`incremental/` beside them holds Cranelift's per-function cache.)
    for entry in std::fs::read_dir(&cache).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            continue;
        }
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        for b in &mut bytes[mid..mid + 64] {
            *b ^= 0xff;
        }
        std::fs::write(&path, bytes).unwrap();
    }
    let server = Server::start(&app, &["--cache-dir", cache_arg]);
    server.expect_log("compiled in", LOG_WAIT).await;
    assert!(
        server.log().contains("compile cache entry unusable"),
        "{}",
        server.log()
    );
    assert_eq!(get(server.addr, "/").await.unwrap().status, 200);
    drop(server);

    // And the rewritten entry is good again.
    let server = Server::start(&app, &["--cache-dir", cache_arg]);
    server.expect_log("cache hit", LOG_WAIT).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn swapping_back_to_a_kept_version_skips_compilation() {
    let dir = tempfile::tempdir().unwrap();
    let (server, path) = start_v1(dir.path());
    let v1 = std::fs::read(&path).unwrap();
    hotswap_tests::deploy_atomic(&guests::example_version("v2"), &path);
    wait_for_generation(&server, 2).await;
    hotswap_tests::deploy_atomic(&v1, &path);
    let reply = wait_for_generation(&server, 3).await;
    assert!(reply.text().contains("version v1"));
    server.expect_log("reused from memory", LOG_WAIT).await;
}

/// A project whose "build" is a shell script: it records each run's start and end in
/// `runs.log`, sleeps `sleep` seconds (30 if a file named `slow` exists), then copies
/// `app.src.wasm` to `out/app.wasm`.
fn scripted_build(dir: &Path, sleep: &str, timeout: &str) {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("src/main.rs"), "// source\n").unwrap();
    std::fs::copy(GUEST_EXAMPLE, dir.join("app.src.wasm")).unwrap();
    let cmd = format!(
        "echo start >> runs.log; if [ -e slow ]; then sleep 30; fi; sleep {sleep}; \
         mkdir -p out; cp app.src.wasm out/app.wasm; echo end >> runs.log"
    );
    std::fs::write(
        dir.join("hotswap.toml"),
        format!(
            "[component]\npath = \"out/app.wasm\"\n\n[build]\ncmd = \"{cmd}\"\nwatch = [\"src\"]\n\
             delay = \"50ms\"\ntimeout = \"{timeout}\"\n"
        ),
    )
    .unwrap();
}

fn runs(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("runs.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_during_a_build_queue_exactly_one_more_and_builds_never_overlap() {
    let dir = tempfile::tempdir().unwrap();
    scripted_build(dir.path(), "1", "1m");
    let server = Server::launch(&[], &[], Some(dir.path()));
    assert_eq!(get(server.addr, "/").await.unwrap().status, 200);
    assert_eq!(
        runs(dir.path()),
        ["start", "end"],
        "the startup build ran once"
    );

    // One save starts a build; five more saves while it runs queue exactly one more.
    std::fs::write(dir.path().join("src/main.rs"), "// edit 0\n").unwrap();
    let started = eventually(Duration::from_secs(10), || async {
        (runs(dir.path()).len() >= 3).then_some(())
    })
    .await;
    assert!(
        started.is_some(),
        "no build after a save; log:\n{}",
        server.log()
    );
    for i in 1..=5 {
        std::fs::write(dir.path().join("src/main.rs"), format!("// edit {i}\n")).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let done = eventually(Duration::from_secs(20), || async {
        (runs(dir.path()).len() >= 6).then_some(())
    })
    .await;
    assert!(
        done.is_some(),
        "queued build never ran; runs: {:?}",
        runs(dir.path())
    );
    // Quiet for longer than a build: nothing else runs.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        runs(dir.path()),
        ["start", "end", "start", "end", "start", "end"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_build_is_stopped_and_the_last_generation_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    scripted_build(dir.path(), "0", "1s");
    let server = Server::launch(&[], &[], Some(dir.path()));
    assert_eq!(get(server.addr, "/").await.unwrap().generation(), Some(1));

    // From now on the build hangs for 30 s, far past its 1 s timeout.
    std::fs::write(dir.path().join("slow"), "").unwrap();
    std::fs::write(dir.path().join("src/main.rs"), "// edit\n").unwrap();
    server
        .expect_log("build did not finish within", Duration::from_secs(20))
        .await;
    assert_eq!(get(server.addr, "/").await.unwrap().generation(), Some(1));
    // The whole build was killed: the script never reaches its end.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(runs(dir.path()), ["start", "end", "start"]);

    // The next save builds again (quickly this time) and is served as usual.
    std::fs::remove_file(dir.path().join("slow")).unwrap();
    std::fs::write(
        dir.path().join("app.src.wasm"),
        guests::example_version("v2"),
    )
    .unwrap();
    std::fs::write(dir.path().join("src/main.rs"), "// edit again\n").unwrap();
    let reply = wait_for_generation(&server, 2).await;
    assert!(reply.text().contains("version v2"), "{}", reply.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_tag_guest_output_with_its_request() {
    let server = Server::start(Path::new(guests::MISBEHAVE), &["--log-format", "json"]);
    assert_eq!(get(server.addr, "/stdio").await.unwrap().status, 200);
    server.expect_log("hello stderr", LOG_WAIT).await;
    let line = server
        .log()
        .lines()
        .find(|l| l.contains("hello stdout"))
        .map(str::to_string)
        .expect("guest stdout in the log");
    assert!(
        line.starts_with('{') && line.ends_with('}'),
        "not a JSON object: {line}"
    );
    for field in [
        "\"generation\":1",
        "\"stream\":\"stdout\"",
        "\"request_id\":1",
        "\"path\":\"/stdio\"",
        "\"method\":\"GET\"",
    ] {
        assert!(line.contains(field), "{field} missing from {line}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn prod_mode_requires_the_component_logs_json_and_ignores_builds() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.wasm");
    let out = run_to_exit(
        &[
            "serve",
            missing.to_str().unwrap(),
            "--addr",
            "127.0.0.1:0",
            "--mode",
            "prod",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "prod implies --require-component: {}",
        out.stderr
    );
    assert!(out.stderr.contains("does not exist"), "{}", out.stderr);

    // A build command is not run in prod mode (the log says so), and logs are JSON lines.
    let marker = dir.path().join("built");
    let cmd = format!("touch {}", marker.display());
    let server = Server::start(
        Path::new(GUEST_EXAMPLE),
        &["--mode", "prod", "--build-cmd", &cmd],
    );
    assert_eq!(get(server.addr, "/").await.unwrap().status, 200);
    server
        .expect_log("builds are off in prod mode", LOG_WAIT)
        .await;
    assert!(!marker.exists(), "the build command ran in prod mode");
    let log = server.log();
    assert!(
        !log.is_empty() && log.lines().all(|l| l.starts_with('{') && l.ends_with('}')),
        "{log}"
    );
}
