//! The compile cache checks what it loads: an entry copied under another component's key is a
//! miss (the component is compiled afresh), and a cache directory that others can write is not
//! used at all. Whoever can write that directory could otherwise run native code as the host.

use hotswap_tests::guests;
use hotswap_tests::{Server, get};
use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn entries(cache: &Path) -> HashSet<PathBuf> {
    std::fs::read_dir(cache)
        .map(|dir| {
            dir.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
                .collect()
        })
        .unwrap_or_default()
}

fn serve(app: &Path, cache: &Path) -> Server {
    Server::start(
        app,
        &[
            "--cache-dir",
            cache.to_str().unwrap(),
            "--tier",
            "optimized",
            "--incremental-cache-size",
            "0",
        ],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_entry_copied_under_another_components_key_is_not_served_as_that_component() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let app = dir.path().join("app.wasm");

    std::fs::write(&app, guests::example_version("v1")).unwrap();
    drop(serve(&app, &cache));
    let v1_entry = entries(&cache);
    assert_eq!(v1_entry.len(), 1, "{v1_entry:?}");

    std::fs::write(&app, guests::example_version("v2")).unwrap();
    drop(serve(&app, &cache));
    let all = entries(&cache);
    let v2_entry: Vec<&PathBuf> = all.difference(&v1_entry).collect();
    assert_eq!(v2_entry.len(), 1, "{all:?}");

    // Someone copies v1's compiled code under v2's key.
    let v1_path = v1_entry.iter().next().unwrap();
    std::fs::copy(v1_path, v2_entry[0]).unwrap();
    let server = serve(&app, &cache);
    let reply = get(server.addr, "/").await.unwrap();
    assert!(
        reply.text().contains("version v2"),
        "v1's code answered for v2: {}",
        reply.text()
    );
    assert!(
        !server.log().contains("cache hit"),
        "the copied entry was taken for a hit: {}",
        server.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cache_directory_others_can_write_is_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let app = dir.path().join("app.wasm");
    std::fs::write(&app, guests::bytes(guests::GUEST_EXAMPLE)).unwrap();
    let server = serve(&app, &cache);
    assert_eq!(get(server.addr, "/").await.unwrap().status, 200);
    let warning = server
        .log()
        .lines()
        .find(|l| l.contains("compile cache disabled"))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no warning; log:\n{}", server.log()));
    assert!(
        warning.contains(cache.to_str().unwrap()) && warning.contains("writable by others"),
        "the warning names the directory and why: {warning}"
    );
    assert!(entries(&cache).is_empty(), "the cache was written");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_cache_directory_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("deeper/cache");
    let app = dir.path().join("app.wasm");
    std::fs::write(&app, guests::bytes(guests::GUEST_EXAMPLE)).unwrap();
    drop(Server::start(
        &app,
        &["--cache-dir", cache.to_str().unwrap()],
    ));
    for made in [cache.clone(), cache.join("incremental")] {
        let mode = std::fs::metadata(&made)
            .unwrap_or_else(|e| panic!("{}: {e}", made.display()))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "{}", made.display());
    }
}
