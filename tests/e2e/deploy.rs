//! The Kubernetes manifests in `deploy/`: rendered with kustomize and validated offline against
//! the Kubernetes schemas and the host's rules (`tests/deploy/validate.sh`), and the ConfigMap's
//! `hotswap.toml` accepted by the host's own configuration parser.

use hotswap::cli::{Cli, Command};
use hotswap::config::{ComponentOrigin, Config};
use hotswap_tests::guests::ROOT;
use std::path::Path;

/// The block scalar under `hotswap.toml: |` in the ConfigMap, unindented.
fn configmap_toml() -> String {
    let path = Path::new(ROOT).join("deploy/kubernetes/configmap.yaml");
    let yaml = std::fs::read_to_string(&path).unwrap();
    let mut lines = yaml
        .lines()
        .skip_while(|l| l.trim() != "hotswap.toml: |")
        .skip(1);
    let first = lines.next().expect("a line after `hotswap.toml: |`");
    let indent = first.len() - first.trim_start().len();
    let mut text = format!("{}\n", &first[indent..]);
    for line in lines {
        if !line.trim().is_empty() && line.len() - line.trim_start().len() < indent {
            break;
        }
        text.push_str(line.get(indent..).unwrap_or(""));
        text.push('\n');
    }
    text
}

#[test]
fn the_configmap_holds_a_hotswap_toml_the_host_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hotswap.toml");
    std::fs::write(&file, configmap_toml()).unwrap();
    let cli = <Cli as clap::Parser>::try_parse_from([
        "hotswap",
        "serve",
        "--config",
        file.to_str().unwrap(),
    ])
    .unwrap();
    let Some(Command::Serve(args)) = cli.command else {
        panic!("not `serve`")
    };
    let config = Config::from_args(*args).unwrap_or_else(|e| panic!("{e:#}"));
    let [route] = config.routes.as_slice() else {
        panic!("one component: {:?}", config.routes)
    };
    assert!(
        matches!(route.origin, ComponentOrigin::Registry(_)),
        "the Deployment follows a registry tag: {:?}",
        route.origin
    );
    assert!(config.require_component, "prod mode");
    assert!(config.admin.is_some(), "probes need the admin listener");
}

#[test]
fn the_manifests_render_and_validate_offline() {
    let out = std::process::Command::new(Path::new(ROOT).join("tests/deploy/validate.sh"))
        .current_dir(ROOT)
        .output()
        .expect("run tests/deploy/validate.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("checks passed"), "{stdout}\n{stderr}");
}
