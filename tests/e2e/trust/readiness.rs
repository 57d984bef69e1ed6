//! Readiness fits a fleet: `/readyz` is about the routes the host was started with. An app
//! dropped into `--apps` later that cannot load answers 503 on its own prefix and shows in
//! `/status`, but does not take the host (and every other app on it) out of its Service.

use super::admin_get;
use hotswap_tests::guests;
use hotswap_tests::{Server, eventually, get};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_app_dropped_in_later_does_not_make_the_host_unready() {
    let dir = tempfile::tempdir().unwrap();
    let apps = dir.path().join("apps");
    std::fs::create_dir(&apps).unwrap();
    std::fs::write(apps.join("a.wasm"), guests::bytes(guests::GUEST_EXAMPLE)).unwrap();
    let server = Server::launch(
        &[
            "--apps",
            apps.to_str().unwrap(),
            "--admin-addr",
            "127.0.0.1:0",
        ],
        &[],
        None,
    );
    let admin = server.admin.unwrap();
    assert_eq!(admin_get(admin, "/readyz").await.status, 200);

    let tmp = apps.join(".bad.wasm.tmp");
    std::fs::write(&tmp, b"this is not a component").unwrap();
    std::fs::rename(&tmp, apps.join("bad.wasm")).unwrap();
    let refused = eventually(Duration::from_secs(15), || async {
        get(server.addr, "/bad")
            .await
            .ok()
            .filter(|r| r.status == 503)
    })
    .await
    .unwrap_or_else(|| panic!("/bad never answered 503; log:\n{}", server.log()));
    assert!(
        refused.text().contains("not a WebAssembly file"),
        "{}",
        refused.text()
    );
    let status = admin_get(admin, "/status").await.text();
    assert!(
        status.contains("\"bad\"") && status.contains("not a WebAssembly file"),
        "/status shows the app and why it does not serve: {status}"
    );
    let ready = admin_get(admin, "/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    // The other app serves on (guest-example answers its own 404 for `/a`).
    let other = get(server.addr, "/a").await.unwrap();
    assert_eq!(other.generation(), Some(1), "{}", other.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_present_at_startup_that_cannot_load_keeps_the_host_unready() {
    let dir = tempfile::tempdir().unwrap();
    let apps = dir.path().join("apps");
    std::fs::create_dir(&apps).unwrap();
    std::fs::write(apps.join("a.wasm"), guests::bytes(guests::GUEST_EXAMPLE)).unwrap();
    std::fs::write(apps.join("bad.wasm"), b"this is not a component").unwrap();
    let server = Server::launch(
        &[
            "--apps",
            apps.to_str().unwrap(),
            "--admin-addr",
            "127.0.0.1:0",
        ],
        &[],
        None,
    );
    let ready = admin_get(server.admin.unwrap(), "/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert!(ready.text().contains("bad"), "{}", ready.text());
}
