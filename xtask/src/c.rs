//! C guests: bindings generated with wit-bindgen's C generator, compiled
//! with Debian's clang and wasi-libc (installed by the first build when
//! missing), then made a component with the WASI reactor adapter, all as
//! libraries here so that no CLI needs installing.

use std::path::{Path, PathBuf};
use std::process::Command;

use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
};
use wit_bindgen_core::Files;
use wit_parser::Resolve;

use crate::sources::{each_with_extension, stale, stem};
use crate::{Result, run, target_dir, workspace_root};

/// Debian's packages for C on wasm32-wasi.
const PACKAGES: [&str; 4] = ["clang", "lld", "wasi-libc", "libclang-rt-dev-wasm32"];

/// Build the C guests whose sources changed since they were built.
pub fn build() -> Result {
    let root = workspace_root();
    let wit = root.join("wit");
    let out_dir = target_dir().join("wasm32-wasip2").join("release");
    // Every guests/c/NAME.c is a guest, built to NAME_c.wasm.
    for source in each_with_extension(&root.join("guests").join("c"), "c")? {
        let guest = stem(&source);
        let component = out_dir.join(format!("{guest}_c.wasm"));
        if !stale(&component, [&wit, &source]) {
            continue;
        }
        let work = target_dir().join("c-guests").join(&guest);
        let generated = work.join("gen");
        bindings(&wit, &generated)?;
        let core = work.join(format!("{guest}.core.wasm"));
        compile(&source, &generated, &core)?;
        componentize(&core, &component)?;
    }
    Ok(())
}

/// `cargo xtask c FILE.c [OUT.wasm]`: build a C guest of the user's own,
/// from any folder, as the bundled ones are, into OUT.wasm (by default
/// FILE.wasm beside the source). The generated header, `service.h`, is
/// written beside the source too, for editors.
pub fn build_module(args: &[String]) -> Result {
    let (source, out) =
        crate::sources::source_and_output(args, "c", "cargo xtask c FILE.c [OUT.wasm]")?;
    let root = workspace_root();
    let guest = stem(&source);
    let work = target_dir().join("c-guests").join(format!("user-{guest}"));
    let generated = work.join("gen");
    bindings(&root.join("wit"), &generated)?;
    let header = generated.join("service.h");
    if let Some(dir) = source.parent() {
        std::fs::copy(&header, dir.join("service.h"))
            .map_err(|e| format!("cannot copy {}: {e}", header.display()))?;
    }
    let core = work.join(format!("{guest}.core.wasm"));
    compile(&source, &generated, &core)?;
    componentize(&core, &out)?;
    println!("built {}", out.display());
    Ok(())
}

/// Write the C bindings of the `service` world into `out`.
fn bindings(wit: &Path, out: &Path) -> Result {
    let mut resolve = Resolve::default();
    let (package, _) = resolve
        .push_dir(wit)
        .map_err(|e| format!("cannot read {}: {e:#}", wit.display()))?;
    let world = resolve
        .select_world(&[package], Some("service"))
        .map_err(|e| format!("no world `service`: {e:#}"))?;
    let mut files = Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world, &mut files)
        .map_err(|e| format!("cannot generate C bindings: {e:#}"))?;
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    for (name, contents) in files.iter() {
        std::fs::write(out.join(name), contents)
            .map_err(|e| format!("cannot write {name}: {e}"))?;
    }
    Ok(())
}

/// Compile `source` and the bindings into a core module, as a reactor.
fn compile(source: &Path, generated: &Path, core: &Path) -> Result {
    let clang = clang()?;
    let mut command = Command::new(clang);
    command
        .args([
            "--target=wasm32-wasi",
            "-mexec-model=reactor",
            "-Os",
            "-Wall",
            "-Werror",
        ])
        .arg("-I")
        .arg(generated)
        .arg("-Wl,--strip-all")
        .arg("-o")
        .arg(core)
        .arg(source);
    for entry in std::fs::read_dir(generated).map_err(|e| format!("{e}"))? {
        let path = entry.map_err(|e| format!("{e}"))?.path();
        if path.extension().is_some_and(|ext| ext == "c" || ext == "o") {
            command.arg(path);
        }
    }
    run(&mut command)
}

/// Wrap the core module into a component, its WASI preview1 imports
/// adapted to WASI 0.2 by the reactor adapter.
fn componentize(core: &Path, component: &Path) -> Result {
    let module = std::fs::read(core).map_err(|e| format!("cannot read {}: {e}", core.display()))?;
    let bytes = wit_component::ComponentEncoder::default()
        .module(&module)
        .and_then(|encoder| {
            encoder.validate(true).adapter(
                WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
                WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
            )
        })
        .and_then(|encoder| encoder.encode())
        .map_err(|e| format!("cannot make a component of {}: {e:#}", core.display()))?;
    std::fs::write(component, bytes)
        .map_err(|e| format!("cannot write {}: {e}", component.display()))
}

/// A clang that targets wasm32-wasi, installing Debian's packages when it
/// or wasi-libc is missing.
fn clang() -> Result<PathBuf> {
    let clang = PathBuf::from("/usr/bin/clang");
    if clang.exists() && Path::new("/usr/include/wasm32-wasi").exists() {
        return Ok(clang);
    }
    crate::debian::install(&PACKAGES, "for the C guests")?;
    Ok(clang)
}
