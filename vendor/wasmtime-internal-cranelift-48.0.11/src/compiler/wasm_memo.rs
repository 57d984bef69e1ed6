//! hotswap: a memo of compiled functions keyed by their wasm, in front of Cranelift's
//! incremental cache.
//!
//! Cranelift's incremental cache is keyed by a function's IR, so a hit still pays for the
//! translation of the wasm body to IR and for hashing that IR: for a JavaScript or Python guest
//! whose script changed (its engine's 10–20 k functions unchanged) that was about 70 % of the
//! recompile. This memo is keyed by what the translation reads instead: the function's body bytes,
//! its index, and a fingerprint of its module (every part of the module that translation looks
//! at, the compiler's settings and the target), so an unchanged function is found without being
//! translated. Its entry holds the incremental cache's own stencil for the function plus what the
//! translation produced beside it (the external names, where the source locations start relative
//! to the body, whether the function needs a GC heap); a hit is finished exactly as an
//! incremental cache hit is.
//!
//! Left out of the fingerprint, because translation never reads them: the bytes and placement of
//! data segments (`memory_initialization`, `runtime_data`) and the initial values of mutable
//! globals. The initial values of immutable globals are in it: translation folds them into code.
//!
//! The memo is used only for a module whose bytes lie in those of an open [`scope`], which the
//! embedder opens around a compilation, borrowing the bytes it compiles. A module's fingerprint
//! is remembered while that scope is open, by the scope, the compiler and the address of the
//! module's translation, and forgotten when it closes. The bytes cannot be freed while the scope
//! borrows them, so a translation remembered under a scope is one of those bytes: if two
//! compilations of the same bytes share an address in turn, they are translations of the same
//! module by the same compiler, whose fingerprints are the same. Scopes may be open at once (a
//! compile in the background beside another). Any other compilation is exactly upstream's. A
//! memo entry that does not decode is a miss.

use super::{Compiler, box_dyn_any_compiled_function};
use crate::CompiledFunction;
use cranelift_codegen::ir::{self, SourceLoc, UserExternalName};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::RwLock;
use wasmparser::FunctionBody;
use wasmtime_environ::{
    CompiledFunctionBody, DefinedFuncIndex, EngineOrModuleTypeIndex, FuncIndex, Inlining,
    ModuleTranslation, ModuleTypesBuilder,
};

/// Keys of memo entries start with these bytes (a key is the prefix and a SHA-256), so a store
/// shared with Cranelift's incremental cache (whose keys are 32 bytes) can tell them apart.
pub const KEY_PREFIX: &[u8; 4] = b"hswm";

/// Bumped whenever what goes into a key or an entry changes.
const DOMAIN: &[u8] = b"hotswap wasm memo 1";

/// The open scopes and the fingerprints remembered under them.
#[derive(Default)]
struct Scopes {
    next: u64,
    /// Each open scope: its number and the address range of the bytes it borrows.
    open: Vec<(u64, std::ops::Range<usize>)>,
    /// Module fingerprints by (scope, compiler, translation) address.
    fingerprints: HashMap<(u64, usize, usize), [u8; 32]>,
}

/// Read for every function compiled (in parallel), written when a scope opens or closes and
/// once per module.
static SCOPES: RwLock<Option<Scopes>> = RwLock::new(None);

/// An open memo scope; see [`scope`].
pub struct Scope<'a> {
    number: u64,
    _bytes: PhantomData<&'a [u8]>,
}

/// Opens a memo scope over `bytes`, the wasm a compilation inside it compiles (for example
/// the bytes given to `Component::new`): the memo is used for the modules in them until the
/// scope is dropped.
pub fn scope(bytes: &[u8]) -> Scope<'_> {
    let mut scopes = SCOPES.write().unwrap_or_else(|e| e.into_inner());
    let scopes = scopes.get_or_insert_with(Scopes::default);
    let number = scopes.next;
    scopes.next += 1;
    let start = bytes.as_ptr() as usize;
    scopes.open.push((number, start..start + bytes.len()));
    Scope {
        number,
        _bytes: PhantomData,
    }
}

