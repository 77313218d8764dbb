//! componentize-py 0.25.1 never frees the copy it makes of each `list<u8>`
//! a Python guest passes to an import, so every `transport.write` leaks its
//! bytes. The host rewrites such a component's runtime module before
//! compiling it, so that the copy is freed when the call ends, as wit-dylib
//! says it should be, however the component was built.

// How the leak happens. The bindings module (`libcomponentize_py_bindings.so`)
// lowers a list argument by calling the runtime's
// `wit_dylib_pop_list(cx, ty, &ptr) -> len`. For `list<u8>` the runtime
// (`maybe_pop_list` in componentize-py's runtime/src/lib.rs) copies the
// Python bytes into a fresh allocation of `len` bytes, alignment 1, and
// writes its address to `ptr`; nothing frees it. For any other list it
// writes NULL, and the bindings allocate the buffer themselves and hand it
// to `wit_dylib_dealloc_bytes(cx, ptr, size, align, defer = 1)`, which
// frees it when the call's context is dropped, after the import has read it.
//
// The fix gives the runtime's buffer the same treatment. It adds one
// function to the runtime module,
//
//     len = wit_dylib_pop_list(cx, ty, out)
//     if *out != 0 { wit_dylib_dealloc_bytes(cx, *out, len, 1, 1) }
//     return len
//
// and points the module's `wit_dylib_pop_list` export at it. The new
// function takes the next index, so no index in the module or the component
// moves: the runtime module's function, export and code sections are
// re-encoded and every other byte of the component is copied as it is.
//
// Why not upstream's one-line fix instead: componentize-py's runtime is a
// prebuilt CPython extension in its wheel; rebuilding it needs a WASI CPython
// build that neither crates.io nor PyPI provide.
//
// The fix depends on the runtime's code: a componentize-py that frees the
// buffer itself would have it freed twice. So it applies only to the runtime
// it was checked against, identified by its SHA-256; any other component
// (another language, another componentize-py, one fixed already) is served
// as it is.

use sha2::{Digest, Sha256};
use wasm_encoder::{
    CodeSection, Component, ExportKind, ExportSection, Function, FunctionSection, MemArg, Module,
    RawSection,
};
use wasmparser::{
    BinaryReader, CodeSectionReader, ExternalKind, FuncType, Parser, Payload, TypeRef, ValType,
};

type Result<T = ()> = std::result::Result<T, String>;

const POP_LIST: &str = "wit_dylib_pop_list";
const DEALLOC_BYTES: &str = "wit_dylib_dealloc_bytes";

/// SHA-256 of `libcomponentize_py_runtime.so` as componentize-py 0.25.1
/// puts it in every component, the runtime this fix was checked against.
const RUNTIME_0_25_1: &str = "d6d1faffc282de30f35fc38cda9fd558f3a22a2df24f0868104847f22bddf4dd";

/// `component` with its write leak fixed, if it is a componentize-py 0.25.1
/// component; `None` for any other, which needs no fix or cannot take it.
pub fn fixed(component: &[u8]) -> Option<Vec<u8>> {
    match fix_runtime_of(component, RUNTIME_0_25_1) {
        Ok(fixed) => Some(fixed),
        Err(why) => {
            tracing::trace!("no write-leak fix: {why}");
            None
        }
    }
}

/// Rewrite the one top-level core module that exports `wit_dylib_pop_list`,
/// provided its SHA-256 is `known_runtime`; copy every other section.
fn fix_runtime_of(component: &[u8], known_runtime: &str) -> Result<Vec<u8>> {
    let mut fixed = Component::new();
    let mut runtimes = 0;
    // Sections of nested modules and components come through the parser
    // too; only the top level's are copied, a nested one whole.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(component) {
        let payload = payload.map_err(|e| format!("not a component: {e}"))?;
        match &payload {
            Payload::Version { .. } => continue,
            Payload::End(_) => {
                depth = depth.saturating_sub(1);
                continue;
            }
            _ => {}
        }
        let Some((id, range)) = payload.as_section() else {
            continue;
        };
        let section = &component[range];
        let nested = matches!(
            payload,
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. }
        );
        if depth == 0 {
            if matches!(payload, Payload::ModuleSection { .. }) && exports(section, POP_LIST)? {
                runtimes += 1;
                check_known(section, known_runtime)?;
                let runtime = fix_runtime(section)?;
                fixed.section(&RawSection { id, data: &runtime });
            } else {
                fixed.section(&RawSection { id, data: section });
            }
        }
        if nested {
            depth += 1;
        }
    }
    match runtimes {
        1 => Ok(fixed.finish()),
        found => Err(format!(
            "componentize-py's write-leak fix: expected one core module exporting \
             `{POP_LIST}` (componentize-py's runtime), found {found}; this \
             is not a component of componentize-py 0.25.1"
        )),
    }
}

