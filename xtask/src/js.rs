//! JavaScript guests: componentize-js, installed by the first build into
//! target/componentize-js, turns each guests/js/NAME.js into `NAME_js.wasm`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::sources::{each_with_extension, stale, stem};
use crate::{Result, run, target_dir, workspace_root};

const COMPONENTIZE_JS: &str = "@bytecodealliance/componentize-js@0.23.0";

/// Build the JavaScript guests whose sources changed since they were built.
pub fn build() -> Result {
    let root = workspace_root();
    let wit = root.join("wit");
    let out_dir = target_dir().join("wasm32-wasip2").join("release");
    for source in each_with_extension(&root.join("guests").join("js"), "js")? {
        let component = out_dir.join(format!("{}_js.wasm", stem(&source)));
        if !stale(&component, [&wit, &source]) {
            continue;
        }
        componentize(&source, &component)?;
    }
    Ok(())
}

/// `cargo xtask js FILE.js [OUT.wasm]`: build a JavaScript guest of the
/// user's own, from any folder, into OUT.wasm (by default FILE.wasm
/// beside the source).
pub fn build_module(args: &[String]) -> Result {
    let (source, out) =
        crate::sources::source_and_output(args, "js", "cargo xtask js FILE.js [OUT.wasm]")?;
    componentize(&source, &out)?;
    println!("built {}", out.display());
    Ok(())
}

/// componentize-js on `source`, against the `service` world, into `out`.
fn componentize(source: &Path, out: &Path) -> Result {
    // Without `-d http -d fetch-event` the component imports wasi:http.
    run(Command::new(componentize_js()?)
        .arg(source)
        .arg("--wit")
        .arg(workspace_root().join("wit"))
        .args([
            "--world-name",
            "service",
            "-d",
            "http",
            "-d",
            "fetch-event",
            "-o",
        ])
        .arg(out))
}

/// componentize-js, installed once with npm into target/componentize-js.
fn componentize_js() -> Result<PathBuf> {
    let prefix = target_dir().join("componentize-js");
    let tool = prefix
        .join("node_modules")
        .join(".bin")
        .join("componentize-js");
    if !tool.exists() {
        std::fs::create_dir_all(&prefix).map_err(|e| format!("cannot create {prefix:?}: {e}"))?;
        run(Command::new("npm")
            .arg("install")
            .arg("--prefix")
            .arg(&prefix)
            .args([
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                COMPONENTIZE_JS,
            ]))?;
    }
    Ok(tool)
}