impl Drop for Scope<'_> {
    fn drop(&mut self) {
        if let Some(scopes) = SCOPES.write().unwrap_or_else(|e| e.into_inner()).as_mut() {
            scopes.open.retain(|(number, _)| *number != self.number);
            scopes
                .fingerprints
                .retain(|(number, _, _), _| *number != self.number);
        }
    }
}

/// Whether `key` is the key of a memo entry (rather than of an incremental cache entry).
pub fn is_memo_key(key: &[u8]) -> bool {
    key.len() == KEY_PREFIX.len() + 32 && key.starts_with(KEY_PREFIX)
}

/// What a miss leaves for `finish_with_info` to store once the function is compiled.
pub(super) struct Pending {
    pub key: Vec<u8>,
    pub body_offset: usize,
    pub needs_gc_heap: bool,
}

fn feed_len(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

fn feed<T: serde::Serialize + ?Sized>(hasher: &mut Sha256, value: &T) -> Option<()> {
    let bytes = postcard::to_allocvec(value).ok()?;
    feed_len(hasher, &bytes);
    Some(())
}

fn feed_debug<T: core::fmt::Debug + ?Sized>(hasher: &mut Sha256, value: &T) {
    feed_len(hasher, format!("{value:?}").as_bytes());
}

impl Compiler {
    /// The memo key of a function, or `None` when the memo is not to be used for it (no scope
    /// open, no incremental cache, or settings under which translation reads more than the key
    /// holds: debugging, inlining, branch hints, CLIF output).
    pub(super) fn memo_key(
        &self,
        translation: &ModuleTranslation<'_>,
        types: &ModuleTypesBuilder,
        def_func_index: DefinedFuncIndex,
        func_index: FuncIndex,
        body: &FunctionBody<'_>,
    ) -> Option<Vec<u8>> {
        if self.cache_store.is_none()
            || self.clif_dir.is_some()
            || self.tunables.debug_native
            || self.tunables.debug_guest
            || self.tunables.inlining != Inlining::No
            || translation.branch_hints(func_index).is_some()
        {
            return None;
        }
        let (key, known) = {
            let scopes = SCOPES.read().unwrap_or_else(|e| e.into_inner());
            let scopes = scopes.as_ref()?;
            let wasm = translation.wasm.as_ptr_range();
            let (wasm_start, wasm_end) = (wasm.start as usize, wasm.end as usize);
            let (number, _) = scopes
                .open
                .iter()
                .find(|(_, range)| range.start <= wasm_start && wasm_end <= range.end)?;
            let key = (
                *number,
                self as *const Compiler as usize,
                translation as *const ModuleTranslation<'_> as usize,
            );
            (key, scopes.fingerprints.get(&key).copied())
        };
        let module = match known {
            Some(fingerprint) => fingerprint,
            None => {
                // Outside the lock; the first functions of a module may each compute it.
                let fingerprint = self.module_fingerprint(translation, types)?;
                // Only while the scope is still open (it is: this compile runs inside it).
                let mut scopes = SCOPES.write().unwrap_or_else(|e| e.into_inner());
                let scopes = scopes.as_mut()?;
                if !scopes.open.iter().any(|(number, _)| *number == key.0) {
                    return None;
                }
                scopes.fingerprints.insert(key, fingerprint);
                fingerprint
            }
        };
        let mut hasher = Sha256::new();
        hasher.update(DOMAIN);
        hasher.update(module);
        hasher.update(def_func_index.as_u32().to_le_bytes());
        hasher.update(func_index.as_u32().to_le_bytes());
        feed_len(&mut hasher, body.as_bytes());
        let mut key = KEY_PREFIX.to_vec();
        key.extend_from_slice(&hasher.finalize());
        Some(key)
    }

    /// A hash of everything translation reads besides the function's own body.
    fn module_fingerprint(
        &self,
        translation: &ModuleTranslation<'_>,
        types: &ModuleTypesBuilder,
    ) -> Option<[u8; 32]> {
        let module = &translation.module;
        let mut h = Sha256::new();
        h.update(DOMAIN);
        feed_len(&mut h, env!("CARGO_PKG_VERSION").as_bytes());

        // The compiler and the target.
        let isa = &*self.isa;
        feed_len(&mut h, isa.name().as_bytes());
        feed_len(&mut h, isa.triple().to_string().as_bytes());
        feed_len(&mut h, isa.flags().to_string().as_bytes());
        for flag in isa.isa_flags() {
            feed_len(&mut h, format!("{}={flag}", flag.name).as_bytes());
        }
        feed(&mut h, &self.tunables)?;
        h.update([u8::from(self.emit_debug_checks), u8::from(self.wmemcheck)]);

        // The module, but for its data and the initial values of its mutable globals. Every
        // field is named (no `..`), so a field that a wasmtime upgrade adds to `Module` does not
        // compile until it is hashed here or said to be left out.
        let wasmtime_environ::Module {
            module_index,
            strings,
            name,
            initializers,
            exports,
            startup,
            table_initialization,
            // Data: translation reads neither the bytes nor the placement of data segments.
            memory_initialization: _,
            passive_elements,
            runtime_data: _,
            types: module_types,
            num_imported_funcs,
            num_imported_tables,
            num_imported_memories,
            num_imported_globals,
            num_imported_tags,
            needs_gc_heap,
            // Read by the runtime only (48.0.11: it refuses to instantiate such a module on its
            // own), but it says the component's analysis specialised the module's imports
            // (`known_imported_functions`, below): hashed so that translation may read it.
            component_internal,
            num_escaped_funcs,
            functions,
            tables,
            memories,
            globals,
            global_initializers,
            tags,
        } = module;
        feed(&mut h, module_index)?;
        feed(&mut h, strings)?;
        feed(&mut h, name)?;
        feed(&mut h, initializers)?;
        feed(&mut h, exports)?;
        feed(&mut h, startup)?;
        feed(&mut h, table_initialization)?;
        feed(&mut h, passive_elements)?;
        feed(&mut h, module_types)?;
        feed(
            &mut h,
            &[
                *num_imported_funcs,
                *num_imported_tables,
                *num_imported_memories,
                *num_imported_globals,
                *num_imported_tags,
                *num_escaped_funcs,
            ],
        )?;
        h.update([u8::from(*needs_gc_heap), u8::from(*component_internal)]);
        feed(&mut h, functions)?;
        feed(&mut h, tables)?;
        feed(&mut h, memories)?;
        feed(&mut h, globals)?;
        for (index, value) in global_initializers.iter() {
            if !globals[module.global_index(*index)].mutability {
                feed(&mut h, &(index, value))?;
            }
        }
        feed(&mut h, tags)?;

        // The types the module's indices stand for (their contents, not only their indices).
        for (_, ty) in module_types.iter() {
            if let EngineOrModuleTypeIndex::Module(index) = ty {
                feed(&mut h, &types[*index])?;
            }
        }

        // What the translation holds beside the module.
        feed_debug(&mut h, &translation.known_imported_functions);
        feed_debug(&mut h, &translation.runtime_data_map);
        feed_debug(&mut h, &translation.passive_elem_map);
        Some(h.finalize().into())
    }

    /// The function as compiled before, if `entry` (the value stored under its memo key) is
    /// one this compiler can finish; `None` sends the function down the usual path.
    pub(super) fn memo_hit(
        &self,
        entry: &[u8],
        body: &FunctionBody<'_>,
    ) -> Option<CompiledFunctionBody> {
        let entry = Entry::decode(entry)?;
        let reader = body.get_binary_reader();
        let offset = u32::try_from(reader.original_position()).ok()?;
        let len = u32::try_from(reader.bytes_remaining()).ok()?;

        let mut func = ir::Function::new();
        if let Some(relative) = entry.relative_base {
            func.params
                .ensure_base_srcloc(SourceLoc::new(offset.checked_add(relative)?));
        }
        for name in &entry.names {
            func.declare_imported_user_function(name.clone());
        }
        if func.params.user_named_funcs().len() != entry.names.len() {
            return None;
        }
        let code =
            cranelift_codegen::incremental_cache::try_finish_recompile(&func, entry.stencil)
                .ok()?;

        // As `finish_with_info` does for a wasm function.
        let isa = &*self.isa;
        let unwind = if isa.flags().unwind_info() {
            code.create_unwind_info(isa).ok()?
        } else {
            None
        };
        let alignment = code
            .buffer
            .alignment
            .max(isa.function_alignment().preferred);
        let mut compiled = CompiledFunction::new(
            code.buffer,
            func.params.user_named_funcs().clone(),
            alignment,
        );
        compiled.set_address_map(offset, len, self.tunables.generate_address_map);
        if let Some(unwind) = unwind {
            compiled.set_unwind_info(unwind);
        }
        Some(CompiledFunctionBody {
            code: box_dyn_any_compiled_function(compiled),
            needs_gc_heap: entry.needs_gc_heap,
        })
    }
}

/// The value of a memo entry: what translation produced beside the IR, then the incremental
/// cache's stencil blob.
pub(super) struct Entry<'a> {
    pub needs_gc_heap: bool,
    /// Where the source locations start, relative to the start of the body.
    pub relative_base: Option<u32>,
    pub names: Vec<UserExternalName>,
    pub stencil: &'a [u8],
}