fn check_known(runtime: &[u8], known: &str) -> Result {
    let digest = format!("{:x}", Sha256::digest(runtime));
    if digest == known {
        return Ok(());
    }
    Err(format!(
        "componentize-py's runtime module (SHA-256 {digest}) is not the one whose \
         write leak this fixes (componentize-py 0.25.1, SHA-256 {known})"
    ))
}

/// Whether `module` exports a function named `name`.
fn exports(module: &[u8], name: &str) -> Result<bool> {
    for payload in Parser::new(0).parse_all(module) {
        if let Payload::ExportSection(reader) = payload.map_err(invalid)? {
            for export in reader {
                let export = export.map_err(invalid)?;
                if export.name == name && export.kind == ExternalKind::Func {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}

/// What the fix needs to know of the runtime module.
#[derive(Default)]
struct Runtime {
    types: Vec<FuncType>,
    imported_functions: u32,
    function_types: Vec<u32>,
    has_memory: bool,
    pop_list: Option<u32>,
    dealloc_bytes: Option<u32>,
}

impl Runtime {
    fn read(module: &[u8]) -> Result<Runtime> {
        let mut runtime = Runtime::default();
        for payload in Parser::new(0).parse_all(module) {
            match payload.map_err(invalid)? {
                Payload::TypeSection(reader) => {
                    for ty in reader.into_iter_err_on_gc_types() {
                        runtime.types.push(ty.map_err(invalid)?);
                    }
                }
                Payload::ImportSection(reader) => {
                    for import in reader.into_imports() {
                        match import.map_err(invalid)?.ty {
                            TypeRef::Func(_) => runtime.imported_functions += 1,
                            TypeRef::Memory(_) => runtime.has_memory = true,
                            _ => {}
                        }
                    }
                }
                Payload::FunctionSection(reader) => {
                    for ty in reader {
                        runtime.function_types.push(ty.map_err(invalid)?);
                    }
                }
                Payload::MemorySection(reader) => runtime.has_memory |= reader.count() > 0,
                Payload::ExportSection(reader) => {
                    for export in reader {
                        let export = export.map_err(invalid)?;
                        match (export.name, export.kind) {
                            (POP_LIST, ExternalKind::Func) => runtime.pop_list = Some(export.index),
                            (DEALLOC_BYTES, ExternalKind::Func) => {
                                runtime.dealloc_bytes = Some(export.index);
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(runtime)
    }

    /// The type of function `index`, checked to be `params -> results`.
    fn checked(
        &self,
        name: &str,
        index: Option<u32>,
        params: usize,
        results: usize,
    ) -> Result<u32> {
        let index = index.ok_or_else(|| format!("the runtime module exports no `{name}`"))?;
        let ty = index
            .checked_sub(self.imported_functions)
            .and_then(|defined| self.function_types.get(defined as usize))
            .ok_or_else(|| format!("the runtime's `{name}` is not a function it defines"))?;
        let signature = self
            .types
            .get(*ty as usize)
            .ok_or_else(|| format!("the runtime's `{name}` has no type"))?;
        let all_i32 =
            |types: &[ValType], n| types.len() == n && types.iter().all(|t| *t == ValType::I32);
        if all_i32(signature.params(), params) && all_i32(signature.results(), results) {
            Ok(*ty)
        } else {
            Err(format!(
                "the runtime's `{name}` is {signature}, not the {params} i32 parameters \
                 and {results} i32 results of wit-dylib's `{name}`"
            ))
        }
    }
}

/// The runtime module with `wit_dylib_pop_list` exported through the wrapper.
fn fix_runtime(module: &[u8]) -> Result<Vec<u8>> {
    let runtime = Runtime::read(module)?;
    let laid_out = |problem: String| {
        format!(
            "componentize-py's write-leak fix does not fit this runtime: {problem} \
             (see host/src/sandbox/write_leak.rs)"
        )
    };
    let pop_list_type = runtime
        .checked(POP_LIST, runtime.pop_list, 3, 1)
        .map_err(laid_out)?;
    runtime
        .checked(DEALLOC_BYTES, runtime.dealloc_bytes, 5, 0)
        .map_err(laid_out)?;
    if !runtime.has_memory {
        return Err(laid_out("it has no memory".into()));
    }
    let (Some(pop_list), Some(dealloc_bytes)) = (runtime.pop_list, runtime.dealloc_bytes) else {
        unreachable!("checked above");
    };
    let defined = u32::try_from(runtime.function_types.len()).map_err(|e| e.to_string())?;
    let wrapper = runtime.imported_functions + defined;

    let mut fixed = Module::new();
    for payload in Parser::new(0).parse_all(module) {
        let payload = payload.map_err(invalid)?;
        let Some((id, range)) = payload.as_section() else {
            continue;
        };
        match payload {
            Payload::FunctionSection(_) => {
                let mut functions = FunctionSection::new();
                for ty in &runtime.function_types {
                    functions.function(*ty);
                }
                functions.function(pop_list_type);
                fixed.section(&functions);
            }
            Payload::ExportSection(reader) => {
                let mut exports = ExportSection::new();
                for export in reader {
                    let export = export.map_err(invalid)?;
                    let index = if export.name == POP_LIST {
                        wrapper
                    } else {
                        export.index
                    };
                    exports.export(export.name, export_kind(export.kind)?, index);
                }
                fixed.section(&exports);
            }
            Payload::CodeSectionStart { .. } => {
                let reader =
                    CodeSectionReader::new(BinaryReader::new(&module[range.clone()], range.start))
                        .map_err(invalid)?;
                let mut code = CodeSection::new();
                for body in reader {
                    let body = body.map_err(invalid)?;
                    code.raw(&module[body.range()]);
                }
                code.function(&releasing_pop_list(pop_list, dealloc_bytes));
                fixed.section(&code);
            }
            _ => {
                fixed.section(&RawSection {
                    id,
                    data: &module[range],
                });
            }
        }
    }
    let fixed = fixed.finish();
    wasmparser::Validator::new()
        .validate_all(&fixed)
        .map_err(|e| format!("the fixed runtime module does not validate: {e}"))?;
    Ok(fixed)
}

/// `(cx, ty, out) -> len`: the runtime's `pop_list`, then a deferred free
/// of the buffer it wrote to `*out`, if any.
fn releasing_pop_list(pop_list: u32, dealloc_bytes: u32) -> Function {
    let (cx, ty, out, len, ptr) = (0, 1, 2, 3, 4);
    let mut function = Function::new([(2, wasm_encoder::ValType::I32)]);
    function
        .instructions()
        .local_get(cx)
        .local_get(ty)
        .local_get(out)
        .call(pop_list)
        .local_set(len)
        .local_get(out)
        .i32_load(MemArg {
            offset: 0,
            align: 2,
            memory_index: 0,
        })
        .local_tee(ptr)
        .if_(wasm_encoder::BlockType::Empty)
        .local_get(cx)
        .local_get(ptr)
        .local_get(len)
        .i32_const(1) // align: the runtime allocates the copy with alignment 1
        .i32_const(1) // defer: free when the call's context is dropped
        .call(dealloc_bytes)
        .end()
        .local_get(len)
        .end();
    function
}

fn export_kind(kind: ExternalKind) -> Result<ExportKind> {
    Ok(match kind {
        ExternalKind::Func => ExportKind::Func,
        ExternalKind::Table => ExportKind::Table,
        ExternalKind::Memory => ExportKind::Memory,
        ExternalKind::Global => ExportKind::Global,
        ExternalKind::Tag => ExportKind::Tag,
        ExternalKind::FuncExact => return Err("the runtime exports an exact function".into()),
    })
}

fn invalid(error: wasmparser::BinaryReaderError) -> String {
    format!("componentize-py's runtime module does not parse: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for componentize-py's runtime: the memory and the two
    /// functions the fix uses, beside another function.
    const RUNTIME: &str = r#"(module
        (import "env" "memory" (memory 0))
        (import "env" "other" (func))
        (func (export "other") (param i32))
        (func (export "wit_dylib_pop_list") (param i32 i32 i32) (result i32) i32.const 0)
        (func (export "wit_dylib_dealloc_bytes") (param i32 i32 i32 i32 i32))
    )"#;

    const BINDINGS: &str = r#"(module (import "env" "wit_dylib_pop_list"
        (func (param i32 i32 i32) (result i32))))"#;

    fn module(text: &str) -> Vec<u8> {
        wat::parse_str(text).expect("a module")
    }

    fn component(modules: &[&[u8]]) -> Vec<u8> {
        let mut component = Component::new();
        for module in modules {
            component.section(&RawSection {
                id: 1,
                data: module,
            });
        }
        component.finish()
    }

    fn sha256(bytes: &[u8]) -> String {
        format!("{:x}", Sha256::digest(bytes))
    }

    fn modules(component: &[u8]) -> Vec<Vec<u8>> {
        Parser::new(0)
            .parse_all(component)
            .filter_map(|payload| match payload.expect("parses") {
                Payload::ModuleSection {
                    unchecked_range, ..
                } => Some(component[unchecked_range].to_vec()),
                _ => None,
            })
            .collect()
    }

    fn exported(module: &[u8], name: &str) -> u32 {
        for payload in Parser::new(0).parse_all(module) {
            if let Payload::ExportSection(reader) = payload.unwrap() {
                for export in reader {
                    let export = export.unwrap();
                    if export.name == name {
                        return export.index;
                    }
                }
            }
        }
        panic!("no export {name}")
    }

    #[test]
    fn points_pop_list_at_a_new_function_and_copies_the_rest() {
        let (runtime, bindings) = (module(RUNTIME), module(BINDINGS));
        let fixed = fix_runtime_of(&component(&[&bindings, &runtime]), &sha256(&runtime))
            .expect("the fix applies");
        wasmparser::Validator::new()
            .validate_all(&fixed)
            .expect("the fixed component validates");
        let [fixed_bindings, fixed_runtime] = &modules(&fixed)[..] else {
            panic!("two modules");
        };
        assert_eq!(
            fixed_bindings, &bindings,
            "other modules are copied as they are"
        );
        // One imported and three defined functions: the wrapper is the fifth.
        assert_eq!(exported(fixed_runtime, POP_LIST), 4);
        assert_eq!(exported(fixed_runtime, DEALLOC_BYTES), 3);
        assert_eq!(exported(fixed_runtime, "other"), 1);
    }

    #[test]
    fn refuses_a_runtime_it_was_not_checked_against() {
        let runtime = module(&RUNTIME.replace("i32.const 0", "i32.const 1"));
        let error = fix_runtime_of(&component(&[&runtime]), &sha256(&module(RUNTIME)))
            .expect_err("another runtime");
        assert!(error.contains("is not the one whose write leak"), "{error}");
    }

    #[test]
    fn refuses_a_component_without_the_runtime() {
        let error = fix_runtime_of(&component(&[&module(BINDINGS)]), "").expect_err("no runtime");
        assert!(error.contains("found 0"), "{error}");
    }

    #[test]
    fn refuses_a_runtime_whose_functions_changed_shape() {
        let runtime =
            module(&RUNTIME.replace("(param i32 i32 i32 i32 i32)", "(param i32 i32 i32 i32)"));
        let error = fix_runtime_of(&component(&[&runtime]), &sha256(&runtime))
            .expect_err("another signature");
        assert!(error.contains("`wit_dylib_dealloc_bytes` is"), "{error}");
    }
}
