//! Watching that survives real volumes: a Kubernetes ConfigMap, Secret or projected volume
//! publishes `app.wasm -> ..data/app.wasm` with `..data -> ..TIMESTAMP`, and updates by swapping
//! the `..data` link; a directory may be deleted and made again. Each new version is served.

use hotswap_tests::guests;
use hotswap_tests::{Server, eventually, get};
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

/// How long a new version may take to serve.
const WAIT: Duration = Duration::from_secs(5);

/// Publishes `bytes` as the volume's `app.wasm` the way the kubelet's atomic writer does: a new
/// timestamped directory, a `..data_tmp` link to it renamed over `..data`, the old directory
/// removed.
fn publish(volume: &Path, version: u32, bytes: &[u8]) {
    let data = format!("..2026_12_07_00_00_0{version}.000000000");
    std::fs::create_dir(volume.join(&data)).unwrap();
    std::fs::write(volume.join(&data).join("app.wasm"), bytes).unwrap();
    let old = std::fs::read_link(volume.join("..data")).ok();
    symlink(&data, volume.join("..data_tmp")).unwrap();
    std::fs::rename(volume.join("..data_tmp"), volume.join("..data")).unwrap();
    if !volume.join("app.wasm").exists() {
        symlink("..data/app.wasm", volume.join("app.wasm")).unwrap();
    }
    if let Some(old) = old {
        std::fs::remove_dir_all(volume.join(old)).unwrap();
    }
}

async fn serves(server: &Server, version: &str) -> bool {
    eventually(WAIT, || async {
        get(server.addr, "/")
            .await
            .ok()
            .filter(|r| r.text().contains(&format!("version {version}")))
    })
    .await
    .is_some()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_version_published_by_swapping_the_data_link_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let volume = dir.path().join("volume");
    std::fs::create_dir(&volume).unwrap();
    publish(&volume, 1, &guests::example_version("v1"));
    let server = Server::start(&volume.join("app.wasm"), &["--debounce", "50ms"]);
    assert!(serves(&server, "v1").await);

    publish(&volume, 2, &guests::example_version("v2"));
    assert!(
        serves(&server, "v2").await,
        "v2, published by a `..data` swap, was not served within {WAIT:?}; log:\n{}",
        server.log()
    );
    // And again: the watch follows the new target of the link.
    publish(&volume, 3, &guests::example_version("v3"));
    assert!(
        serves(&server, "v3").await,
        "v3 was not served within {WAIT:?}; log:\n{}",
        server.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watched_directory_deleted_and_made_again_is_watched_again() {
    let dir = tempfile::tempdir().unwrap();
    let app_dir = dir.path().join("app");
    std::fs::create_dir(&app_dir).unwrap();
    std::fs::write(app_dir.join("app.wasm"), guests::example_version("v1")).unwrap();
    let server = Server::start(&app_dir.join("app.wasm"), &["--debounce", "50ms"]);
    assert!(serves(&server, "v1").await);

    std::fs::remove_dir_all(&app_dir).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::create_dir(&app_dir).unwrap();
    let tmp = app_dir.join(".app.wasm.tmp");
    std::fs::write(&tmp, guests::example_version("v2")).unwrap();
    std::fs::rename(&tmp, app_dir.join("app.wasm")).unwrap();
    assert!(
        serves(&server, "v2").await,
        "v2 in the re-made directory was not served within {WAIT:?}; log:\n{}",
        server.log()
    );
}
