//! Python guests: componentize-py, installed by the first build into
//! target/componentize-venv, turns each module of guests/python (and the
//! test guests of tests/guests/python) into a component,
//! `guests/python/echo.py` -> `echo_py.wasm`, through the SDK's own build
//! command (`guest-sdk/python/weft/_build.py`, which a pip-installed SDK
//! runs as `weft-python`): it checks the module, picks its world and
//! leaves no bytecode behind. (The host fixes the write leak of
//! componentize-py's runtime when it loads the component.)

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::sources::stale;
use crate::{Result, run, target_dir, workspace_root};

/// The Python guests: the folder of each module, and its name.
const GUESTS: [(&str, &str); 10] = [
    ("guests/python", "echo"),
    ("guests/python", "udp_echo"),
    ("guests/python", "counter"),
    ("guests/python", "chat"),
    ("guests/python", "portforward"),
    ("guests/python", "redis_counter"),
    ("guests/python", "kv_counter"),
    ("guests/python", "chat_room"),
    ("tests/guests/python", "faulty"),
    ("tests/guests/python", "reactor"),
];

const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// Build the Python guests whose sources changed since they were built.
pub fn build() -> Result {
    let root = workspace_root();
    let (wit, sdk) = (root.join("wit"), root.join("guest-sdk").join("python"));
    let out_dir = target_dir().join("wasm32-wasip2").join("release");
    let to_build: Vec<(PathBuf, &str)> = GUESTS
        .into_iter()
        .map(|(dir, module)| (root.join(dir), module))
        .filter(|(dir, module)| {
            stale(
                &component(&out_dir, module),
                [&wit, &sdk, &dir.join(format!("{module}.py"))],
            )
        })
        .collect();
    if to_build.is_empty() {
        return Ok(());
    }
    let componentize_py = componentize_py()?;
    for (dir, module) in to_build {
        let source = dir.join(format!("{module}.py"));
        componentize(&componentize_py, &source, &component(&out_dir, module))?;
    }
    Ok(())
}

/// `cargo xtask python MODULE.py [OUT.wasm]`: build a guest module of the
/// user's own, as the bundled ones are, into OUT.wasm, by default
/// MODULE.wasm beside the module.
pub fn build_module(args: &[String]) -> Result {
    let (source, out) =
        crate::sources::source_and_output(args, "py", "cargo xtask python MODULE.py [OUT.wasm]")?;
    componentize(&componentize_py()?, &source, &out)?;
    Ok(())
}

/// Build `source` into `out` with the SDK's build command, run by the
/// componentize venv's Python, against this checkout's WIT.
fn componentize(componentize_py: &Path, source: &Path, out: &Path) -> Result {
    let root = workspace_root();
    let build = root
        .join("guest-sdk")
        .join("python")
        .join("weft")
        .join("_build.py");
    run(Command::new(componentize_py.with_file_name("python"))
        .arg(build)
        .arg("--wit")
        .arg(root.join("wit"))
        .arg("--bindings")
        .arg(bindings(componentize_py)?)
        .arg(source)
        .arg(out)
        .env("PYTHONDONTWRITEBYTECODE", "1"))
    .map_err(|_| format!("{} was not built", source.display()))
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
            .args(["-w", "stateful-service", "bindings"])
            .arg(&dir))?;
    }
    Ok(dir)
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
