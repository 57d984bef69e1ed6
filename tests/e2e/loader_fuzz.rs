//! The loader against hostile bytes: random strings, strings that start like a component or a
//! core module, and every kind of truncation of a real component. Each must come back as a
//! `LoadError`, never a panic (and a truncation only succeeds when it is itself a complete
//! component). Drives the host's library API directly, in this process.

use clap::Parser as _;
use hotswap::cli::{Cli, Command};
use hotswap::component::load::{self as loader, LoadError};
use hotswap::config::Config;
use hotswap::engine::Runtime;
use hotswap::kind::Tier;
use hotswap_tests::guests::{self, GUEST_EXAMPLE};
use proptest::collection::vec;
use proptest::prelude::*;
use std::sync::LazyLock;

/// One runtime for every case, configured as `hotswap serve` would be (smallest pool).
static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join("hotswap-loader-fuzz.wasm");
    let path = dir.to_str().expect("utf-8 temp dir");
    let cli = Cli::try_parse_from([
        "hotswap",
        "serve",
        path,
        "--max-concurrency",
        "1",
        "--no-cache",
    ])
    .expect("valid command line");
    let Some(Command::Serve(args)) = cli.command else {
        panic!("not `serve`")
    };
    let config = Config::from_args(*args).expect("valid configuration");
    Runtime::new(&config, Default::default()).expect("runtime")
});

/// Compiles `bytes` with both compilers: neither may panic, and they must agree on whether
/// the bytes are a component.
fn compile(bytes: &[u8]) -> Result<(), LoadError> {
    let sha = hotswap::digest::sha256(bytes);
    let optimized = loader::compile(&RUNTIME, bytes, &sha, None, Tier::Optimized).map(drop);
    let fast = loader::compile(&RUNTIME, bytes, &sha, None, Tier::Fast).map(drop);
    assert_eq!(
        optimized.is_ok(),
        fast.is_ok(),
        "Cranelift: {optimized:?}, Winch: {fast:?}"
    );
    optimized
}

const COMPONENT_HEADER: &[u8] = b"\0asm\x0d\0\x01\0";
const CORE_HEADER: &[u8] = b"\0asm\x01\0\0\0";

/// Sections that look plausible: a known section id, a correct length, random contents.
fn sections() -> impl Strategy<Value = Vec<u8>> {
    vec((0u8..=12, vec(any::<u8>(), 0..64)), 0..8).prop_map(|sections| {
        let mut out = COMPONENT_HEADER.to_vec();
        for (id, body) in sections {
            out.push(id);
            out.push(body.len() as u8); // < 128: a one-byte LEB128
            out.extend_from_slice(&body);
        }
        out
    })
}

fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..1024),
        vec(any::<u8>(), 0..1024).prop_map(|tail| [COMPONENT_HEADER, &tail].concat()),
        vec(any::<u8>(), 0..1024).prop_map(|tail| [CORE_HEADER, &tail].concat()),
        sections(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 5000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_bytes_are_refused_without_a_panic(bytes in hostile_bytes()) {
        let result = compile(&bytes);
        prop_assert!(result.is_err(), "{} random bytes were accepted as a component", bytes.len());
    }
}

/// Where each top-level section of `bytes` ends, and whether it is a custom section.
fn top_level_section_ends(bytes: &[u8]) -> Vec<(usize, bool)> {
    use wasmparser::{Parser, Payload};
    let mut depth = 0usize;
    let mut ends = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.expect("guest-example parses");
        match payload {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth -= 1,
            _ if depth == 1 => {
                if let Some((_, range)) = payload.as_section() {
                    ends.push((range.end, matches!(payload, Payload::CustomSection(_))));
                }
            }
            _ => {}
        }
    }
    ends
}

#[test]
fn truncated_components_are_refused_without_a_panic() {
    let bytes = guests::bytes(GUEST_EXAMPLE);
    assert!(compile(&bytes).is_ok(), "the whole component loads");

    let ends = top_level_section_ends(&bytes);
    assert_eq!(
        ends.last().map(|e| e.0),
        Some(bytes.len()),
        "sections cover the file"
    );
    // Every prefix shorter than this lacks a non-custom section and so is not guest-example;
    // at or past it, only trailing custom sections are missing.
    let complete = ends
        .iter()
        .filter(|(_, custom)| !custom)
        .map(|(end, _)| *end)
        .max()
        .unwrap();
    let boundaries: std::collections::BTreeSet<usize> = ends.iter().map(|(end, _)| *end).collect();

    // Every section boundary and its neighbours, plus 1500 lengths spread over the file.
    let mut lengths: std::collections::BTreeSet<usize> = (0..16).collect();
    for &end in &boundaries {
        lengths.extend([end.saturating_sub(1), end, end + 1]);
    }
    lengths.extend((0..1500).map(|i| i * bytes.len() / 1500));
    lengths.retain(|&len| len < bytes.len());

    let mut accepted = Vec::new();
    let started = std::time::Instant::now();
    for &len in &lengths {
        let result = compile(&bytes[..len]);
        if len < complete {
            assert!(
                result.is_err(),
                "a {len}-byte prefix (of {}) was accepted",
                bytes.len()
            );
        } else if result.is_ok() {
            assert!(
                boundaries.contains(&len),
                "a {len}-byte prefix cut inside a trailing custom section was accepted"
            );
            accepted.push(len);
        }
    }
    // Prefixes ending on a section boundary are complete components in their own right (all
    // but the last few lack the handler export), so they are compiled in full: most of the time.
    eprintln!(
        "{} prefixes of {} bytes tried in {:?}; {} top-level sections, the non-custom ones end at \
         {complete}; accepted: {accepted:?}",
        lengths.len(),
        bytes.len(),
        started.elapsed(),
        ends.len()
    );
    // Prefixes that only drop trailing custom sections are complete components.
    for &len in boundaries.range(complete..bytes.len()) {
        assert!(
            accepted.contains(&len),
            "the {len}-byte prefix ending on a section boundary was refused"
        );
    }
}
