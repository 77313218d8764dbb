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
        let built = out_dir.join(format!("{module}_py.unfixed.wasm"));
        run(Command::new(&componentize_py)
            .arg("-d")
            .arg(&wit)
            .args(["-w", "service", "componentize", "-p"])
            .arg(&sdk)
            .arg("-p")
            .arg(&dir)
            .arg(module)
            .arg("-o")
            .arg(&built))?;
        let unfixed = std::fs::read(&built).map_err(|e| format!("{}: {e}", built.display()))?;
        let fixed = write_leak::fix(&unfixed).map_err(|e| format!("{}: {e}", built.display()))?;
        let out = component(&out_dir, module);
        std::fs::write(&out, fixed).map_err(|e| format!("{}: {e}", out.display()))?;
        std::fs::remove_file(&built).map_err(|e| format!("{}: {e}", built.display()))?;
    }
    Ok(())
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
