//! The admin listener: health, status, rollback, upload, the token, and metrics.

use hotswap_tests::guests;
use hotswap_tests::waits::{SWAP_WAIT, wait_for_generation};
use hotswap_tests::{Client, Reply, Server, deploy_atomic, eventually, get, with_custom_section};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

const TOKEN: &str = "s3cret-token";

/// A server watching `dir/app.wasm` (guest-example v1) with the admin API on, token `TOKEN`.
fn start_with_admin(dir: &Path) -> (Server, PathBuf, SocketAddr) {
    let path = dir.join("app.wasm");
    std::fs::write(&path, guests::example_version("v1")).unwrap();
    let server = Server::start_with_env(
        &path,
        &[
            "--debounce",
            "50ms",
            "--admin-addr",
            "127.0.0.1:0",
            "--no-cache",
        ],
        &[("HOTSWAP_ADMIN_TOKEN", TOKEN)],
    );
    let admin = server.admin.expect("admin address printed at startup");
    (server, path, admin)
}

async fn admin_call(
    admin: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> Reply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    Client::connect(admin)
        .await
        .unwrap()
        .send_with(method, path, &headers, body)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn health_readiness_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _path, admin) = start_with_admin(dir.path());
    assert_eq!(get(admin, "/healthz").await.unwrap().status, 200);
    assert_eq!(get(admin, "/readyz").await.unwrap().status, 200);
    let status = get(admin, "/status").await.unwrap();
    assert_eq!(status.status, 200);
    let text = status.text();
    assert!(text.contains("\"generation\": 1"), "{text}");
    assert!(text.contains("\"in_flight\""), "{text}");
    assert!(
        text.contains(&dir.path().join("app.wasm").display().to_string()),
        "{text}"
    );
    drop(server);

    // Not ready without a component.
    let empty = tempfile::tempdir().unwrap();
    let server = Server::start(
        &empty.path().join("none.wasm"),
        &["--admin-addr", "127.0.0.1:0"],
    );
    let admin = server.admin.unwrap();
    assert_eq!(get(admin, "/readyz").await.unwrap().status, 503);
    assert_eq!(get(admin, "/healthz").await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn rollback_upload_and_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let (server, path, admin) = start_with_admin(dir.path());
    deploy_atomic(&guests::example_version("v2"), &path);
    wait_for_generation(&server, 2).await;

    // Mutating calls without the token, or with a wrong one, are refused.
    for token in [None, Some("wrong")] {
        for (method, route) in [
            ("POST", "/rollback"),
            ("POST", "/reload"),
            ("PUT", "/component"),
        ] {
            let reply = admin_call(admin, method, route, token, b"x".to_vec()).await;
            assert_eq!(reply.status, 401, "{method} {route} with {token:?}");
        }
    }
    assert_eq!(get(server.addr, "/").await.unwrap().generation(), Some(2));

    // Rollback restores the previous generation's responses.
    let reply = admin_call(admin, "POST", "/rollback", Some(TOKEN), Vec::new()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let served = get(server.addr, "/").await.unwrap();
    assert!(served.text().contains("version v1"), "{}", served.text());
    assert_eq!(served.generation(), Some(1));
    // …and forward again by number.
    let reply = admin_call(
        admin,
        "POST",
        "/rollback?generation=2",
        Some(TOKEN),
        Vec::new(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        get(server.addr, "/")
            .await
            .unwrap()
            .text()
            .contains("version v2")
    );
    let reply = admin_call(
        admin,
        "POST",
        "/rollback?generation=99",
        Some(TOKEN),
        Vec::new(),
    )
    .await;
    assert_eq!(reply.status, 409, "{}", reply.text());

    // Upload: validated, swapped in, and written to the component path.
    let v3 = guests::example_version("v3");
    let reply = admin_call(admin, "PUT", "/component", Some(TOKEN), v3.clone()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.text().contains("\"loaded\""), "{}", reply.text());
    let served = get(server.addr, "/").await.unwrap();
    assert!(served.text().contains("version v3"), "{}", served.text());
    assert_eq!(std::fs::read(&path).unwrap(), v3, "the upload is persisted");

    // A bad upload is refused and changes nothing.
    let reply = admin_call(
        admin,
        "PUT",
        "/component",
        Some(TOKEN),
        b"not wasm".to_vec(),
    )
    .await;
    assert_eq!(reply.status, 422, "{}", reply.text());
    assert!(
        reply.text().contains("not a WebAssembly file"),
        "{}",
        reply.text()
    );
    assert!(
        get(server.addr, "/")
            .await
            .unwrap()
            .text()
            .contains("version v3")
    );
    assert_eq!(std::fs::read(&path).unwrap(), v3);

    // Reload with an unchanged file reports it.
    let reply = admin_call(admin, "POST", "/reload", Some(TOKEN), Vec::new()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.text().contains("\"unchanged\""), "{}", reply.text());
}

/// One deploy raises several file events; a late one, or the same file written again, must not
/// undo a rollback. Only new content in the file moves the server forward again.
#[tokio::test(flavor = "multi_thread")]
async fn a_rollback_holds_until_the_file_really_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (server, path, admin) = start_with_admin(dir.path());
    let v2 = guests::example_version("v2");
    deploy_atomic(&v2, &path);
    wait_for_generation(&server, 2).await;
    let reply = admin_call(admin, "POST", "/rollback", Some(TOKEN), Vec::new()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    let unchanged = "hotswap_reloads_total{route=\"index\",result=\"unchanged\"}";
    let count = |metrics: &HashMap<String, f64>| metrics.get(unchanged).copied().unwrap_or(0.0);
    let before = count(&scrape(admin).await.expect("GET /metrics failed"));
    deploy_atomic(&v2, &path);
    let seen = eventually(SWAP_WAIT, || async {
        (count(&scrape(admin).await?) > before).then_some(())
    })
    .await;
    assert!(
        seen.is_some(),
        "the rewrite was never handled; log:\n{}",
        server.log()
    );
    let served = get(server.addr, "/").await.unwrap();
    assert_eq!(served.generation(), Some(1), "log:\n{}", server.log());
    assert!(served.text().contains("version v1"), "{}", served.text());

    // An explicit reload loads the file again…
    let reply = admin_call(admin, "POST", "/reload", Some(TOKEN), Vec::new()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.text().contains("\"loaded\""), "{}", reply.text());
    let served = get(server.addr, "/").await.unwrap();
    assert_eq!(served.generation(), Some(3));
    assert!(served.text().contains("version v2"), "{}", served.text());

    // …and after another rollback, new content in the file is a deploy like any other.
    let reply = admin_call(admin, "POST", "/rollback", Some(TOKEN), Vec::new()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    deploy_atomic(&with_custom_section(&v2, "n", b"4"), &path);
    let served = wait_for_generation(&server, 4).await;
    assert!(served.text().contains("version v2"), "{}", served.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn mutating_calls_are_refused_when_no_token_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.wasm");
    std::fs::write(&path, guests::bytes(guests::GUEST_EXAMPLE)).unwrap();
    let server = Server::start(&path, &["--admin-addr", "127.0.0.1:0"]);
    let admin = server.admin.unwrap();
    let reply = admin_call(admin, "POST", "/reload", Some("anything"), Vec::new()).await;
    assert_eq!(reply.status, 403, "{}", reply.text());
}

/// The admin listener's metrics, parsed; `None` if the scrape itself failed.
async fn scrape(admin: SocketAddr) -> Option<HashMap<String, f64>> {
    Some(parse_metrics(&get(admin, "/metrics").await.ok()?.text()))
}

/// A scrape as `series → value`, failing on any malformed line.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    hotswap_tests::metrics::parse(text)
        .into_iter()
        .map(|s| (s.series, s.value))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_parse_and_move_with_traffic_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let (server, path, admin) = start_with_admin(dir.path());
    let ok_gen1 = "hotswap_requests_total{route=\"index\",status_class=\"2xx\",generation=\"1\"}";
    let loaded = "hotswap_reloads_total{route=\"index\",result=\"loaded\"}";

    let before = scrape(admin).await.expect("GET /metrics failed");
    assert_eq!(before.get(loaded), Some(&1.0), "{before:?}");
    assert_eq!(
        before.get("hotswap_generation{route=\"index\"}"),
        Some(&1.0)
    );
    let served_before = before.get(ok_gen1).copied().unwrap_or(0.0);
    for _ in 0..5 {
        assert_eq!(get(server.addr, "/").await.unwrap().status, 200);
    }
    let mid = scrape(admin).await.expect("GET /metrics failed");
    assert_eq!(
        mid.get(ok_gen1).copied().unwrap_or(0.0) - served_before,
        5.0,
        "{mid:?}"
    );

    deploy_atomic(&guests::example_version("v2"), &path);
    wait_for_generation(&server, 2).await;
    let after = scrape(admin).await.expect("GET /metrics failed");
    assert_eq!(after.get(loaded), Some(&2.0));
    assert_eq!(after.get("hotswap_generation{route=\"index\"}"), Some(&2.0));
    assert_eq!(
        after.get("hotswap_reload_duration_seconds_count{route=\"index\",phase=\"compile\"}"),
        Some(&2.0),
        "{after:?}"
    );
    assert!(
        after
            .keys()
            .any(|k| k.starts_with("hotswap_request_duration_seconds_count"))
    );

    // Request series follow the kept generations (3 by default), not every generation ever
    // deployed: after generations 3 and 4, generation 1's are gone and generation 2's stay.
    let v2 = guests::example_version("v2");
    for n in 3..=4u64 {
        deploy_atomic(&with_custom_section(&v2, "n", &[n as u8]), &path);
        wait_for_generation(&server, n).await;
    }
    let later = scrape(admin).await.expect("GET /metrics failed");
    let series_of = |generation: &str| -> Vec<String> {
        later
            .keys()
            .filter(|k| {
                k.starts_with("hotswap_requests_total")
                    && k.contains(&format!("generation=\"{generation}\""))
            })
            .cloned()
            .collect()
    };
    assert!(series_of("1").is_empty(), "{:?}", series_of("1"));
    assert!(!series_of("2").is_empty(), "{later:?}");
    assert!(!series_of("4").is_empty(), "{later:?}");
}
