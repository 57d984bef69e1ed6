//! `wasi:config`: values from the file and flags, changed without a restart or a new
//! component, never logged.

use super::*;

// ----- wasi:config ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn config_values_come_from_the_file_and_flags_a_missing_key_is_none_and_none_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = configured(
        dir.path(),
        &format!("greeting = \"hello\"\nport = 8080\napi_token = \"{SECRET}\"\n"),
        &["--config-var", "port=9090", "--config-var", "region=eu"],
    );
    assert_eq!(
        call(server.addr, "/config?key=greeting").await,
        (200, "hello".into())
    );
    // A flag wins over the file; numbers arrive as text.
    assert_eq!(
        call(server.addr, "/config?key=port").await,
        (200, "9090".into())
    );
    assert_eq!(
        call(server.addr, "/config?key=region").await,
        (200, "eu".into())
    );
    // A missing key is `none`, not a trap.
    assert_eq!(
        call(server.addr, "/config?key=nope").await,
        (404, "none".into())
    );
    assert_eq!(
        call(server.addr, "/config-all").await,
        (
            200,
            format!("api_token={SECRET}\ngreeting=hello\nport=9090\nregion=eu\n")
        )
    );
    assert!(!server.log().contains(SECRET), "{}", server.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_saved_config_change_reaches_the_same_generation_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let values = format!("greeting = \"hello\"\napi_token = \"{SECRET}\"\n");
    let (server, toml) = configured(dir.path(), &values, &[]);
    let first = get(server.addr, "/config?key=greeting").await.unwrap();
    assert_eq!(
        (first.text().as_str(), first.generation()),
        ("hello", Some(1))
    );

    write_config(
        &toml,
        &format!("greeting = \"bonjour\"\napi_token = \"{SECRET}-2\"\nadded = \"yes\"\n"),
    );
    wait_for_body(&server, "/config?key=greeting", "bonjour").await;
    let reply = get(server.addr, "/config?key=added").await.unwrap();
    assert_eq!(reply.text(), "yes");
    assert_eq!(reply.generation(), Some(1), "no new component was loaded");
    server
        .expect_log(
            "reloaded config values (added: added; changed: api_token, greeting)",
            WAIT,
        )
        .await;

    // A broken file keeps the values that serve, and says why.
    std::fs::write(&toml, "[component\npath = ").unwrap();
    server.expect_log("config values not reloaded", WAIT).await;
    assert_eq!(
        call(server.addr, "/config?key=greeting").await,
        (200, "bonjour".into())
    );
    assert!(!server.log().contains(SECRET), "{}", server.log());
    let text = metrics(&server).await;
    for series in [
        "hotswap_config_reloads_total{result=\"changed\"} 1",
        "hotswap_config_reloads_total{result=\"failed\"}",
    ] {
        assert!(text.contains(series), "{series} missing:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn in_prod_mode_config_changes_wait_for_sighup_or_a_reload_call() {
    let dir = tempfile::tempdir().unwrap();
    let (server, toml) = configured(dir.path(), "greeting = \"one\"\n", &["--mode", "prod"]);
    assert_eq!(call(server.addr, "/config?key=greeting").await.1, "one");

    write_config(&toml, "greeting = \"two\"\n");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        call(server.addr, "/config?key=greeting").await.1,
        "one",
        "prod mode does not watch the file"
    );
    server.signal(libc::SIGHUP);
    wait_for_body(&server, "/config?key=greeting", "two").await;

    write_config(&toml, "greeting = \"three\"\n");
    let (status, report) = admin_post(&server, "/reload").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(call(server.addr, "/config?key=greeting").await.1, "three");
    let reply = get(server.addr, "/config?key=greeting").await.unwrap();
    assert_eq!(reply.generation(), Some(1));
    assert_eq!(
        server.log_count("reloaded config values (changed: greeting)"),
        2,
        "{}",
        server.log()
    );
}