impl<'a> Entry<'a> {
    /// Encodes an entry for a function compiled from the body at `body_offset`.
    pub fn encode(
        pending: &Pending,
        func: &ir::Function,
        stencil: &[u8],
    ) -> Option<Vec<u8>> {
        let base = func.params.base_srcloc();
        let relative_base = if base.is_default() {
            None
        } else {
            Some(base.bits().checked_sub(u32::try_from(pending.body_offset).ok()?)?)
        };
        let names = func.params.user_named_funcs();
        let mut out = Vec::with_capacity(10 + 8 * names.len() + stencil.len());
        out.push(u8::from(pending.needs_gc_heap));
        match relative_base {
            Some(relative) => {
                out.push(1);
                out.extend_from_slice(&relative.to_le_bytes());
            }
            None => out.push(0),
        }
        out.extend_from_slice(&u32::try_from(names.len()).ok()?.to_le_bytes());
        for (_, name) in names.iter() {
            out.extend_from_slice(&name.namespace.to_le_bytes());
            out.extend_from_slice(&name.index.to_le_bytes());
        }
        out.extend_from_slice(stencil);
        Some(out)
    }

    fn decode(bytes: &'a [u8]) -> Option<Entry<'a>> {
        fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
            Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
        }
        let needs_gc_heap = match *bytes.first()? {
            0 => false,
            1 => true,
            _ => return None,
        };
        let (relative_base, mut at) = match *bytes.get(1)? {
            0 => (None, 2),
            1 => (Some(u32_at(bytes, 2)?), 6),
            _ => return None,
        };
        let count = usize::try_from(u32_at(bytes, at)?).ok()?;
        at += 4;
        if count > bytes.len() / 8 {
            return None;
        }
        let mut names = Vec::with_capacity(count);
        for _ in 0..count {
            names.push(UserExternalName {
                namespace: u32_at(bytes, at)?,
                index: u32_at(bytes, at + 4)?,
            });
            at += 8;
        }
        Some(Entry {
            needs_gc_heap,
            relative_base,
            names,
            stencil: bytes.get(at..)?,
        })
    }
}
