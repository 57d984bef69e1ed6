//! Bad component files: each one is refused with a reason in the log, and the last good
//! generation keeps serving.

use hotswap_tests::guests::{self, OTHER_WORLD};
use hotswap_tests::start::start_v1;
use hotswap_tests::waits::wait_for_generation;
use hotswap_tests::{Server, deploy_atomic, deploy_in_place, get};
use std::time::Duration;

/// Deploys a bad file with `deploy`, waits for the reload failure naming `reason`, and checks
/// that generation `serving` still answers.
async fn refused(server: &Server, reason: &str, serving: u64, deploy: impl FnOnce()) {
    let before = server.log_count("reload failed");
    deploy();
    let logged = hotswap_tests::eventually(Duration::from_secs(30), || async {
        (server.log_count("reload failed") > before && server.log().contains(reason)).then_some(())
    })
    .await;
    assert!(
        logged.is_some(),
        "no reload failure naming {reason:?}; log:\n{}",
        server.log()
    );
    let reply = get(server.addr, "/").await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.generation(), Some(serving));
}

#[tokio::test(flavor = "multi_thread")]
async fn every_kind_of_bad_file_keeps_the_last_good_generation() {
    let dir = tempfile::tempdir().unwrap();
    let (server, path) = start_v1(dir.path());
    let good = std::fs::read(&path).unwrap();
    let p = path.as_path();

    refused(&server, "failed to compile the component", 1, || {
        deploy_atomic(&good[..good.len() / 2], p)
    })
    .await;
    let random: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_246_822_519) >> 13) as u8)
        .collect();
    refused(&server, "not a WebAssembly file", 1, || {
        deploy_in_place(&random, p)
    })
    .await;
    refused(&server, "the file is empty", 1, || deploy_in_place(b"", p)).await;
    refused(&server, "core WebAssembly module", 1, || {
        deploy_atomic(b"\0asm\x01\0\0\0", p)
    })
    .await;
    refused(
        &server,
        "exports no HTTP handler: neither `wasi:http/handler@0.3`",
        1,
        || deploy_atomic(&guests::bytes(OTHER_WORLD), p),
    )
    .await;
    // More core instances than a pool slot holds: refused when it loads, not at its Nth
    // concurrent request (a componentize-py guest, with 14, fits many times over).
    refused(
        &server,
        "101 core module instances, which exceeds",
        1,
        || deploy_atomic(&component_of_core_instances(101), p),
    )
    .await;
    refused(&server, "does not exist", 1, || {
        std::fs::remove_file(p).unwrap()
    })
    .await;
    refused(&server, "not a regular file", 1, || {
        std::fs::create_dir(p).unwrap()
    })
    .await;
    std::fs::remove_dir(p).unwrap();
    // Unreadable even for root (who ignores file modes): a symbolic link to itself.
    refused(&server, "cannot read the component file", 1, || {
        std::os::unix::fs::symlink("app.wasm", p).unwrap()
    })
    .await;
    std::fs::remove_file(p).unwrap();
    assert!(
        server.log().contains(&path.display().to_string()),
        "the log names the path"
    );

    // After all that, a good file is picked up again.
    deploy_atomic(&guests::example_version("v2"), &path);
    let reply = wait_for_generation(&server, 2).await;
    assert!(reply.text().contains("version v2"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_removed_right_after_a_deploy_is_reported_gone() {
    // A debouncer drops a creation and a removal that fall in one window as if neither happened;
    // the host must still notice the removal.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.wasm");
    std::fs::write(&path, guests::example_version("v1")).unwrap();
    let server = Server::start(&path, &["--debounce", "1s"]);
    // Let the window of the startup read's own events close, so that the deploy below opens a
    // fresh one with its creation.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let p = path.as_path();
    // The rename into place is acted on at once…
    refused(&server, "core WebAssembly module", 1, || {
        deploy_atomic(b"\0asm\x01\0\0\0", p)
    })
    .await;
    // …and so is the removal that follows while the rename's debounce window is still open.
    refused(&server, "does not exist", 1, || {
        std::fs::remove_file(p).unwrap()
    })
    .await;
}

/// A component that instantiates one empty core module `count` times.
fn component_of_core_instances(count: u32) -> Vec<u8> {
    use wasm_encoder::{Component, InstanceSection, Module, ModuleArg, ModuleSection};
    let mut instances = InstanceSection::new();
    for _ in 0..count {
        instances.instantiate(0, std::iter::empty::<(&str, ModuleArg)>());
    }
    let mut component = Component::new();
    component
        .section(&ModuleSection(&Module::new()))
        .section(&instances);
    component.finish()
}
