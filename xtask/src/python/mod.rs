//! Python guests: componentize-py, installed by the first build into
//! target/componentize-venv, turns each module of guests/python (and the
//! test guests of tests/guests/python) into a component,
//! `guests/python/echo.py` -> `echo_py.wasm`, then fixes the write leak
//! of componentize-py's runtime in it (write_leak.rs).

mod write_leak;

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::sources::stale;
use crate::{Result, run, target_dir, workspace_root};

/// The Python guests: the folder of each module, and its name.
const GUESTS: [(&str, &str); 7] = [
    ("guests/python", "echo"),
    ("guests/python", "counter"),
    ("guests/python", "chat"),
    ("guests/python", "portforward"),
    ("guests/python", "redis_counter"),
    ("tests/guests/python", "faulty"),
    ("tests/guests/python", "reactor"),
];

const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// Build the Python guests whose sources changed since they were built.
pub fn build() -> Result {
    let root = workspace_root();
    let (wit, sdk) = (root.join("wit"), root.join("guest-sdk").join("python"));
    let fix = root
        .join("xtask")
        .join("src")
        .join("python")
        .join("write_leak.rs");
    let out_dir = target_dir().join("wasm32-wasip2").join("release");
    let to_build: Vec<(PathBuf, &str)> = GUESTS
        .into_iter()
        .map(|(dir, module)| (root.join(dir), module))
        .filter(|(dir, module)| {
            stale(
                &component(&out_dir, module),
                [&wit, &sdk, &dir.join(format!("{module}.py")), &fix],
            )
        })
        .collect();
    if to_build.is_empty() {
        return Ok(());
    }
    let componentize_py = componentize_py()?;
    for (dir, module) in to_build {
        componentize(&componentize_py, &dir, module, &component(&out_dir, module))?;
    }
    Ok(())
}

/// `cargo xtask python MODULE.py [OUT.wasm]`: build a guest module of the
/// user's own, as the bundled ones are (the write leak fixed), into
/// OUT.wasm, by default MODULE.wasm beside the module.
pub fn build_module(args: &[String]) -> Result {
    let (source, out) = match args {
        [source] => (
            PathBuf::from(source),
            Path::new(source).with_extension("wasm"),
        ),
        [source, out] => (PathBuf::from(source), PathBuf::from(out)),
        _ => return Err("usage: cargo xtask python MODULE.py [OUT.wasm]".into()),
    };
    let (Some(module), Some("py")) = (
        source.file_stem().and_then(|s| s.to_str()),
        source.extension().and_then(|e| e.to_str()),
    ) else {
        return Err(format!(
            "{}: not a Python module (MODULE.py)",
            source.display()
        ));
    };
    if !source.is_file() {
        return Err(format!("{}: no such file", source.display()));
    }
    let dir = match source.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    componentize(&componentize_py()?, &dir, module, &out)?;
    println!("built {}", out.display());
    Ok(())
}

/// componentize-py on `module` in `dir` (with the SDK on its path), then
/// the write-leak fix, into `out`.
fn componentize(componentize_py: &Path, dir: &Path, module: &str, out: &Path) -> Result {
    let root = workspace_root();
    let built = out.with_extension("unfixed.wasm");
    run(Command::new(componentize_py)
        .arg("-d")
        .arg(root.join("wit"))
        .args(["-w", "service", "componentize", "-p"])
        .arg(root.join("guest-sdk").join("python"))
        .arg("-p")
        .arg(dir)
        .arg(module)
        .arg("-o")
        .arg(&built))?;
    let unfixed = std::fs::read(&built).map_err(|e| format!("{}: {e}", built.display()))?;
    let fixed = write_leak::fix(&unfixed).map_err(|e| format!("{}: {e}", built.display()))?;
    std::fs::write(out, fixed).map_err(|e| format!("{}: {e}", out.display()))?;
    std::fs::remove_file(&built).map_err(|e| format!("{}: {e}", built.display()))
}

fn component(out_dir: &Path, guest: &str) -> PathBuf {
    out_dir.join(format!("{guest}_py.wasm"))
}

/// componentize-py, installed once into target/componentize-venv.
fn componentize_py() -> Result<PathBuf> {
    let venv = target_dir().join("componentize-venv");
    let tool = venv.join("bin").join("componentize-py");
    if !tool.exists() {
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        run(Command::new(venv.join("bin").join("python")).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            COMPONENTIZE_PY,
        ]))?;
    }
    Ok(tool)
}
