//! Tests of the vendored wasmtime crates (vendor/README.md), run from here: a crate outside the
//! workspace cannot run its own tests. Each shows the behaviour a vendored change must keep.

use wasm_encoder::{
    CodeSection, ConstExpr, ElementSection, Elements, ExportKind, ExportSection, Function,
    FunctionSection, Instruction, Module, RefType, TableSection, TableType, TypeSection, ValType,
};
use wasmtime::{Engine, Instance, Store};
use wasmtime_environ::{
    CompiledFunctionsTableBuilder, DefinedFuncIndex, FilePos, FuncKey, FunctionLoc,
    StaticModuleIndex,
};

fn func(m: u32, f: u32) -> FuncKey {
    FuncKey::DefinedWasmFunction(
        StaticModuleIndex::from_u32(m),
        DefinedFuncIndex::from_u32(f),
    )
}

fn trampoline(m: u32, f: u32) -> FuncKey {
    FuncKey::ArrayToWasmTrampoline(
        StaticModuleIndex::from_u32(m),
        DefinedFuncIndex::from_u32(f),
    )
}

/// hotswap's wasmtime-environ finds a function's code through lookup tables built on first
/// use instead of binary searches (vendor/README.md): every key finds its own code, in
/// dense and sparse namespaces, with gaps, and through the fallback search of a namespace
/// too sparse for a table; a key that is not there finds nothing.
#[test]
fn the_vendored_function_table_finds_each_function_and_nothing_else() {
    let present = [
        func(0, 0),
        func(0, 1),
        func(0, 2),
        func(0, 5),
        func(1, 0),
        func(1, 3),
        trampoline(0, 1),
        trampoline(0, 2),
        trampoline(0, 5),
        // A namespace wider than 4 times its entries: the binary search.
        trampoline(1, 0),
        trampoline(1, 1000),
    ];
    let mut builder = CompiledFunctionsTableBuilder::new();
    for (i, key) in present.iter().enumerate() {
        let loc = FunctionLoc {
            start: 10 * i as u32,
            length: 10,
        };
        builder.push_func(*key, loc, FilePos::none());
    }
    let table = builder.finish();
    for (i, key) in present.iter().enumerate() {
        assert_eq!(
            table.func_loc(*key).map(|l| l.start),
            Some(10 * i as u32),
            "{key:?}"
        );
    }
    let absent = [
        func(0, 3),
        func(0, 4),
        func(0, 6),
        func(1, 1),
        func(2, 0),
        trampoline(0, 0),
        trampoline(0, 3),
        trampoline(0, 6),
        trampoline(1, 500),
        trampoline(1, 1001),
        trampoline(2, 0),
    ];
    for key in absent {
        assert!(table.func_loc(key).is_none(), "{key:?} found");
    }
}

/// What function `i` of [`indirect_module`] returns.
fn answer(i: u32) -> i32 {
    (i * 7 + 3) as i32
}

/// A module of `n` functions, function `i` returning [`answer`]`(i)`, all in a funcref table,
/// and `call(i)`, which calls table entry `i` indirectly; function 17 is also exported.
fn indirect_module(n: u32) -> Vec<u8> {
    let mut types = TypeSection::new();
    types.ty().function([], [ValType::I32]);
    types.ty().function([ValType::I32], [ValType::I32]);
    let mut functions = FunctionSection::new();
    (0..n).for_each(|_| {
        functions.function(0);
    });
    functions.function(1);
    let mut tables = TableSection::new();
    tables.table(TableType {
        element_type: RefType::FUNCREF,
        minimum: u64::from(n),
        maximum: None,
        table64: false,
        shared: false,
    });
    let mut exports = ExportSection::new();
    exports.export("call", ExportKind::Func, n);
    exports.export("f17", ExportKind::Func, 17);
    let mut elements = ElementSection::new();
    let indices: Vec<u32> = (0..n).collect();
    elements.active(
        Some(0),
        &ConstExpr::i32_const(0),
        Elements::Functions(indices.into()),
    );
    let mut code = CodeSection::new();
    for i in 0..n {
        let mut f = Function::new([]);
        f.instruction(&Instruction::I32Const(answer(i)));
        f.instruction(&Instruction::End);
        code.function(&f);
    }
    let mut call = Function::new([]);
    call.instruction(&Instruction::LocalGet(0));
    call.instruction(&Instruction::CallIndirect {
        type_index: 0,
        table_index: 0,
    });
    call.instruction(&Instruction::End);
    code.function(&call);
    let mut module = Module::new();
    module
        .section(&types)
        .section(&functions)
        .section(&tables)
        .section(&exports)
        .section(&elements)
        .section(&code);
    module.finish()
}

/// hotswap's wasmtime makes a function reference from a per-module table of code offsets and
/// a per-instance text address (vendor/README.md): every entry of a lazily initialised funcref
/// table, called indirectly, runs its own function, in several instances of one store and in
/// another store; an exported function does too.
#[test]
fn the_vendored_function_references_call_their_own_functions() {
    const N: u32 = 300;
    let engine = Engine::default();
    let module = wasmtime::Module::new(&engine, indirect_module(N)).unwrap();
    // Out of order, and each entry twice (the second time from the initialised table).
    let check = |store: &mut Store<()>, instance: Instance| {
        let call = instance
            .get_typed_func::<i32, i32>(&mut *store, "call")
            .unwrap();
        for i in (0..N).rev().chain(0..N) {
            assert_eq!(
                call.call(&mut *store, i as i32).unwrap(),
                answer(i),
                "entry {i}"
            );
        }
        let f17 = instance
            .get_typed_func::<(), i32>(&mut *store, "f17")
            .unwrap();
        assert_eq!(f17.call(&mut *store, ()).unwrap(), answer(17));
    };
    let mut first = Store::new(&engine, ());
    let mut second = Store::new(&engine, ());
    let one = Instance::new(&mut first, &module, &[]).unwrap();
    let two = Instance::new(&mut first, &module, &[]).unwrap();
    let three = Instance::new(&mut second, &module, &[]).unwrap();
    check(&mut first, one);
    check(&mut first, two);
    check(&mut second, three);
}
