//! Python guests: componentize-py, installed by the first build into
//! target/componentize-venv, turns each module of guests/python (and the
//! test guests of tests/guests/python) into a component,
//! `guests/python/echo.py` -> `echo_py.wasm`, after `check.py` has looked
//! for the mistakes it would report badly, then fixes the write leak of
//! componentize-py's runtime in it (write_leak.rs).

mod write_leak;

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::sources::stale;
use crate::{Result, run, target_dir, workspace_root};

/// The Python guests: the folder of each module, and its name.
const GUESTS: [(&str, &str); 8] = [
    ("guests/python", "echo"),
    ("guests/python", "udp_echo"),
    ("guests/python", "counter"),
    ("guests/python", "chat"),
    ("guests/python", "portforward"),
    ("guests/python", "redis_counter"),
    ("tests/guests/python", "faulty"),
    ("tests/guests/python", "reactor"),
];

const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// The checks run on a guest module before it is built.
const CHECK: &str = include_str!("check.py");

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
    let (source, out) =
        crate::sources::source_and_output(args, "py", "cargo xtask python MODULE.py [OUT.wasm]")?;
    let module = crate::sources::stem(&source);
    let dir = match source.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    componentize(&componentize_py()?, &dir, &module, &out)?;
    println!("built {}", out.display());
    Ok(())
}

/// Check `module` in `dir`, then componentize-py on it (with the SDK on
/// its path), then the write-leak fix, into `out`. The bytecode
/// componentize-py leaves in `dir` is removed.
fn componentize(componentize_py: &Path, dir: &Path, module: &str, out: &Path) -> Result {
    let root = workspace_root();
    let world = check(componentize_py, dir, module)?;
    let bytecode = dir.join("__pycache__");
    let before = listing(&bytecode);
    let built = out.with_extension("unfixed.wasm");
    let componentized = run(Command::new(componentize_py)
        // Its failures are the guest's, not componentize-py's own: no
        // Rust backtrace.
        .env("RUST_BACKTRACE", "0")
        .arg("-d")
        .arg(root.join("wit"))
        .args(["-w", &world, "componentize", "-p"])
        .arg(root.join("guest-sdk").join("python"))
        .arg("-p")
        .arg(dir)
        .arg(module)
        .arg("-o")
        .arg(&built));
    remove_new(&bytecode, &before);
    componentized?;
    let unfixed = std::fs::read(&built).map_err(|e| format!("{}: {e}", built.display()))?;
    let fixed = write_leak::fix(&unfixed).map_err(|e| format!("{}: {e}", built.display()))?;
    std::fs::write(out, fixed).map_err(|e| format!("{}: {e}", out.display()))?;
    std::fs::remove_file(&built).map_err(|e| format!("{}: {e}", built.display()))
}

/// Run `check.py` on `module` in `dir`: it says what is wrong itself, or
/// which world to build the module for.
fn check(componentize_py: &Path, dir: &Path, module: &str) -> Result<String> {
    let root = workspace_root();
    let python = componentize_py.with_file_name("python");
    let checked = Command::new(&python)
        .arg("-c")
        .arg(CHECK)
        .arg(bindings(componentize_py)?)
        .arg(root.join("guest-sdk").join("python"))
        .arg(dir)
        .arg(module)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    // What the module prints at import comes first; the world is last.
    let printed = String::from_utf8_lossy(&checked.stdout);
    match printed.lines().last() {
        Some(world @ ("service" | "datagram-service")) if checked.status.success() => {
            Ok(world.to_owned())
        }
        _ => Err(format!("{module}.py was not built")),
    }
}

/// The Python bindings of the current WIT, which the SDK imports, made
/// into target/python-bindings when the WIT is newer.
fn bindings(componentize_py: &Path) -> Result<PathBuf> {
    let wit = workspace_root().join("wit");
    let dir = target_dir().join("python-bindings");
    let made = dir.join("wit_world").join("__init__.py");
    if stale(&made, [&wit]) {
        let _ = std::fs::remove_dir_all(&dir);
        run(Command::new(componentize_py)
            .arg("-d")
            .arg(&wit)
            .args(["-w", "service", "bindings"])
            .arg(&dir))?;
    }
    Ok(dir)
}

/// The files in `dir`, if it exists.
fn listing(dir: &Path) -> Option<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).ok()?;
    Some(entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
}

/// Remove what was added to `dir` since `before` was listed: all of it,
/// with `dir` itself, if it did not exist then.
fn remove_new(dir: &Path, before: &Option<Vec<PathBuf>>) {
    match before {
        None => {
            let _ = std::fs::remove_dir_all(dir);
        }
        Some(before) => {
            for path in listing(dir).unwrap_or_default() {
                if !before.contains(&path) {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
    }
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
