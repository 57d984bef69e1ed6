//! Signals from the first instant: a SIGHUP while a `--require-component` host compiles its
//! first component is queued, not fatal; a SIGTERM then exits cleanly.

use hotswap_tests::guests;
use hotswap_tests::{Server, get, push_section};
use std::path::Path;
use std::time::{Duration, Instant};

/// guest-example with an extra core module of `functions` functions that nothing instantiates:
/// it serves as guest-example, and its compile takes seconds.
fn slow_to_compile(functions: u32) -> Vec<u8> {
    use wasm_encoder::{CodeSection, Function, FunctionSection, Instruction, Module, TypeSection};
    let mut types = TypeSection::new();
    types
        .ty()
        .function([wasm_encoder::ValType::I32], [wasm_encoder::ValType::I32]);
    let mut declared = FunctionSection::new();
    let mut code = CodeSection::new();
    for i in 0..functions {
        declared.function(0);
        let mut body = Function::new([]);
        for k in 0..40 {
            body.instruction(&Instruction::LocalGet(0));
            body.instruction(&Instruction::I32Const((i * 7 + k) as i32));
            body.instruction(&Instruction::I32Mul);
            body.instruction(&Instruction::LocalSet(0));
        }
        body.instruction(&Instruction::LocalGet(0));
        body.instruction(&Instruction::End);
        code.function(&body);
    }
    let mut module = Module::new();
    module.section(&types).section(&declared).section(&code);
    let mut component = guests::bytes(guests::GUEST_EXAMPLE);
    // Section 1 of a component is a core module.
    push_section(&mut component, 1, &module.finish());
    component
}

fn start(app: &Path) -> hotswap_tests::Starting {
    Server::begin(
        &[
            app.to_str().unwrap(),
            "--require-component",
            "--tier",
            "optimized",
            "--no-cache",
        ],
        &[],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sighup_during_the_startup_compile_is_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app.wasm");
    std::fs::write(&app, slow_to_compile(20_000)).unwrap();
    let mut starting = start(&app);
    let started = Instant::now();
    // SIGHUPs through the first seconds of the startup, while it compiles.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..10 {
        if !starting.is_running() {
            break;
        }
        starting.signal(libc::SIGHUP);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        starting.is_running(),
        "a SIGHUP {:?} into the startup ended the host; log:\n{}",
        started.elapsed(),
        starting.log()
    );
    let server = starting.ready();
    let reply = get(server.addr, "/").await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.generation(), Some(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sigterm_during_the_startup_compile_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app.wasm");
    std::fs::write(&app, slow_to_compile(20_000)).unwrap();
    let mut starting = start(&app);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(starting.is_running(), "{}", starting.log());
    starting.signal(libc::SIGTERM);
    let status = starting
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("still running 10 s after SIGTERM; log:\n{}", starting.log()));
    assert_eq!(
        status.code(),
        Some(0),
        "{status:?}; log:\n{}",
        starting.log()
    );
    assert!(
        starting.log().contains("stopped during startup"),
        "{}",
        starting.log()
    );
}
